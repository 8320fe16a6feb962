// Sealed hand-over of secrets during device linking (the account identity key goes from the
// primary device to the new one): XChaCha20-Poly1305 under a key derived from a 32-byte link secret.

import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concatBytes, randomBytes, utf8 } from "./bytes.ts";
import { CryptoError } from "./errors.ts";

const VERSION = 0x01;
const INFO = utf8("cipherpost-link-v1");
const NONCE_BYTES = 24;
const TAG_BYTES = 16;

/** Sealed form: 0x01 ‖ 24-byte random nonce ‖ XChaCha20-Poly1305(ciphertext ‖ 16-byte tag). */
export const LINK_ENVELOPE_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES;

// HKDF (RFC 5869) with its own info string, so the link secret, which may also feed other
// derivations, never keys this AEAD directly.
function envelopeKey(secret: Uint8Array): Uint8Array {
  if (!(secret instanceof Uint8Array) || secret.length !== 32) {
    throw new CryptoError("INVALID_KEY", "link secret must be 32 bytes");
  }
  return hkdf(sha256, secret, undefined, INFO, 32);
}

/**
 * Encrypts and authenticates `plaintext` under `secret32`. A fresh 192-bit random nonce each time:
 * XChaCha20's nonce is long enough that random nonces never collide in practice.
 */
export function sealLinkEnvelope(secret32: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const key = envelopeKey(secret32);
  const nonce = randomBytes(NONCE_BYTES);
  const header = new Uint8Array([VERSION]);
  const body = xchacha20poly1305(key, nonce, header).encrypt(plaintext);
  return concatBytes(header, nonce, body);
}

/** Opens a sealed envelope; throws CryptoError DECRYPTION_FAILED on any change or a wrong secret. */
export function openLinkEnvelope(secret32: Uint8Array, sealed: Uint8Array): Uint8Array {
  const key = envelopeKey(secret32);
  if (!(sealed instanceof Uint8Array) || sealed.length < LINK_ENVELOPE_OVERHEAD) {
    throw new CryptoError("INVALID_MESSAGE", "link envelope is too short");
  }
  if (sealed[0] !== VERSION) throw new CryptoError("INVALID_MESSAGE", `unknown link envelope version ${sealed[0]}`);
  const nonce = sealed.subarray(1, 1 + NONCE_BYTES);
  try {
    return xchacha20poly1305(key, nonce, sealed.subarray(0, 1)).decrypt(sealed.subarray(1 + NONCE_BYTES));
  } catch {
    throw new CryptoError(
      "DECRYPTION_FAILED",
      "link envelope failed authentication: it was altered or the secret is wrong",
    );
  }
}
