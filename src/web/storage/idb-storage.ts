// The browser's storage keys, and the SDK's Storage over IndexedDB for browsers without the origin-private file
// system's writable files (opfs-storage.ts is the store the web app uses where it can). Every entry (its name and
// its value) is one AES-256-GCM record under a non-extractable key kept in the same database; record ids are HMACs
// of the names, so the database shows neither contacts' account ids nor any message or key, only opaque ids and
// ciphertext. Unlike the file store, it cannot promise that a replaced record is gone from the disk: IndexedDB's
// log files keep it until a compaction the page cannot trigger (docs/threat-model.md).
import { concatBytes, fromUtf8, randomBytes, toBase64Url, utf8 } from "../../crypto/bytes.ts";
import { Mutex } from "../../protocol/concurrency.ts";
import type { Storage, StorageBatch } from "../../client/index.ts";

const VERSION = 1;
const KEYS = "keys";
export const DATA = "data";
export const IV_BYTES = 12;

export interface Keys {
  aes: CryptoKey;
  hmac: CryptoKey;
}

/** The codec answers Uint8Array<ArrayBufferLike>; WebCrypto's types want plain ArrayBuffer views (which they are). */
export const view = (bytes: Uint8Array) => bytes as Uint8Array<ArrayBuffer>;

export function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

export function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

export function openDb(name: string): Promise<IDBDatabase> {
  const r = indexedDB.open(name, VERSION);
  r.onupgradeneeded = () => {
    const db = r.result;
    if (!db.objectStoreNames.contains(KEYS)) db.createObjectStore(KEYS);
    if (!db.objectStoreNames.contains(DATA)) db.createObjectStore(DATA);
  };
  return request(r);
}

/** The database's keys, made on first use. Non-extractable: script can use them but never read them out. */
export async function loadKeys(db: IDBDatabase): Promise<Keys> {
  const read = () => request(db.transaction(KEYS).objectStore(KEYS).get("v1") as IDBRequest<Keys | undefined>);
  const existing = await read();
  if (existing) return existing;
  const fresh: Keys = {
    aes: await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]),
    hmac: await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
  };
  // `add` fails if another tab or the registration worker stored keys meanwhile: theirs win, ours are dropped.
  const tx = db.transaction(KEYS, "readwrite");
  tx.objectStore(KEYS).add(fresh, "v1");
  await done(tx).catch(() => undefined);
  const stored = await read();
  if (!stored) throw new Error("could not store the storage keys in IndexedDB");
  return stored;
}

/**
 * Storage over IndexedDB: all entries are decrypted into memory on open (the SDK's message store holds its
 * history in memory anyway), reads are served from memory, and each write is one IndexedDB transaction with
 * strict durability, applied to memory only once it has committed.
 */
export class EncryptedIdbStorage implements Storage {
  readonly #db: IDBDatabase;
  readonly #keys: Keys;
  readonly #data: Map<string, string>;
  readonly #writes = new Mutex();

  private constructor(db: IDBDatabase, keys: Keys, data: Map<string, string>) {
    this.#db = db;
    this.#keys = keys;
    this.#data = data;
  }

  static async open(name = "cipherpost"): Promise<EncryptedIdbStorage> {
    const db = await openDb(name);
    const keys = await loadKeys(db);
    const store = db.transaction(DATA).objectStore(DATA);
    const [ids, records] = await Promise.all([
      request(store.getAllKeys()),
      request(store.getAll() as IDBRequest<Uint8Array[]>),
    ]);
    const data = new Map<string, string>();
    await Promise.all(
      records.map(async (record, i) => {
        const [key, value] = await decryptRecord(keys.aes, String(ids[i]), record);
        data.set(key, value);
      }),
    );
    return new EncryptedIdbStorage(db, keys, data);
  }

  async get(key: string): Promise<string | undefined> {
    return this.#data.get(key);
  }

  async list(prefix: string): Promise<[string, string][]> {
    const out: [string, string][] = [];
    for (const [k, v] of this.#data) if (k.startsWith(prefix)) out.push([k, v]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** Encrypts the batch, then writes it in one transaction; batches land in the order they were asked for. */
  write(batch: StorageBatch): Promise<void> {
    return this.#writes.run(async () => {
      const sets = Object.entries(batch.set ?? {});
      const deletes = batch.delete ?? [];
      const sealed = await Promise.all(
        sets.map(async ([k, v]) => {
          const id = await this.#recordId(k);
          return [id, await encryptRecord(this.#keys.aes, id, k, v)] as const;
        }),
      );
      const deleted = await Promise.all(deletes.map((k) => this.#recordId(k)));
      const tx = this.#db.transaction(DATA, "readwrite", { durability: "strict" });
      const store = tx.objectStore(DATA);
      for (const [id, record] of sealed) store.put(record, id);
      for (const id of deleted) store.delete(id);
      await done(tx);
      for (const [k, v] of sets) this.#data.set(k, v);
      for (const k of deletes) this.#data.delete(k);
    });
  }

  async close(): Promise<void> {
    await this.#writes.run(async () => this.#db.close());
  }

  async #recordId(key: string): Promise<string> {
    const mac = await crypto.subtle.sign("HMAC", this.#keys.hmac, view(utf8(key)));
    return toBase64Url(new Uint8Array(mac));
  }
}

/** One record: IV ‖ AES-GCM(JSON [name, value]), bound to its record id so records cannot be swapped. */
async function encryptRecord(aes: CryptoKey, id: string, key: string, value: string): Promise<Uint8Array> {
  const iv = randomBytes(IV_BYTES);
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: view(iv), additionalData: view(utf8(id)) },
    aes,
    view(utf8(JSON.stringify([key, value]))),
  );
  return concatBytes(iv, new Uint8Array(sealed));
}

export async function decryptRecord(aes: CryptoKey, id: string, record: Uint8Array): Promise<[string, string]> {
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: view(record.subarray(0, IV_BYTES)), additionalData: view(utf8(id)) },
    aes,
    view(record.subarray(IV_BYTES)),
  );
  return JSON.parse(fromUtf8(new Uint8Array(plain))) as [string, string];
}

/** Deletes the whole database (after the account is deleted or the device removed). */
export async function deleteStorage(name = "cipherpost"): Promise<void> {
  await request(indexedDB.deleteDatabase(name));
}
