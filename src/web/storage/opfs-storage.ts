// The SDK's Storage in the browser, encrypted at rest and keeping the SDK's promise that a replaced secret is gone
// from the disk once the write returns. The entries live in the origin-private file system (OPFS) as the shard files
// of the SDK's sharded store (src/client/sharded-store.ts, the Node profile's format too): a batch writes the shards it
// changes as new files, replaces the manifest, and removes the files it superseded. OPFS files are plain files in
// the browser profile, written whole through a swap file that replaces them on close, so a removed or replaced file
// leaves no copy in any file (IndexedDB cannot promise this: its log files keep replaced records until a compaction).
// Each file is AES-256-GCM-sealed under the non-extractable key in IndexedDB (idb-storage.ts); that database holds
// only the keys, which never change.
import { concatBytes, equalBytes, randomBytes, utf8 } from "../../crypto/bytes.ts";
import {
  CipherpostError,
  type FileSealer,
  MANIFEST,
  ShardedStore,
  type ShardFiles,
  type Storage,
  type StorageBatch,
} from "../../client/index.ts";
import {
  DATA,
  decryptRecord,
  done,
  EncryptedIdbStorage,
  IV_BYTES,
  type Keys,
  loadKeys,
  openDb,
  request,
  view,
} from "./idb-storage.ts";

/** Every file starts with this: the format (AES-GCM under the browser's key) and its version. */
const MAGIC = utf8("CPWB1");

/** Whether this browser can write OPFS files from a page and a service worker (createWritable). */
export function hasWritableOpfs(): boolean {
  return (
    typeof navigator !== "undefined" &&
    typeof navigator.storage?.getDirectory === "function" &&
    typeof FileSystemFileHandle !== "undefined" &&
    "createWritable" in FileSystemFileHandle.prototype
  );
}

const isNotFound = (e: unknown) => e instanceof DOMException && e.name === "NotFoundError";

/** The store's folder in OPFS. Files are written whole: createWritable starts empty and swaps in on close. */
async function opfsFiles(name: string): Promise<ShardFiles> {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle(name, { create: true });
  const write = async (file: string, bytes: Uint8Array) => {
    const handle = await dir.getFileHandle(file, { create: true });
    const stream = await handle.createWritable({ keepExistingData: false });
    try {
      await stream.write(view(bytes));
      await stream.close();
    } catch (e) {
      await stream.abort().catch(() => undefined);
      throw e;
    }
  };
  return {
    async read(file) {
      try {
        const handle = await dir.getFileHandle(file);
        return new Uint8Array(await (await handle.getFile()).arrayBuffer());
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
    },
    write,
    // The swap file replaces the manifest whole when the stream closes: the old manifest or the new, never a mix.
    replaceManifest: (bytes) => write(MANIFEST, bytes),
    async remove(names) {
      for (const file of names)
        await dir.removeEntry(file).catch((e: unknown) => (isNotFound(e) ? undefined : Promise.reject(e)));
    },
    async names() {
      const out: string[] = [];
      for await (const key of dir.keys()) out.push(key);
      return out;
    },
    isLeftover: () => false,
    where: (file) => `the browser's file ${name}/${file}`,
  };
}

/** MAGIC ‖ IV ‖ AES-256-GCM under the non-extractable key, bound to the file's name. */
function aesSealer(keys: Keys): FileSealer {
  const ad = (name: string) => view(utf8(`cipherpost-storage ${name}`));
  const head = MAGIC.length + IV_BYTES;
  return {
    async seal(name, plaintext) {
      const iv = randomBytes(IV_BYTES);
      const sealed = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv: view(iv), additionalData: ad(name) },
        keys.aes,
        view(plaintext),
      );
      return concatBytes(MAGIC, iv, new Uint8Array(sealed));
    },
    async open(name, bytes) {
      if (bytes.length < head || !equalBytes(bytes.subarray(0, MAGIC.length), MAGIC))
        throw new Error("not a store file");
      const plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: view(bytes.subarray(MAGIC.length, head)), additionalData: ad(name) },
        keys.aes,
        view(bytes.subarray(head)),
      );
      return new Uint8Array(plain);
    },
  };
}

/**
 * The entries an earlier version kept as IndexedDB records: taken over into a new file store (one commit), then
 * cleared from IndexedDB. Found beside a store that already exists, they are the leftovers of a take-over that
 * committed but did not get to clear them, and are only cleared.
 */
async function takeOverIdbRecords(db: IDBDatabase, keys: Keys, store: ShardedStore, existed: boolean) {
  const data = db.transaction(DATA).objectStore(DATA);
  const ids = await request(data.getAllKeys());
  if (ids.length === 0) return;
  if (!existed) {
    const records = (await request(data.getAll())) as Uint8Array[];
    const set: Record<string, string> = {};
    for (let i = 0; i < records.length; i++) {
      const [k, v] = await decryptRecord(keys.aes, String(ids[i]), records[i]!);
      set[k] = v;
    }
    await store.write({ set });
  }
  const tx = db.transaction(DATA, "readwrite", { durability: "strict" });
  tx.objectStore(DATA).clear();
  await done(tx);
}

export class EncryptedOpfsStorage implements Storage {
  readonly #store: ShardedStore;
  readonly #db: IDBDatabase;

  private constructor(store: ShardedStore, db: IDBDatabase) {
    this.#store = store;
    this.#db = db;
  }

  /** Opens the store named `name` (its keys in the IndexedDB database of that name, its files in that OPFS folder). */
  static async open(name = "cipherpost"): Promise<EncryptedOpfsStorage> {
    const db = await openDb(name);
    try {
      const keys = await loadKeys(db);
      const store = await ShardedStore.open(await opfsFiles(name), aesSealer(keys));
      await takeOverIdbRecords(db, keys, store, store.existed);
      return new EncryptedOpfsStorage(store, db);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  get(key: string): Promise<string | undefined> {
    return this.#store.get(key);
  }

  list(prefix: string): Promise<[string, string][]> {
    return this.#store.list(prefix);
  }

  write(batch: StorageBatch): Promise<void> {
    return this.#store.write(batch);
  }

  async close(): Promise<void> {
    await this.#store.close();
    this.#db.close();
  }
}

export type WebStorage = Storage & { close(): Promise<void> };

/**
 * The web app's storage: the OPFS file store where the browser can write OPFS files, IndexedDB records where it
 * cannot. A context that cannot write OPFS files (an older browser's service worker) never opens IndexedDB records
 * beside an existing file store: it is refused (STORAGE_UNREADABLE), so the two can never diverge.
 */
export async function openWebStorage(name = "cipherpost"): Promise<WebStorage> {
  if (hasWritableOpfs()) return EncryptedOpfsStorage.open(name);
  const root = await navigator.storage?.getDirectory?.().catch(() => undefined);
  const existing = await root?.getDirectoryHandle(name).catch(() => undefined);
  if (existing)
    throw new CipherpostError(
      "STORAGE_UNREADABLE",
      "this context cannot write the browser's file store this device uses",
    );
  return EncryptedIdbStorage.open(name);
}
