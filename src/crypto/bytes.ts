// Byte helpers shared by the relay and the SDK: strict standard base64, concatenation,
// constant-time comparison and UTF-8. Runtime-agnostic (no Buffer, no atob).

const B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_LOOKUP: Int16Array = (() => {
  const t = new Int16Array(256).fill(-1);
  for (let i = 0; i < B64_ALPHABET.length; i++) t[B64_ALPHABET.charCodeAt(i)] = i;
  return t;
})();

/** Standard base64 (RFC 4648 §4) with padding. */
export function toBase64(bytes: Uint8Array): string {
  let out = "";
  const n = bytes.length;
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out +=
      B64_ALPHABET[(v >> 18) & 63]! + B64_ALPHABET[(v >> 12) & 63]! + B64_ALPHABET[(v >> 6) & 63]! + B64_ALPHABET[v & 63]!;
  }
  const rest = n - i;
  if (rest === 1) {
    const v = bytes[i]! << 16;
    out += B64_ALPHABET[(v >> 18) & 63]! + B64_ALPHABET[(v >> 12) & 63]! + "==";
  } else if (rest === 2) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += B64_ALPHABET[(v >> 18) & 63]! + B64_ALPHABET[(v >> 12) & 63]! + B64_ALPHABET[(v >> 6) & 63]! + "=";
  }
  return out;
}

/**
 * Strict standard base64 with padding: throws on a length that is not a multiple of 4, on any
 * character outside the alphabet (whitespace and URL-safe characters included), on misplaced
 * padding, and on non-zero trailing bits (RFC 4648 §3.5), so each byte string has one encoding.
 */
export function fromBase64(text: string): Uint8Array {
  if (typeof text !== "string") throw new TypeError("base64: expected a string");
  if (text.length % 4 !== 0) throw new Error("base64: length is not a multiple of 4");
  let pad = 0;
  if (text.endsWith("==")) pad = 2;
  else if (text.endsWith("=")) pad = 1;
  const outLen = (text.length / 4) * 3 - pad;
  const out = new Uint8Array(outLen);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    const c0 = sextet(text, i);
    const c1 = sextet(text, i + 1);
    if (last && pad === 2) {
      if (text.charCodeAt(i + 2) !== 61) throw new Error("base64: misplaced padding");
      if (c1 & 15) throw new Error("base64: non-zero trailing bits");
      out[o++] = (c0 << 2) | (c1 >> 4);
      break;
    }
    const c2 = sextet(text, i + 2);
    if (last && pad === 1) {
      if (c2 & 3) throw new Error("base64: non-zero trailing bits");
      out[o++] = (c0 << 2) | (c1 >> 4);
      out[o++] = ((c1 & 15) << 4) | (c2 >> 2);
      break;
    }
    const c3 = sextet(text, i + 3);
    out[o++] = (c0 << 2) | (c1 >> 4);
    out[o++] = ((c1 & 15) << 4) | (c2 >> 2);
    out[o++] = ((c2 & 3) << 6) | c3;
  }
  return out;
}

function sextet(text: string, index: number): number {
  const code = text.charCodeAt(index);
  const v = code < 256 ? B64_LOOKUP[code]! : -1;
  if (v < 0) throw new Error(`base64: invalid character at position ${index}`);
  return v;
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
 * Compares two byte arrays in time that depends only on their lengths (not on where they differ),
 * for MACs, keys and other secrets.
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

/** Lowercase hex, for tests and diagnostics. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Strict hex decoding (even length, [0-9a-fA-F] only). */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new Error("hex: invalid input");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
