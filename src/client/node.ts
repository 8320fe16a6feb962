// Node-only helpers for the SDK: the encrypted file storage, a WebSocket implementation for Node 20 (which has no
// global one), files as streaming Blobs, and writing a decrypted attachment stream to disk. Browser and Workers
// builds do not import this.
import { createHash } from "node:crypto";
import { createWriteStream, openAsBlob } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { basename } from "node:path";
import type { WebSocketConstructor } from "./connection.ts";

export {
  EncryptedFileStorage,
  type EncryptedFileStorageOptions,
  openProfileStorage,
  STORAGE_KEY_BYTES,
  storageKeyFile,
} from "./encrypted-storage.ts";

/**
 * The global WebSocket when the runtime has one (Node 22+), otherwise undici's (a dependency: undici 7 implements
 * the WHATWG WebSocket the SDK uses, on Node 20.18.1 and later).
 */
export async function nodeWebSocket(): Promise<WebSocketConstructor> {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  const { WebSocket } = await import("undici");
  return WebSocket as unknown as WebSocketConstructor;
}

/** A file as a Blob that reads from disk as it is consumed, with its base name (what uploads take). */
export async function fileBlob(path: string): Promise<Blob & { name: string }> {
  const blob = await openAsBlob(path);
  return Object.assign(blob, { name: basename(path) });
}

/**
 * Writes a stream to `path` through a temporary file, renamed into place only when the stream ends cleanly (a
 * digest failure at the end of an attachment leaves nothing behind). Answers the bytes written and their SHA-256 (hex).
 */
export async function writeStreamToFile(
  stream: ReadableStream<Uint8Array>,
  path: string,
): Promise<{ size: number; sha256: string }> {
  const tmp = `${path}.partial`;
  const out = createWriteStream(tmp, { mode: 0o600 });
  const hash = createHash("sha256");
  let size = 0;
  try {
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      size += chunk.length;
      if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", resolve));
    }
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
    await rename(tmp, path);
  } catch (e) {
    out.destroy();
    await rm(tmp, { force: true });
    throw e;
  }
  return { size, sha256: hash.digest("hex") };
}
