// Key types and their wire encodings as the directory API takes them (33-byte EC keys with type
// byte 0x05, 1569-byte KEM keys with a type byte, 64-byte signatures), and key generation.

import { x25519 } from "@noble/curves/ed25519.js";
import { ml_kem1024 } from "@noble/post-quantum/ml-kem.js";
import { randomBytes } from "./bytes.ts";
import { CryptoError } from "./errors.ts";
import { x25519Agree, x25519Generate } from "./native.ts";

/** libsignal's type byte for Curve25519 public keys (DJB_TYPE). */
export const EC_KEY_TYPE = 0x05;
/** libsignal's type byte for pre-standard Kyber1024 keys (what `KEMKeyPair.generate()` makes). */
export const KEM_KEY_TYPE_KYBER1024 = 0x08;
/** cipherpost's type byte for FIPS 203 ML-KEM-1024 keys; the SDK only makes and uses these. */
export const KEM_KEY_TYPE_MLKEM1024 = 0x0a;
export const EC_PUBLIC_KEY_BYTES = 33;
export const EC_PRIVATE_KEY_BYTES = 32;
/** Type byte plus the 1568-byte encapsulation key (same size for Kyber1024 and ML-KEM-1024). */
export const KEM_PUBLIC_KEY_BYTES = 1569;
/** FIPS 203 Table 3: ML-KEM-1024 decapsulation key and ciphertext sizes. */
export const KEM_SECRET_KEY_BYTES = 3168;
export const KEM_CIPHERTEXT_BYTES = 1568;
export const KEM_SHARED_SECRET_BYTES = 32;
export const SIGNATURE_BYTES = 64;

export interface EcKeyPair {
  /** 32-byte clamped X25519 private scalar. */
  privateKey: Uint8Array;
  /** 33 bytes: 0x05 ‖ u. */
  publicKey: Uint8Array;
}

export interface KemKeyPair {
  /** 3168-byte ML-KEM-1024 decapsulation key (no type byte: it never travels). */
  secretKey: Uint8Array;
  /** 1569 bytes: 0x0A ‖ ML-KEM-1024 encapsulation key. */
  publicKey: Uint8Array;
}

/** True for a 33-byte key whose first byte is 0x05. Says nothing about the point itself. */
export function isEcPublicKey(bytes: Uint8Array): boolean {
  return bytes instanceof Uint8Array && bytes.length === EC_PUBLIC_KEY_BYTES && bytes[0] === EC_KEY_TYPE;
}

/** True for a 1569-byte key typed 0x08 (libsignal Kyber1024) or 0x0A (ML-KEM-1024). */
export function isKemPublicKey(bytes: Uint8Array): boolean {
  return (
    bytes instanceof Uint8Array &&
    bytes.length === KEM_PUBLIC_KEY_BYTES &&
    (bytes[0] === KEM_KEY_TYPE_KYBER1024 || bytes[0] === KEM_KEY_TYPE_MLKEM1024)
  );
}

/** True for a key this SDK can encapsulate to: ML-KEM-1024, type 0x0A. */
export function isMlKemPublicKey(bytes: Uint8Array): boolean {
  return isKemPublicKey(bytes) && bytes[0] === KEM_KEY_TYPE_MLKEM1024;
}

/** RFC 7748 §5 decodeScalar25519: clear the low three bits, clear bit 255, set bit 254. */
export function clampPrivateKey(key: Uint8Array): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== EC_PRIVATE_KEY_BYTES)
    throw new Error("private key must be 32 bytes");
  const k = key.slice();
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k;
}

/** 0x05 ‖ u. */
export function encodeEcPublicKey(u: Uint8Array): Uint8Array {
  if (u.length !== 32) throw new Error("X25519 public key must be 32 bytes");
  const out = new Uint8Array(EC_PUBLIC_KEY_BYTES);
  out[0] = EC_KEY_TYPE;
  out.set(u, 1);
  return out;
}

/** The 32-byte u-coordinate of a 33-byte typed key; throws on anything else. */
export function ecPublicKeyU(publicKey: Uint8Array): Uint8Array {
  if (!isEcPublicKey(publicKey)) throw new Error("not a 33-byte 0x05 EC public key");
  return publicKey.subarray(1);
}

/** The 33-byte public key of an X25519 private key. */
export function ecPublicKeyFromPrivate(privateKey: Uint8Array): Uint8Array {
  return encodeEcPublicKey(x25519.getPublicKey(clampPrivateKey(privateKey)));
}

/** A fresh X25519 key pair; the private key is stored clamped, as libsignal stores it. */
export function generateEcKeyPair(): EcKeyPair {
  const privateKey = clampPrivateKey(randomBytes(32));
  return { privateKey, publicKey: encodeEcPublicKey(x25519.getPublicKey(privateKey)) };
}

/**
 * X25519 (RFC 7748 §6.1) between our private key and their typed public key. Throws when the
 * result is all zeros (their key is of small order), as RFC 7748 §6.1 allows and Signal requires.
 */
export function calculateAgreement(privateKey: Uint8Array, theirPublicKey: Uint8Array): Uint8Array {
  const shared = x25519.getSharedSecret(clampPrivateKey(privateKey), ecPublicKeyU(theirPublicKey));
  let acc = 0;
  for (const b of shared) acc |= b;
  if (acc === 0) throw new Error("X25519 agreement with a small-order key");
  return shared;
}

/** A fresh ML-KEM-1024 key pair (FIPS 203 ML-KEM.KeyGen), public key typed 0x0A. */
export function generateKemKeyPair(): KemKeyPair {
  const { secretKey, publicKey } = ml_kem1024.keygen(randomBytes(64));
  const typed = new Uint8Array(KEM_PUBLIC_KEY_BYTES);
  typed[0] = KEM_KEY_TYPE_MLKEM1024;
  typed.set(publicKey, 1);
  return { secretKey, publicKey: typed };
}

/**
 * ML-KEM-1024 encapsulation to a 0x0A key. 0x08 keys are refused: noble's ML-KEM does not agree
 * with pre-standard Kyber1024, so encapsulating to one would silently make an unusable secret.
 */
export function kemEncapsulate(publicKey: Uint8Array): { cipherText: Uint8Array; sharedSecret: Uint8Array } {
  if (!isMlKemPublicKey(publicKey)) {
    throw new Error(
      isKemPublicKey(publicKey)
        ? "KEM key type 0x08 (Kyber1024) is not supported: this SDK speaks ML-KEM-1024 (0x0A)"
        : "not a 1569-byte KEM public key",
    );
  }
  return ml_kem1024.encapsulate(publicKey.subarray(1), randomBytes(32));
}

/** ML-KEM-1024 decapsulation (FIPS 203 implicit rejection: a bad ciphertext gives a random-looking secret). */
export function kemDecapsulate(secretKey: Uint8Array, cipherText: Uint8Array): Uint8Array {
  if (secretKey.length !== KEM_SECRET_KEY_BYTES) throw new Error("ML-KEM-1024 secret key must be 3168 bytes");
  if (cipherText.length !== KEM_CIPHERTEXT_BYTES) throw new Error("ML-KEM-1024 ciphertext must be 1568 bytes");
  return ml_kem1024.decapsulate(cipherText, secretKey);
}

/** generateEcKeyPair through WebCrypto when the runtime has X25519 (about 3× faster than noble). */
export async function generateEcKeyPairAsync(): Promise<EcKeyPair> {
  const { privateKey, publicU } = await x25519Generate();
  return { privateKey, publicKey: encodeEcPublicKey(publicU) };
}

/**
 * calculateAgreement through WebCrypto when available (about 6× faster than noble), with our whole
 * key pair since the native import wants our public key too. Throws CryptoError INVALID_KEY for a
 * malformed or small-order peer key.
 */
export async function agreeAsync(ours: EcKeyPair, theirPublicKey: Uint8Array): Promise<Uint8Array> {
  if (!isEcPublicKey(theirPublicKey)) throw new CryptoError("INVALID_KEY", "not a 33-byte 0x05 EC public key");
  try {
    return await x25519Agree(ours.privateKey, ours.publicKey.subarray(1), theirPublicKey.subarray(1));
  } catch {
    throw new CryptoError("INVALID_KEY", "X25519 agreement failed: the peer key is of small order");
  }
}
