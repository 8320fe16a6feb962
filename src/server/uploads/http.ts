// Parsing of the tus request headers (tus 1.0.0 core, creation, checksum) and of download Range headers
// (RFC 9110 §14). Each parser either returns a value or throws the ApiError the client should see.
import { isBase64 } from "../../protocol/base64.ts";
import { fromBase64 } from "../../crypto/bytes.ts";
import { MAX_UPLOAD_METADATA_CHARS, TUS_CHECKSUM_ALGORITHMS, TUS_CONTENT_TYPE } from "../../protocol/attachments.ts";
import { ApiError, fail, type Failure } from "../errors.ts";

const DIGITS = /^\d{1,16}$/;

/** A non-negative integer header (Upload-Length, Upload-Offset, Content-Length), or null when absent. */
export function parseCount(name: string, value: string | undefined): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (!DIGITS.test(v) || !Number.isSafeInteger(Number(v)))
    throw new ApiError("BAD_REQUEST", `${name} must be a non-negative integer`);
  return Number(v);
}

/** Whether a Content-Type is the tus upload body's (tus 1.0.0, PATCH), parameters and case aside. */
export function isUploadBody(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.split(";")[0]!.trim().toLowerCase() === TUS_CONTENT_TYPE;
}

/** A PATCH body over MAX_PATCH_BYTES: refused from Content-Length by the route, or while counting by the object. */
export function patchTooLarge(maxPatchBytes: number): Failure {
  return fail(
    "PAYLOAD_TOO_LARGE",
    `a PATCH body may be at most ${maxPatchBytes} bytes; set the tus client's chunkSize below it`,
    { limitBytes: maxPatchBytes },
  );
}

/**
 * Reads the rest of a refused request body and drops it, so that the connection can carry the next request. A
 * cancelled body leaves its unread bytes on the wire, and wrangler dev's proxy then resets the kept-alive
 * connection under the client's next request (tus clients resume on the same connection). A body longer than
 * `limit` bytes in all is cancelled after all: no client can keep the relay reading. Answers the bytes read.
 */
export async function drainBody(reader: ReadableStreamDefaultReader<Uint8Array> | undefined, limit: number) {
  let read = 0;
  if (!reader) return read;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) return read;
      read += r.value.byteLength;
      if (read > limit) {
        await reader.cancel();
        return read;
      }
    }
  } catch {
    return read; // the client went away, or the body was already errored
  }
}

/** Upload-Checksum: `sha256 <base64>` (tus 1.0.0, checksum). Another algorithm is a 400, as the extension says. */
export function parseChecksum(value: string | undefined): Uint8Array | null {
  if (value === undefined) return null;
  const m = /^\s*(\S+)\s+(\S+)\s*$/.exec(value);
  if (!m) throw new ApiError("BAD_REQUEST", "Upload-Checksum must be `sha256 <base64 digest>`");
  const algorithm = m[1]!.toLowerCase();
  if (!(TUS_CHECKSUM_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw new ApiError(
      "BAD_REQUEST",
      `checksum algorithm ${algorithm} is not supported; use ${TUS_CHECKSUM_ALGORITHMS.join(", ")}`,
    );
  }
  if (!isBase64(m[2]!)) throw new ApiError("BAD_REQUEST", "Upload-Checksum digest is not base64");
  const digest = fromBase64(m[2]!);
  if (digest.length !== 32) throw new ApiError("BAD_REQUEST", "a sha256 digest is 32 bytes");
  return digest;
}

/** Upload-Metadata: comma-separated `key[ base64value]` pairs, keys unique (tus 1.0.0, creation). */
export function parseMetadata(value: string | undefined): string | null {
  if (value === undefined || value.trim() === "") return null;
  if (value.length > MAX_UPLOAD_METADATA_CHARS) {
    throw new ApiError("BAD_REQUEST", `Upload-Metadata may be at most ${MAX_UPLOAD_METADATA_CHARS} characters`);
  }
  const keys = new Set<string>();
  for (const pair of value.split(",")) {
    const m = /^\s*([^\s,]+)(?: ([A-Za-z0-9+/=]*))?\s*$/.exec(pair);
    if (!m || keys.has(m[1]!) || (m[2] && !isBase64(m[2])))
      throw new ApiError("BAD_REQUEST", "Upload-Metadata is not a list of `key base64value` pairs");
    keys.add(m[1]!);
  }
  return value.trim();
}

/** An HTTP-date (RFC 9110 §5.6.7), as Upload-Expires takes it. */
export const httpDate = (ms: number) => new Date(ms).toUTCString();

export type RangeRequest = { start: number; end: number } | "unsatisfiable" | null;

/**
 * Resolves a single `bytes=` range against a size: `a-b`, `a-` or the suffix `-n` (RFC 9110 §14.1.2). A
 * malformed header or a multi-range one is ignored (null: serve the whole blob, as §14.2 allows);
 * a well-formed range that misses the blob is "unsatisfiable" (416).
 */
export function resolveRange(header: string | undefined, size: number): RangeRequest {
  if (!header) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Number(m[2]);
  if (m[2] !== "" && end < start) return null; // invalid range-spec: ignore the header
  if (start >= size) return "unsatisfiable";
  return { start, end: Math.min(end, size - 1) };
}

/** Whether an If-None-Match (or If-Range) header names this entity tag; weak comparison as §13.1.2 asks. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === "*") return true;
  const bare = (t: string) => t.trim().replace(/^W\//, "");
  return header.split(",").some((t) => bare(t) === bare(etag));
}
