// XEdDSA signatures with X25519 keys in libsignal's variant (the Edwards sign bit of the signer's
// key travels in bit 7 of signature byte 63), with strict verification that never throws.

import { ED25519_TORSION_SUBGROUP, ed25519 } from "@noble/curves/ed25519.js";
import { bytesToNumberLE, numberToBytesLE } from "@noble/curves/utils.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { fromHex, randomBytes } from "./bytes.ts";
import { clampPrivateKey, EC_KEY_TYPE, EC_PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from "./keys.ts";
import { ed25519VerifyRaw } from "./native.ts";
import { reduceScalar, scalarMulAdd } from "./scalar.ts";

const Point = ed25519.Point;
const P = Point.Fp.ORDER; // 2^255 - 19
const L = Point.Fn.ORDER; // 2^252 + 27742317777372353535851937790883648493

// XEdDSA §2.5 hash_1: the prefix 0xFE ‖ 0xFF*31 is 2^256 - 2 - i for i = 1, an invalid point
// encoding, so hash1 can never collide with the Ed25519 challenge hash SHA-512(R ‖ A ‖ M).
const HASH1_PREFIX = (() => {
  const p = new Uint8Array(32).fill(0xff);
  p[0] = 0xfe;
  return p;
})();

/** sB for a reduced secret scalar, with noble's constant-time multiplication (wNAF with fake additions). */
function baseMultiply(scalar: Uint8Array): Uint8Array {
  return Point.BASE.multiply(bytesToNumberLE(scalar)).toBytes();
}

/**
 * Signs `message` with a 32-byte X25519 private key. `random` is the 64-byte Z of XEdDSA §2.5
 * (fresh from crypto.getRandomValues unless given, which tests use for determinism).
 *
 * This is libsignal's calculate_signature (rust/core/src/curve/curve25519.rs), which departs from
 * the XEdDSA paper's calculate_key_pair in one way: it does not negate a to force the Edwards sign
 * bit to 0. It signs with a = clamp(k) and A = aB as they are, and puts A's sign bit into bit 7 of
 * byte 63 (always 0 in S, since S < L < 2^253) so the verifier can rebuild A from the Montgomery u.
 * Negating a and also sending A's original sign bit would make half of all signatures invalid.
 *
 * Constant time in the secrets: the scalars a and r are reduced and S = r + h·a is computed in fixed
 * byte limbs (scalar.ts), and aB and rB are noble's constant-time multiplications; no BigInt arithmetic
 * touches a secret (the one BigInt made of each is the input noble's multiplication takes).
 */
export function xeddsaSign(privateKey: Uint8Array, message: Uint8Array, random?: Uint8Array): Uint8Array {
  if (!(message instanceof Uint8Array)) throw new TypeError("message must be a Uint8Array");
  const Z = random ?? randomBytes(64);
  if (!(Z instanceof Uint8Array) || Z.length !== 64) throw new Error("XEdDSA random must be 64 bytes");
  const k = clampPrivateKey(privateKey);
  const a = reduceScalar(k);
  const A = baseMultiply(a);
  const signBit = A[31]! & 0x80;

  // r = hash1(k ‖ M ‖ Z) mod q, as libsignal hashes the clamped key bytes.
  const h1 = sha512.create().update(HASH1_PREFIX).update(k).update(message).update(Z).digest();
  const r = reduceScalar(h1);
  const R = baseMultiply(r);
  const h = reduceScalar(sha512.create().update(R).update(A).update(message).digest());
  const s = scalarMulAdd(h, a, r);
  for (const secret of [k, a, h1, r]) secret.fill(0);

  const sig = new Uint8Array(SIGNATURE_BYTES);
  sig.set(R, 0);
  sig.set(s, 32);
  sig[63]! |= signBit;
  return sig;
}

/**
 * The Edwards encoding (RFC 8032 §5.1.2) of the point whose Montgomery u is given, with the given
 * sign bit, or null when u is non-canonical (≥ p) or u = p − 1 (u + 1 = 0 has no inverse: that u is
 * not the image of any Edwards point). The birational map is y = (u − 1)/(u + 1) (RFC 7748 §4.1).
 */
export function montgomeryUToEdwards(u32: Uint8Array, signBit: 0 | 1): Uint8Array | null {
  if (u32.length !== 32) return null;
  const u = bytesToNumberLE(u32);
  if (u >= P) return null;
  const Fp = Point.Fp;
  const den = Fp.add(u, 1n);
  if (Fp.is0(den)) return null;
  const y = Fp.mul(Fp.sub(u, 1n), Fp.inv(den));
  const enc = numberToBytesLE(y, 32);
  enc[31]! |= signBit << 7;
  return enc;
}

/**
 * Verifies a libsignal XEdDSA signature. `publicKey` is 33 bytes (0x05 ‖ u) or the bare 32-byte u.
 * Returns false, never throws, for: wrong types or lengths, a wrong type byte, non-canonical u
 * (≥ p, including a set bit 255), u = p − 1, u whose image is not on the curve or is of small order,
 * non-canonical R, S ≥ L, or a signature that does not verify under RFC 8032 §5.1.7 with noble's
 * strict (zip215: false) decoding.
 */
export function xeddsaVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    const p = prepareVerify(publicKey, message, signature);
    if (p === null) return false;
    // zip215: false = RFC 8032 / FIPS 186-5 strict: canonical A and R, S < L, small-order A refused.
    return ed25519.verify(p.sig, message, p.A, { zip215: false });
  } catch {
    return false;
  }
}

/**
 * The steps both verifiers share: input types and lengths, the 0x05 type byte, the Montgomery-to-Edwards
 * mapping with the sign bit libsignal carries in bit 7 of signature byte 63, and that bit cleared from the
 * signature. Null for anything malformed.
 */
function prepareVerify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): { A: Uint8Array; sig: Uint8Array } | null {
  if (!(publicKey instanceof Uint8Array) || !(message instanceof Uint8Array) || !(signature instanceof Uint8Array))
    return null;
  if (signature.length !== SIGNATURE_BYTES) return null;
  let u: Uint8Array;
  if (publicKey.length === EC_PUBLIC_KEY_BYTES) {
    if (publicKey[0] !== EC_KEY_TYPE) return null;
    u = publicKey.subarray(1);
  } else if (publicKey.length === 32) {
    u = publicKey;
  } else {
    return null;
  }
  const A = montgomeryUToEdwards(u, (signature[63]! >> 7) as 0 | 1);
  if (A === null) return null;
  const sig = signature.slice();
  sig[63]! &= 0x7f;
  return { A, sig };
}

// y-coordinates (sign bit cleared) of the eight points of order dividing 8: 1, −1, 0 and the four
// order-8 points. An A with one of these is refused before any native verify, which may not refuse it.
const SMALL_ORDER_Y: readonly bigint[] = ED25519_TORSION_SUBGROUP.map(
  (hex) => bytesToNumberLE(fromHex(hex)) & ((1n << 255n) - 1n),
);

/**
 * The same strict verification as xeddsaVerify, finished by the runtime's native Ed25519 (WebCrypto,
 * about 6× faster than noble here) when it has one. The checks native implementations differ on are
 * done first: canonical u and R, S < L, small-order A. Returns false, never rejects.
 */
export async function xeddsaVerifyAsync(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  try {
    const p = prepareVerify(publicKey, message, signature);
    if (p === null) return false;
    const { A, sig } = p;
    const yA = bytesToNumberLE(A) & ((1n << 255n) - 1n);
    if (SMALL_ORDER_Y.includes(yA)) return false;
    // RFC 8032 §5.1.7 step 1: R must decode, so its y must be canonical; S must be below L.
    if ((bytesToNumberLE(sig.subarray(0, 32)) & ((1n << 255n) - 1n)) >= P) return false;
    if (bytesToNumberLE(sig.subarray(32)) >= L) return false;
    return await ed25519VerifyRaw(A, message, sig);
  } catch {
    return false;
  }
}
