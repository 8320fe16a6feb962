// Where the SDK keeps a device's state: a small key-value interface with atomic batches (one implementation fits
// IndexedDB, SQLite or a file), so a decrypted message, the session that decrypted it and the relay id that marks
// it seen are written together: a crash can never leave a ratchet advanced past a message that was not stored.

/** One atomic write: every `set` and `delete` lands, or none does. */
export interface StorageBatch {
  set?: Record<string, string>;
  delete?: string[];
}

/** A batch being built up by several steps (a session, a message, a seen marker) and then written once. */
export type WriteBatch = StorageBatch & { set: Record<string, string>; delete: string[] };

export function newBatch(): WriteBatch {
  return { set: {}, delete: [] };
}

export interface Storage {
  get(key: string): Promise<string | undefined>;
  /** Every entry whose key starts with `prefix`, sorted by key (UTF-16 code unit order). */
  list(prefix: string): Promise<[string, string][]>;
  /** Applies the batch atomically and durably before resolving. */
  write(batch: StorageBatch): Promise<void>;
  /** Releases files or handles; the storage is unusable afterwards. */
  close?(): Promise<void>;
}

/** Keeps everything in a Map: for tests, and for short-lived clients that need no persistence. */
export class MemoryStorage implements Storage {
  readonly #data = new Map<string, string>();

  async get(key: string): Promise<string | undefined> {
    return this.#data.get(key);
  }

  async list(prefix: string): Promise<[string, string][]> {
    return listPrefix(this.#data, prefix);
  }

  async write(batch: StorageBatch): Promise<void> {
    applyBatch(this.#data, batch);
  }
}

/** Applies a batch to a map: sets first, then deletes (a key both set and deleted ends up deleted). */
export function applyBatch(map: Map<string, string>, batch: StorageBatch): void {
  for (const [k, v] of Object.entries(batch.set ?? {})) map.set(k, v);
  for (const k of batch.delete ?? []) map.delete(k);
}

/** The entries of `data` whose keys start with `prefix`, sorted by key: Storage.list for stores kept in a Map. */
export function listPrefix(data: ReadonlyMap<string, string>, prefix: string): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of data) if (k.startsWith(prefix)) out.push([k, v]);
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}
