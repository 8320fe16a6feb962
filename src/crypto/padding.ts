// Plaintext padding before encryption so ciphertext sizes do not reveal message lengths: a 0x80
// marker then zeros (ISO/IEC 7816-4) up to a Padmé size, with everything short padded to one size.

import { CryptoError } from "./errors.ts";

/** Every plaintext up to 255 bytes (most chat messages) pads to the same 256 bytes. */
export const MIN_PADDED_LENGTH = 256;

/**
 * Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication with
 * PURBs", PETS 2019, §4): round L up so that only the top ⌊log₂ ⌊log₂ L⌋⌋ + 1 bits of the length may be
 * non-zero. An observer learns O(log log L) bits of the length; the overhead is at most 12%.
 */
export function padmeLength(length: number): number {
  if (length < 2) return length;
  const e = Math.floor(Math.log2(length));
  const s = Math.floor(Math.log2(e)) + 1;
  const lastBits = e - s;
  const step = 2 ** lastBits;
  return Math.ceil(length / step) * step;
}

/** The padded length for a plaintext of `length` bytes (one marker byte included). */
export function paddedLength(length: number): number {
  return Math.max(MIN_PADDED_LENGTH, padmeLength(length + 1));
}

export function padPlaintext(plaintext: Uint8Array): Uint8Array {
  const out = new Uint8Array(paddedLength(plaintext.length));
  out.set(plaintext);
  out[plaintext.length] = 0x80;
  return out;
}

/** Strict: the last non-zero byte must be the 0x80 marker. Runs only on authenticated plaintext. */
export function unpadPlaintext(padded: Uint8Array): Uint8Array {
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) throw new CryptoError("INVALID_MESSAGE", "bad plaintext padding");
  return padded.subarray(0, i);
}
