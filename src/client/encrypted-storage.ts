// Secrets at rest for Node (the CLI's profiles): a Storage kept encrypted under a 32-byte storage key, in shard
// files that a batch rewrites whole (new files, fsync, then an atomically renamed manifest), deleting the files
// they supersede before the write resolves, so a replaced session, a used prekey or a deleted message is gone from
// the files once the operation returns. The commit protocol is sharded-store.ts (the browser's store shares it);
// this file brings the files (node:fs) and the sealing. Node only: browser builds never import it.
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
import { concatBytes, equalBytes, randomBytes, utf8 } from "../crypto/bytes.ts";
import { hkdfSha256 } from "../crypto/kdf.ts";
import { CipherpostError } from "./errors.ts";
import { readLegacyJournal, scrubFile, syncDirectory } from "./legacy-journal.ts";
import { type FileSealer, MANIFEST, type ShardFiles, ShardedStore } from "./sharded-store.ts";
import type { Storage, StorageBatch } from "./storage.ts";

export const STORAGE_KEY_BYTES = 32;
/** Every file starts with this: the format and its version. */
const MAGIC = utf8("CPST1");
const NONCE_BYTES = 24;
const MANIFEST_TMP = `${MANIFEST}.tmp`;

export interface EncryptedFileStorageOptions {
  /** The 32-byte storage key (storageKeyFile keeps one in a file beside the profile). */
  key: Uint8Array;
  /** A plaintext journal of an earlier version (FileStorage's state.log) to take over into a new store, then scrub. */
  migrateFrom?: string;
  /** fsync every file and directory change before a write resolves (default true). Off only for throwaway data. */
  durable?: boolean;
}

/** A directory of files, each written whole with fsync; the manifest renamed into place. */
function nodeFiles(dir: string, durable: boolean): ShardFiles {
  const writeFile = async (name: string, bytes: Uint8Array) => {
    const file = await open(join(dir, name), "w", 0o600);
    try {
      await file.writeFile(bytes);
      if (durable) await file.sync();
    } finally {
      await file.close();
    }
  };
  return {
    read: (name) =>
      readFile(join(dir, name)).then(
        (b) => new Uint8Array(b),
        (e: NodeJS.ErrnoException) => {
          if (e.code === "ENOENT") return undefined;
          throw e;
        },
      ),
    write: writeFile,
    async replaceManifest(bytes) {
      await writeFile(MANIFEST_TMP, bytes);
      await rename(join(dir, MANIFEST_TMP), join(dir, MANIFEST));
      if (durable) syncDirectory(dir);
    },
    async remove(names) {
      for (const f of names) await unlink(join(dir, f));
      if (durable) syncDirectory(dir);
    },
    names: async () => readdirSync(dir),
    isLeftover: (name) => name === MANIFEST_TMP,
    where: (name) => join(dir, name),
  };
}

/** MAGIC ‖ nonce ‖ XChaCha20-Poly1305 under a key derived from the storage key, bound to the file's name. */
function xchachaSealer(storageKey: Uint8Array): FileSealer {
  // Derived, so the storage key itself is never used for anything else.
  const key = hkdfSha256(storageKey, undefined, utf8("cipherpost-storage-v1"), 32);
  const ad = (name: string) => utf8(`cipherpost-storage ${name}`);
  const head = MAGIC.length + NONCE_BYTES;
  return {
    async seal(name, plaintext) {
      const nonce = randomBytes(NONCE_BYTES);
      return concatBytes(MAGIC, nonce, xchacha20poly1305(key, nonce, ad(name)).encrypt(plaintext));
    },
    async open(name, bytes) {
      if (bytes.length < head || !equalBytes(bytes.subarray(0, MAGIC.length), MAGIC))
        throw new Error("not a store file");
      return xchacha20poly1305(key, bytes.subarray(MAGIC.length, head), ad(name)).decrypt(bytes.subarray(head));
    },
  };
}

export class EncryptedFileStorage implements Storage {
  readonly #store: ShardedStore;

  private constructor(store: ShardedStore) {
    this.#store = store;
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
    const store = await ShardedStore.open(nodeFiles(dir, options.durable ?? true), xchachaSealer(options.key));
    const existed = store.existed;
    const legacy = options.migrateFrom ? readLegacyJournal(options.migrateFrom) : undefined;
    if (options.migrateFrom && legacy && (!existed || store.manifest.migrated === legacy.digest)) {
      // The entries and the journal's digest land in one commit.
      if (!existed && legacy.entries.size)
        await store.commit({ set: Object.fromEntries(legacy.entries) }, legacy.digest);
      scrubFile(options.migrateFrom);
      scrubFile(`${options.migrateFrom}.tmp`);
    }
    return new EncryptedFileStorage(store);
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

  close(): Promise<void> {
    return this.#store.close();
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
