// The plaintext journal earlier versions kept a profile in (FileStorage's state.log: one JSON batch per line,
// fsynced, a torn last line ignored), read once so the encrypted store can take it over, and then scrubbed.
import { sha256 } from "@noble/hashes/sha2.js";
import { closeSync, fsyncSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { fromUtf8, toHex } from "../crypto/bytes.ts";
import { applyBatch, type StorageBatch } from "./storage.ts";

/**
 * The entries a journal holds (its batches replayed in order) and the SHA-256 of the file, or undefined when there
 * is no journal. The digest lets a store recognise the journal it already took over.
 */
export function readLegacyJournal(path: string): { entries: Map<string, string>; digest: string } | undefined {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const data = new Map<string, string>();
  for (const line of fromUtf8(bytes).split("\n")) {
    if (line === "") continue;
    let batch: StorageBatch;
    try {
      batch = JSON.parse(line) as StorageBatch;
    } catch {
      break; // a torn final line: that batch never completed
    }
    applyBatch(data, batch);
  }
  return { entries: data, digest: toHex(sha256(bytes)) };
}

/**
 * Overwrites a file with zeros, syncs it and unlinks it, then syncs its directory. On a file system that rewrites
 * blocks in place (ext4's default) the old bytes are gone from the disk too; on copy-on-write file systems and
 * SSDs they may survive in freed blocks, which no file-level tool can reach (docs/sdk.md "Storage").
 */
export function scrubFile(path: string): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  const fd = openSync(path, "r+");
  try {
    const zeros = new Uint8Array(Math.min(size, 1 << 20));
    for (let off = 0; off < size; off += zeros.length) writeSync(fd, zeros, 0, Math.min(zeros.length, size - off), off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  unlinkSync(path);
  syncDirectory(dirname(path));
}

/** fsync on a directory, so a rename or an unlink in it is durable (some platforms cannot: the rename is still atomic). */
export function syncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // not supported here
  }
}
