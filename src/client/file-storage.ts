// A file-backed Storage for Node (the CLI's profiles), kept out of index.ts so browser builds never import node:fs:
// an append-only journal of batches, one JSON line each, fsynced before a write resolves, replayed on open (a torn
// last line from a crash is ignored, so a batch is atomic) and compacted by a whole rewrite when mostly dead.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { applyBatch, listPrefix, type Storage, type StorageBatch } from "./storage.ts";

export interface FileStorageOptions {
  /** fsync after every batch (default true). Off only for throwaway data. */
  durable?: boolean;
}

export class FileStorage implements Storage {
  readonly #path: string;
  readonly #durable: boolean;
  readonly #data: Map<string, string>;
  #file: FileHandle | null;
  #journalBytes: number;
  /** Characters of the live entries, kept as batches land, to decide when compaction pays. */
  #liveChars = 0;
  #queue: Promise<void> = Promise.resolve();

  private constructor(
    path: string,
    data: Map<string, string>,
    file: FileHandle,
    journalBytes: number,
    durable: boolean,
  ) {
    this.#path = path;
    this.#data = data;
    this.#file = file;
    this.#journalBytes = journalBytes;
    this.#durable = durable;
    for (const [k, v] of data) this.#liveChars += k.length + v.length;
  }

  /** Opens (creating, mode 0600) the journal at `path` and replays it. */
  static async open(path: string, options: FileStorageOptions = {}): Promise<FileStorage> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const data = new Map<string, string>();
    let text = "";
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    let valid = 0;
    for (const line of text.split("\n")) {
      if (line === "") {
        valid += 1;
        continue;
      }
      let batch: StorageBatch;
      try {
        batch = JSON.parse(line) as StorageBatch;
      } catch {
        break; // a torn final line: the batch never completed
      }
      applyBatch(data, batch);
      valid += Buffer.byteLength(line) + 1;
    }
    const storage = new FileStorage(path, data, await open(path, "a", 0o600), valid, options.durable ?? true);
    if (valid < Buffer.byteLength(text)) await storage.#compact(); // drop the torn tail before appending after it
    return storage;
  }

  async get(key: string): Promise<string | undefined> {
    return this.#data.get(key);
  }

  async list(prefix: string): Promise<[string, string][]> {
    return listPrefix(this.#data, prefix);
  }

  write(batch: StorageBatch): Promise<void> {
    const run = this.#queue.then(() => this.#append(batch));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.#queue;
    await this.#file?.close();
    this.#file = null;
  }

  async #append(batch: StorageBatch): Promise<void> {
    if (!this.#file) throw new Error("storage is closed");
    const line = `${JSON.stringify(batch)}\n`;
    await this.#file.appendFile(line);
    if (this.#durable) await this.#file.datasync();
    const set = batch.set ?? {};
    for (const [k, v] of Object.entries(set)) {
      const before = this.#data.get(k);
      this.#liveChars += k.length + v.length - (before === undefined ? 0 : k.length + before.length);
    }
    for (const k of new Set(batch.delete ?? [])) {
      const current = Object.hasOwn(set, k) ? set[k] : this.#data.get(k);
      if (current !== undefined) this.#liveChars -= k.length + current.length;
    }
    applyBatch(this.#data, batch);
    this.#journalBytes += Buffer.byteLength(line);
    if (this.#journalBytes > 1024 * 1024 && this.#journalBytes > 4 * this.#liveChars) await this.#compact();
  }

  /** Rewrites the journal as one batch of the live entries: temp file, fsync, rename, fsync the directory. */
  async #compact(): Promise<void> {
    const tmp = `${this.#path}.tmp`;
    const line = `${JSON.stringify({ set: Object.fromEntries(this.#data) })}\n`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, line);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    await this.#file?.close();
    renameSync(tmp, this.#path);
    try {
      const dir = openSync(dirname(this.#path), "r");
      fsyncSync(dir);
      closeSync(dir);
    } catch {
      // some platforms cannot fsync a directory; the rename is still atomic
    }
    this.#file = await open(this.#path, "a", 0o600);
    this.#journalBytes = Buffer.byteLength(line);
  }
}
