// Attachments over the relay's tus 1.0.0 endpoint (docs/attachments.md): encrypted while uploaded in checksummed
// PATCH chunks, resumed from the relay's Upload-Offset (in this process or another, from a saved UploadState), and
// downloaded as a stream that decrypts and checks the digest; memory stays at one chunk plus one read window.
import { TUS_CONTENT_TYPE, TUS_ENDPOINT, TUS_VERSION } from "../protocol/attachments.ts";
import {
  ATTACHMENT_KEY_BYTES,
  contentDigest,
  DEFAULT_SEGMENT_BYTES,
  SegmentDigest,
  decryptStream,
  encryptBlob,
  encryptedSize,
  paddedSize,
  importAttachmentKey,
  plainBuffer,
} from "./attachment-crypto.ts";
import type { AttachmentPointer } from "./content.ts";
import { CipherpostError } from "./errors.ts";
import { basicAuth, errorFrom, type Credentials, type RelayHttp } from "./http.ts";
import { fromBase64, randomBytes, toBase64 } from "../crypto/bytes.ts";

/** Default PATCH size: two of the relay's default 10 MiB R2 parts, well under its 50 MiB MAX_PATCH_BYTES. */
export const DEFAULT_CHUNK_BYTES = 20 * 1024 * 1024;

/** What it takes to resume an upload later, perhaps in another process: keep it somewhere safe (it holds the key). */
export interface UploadState {
  /** The tus upload URL. */
  url: string;
  /** The attachment key, base64. */
  key: string;
  /** Plaintext bytes of the file. */
  size: number;
  /** Plaintext bytes encrypted, padding included (paddedSize(size)). */
  paddedSize: number;
  segmentBytes: number;
  /**
   * contentDigest of the file, base64: a resume goes on under `key` only for the same bytes. A state without it
   * (saved before resumes checked the content) starts over.
   */
  contentDigest?: string;
}

export interface UploadOptions {
  /** Bytes per PATCH (default 20 MiB); must stay under the relay's MAX_PATCH_BYTES. */
  chunkBytes?: number;
  segmentBytes?: number;
  /** Called after every chunk with the encrypted bytes the relay holds and the total. */
  onProgress?: (uploaded: number, total: number) => void;
  /** Called once the upload exists on the relay, with the state to save for resuming after a crash. */
  onCreated?: (state: UploadState) => void | Promise<void>;
  /** Cancels; the upload stays resumable (the error carries `extras.upload`). */
  signal?: AbortSignal;
  /**
   * Resume this upload instead of creating one. If the file is not the one the upload was for (another size or
   * content digest), the upload starts over under a fresh key (onCreated is called again): a key never encrypts
   * two different plaintexts under the same nonces.
   */
  resume?: UploadState;
  name?: string;
  contentType?: string;
  /** Transient PATCH failures retried (after asking the relay's offset) before giving up. Default 3. */
  retries?: number;
}

const tusHeaders = (auth: Credentials) => ({ "tus-resumable": TUS_VERSION, authorization: basicAuth(auth) });

export function attachmentIdOf(url: string): string {
  const id = /\/v1\/attachments\/tus\/([0-9a-f]{32})$/.exec(new URL(url).pathname)?.[1];
  if (!id) throw new CipherpostError("INVALID_RESPONSE", `not a tus upload URL: ${url}`);
  return id;
}

async function createUpload(http: RelayHttp, auth: Credentials, length: number, signal?: AbortSignal): Promise<string> {
  const res = await http.raw("POST", TUS_ENDPOINT, {
    headers: { ...tusHeaders(auth), "upload-length": String(length) },
    ...(signal ? { signal } : {}),
  });
  if (res.status !== 201) throw await errorFrom(res);
  await res.body?.cancel();
  const location = res.headers.get("location");
  if (!location) throw new CipherpostError("INVALID_RESPONSE", "tus creation answered without a Location");
  return new URL(location, `${http.server}/`).toString();
}

async function uploadOffset(http: RelayHttp, auth: Credentials, url: string, signal?: AbortSignal): Promise<number> {
  const res = await http.raw("HEAD", url, { headers: tusHeaders(auth), ...(signal ? { signal } : {}) });
  if (!res.ok) throw await errorFrom(res);
  const offset = Number(res.headers.get("upload-offset"));
  if (!Number.isSafeInteger(offset) || offset < 0)
    throw new CipherpostError("INVALID_RESPONSE", "tus HEAD answered without a valid Upload-Offset");
  return offset;
}

/** One PATCH; answers the relay's new offset. */
async function patch(
  http: RelayHttp,
  auth: Credentials,
  url: string,
  offset: number,
  body: Uint8Array,
  signal?: AbortSignal,
): Promise<number> {
  const checksum = toBase64(new Uint8Array(await crypto.subtle.digest("SHA-256", plainBuffer(body))));
  const res = await http.raw("PATCH", url, {
    headers: {
      ...tusHeaders(auth),
      "upload-offset": String(offset),
      "content-type": TUS_CONTENT_TYPE,
      "upload-checksum": `sha256 ${checksum}`,
    },
    rawBody: plainBuffer(body),
    timeoutMs: 10 * 60_000,
    ...(signal ? { signal } : {}),
  });
  if (res.status !== 204) throw await errorFrom(res);
  const next = Number(res.headers.get("upload-offset"));
  if (!Number.isSafeInteger(next))
    throw new CipherpostError("INVALID_RESPONSE", "tus PATCH answered without Upload-Offset");
  return next;
}

/**
 * Encrypts `blob` and uploads it; answers the pointer to put in a message. Interrupted (signal, network) after
 * the upload exists, it throws with `extras.upload` (the UploadState); pass that as `resume` to go on from the
 * relay's offset. Segments before the offset are encrypted again locally (for the digest) but not re-sent. The
 * file is read once more first, for its content digest, which a resume must match (else it starts over).
 */
export async function uploadAttachment(
  http: RelayHttp,
  auth: Credentials,
  blob: Blob,
  options: UploadOptions = {},
): Promise<AttachmentPointer> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!Number.isInteger(chunkBytes) || chunkBytes < 64 * 1024)
    throw new CipherpostError("INVALID_ARGUMENT", "chunkBytes must be at least 64 KiB");
  const signal = options.signal;
  const digestOfFile = toBase64(await contentDigest(blob));
  const saved = options.resume;
  const resumed = saved !== undefined && saved.size === blob.size && saved.contentDigest === digestOfFile;
  let state: UploadState;
  if (resumed) {
    // A state saved before padding existed has no paddedSize: that upload was created unpadded.
    state = { ...saved, paddedSize: saved.paddedSize ?? saved.size };
  } else {
    const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    const key = randomBytes(ATTACHMENT_KEY_BYTES);
    const padded = paddedSize(blob.size);
    const url = await createUpload(http, auth, encryptedSize(padded, segmentBytes), signal);
    state = { url, key: toBase64(key), size: blob.size, paddedSize: padded, segmentBytes, contentDigest: digestOfFile };
    await options.onCreated?.(state);
  }
  const total = encryptedSize(state.paddedSize, state.segmentBytes);
  const interrupted = (e: unknown): CipherpostError => {
    const err = CipherpostError.is(e) ? e : new CipherpostError("UNREACHABLE", String(e), { cause: e });
    return new CipherpostError(signal?.aborted ? "ABORTED" : err.code, `upload interrupted: ${err.message}`, {
      ...(err.status !== undefined ? { status: err.status } : {}),
      extras: { ...err.extras, upload: state },
      cause: err,
    });
  };

  try {
    let offset = resumed ? await uploadOffset(http, auth, state.url, signal) : 0;
    options.onProgress?.(offset, total);
    const key = await importAttachmentKey(fromBase64(state.key));
    const digest = new SegmentDigest();
    const chunk = new Uint8Array(Math.min(chunkBytes, Math.max(total, 1)));
    let chunkStart = offset; // ciphertext position of chunk[0]
    let filled = 0;
    let position = 0; // ciphertext position of the next sealed byte
    let retries = options.retries ?? 3;

    const send = async () => {
      let start = chunkStart;
      let body = chunk.subarray(0, filled);
      for (;;) {
        try {
          offset = await patch(http, auth, state.url, start, body, signal);
          break;
        } catch (e) {
          if (
            signal?.aborted ||
            !CipherpostError.is(e) ||
            !(e.retryable || e.code === "UPLOAD_OFFSET_MISMATCH") ||
            retries-- <= 0
          )
            throw e;
          const at = await uploadOffset(http, auth, state.url, signal);
          if (at < start || at > start + body.length) throw e;
          body = body.subarray(at - start);
          start = at;
          if (body.length === 0) {
            offset = at;
            break;
          }
        }
      }
      options.onProgress?.(offset, total);
      chunkStart = offset;
      filled = 0;
    };

    for await (const { sealed } of encryptBlob(blob, key, state.segmentBytes, 0, state.paddedSize)) {
      signal?.throwIfAborted();
      await digest.add(sealed);
      let from = 0;
      if (position + sealed.length <= offset)
        from = sealed.length; // already on the relay
      else if (position < offset) from = offset - position;
      position += sealed.length;
      while (from < sealed.length) {
        const take = Math.min(chunk.length - filled, sealed.length - from);
        chunk.set(sealed.subarray(from, from + take), filled);
        filled += take;
        from += take;
        if (filled === chunk.length) await send();
      }
    }
    if (filled > 0) await send();
    if (offset !== total)
      throw new CipherpostError("INVALID_RESPONSE", `the relay holds ${offset} of ${total} bytes after the last chunk`);
    return {
      id: attachmentIdOf(state.url),
      key: state.key,
      digest: toBase64(digest.finish()),
      size: state.size,
      paddedSize: state.paddedSize,
      segmentBytes: state.segmentBytes,
      ...(options.name !== undefined ? { name: options.name } : {}),
      ...(options.contentType !== undefined ? { contentType: options.contentType } : {}),
    };
  } catch (e) {
    throw interrupted(signal?.aborted ? (signal.reason ?? e) : e);
  }
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (received: number, total: number) => void;
}

/**
 * The decrypted attachment as a stream. Each segment is authenticated before it is passed on; a wrong length or
 * digest errors the stream with DIGEST_MISMATCH at the end, so write to a temporary place and keep it only if
 * the stream closes cleanly.
 */
export async function downloadAttachment(
  http: RelayHttp,
  pointer: AttachmentPointer,
  options: DownloadOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const res = await http.raw("GET", `/v1/attachments/${pointer.id}`, {
    timeoutMs: 24 * 3600_000,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (res.status !== 200 || !res.body) throw await errorFrom(res);
  return res.body.pipeThrough(
    decryptStream({
      key: fromBase64(pointer.key),
      digest: fromBase64(pointer.digest),
      size: pointer.size,
      ...(pointer.paddedSize !== undefined ? { paddedSize: pointer.paddedSize } : {}),
      segmentBytes: pointer.segmentBytes,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    }),
  );
}
