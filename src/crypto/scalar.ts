// Arithmetic modulo the Ed25519 group order L on secret scalars, in fixed-size limbs (TweetNaCl's modL), so
// XEdDSA signing never runs variable-time BigInt operations on a private key or a nonce: fixed loop counts,
// no branches and no table lookups that depend on the values.

/** L = 2^252 + 27742317777372353535851937790883648493, little-endian bytes. */
const L = new Float64Array([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]);

/**
 * r = x mod L for x given as 64 signed limbs of radix 2^8 (each well inside ±2^52, so every step is exact in
 * doubles); x is destroyed. TweetNaCl's modL (tweetnacl-js, public domain), unchanged in substance: limbs above
 * 2^256 are folded down with 2^252 ≡ −(L − 2^252), then one conditional subtraction done as a multiply by the
 * final carry, and carries propagated.
 */
function modL(r: Uint8Array, x: Float64Array): void {
  let carry = 0;
  for (let i = 63; i >= 32; --i) {
    carry = 0;
    let j = i - 32;
    for (const k = i - 12; j < k; ++j) {
      x[j]! += carry - 16 * x[i]! * L[j - (i - 32)]!;
      carry = Math.floor((x[j]! + 128) / 256);
      x[j]! -= carry * 256;
    }
    x[j]! += carry;
    x[i] = 0;
  }
  carry = 0;
  for (let j = 0; j < 32; j++) {
    x[j]! += carry - (x[31]! >> 4) * L[j]!;
    carry = x[j]! >> 8;
    x[j]! &= 255;
  }
  for (let j = 0; j < 32; j++) x[j]! -= carry * L[j]!;
  for (let i = 0; i < 32; i++) {
    x[i + 1]! += x[i]! >> 8;
    r[i] = x[i]! & 255;
  }
  x.fill(0);
}

/** A little-endian number of up to 64 bytes (a SHA-512 output, or a 32-byte key) reduced mod L: 32 bytes. */
export function reduceScalar(bytes: Uint8Array): Uint8Array {
  if (bytes.length > 64) throw new Error("a scalar to reduce has at most 64 bytes");
  const x = new Float64Array(64);
  for (let i = 0; i < bytes.length; i++) x[i] = bytes[i]!;
  const r = new Uint8Array(32);
  modL(r, x);
  return r;
}

/**
 * (r + h·a) mod L, the S of an Ed25519 signature, for 32-byte little-endian h, a and r below 2^256 (as
 * TweetNaCl's signer computes it). Products of byte limbs summed 32 at a time stay below 2^22.
 */
export function scalarMulAdd(h: Uint8Array, a: Uint8Array, r: Uint8Array): Uint8Array {
  if (h.length !== 32 || a.length !== 32 || r.length !== 32) throw new Error("scalars must be 32 bytes");
  const x = new Float64Array(64);
  for (let i = 0; i < 32; i++) x[i] = r[i]!;
  for (let i = 0; i < 32; i++) for (let j = 0; j < 32; j++) x[i + j]! += h[i]! * a[j]!;
  const s = new Uint8Array(32);
  modL(s, x);
  return s;
}
