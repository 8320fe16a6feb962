// The one byte codec of cipherpost, shared by the relay, the SDK and the CLI: strict base64 (standard, padded:
// the encoding of every JSON field on the wire), base64url without padding (tokens, link codes, JWTs), hex,
// UTF-8, concatenation, random bytes and the one constant-time comparison. The encodings are @scure/base (by
// the noble libraries' author, audited with them): strict, so every byte string has exactly one encoding.
import { base64, base64urlnopad, hex } from "@scure/base";

/** Standard base64 (RFC 4648 §4) with padding. */
export function toBase64(bytes: Uint8Array): string {
  return base64.encode(bytes);
}

/**
 * Strict standard base64 with padding: throws on a length that is not a multiple of 4, on any character outside
 * the alphabet (whitespace and URL-safe characters included), on misplaced padding, and on non-zero trailing
 * bits (RFC 4648 §3.5), so each byte string has one encoding.
 */
export function fromBase64(text: string): Uint8Array {
  if (typeof text !== "string") throw new TypeError("base64: expected a string");
  return base64.decode(text);
}

/** base64url (RFC 4648 §5) without padding, as JWTs, VAPID keys and URL tokens use it. */
export function toBase64Url(bytes: Uint8Array): string {
  return base64urlnopad.encode(bytes);
}

/** Strict base64url without padding: throws on padding, on characters outside the alphabet and on non-zero trailing bits. */
export function fromBase64Url(text: string): Uint8Array {
  if (typeof text !== "string") throw new TypeError("base64url: expected a string");
  return base64urlnopad.decode(text);
}

/** Lowercase hex. */
export function toHex(bytes: Uint8Array): string {
  return hex.encode(bytes);
}

/** Strict hex decoding (even length, [0-9a-fA-F] only). */
export function fromHex(text: string): Uint8Array {
  if (typeof text !== "string" || !/^[0-9a-fA-F]*$/.test(text)) throw new Error("hex: invalid input");
  return hex.decode(text.toLowerCase());
}

/** Concatenates byte arrays into a new array. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Compares two byte arrays in time that depends only on their lengths (not on where they differ), for MACs,
 * keys, password hashes and other secrets. The only constant-time comparison in cipherpost.
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** UTF-8 encodes a string. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes UTF-8, throwing on malformed input. */
export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** Cryptographically secure random bytes (WebCrypto, available in Node 20, browsers and workerd). */
export function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  // getRandomValues refuses more than 65,536 bytes per call.
  for (let off = 0; off < length; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(length, off + 65536)));
  }
  return out;
}
