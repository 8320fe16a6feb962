// Secrets at rest for Node (the CLI's profiles): a Storage kept encrypted under a 32-byte storage key, in shard
// files that a batch rewrites whole (new files, fsync, then an atomically renamed manifest), deleting the files
// they supersede before the write resolves, so a replaced session, a used prekey or a deleted message is gone from
// the files once the operation returns. Node only (node:fs): browser builds never import it.
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeSync,
} from "node:fs";
import { open, readFile, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { concatBytes, equalBytes, fromUtf8, randomBytes, utf8 } from "../crypto/bytes.ts";
import { hkdfSha256 } from "../crypto/kdf.ts";
import { CipherpostError } from "./errors.ts";
import { readLegacyJournal, scrubFile, syncDirectory } from "./legacy-journal.ts";
import { applyBatch, listPrefix, type Storage, type StorageBatch } from "./storage.ts";

export const STORAGE_KEY_BYTES = 32;
/** Every file starts with this: the format and its version. */
const MAGIC = utf8("CPST1");
const NONCE_BYTES = 24;
/**
 * Shards per key group (a key's first path segment: s/, m/, pk/, seen/, …). A batch rewrites only the shards its
 * keys fall in, so a write costs a sixteenth of its groups' data rather than the whole profile (docs/sdk.md).
 */
const SHARDS_PER_GROUP = 16;
const MANIFEST = "manifest";
const SHARD_FILE = /^[a-z0-9]+-[0-9a-f]+\.\d+$/;

export interface EncryptedFileStorageOptions {
  /** The 32-byte storage key (storageKeyFile keeps one in a file beside the profile). */
  key: Uint8Array;
  /** A plaintext journal of an earlier version (FileStorage's state.log) to take over into a new store, then scrub. */
  migrateFrom?: string;
  /** fsync every file and directory change before a write resolves (default true). Off only for throwaway data. */
  durable?: boolean;
}

interface Manifest {
  generation: number;
  /** Shard → the generation of its one live file, `<shard>.<generation>`. */
  shards: Record<string, number>;
  /** SHA-256 (hex) of the plaintext journal this store was made from, so only that journal is scrubbed later. */
  migrated?: string;
}

/** FNV-1a over UTF-16 code units: spreads keys over shards (nothing depends on it being unpredictable). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** `<group>-<bucket>`: the key's first path segment (hashed when it is not a short lowercase word) and a bucket. */
export function shardOf(key: string): string {
  const slash = key.indexOf("/");
  const group = slash < 0 ? key : key.slice(0, slash);
  const name = /^[a-z0-9]{1,16}$/.test(group) ? group : `x${fnv1a(group).toString(16)}`;
  return `${name}-${(fnv1a(key) % SHARDS_PER_GROUP).toString(16)}`;
}

export class EncryptedFileStorage implements Storage {
  readonly #dir: string;
  /** XChaCha20-Poly1305 key, derived from the storage key so that key is never used for anything else. */
  readonly #key: Uint8Array;
  readonly #durable: boolean;
  readonly #data = new Map<string, string>();
  readonly #shards = new Map<string, Set<string>>();
  #manifest: Manifest = { generation: 0, shards: {} };
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(dir: string, key: Uint8Array, durable: boolean) {
    this.#dir = dir;
    this.#key = hkdfSha256(key, undefined, utf8("cipherpost-storage-v1"), 32);
    this.#durable = durable;
  }

  /**
   * Opens (creating, mode 0700) the store in `dir`; STORAGE_UNREADABLE if its files do not decrypt with the key.
   * Leftovers of an interrupted write are deleted. A plaintext journal named by `migrateFrom` is taken over into a
   * new store and then scrubbed; found beside an existing store, it is scrubbed only if it is the journal that store
   * was made from (a migration interrupted before the scrub), never another one.
   */
  static async open(dir: string, options: EncryptedFileStorageOptions): Promise<EncryptedFileStorage> {
    if (!(options.key instanceof Uint8Array) || options.key.length !== STORAGE_KEY_BYTES)
      throw new CipherpostError("INVALID_ARGUMENT", `a storage key is ${STORAGE_KEY_BYTES} bytes`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const store = new EncryptedFileStorage(dir, options.key, options.durable ?? true);
    const manifest = await readFile(join(dir, MANIFEST)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    if (manifest) await store.#load(manifest);
    await store.#sweep();
    const legacy = options.migrateFrom ? readLegacyJournal(options.migrateFrom) : undefined;
    if (options.migrateFrom && legacy && (!manifest || store.#manifest.migrated === legacy.digest)) {
      if (!manifest && legacy.entries.size) {
        store.#manifest.migrated = legacy.digest; // recorded by the same commit as the entries
        await store.write({ set: Object.fromEntries(legacy.entries) });
      }
      scrubFile(options.migrateFrom);
      scrubFile(`${options.migrateFrom}.tmp`);
    }
    return store;
  }

  async get(key: string): Promise<string | undefined> {
    return this.#data.get(key);
  }

  async list(prefix: string): Promise<[string, string][]> {
    return listPrefix(this.#data, prefix);
  }

  write(batch: StorageBatch): Promise<void> {
    const run = this.#queue.then(() => this.#commit(batch));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.#queue;
    this.#closed = true;
  }

  #seal(name: string, plaintext: Uint8Array): Uint8Array {
    const nonce = randomBytes(NONCE_BYTES);
    const ad = utf8(`cipherpost-storage ${name}`);
    return concatBytes(MAGIC, nonce, xchacha20poly1305(this.#key, nonce, ad).encrypt(plaintext));
  }

  /** The plaintext of a file named `name`: the associated data binds the name, so files cannot be swapped. */
  #open(name: string, bytes: Uint8Array): Uint8Array {
    const head = MAGIC.length + NONCE_BYTES;
    try {
      if (bytes.length < head || !equalBytes(bytes.subarray(0, MAGIC.length), MAGIC))
        throw new Error("not a store file");
      const nonce = bytes.subarray(MAGIC.length, head);
      const ad = utf8(`cipherpost-storage ${name}`);
      return xchacha20poly1305(this.#key, nonce, ad).decrypt(bytes.subarray(head));
    } catch {
      throw new CipherpostError(
        "STORAGE_UNREADABLE",
        `${join(this.#dir, name)} does not decrypt with this storage key (a wrong key, or a damaged or swapped file)`,
      );
    }
  }

  async #load(manifestBytes: Uint8Array): Promise<void> {
    this.#manifest = JSON.parse(fromUtf8(this.#open(MANIFEST, manifestBytes))) as Manifest;
    for (const [shard, generation] of Object.entries(this.#manifest.shards)) {
      const name = `${shard}.${generation}`;
      const bytes = await readFile(join(this.#dir, name)).catch(() => {
        throw new CipherpostError("STORAGE_UNREADABLE", `${join(this.#dir, name)} is missing`);
      });
      const entries = JSON.parse(fromUtf8(this.#open(name, bytes))) as [string, string][];
      this.#shards.set(shard, new Set(entries.map(([k]) => k)));
      for (const [k, v] of entries) this.#data.set(k, v);
    }
  }

  /** Deletes files no manifest names: new shards of a write that never committed, old ones it did not get to delete. */
  async #sweep(): Promise<void> {
    const live = new Set(Object.entries(this.#manifest.shards).map(([s, g]) => `${s}.${g}`));
    let removed = false;
    for (const f of readdirSync(this.#dir)) {
      if ((SHARD_FILE.test(f) && !live.has(f)) || f === `${MANIFEST}.tmp`) {
        await unlink(join(this.#dir, f));
        removed = true;
      }
    }
    if (removed && this.#durable) syncDirectory(this.#dir);
  }

  async #writeFile(name: string, bytes: Uint8Array): Promise<void> {
    const file = await open(join(this.#dir, name), "w", 0o600);
    try {
      await file.writeFile(bytes);
      if (this.#durable) await file.sync();
    } finally {
      await file.close();
    }
  }

  /** The new contents of every shard the batch changes (sets first, then deletes, as applyBatch). */
  #changedShards(batch: StorageBatch): Map<string, Map<string, string>> {
    const contents = new Map<string, Map<string, string>>();
    const changed = new Set<string>();
    const of = (shard: string) => {
      let m = contents.get(shard);
      if (!m) {
        m = new Map();
        for (const k of this.#shards.get(shard) ?? []) m.set(k, this.#data.get(k)!);
        contents.set(shard, m);
      }
      return m;
    };
    for (const [k, v] of Object.entries(batch.set ?? {})) {
      const shard = shardOf(k);
      const m = of(shard);
      if (m.get(k) !== v) changed.add(shard);
      m.set(k, v);
    }
    for (const k of batch.delete ?? []) {
      const shard = shardOf(k);
      if (of(shard).delete(k)) changed.add(shard);
    }
    for (const shard of contents.keys()) if (!changed.has(shard)) contents.delete(shard);
    return contents;
  }

  async #commit(batch: StorageBatch): Promise<void> {
    if (this.#closed) throw new CipherpostError("CLOSED", "the storage is closed");
    const changed = this.#changedShards(batch);
    if (changed.size === 0) return;
    const generation = this.#manifest.generation + 1;
    const shards = { ...this.#manifest.shards };
    const superseded: string[] = [];
    const writes: Promise<void>[] = [];
    for (const [shard, entries] of changed) {
      if (shards[shard] !== undefined) superseded.push(`${shard}.${shards[shard]}`);
      if (entries.size === 0) {
        delete shards[shard];
        continue;
      }
      shards[shard] = generation;
      const name = `${shard}.${generation}`;
      writes.push(this.#writeFile(name, this.#seal(name, utf8(JSON.stringify([...entries])))));
    }
    await Promise.all(writes);
    const manifest: Manifest = { ...this.#manifest, generation, shards };
    await this.#writeFile(`${MANIFEST}.tmp`, this.#seal(MANIFEST, utf8(JSON.stringify(manifest))));
    await rename(join(this.#dir, `${MANIFEST}.tmp`), join(this.#dir, MANIFEST));
    if (this.#durable) syncDirectory(this.#dir);
    // Committed: memory follows the files at once.
    this.#manifest = manifest;
    applyBatch(this.#data, batch);
    for (const [shard, entries] of changed) {
      if (entries.size === 0) this.#shards.delete(shard);
      else this.#shards.set(shard, new Set(entries.keys()));
    }
    // The superseded files go before the write resolves: what they held must not outlive it.
    for (const f of superseded) await unlink(join(this.#dir, f));
    if (superseded.length && this.#durable) syncDirectory(this.#dir);
  }
}

/**
 * The storage key kept in a file readable only by its owner: made (32 random bytes, mode 0600) when missing; a file
 * others may read is narrowed to 0600. A key file beside the profile, rather than a passphrase, so commands run
 * unattended (docs/sdk.md says why).
 */
export function storageKeyFile(path: string): Uint8Array {
  try {
    const fd = openSync(path, "wx", 0o600);
    try {
      writeSync(fd, randomBytes(STORAGE_KEY_BYTES));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    syncDirectory(dirname(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  const key = new Uint8Array(readFileSync(path));
  if (key.length !== STORAGE_KEY_BYTES)
    throw new CipherpostError("STORAGE_UNREADABLE", `${path} is not a ${STORAGE_KEY_BYTES}-byte storage key`);
  return key;
}

/**
 * A profile directory's storage: the key in `storage.key`, the encrypted store in `state/`, and a plaintext
 * `state.log` from an earlier version taken over and scrubbed on first use. What the CLI opens.
 */
export function openProfileStorage(dir: string, options: { durable?: boolean } = {}): Promise<EncryptedFileStorage> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return EncryptedFileStorage.open(join(dir, "state"), {
    key: storageKeyFile(join(dir, "storage.key")),
    migrateFrom: join(dir, "state.log"),
    ...options,
  });
}
