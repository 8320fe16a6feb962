// The commit protocol both encrypted stores share, the Node profile's files (encrypted-storage.ts) and the
// browser's origin-private file system (src/web/storage/opfs-storage.ts): entries live in sealed shard files that a
// batch rewrites whole under a new generation, a manifest replaced atomically commits them, and the files they
// supersede are deleted before the write resolves. So once a write returns, a replaced session, a used prekey or a
// deleted message is in no file of the store, sealed or not. Web-standard code only: each platform brings its files
// and its sealing.
import { fromUtf8, utf8 } from "../crypto/bytes.ts";
import { CipherpostError } from "./errors.ts";
import { applyBatch, listPrefix, type Storage, type StorageBatch } from "./storage.ts";

/**
 * Shards per key group (a key's first path segment: s/, m/, pk/, seen/, …). A batch rewrites only the shards its
 * keys fall in, so a write costs a sixteenth of its groups' data rather than the whole profile (docs/sdk.md).
 */
const SHARDS_PER_GROUP = 16;
export const MANIFEST = "manifest";
const SHARD_FILE = /^[a-z0-9]+-[0-9a-f]+\.\d+$/;

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

export interface ShardManifest {
  generation: number;
  /** Shard → the generation of its one live file, `<shard>.<generation>`. */
  shards: Record<string, number>;
  /** SHA-256 (hex) of the plaintext journal this store was made from, so only that journal is scrubbed later. */
  migrated?: string;
}

/** One store's files, as the platform keeps them. */
export interface ShardFiles {
  /** The file's bytes; undefined when there is no such file. */
  read(name: string): Promise<Uint8Array | undefined>;
  /** Writes a whole new file, durably where the platform can. */
  write(name: string, bytes: Uint8Array): Promise<void>;
  /** Replaces the manifest atomically: a reader finds the old one or the new one, never a mix. */
  replaceManifest(bytes: Uint8Array): Promise<void>;
  /** Deletes files (the directory change made durable where the platform can). */
  remove(names: string[]): Promise<void>;
  /** Every file's name. */
  names(): Promise<string[]>;
  /** A name the sweep deletes besides shards no manifest names (an unfinished manifest). */
  isLeftover(name: string): boolean;
  /** Where a file is, for error messages. */
  where(name: string): string;
}

/** Seals a file's plaintext bound to its name (so files cannot be swapped), and opens it (throwing if it fails). */
export interface FileSealer {
  seal(name: string, plaintext: Uint8Array): Promise<Uint8Array>;
  open(name: string, sealed: Uint8Array): Promise<Uint8Array>;
}

export class ShardedStore implements Storage {
  readonly #files: ShardFiles;
  readonly #sealer: FileSealer;
  readonly #data = new Map<string, string>();
  readonly #shards = new Map<string, Set<string>>();
  #manifest: ShardManifest = { generation: 0, shards: {} };
  /** Whether the store had a manifest when it was opened (false: it was made by this open). */
  #existed = false;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(files: ShardFiles, sealer: FileSealer) {
    this.#files = files;
    this.#sealer = sealer;
  }

  /** Opens the store, STORAGE_UNREADABLE if a file does not open; leftovers of an interrupted write are deleted. */
  static async open(files: ShardFiles, sealer: FileSealer): Promise<ShardedStore> {
    const store = new ShardedStore(files, sealer);
    const manifest = await files.read(MANIFEST);
    if (manifest) await store.#load(manifest);
    await store.#sweep();
    return store;
  }

  get existed(): boolean {
    return this.#existed;
  }

  get manifest(): Readonly<ShardManifest> {
    return this.#manifest;
  }

  async get(key: string): Promise<string | undefined> {
    return this.#data.get(key);
  }

  async list(prefix: string): Promise<[string, string][]> {
    return listPrefix(this.#data, prefix);
  }

  write(batch: StorageBatch): Promise<void> {
    return this.commit(batch);
  }

  /** A write that also records, in the same manifest, the journal it was migrated from. */
  commit(batch: StorageBatch, migrated?: string): Promise<void> {
    const run = this.#queue.then(() => this.#commit(batch, migrated));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.#queue;
    this.#closed = true;
  }

  async #open(name: string, bytes: Uint8Array): Promise<Uint8Array> {
    try {
      return await this.#sealer.open(name, bytes);
    } catch {
      throw new CipherpostError(
        "STORAGE_UNREADABLE",
        `${this.#files.where(name)} does not decrypt with this storage key (a wrong key, or a damaged or swapped file)`,
      );
    }
  }

  async #load(manifestBytes: Uint8Array): Promise<void> {
    this.#existed = true;
    this.#manifest = JSON.parse(fromUtf8(await this.#open(MANIFEST, manifestBytes))) as ShardManifest;
    for (const [shard, generation] of Object.entries(this.#manifest.shards)) {
      const name = `${shard}.${generation}`;
      const bytes = await this.#files.read(name);
      if (!bytes) throw new CipherpostError("STORAGE_UNREADABLE", `${this.#files.where(name)} is missing`);
      const entries = JSON.parse(fromUtf8(await this.#open(name, bytes))) as [string, string][];
      this.#shards.set(shard, new Set(entries.map(([k]) => k)));
      for (const [k, v] of entries) this.#data.set(k, v);
    }
  }

  /** Deletes files no manifest names: new shards of a write that never committed, old ones it did not get to delete. */
  async #sweep(): Promise<void> {
    const live = new Set(Object.entries(this.#manifest.shards).map(([s, g]) => `${s}.${g}`));
    const stale = (await this.#files.names()).filter(
      (f) => (SHARD_FILE.test(f) && !live.has(f)) || this.#files.isLeftover(f),
    );
    if (stale.length) await this.#files.remove(stale);
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

  async #commit(batch: StorageBatch, migrated: string | undefined): Promise<void> {
    if (this.#closed) throw new CipherpostError("CLOSED", "the storage is closed");
    const changed = this.#changedShards(batch);
    if (changed.size === 0 && migrated === undefined) return;
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
      writes.push(
        this.#sealer.seal(name, utf8(JSON.stringify([...entries]))).then((bytes) => this.#files.write(name, bytes)),
      );
    }
    await Promise.all(writes);
    const manifest: ShardManifest = { ...this.#manifest, generation, shards, ...(migrated ? { migrated } : {}) };
    await this.#files.replaceManifest(await this.#sealer.seal(MANIFEST, utf8(JSON.stringify(manifest))));
    // Committed: memory follows the files at once.
    this.#manifest = manifest;
    this.#existed = true;
    applyBatch(this.#data, batch);
    for (const [shard, entries] of changed) {
      if (entries.size === 0) this.#shards.delete(shard);
      else this.#shards.set(shard, new Set(entries.keys()));
    }
    // The superseded files go before the write resolves: what they held must not outlive it.
    if (superseded.length) await this.#files.remove(superseded);
  }
}
