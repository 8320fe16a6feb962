// Attachment encryption, streamed: segments of `segmentBytes` sealed with AES-256-GCM under a fresh key and a
// nonce of segment index and final flag (the STREAM construction), and a digest over the segments' digests, so
// neither side ever holds more than one segment.
import { sha256 } from "@noble/hashes/sha2.js";
import { equalBytes } from "../crypto/bytes.ts";
import { CipherpostError } from "./errors.ts";

// The nonce is u64 segment index ‖ final flag ‖ three zero bytes, so segments cannot be reordered, dropped or the
// blob truncated without failing authentication (STREAM, Hoang et al., CRYPTO 2015); the last segment is shorter,
// an empty file is one empty segment. The digest recorded in the pointer is SHA-256 over the SHA-256 of each
// encrypted segment in order: as binding as one hash of the whole blob, but every large hash runs in native
// WebCrypto (noble's SHA-256 and ChaCha20 manage about 100 MB/s in Node; WebCrypto AES-GCM about 650 MB/s).
export const DEFAULT_SEGMENT_BYTES = 256 * 1024;
export const GCM_TAG_BYTES = 16;
export const ATTACHMENT_KEY_BYTES = 32;

/** The bytes as an ArrayBuffer-backed view (what WebCrypto's types want), copying only if they are not. */
export function plainBuffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

export function segmentCount(size: number, segmentBytes: number): number {
  return Math.max(1, Math.ceil(size / segmentBytes));
}

/**
 * The length an attachment's plaintext is padded to before encryption (zero bytes after the file), so the relay
 * and its storage see one of a few sizes rather than the exact one: Signal's buckets, each about 5% above the
 * last, at least 541 bytes. The overhead is at most 5%.
 */
export function paddedSize(size: number): number {
  if (size <= 541) return 541;
  const bucket = Math.floor(1.05 ** Math.ceil(Math.log(size) / Math.log(1.05)));
  return Math.max(size, bucket);
}

/** Bytes of the encrypted blob for `size` plaintext bytes (padding included). */
export function encryptedSize(size: number, segmentBytes: number): number {
  return size + GCM_TAG_BYTES * segmentCount(size, segmentBytes);
}

function segmentNonce(index: number, final: boolean): Uint8Array<ArrayBuffer> {
  const n = new Uint8Array(12);
  const v = new DataView(n.buffer);
  v.setUint32(0, Math.floor(index / 2 ** 32));
  v.setUint32(4, index >>> 0);
  n[8] = final ? 1 : 0;
  return n;
}

export function importAttachmentKey(key: Uint8Array): Promise<CryptoKey> {
  if (key.length !== ATTACHMENT_KEY_BYTES)
    throw new CipherpostError("INVALID_ARGUMENT", "an attachment key is 32 bytes");
  return crypto.subtle.importKey("raw", plainBuffer(key), "AES-GCM", false, ["encrypt", "decrypt"]);
}

export async function sealSegment(
  key: CryptoKey,
  index: number,
  final: boolean,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  return new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: segmentNonce(index, final) }, key, plainBuffer(plaintext)),
  );
}

export async function openSegment(
  key: CryptoKey,
  index: number,
  final: boolean,
  sealed: Uint8Array,
): Promise<Uint8Array> {
  try {
    return new Uint8Array(
      await crypto.subtle.decrypt({ name: "AES-GCM", iv: segmentNonce(index, final) }, key, plainBuffer(sealed)),
    );
  } catch {
    throw new CipherpostError(
      "DIGEST_MISMATCH",
      `attachment segment ${index} does not authenticate: the blob was altered or the key is wrong`,
    );
  }
}

/** SHA-256 over the SHA-256 of each part, in order: the pointer's digest (parts: sealed segments), and contentDigest. */
export class SegmentDigest {
  readonly #outer = sha256.create();

  async add(part: Uint8Array): Promise<void> {
    this.#outer.update(new Uint8Array(await crypto.subtle.digest("SHA-256", plainBuffer(part))));
  }

  finish(): Uint8Array {
    return this.#outer.digest();
  }
}

/** Plaintext bytes hashed at a time by contentDigest: a read window, so every large hash runs natively. */
const CONTENT_DIGEST_WINDOW = 4 * 1024 * 1024;

/**
 * A digest of a file's content (SHA-256 over the SHA-256 of each 4 MiB window), read from the Blob a window at a
 * time: what binds a resumable upload's key to the bytes it encrypts.
 */
export async function contentDigest(blob: Blob): Promise<Uint8Array> {
  const digest = new SegmentDigest();
  for (let start = 0; ; start += CONTENT_DIGEST_WINDOW) {
    const end = Math.min(blob.size, start + CONTENT_DIGEST_WINDOW);
    await digest.add(new Uint8Array(await blob.slice(start, end).arrayBuffer()));
    if (end >= blob.size) return digest.finish();
  }
}

/** The plaintext read in windows of several segments, so a file-backed Blob is not read 256 KiB at a time. */
const READ_WINDOW_SEGMENTS = 16;

/**
 * The encrypted segments of `blob`, in order, starting at segment `from`. Reads the Blob slice by slice
 * (a Node file Blob from fs.openAsBlob reads from disk), so memory stays at one read window.
 */
export async function* encryptBlob(
  blob: Blob,
  key: CryptoKey,
  segmentBytes: number,
  from = 0,
  length = blob.size,
): AsyncGenerator<{ index: number; sealed: Uint8Array }> {
  // `length` beyond the blob's size is zero padding, made here a window at a time (never a whole padded copy).
  const count = segmentCount(length, segmentBytes);
  for (let window = from; window < count; window += READ_WINDOW_SEGMENTS) {
    const last = Math.min(count, window + READ_WINDOW_SEGMENTS);
    const start = window * segmentBytes;
    const end = Math.min(length, last * segmentBytes);
    let bytes =
      start < blob.size
        ? new Uint8Array(await blob.slice(start, Math.min(blob.size, end)).arrayBuffer())
        : new Uint8Array(0);
    if (bytes.length < end - start) {
      const padded = new Uint8Array(end - start);
      padded.set(bytes);
      bytes = padded;
    }
    for (let i = window; i < last; i++) {
      const off = (i - window) * segmentBytes;
      const plain = bytes.subarray(off, Math.min(bytes.length, off + segmentBytes));
      yield { index: i, sealed: await sealSegment(key, i, i === count - 1, plain) };
    }
  }
}

export interface DecryptStreamOptions {
  key: Uint8Array;
  digest: Uint8Array;
  /** Plaintext bytes of the file: what the stream yields. */
  size: number;
  /** Plaintext bytes encrypted, padding included (default `size`); the bytes past `size` must be zero. */
  paddedSize?: number;
  segmentBytes: number;
  /** Called with the ciphertext bytes received so far. */
  onProgress?: (received: number, total: number) => void;
}

/**
 * A TransformStream from the encrypted blob to the plaintext. Every segment is authenticated before its
 * plaintext is passed on; at the end the length and the digest must match the pointer, otherwise the stream
 * errors with DIGEST_MISMATCH (the consumer then discards what it wrote).
 */
export function decryptStream(options: DecryptStreamOptions): TransformStream<Uint8Array, Uint8Array> {
  const padded = options.paddedSize ?? options.size;
  if (padded < options.size) throw new CipherpostError("INVALID_ARGUMENT", "paddedSize is smaller than size");
  const count = segmentCount(padded, options.segmentBytes);
  const total = encryptedSize(padded, options.segmentBytes);
  let emitted = 0; // plaintext bytes passed on; the rest of the padded length is padding
  const sealedBytes = options.segmentBytes + GCM_TAG_BYTES;
  const digest = new SegmentDigest();
  const keyPromise = importAttachmentKey(options.key);
  let buffer = new Uint8Array(sealedBytes);
  let filled = 0;
  let index = 0;
  let received = 0;

  const flushSegment = async (controller: TransformStreamDefaultController<Uint8Array>, bytes: Uint8Array) => {
    if (index >= count) throw new CipherpostError("DIGEST_MISMATCH", "the attachment is longer than its pointer says");
    await digest.add(bytes);
    const plain = await openSegment(await keyPromise, index, index === count - 1, bytes);
    const keep = Math.min(plain.length, options.size - emitted);
    for (let i = keep; i < plain.length; i++)
      if (plain[i] !== 0) throw new CipherpostError("DIGEST_MISMATCH", "the attachment's padding is not zeros");
    if (keep > 0) controller.enqueue(keep === plain.length ? plain : plain.subarray(0, keep));
    emitted += keep;
    index++;
  };

  return new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      received += chunk.length;
      if (received > total)
        throw new CipherpostError("DIGEST_MISMATCH", "the attachment is longer than its pointer says");
      let off = 0;
      while (off < chunk.length) {
        const take = Math.min(sealedBytes - filled, chunk.length - off);
        buffer.set(chunk.subarray(off, off + take), filled);
        filled += take;
        off += take;
        if (filled === sealedBytes) {
          await flushSegment(controller, buffer);
          buffer = new Uint8Array(sealedBytes);
          filled = 0;
        }
      }
      options.onProgress?.(received, total);
    },
    async flush(controller) {
      if (filled > 0) await flushSegment(controller, buffer.subarray(0, filled));
      if (received !== total || index !== count)
        throw new CipherpostError("DIGEST_MISMATCH", `the attachment is ${received} bytes, its pointer says ${total}`);
      if (!equalBytes(digest.finish(), options.digest))
        throw new CipherpostError("DIGEST_MISMATCH", "the attachment's digest does not match its pointer");
    },
  });
}
