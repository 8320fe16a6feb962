// Device linking's cryptography: the hand-over transcript both devices hash, the key and short verification code
// both derive from an X25519 agreement of their ephemeral keys, and the sealed hand-over (XChaCha20-Poly1305).

import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { concatBytes, randomBytes, utf8 } from "./bytes.ts";
import { CryptoError } from "./errors.ts";
import { calculateAgreement, EC_PUBLIC_KEY_BYTES } from "./keys.ts";

const VERSION = 0x02;
const LABEL = utf8("cipherpost-link-v2");
const NONCE_BYTES = 24;
const TAG_BYTES = 16;
/** Digits of the verification code both screens show: a forged request matches with probability 10⁻⁶. */
export const VERIFICATION_DIGITS = 6;

/** Sealed form: 0x02 ‖ 24-byte random nonce ‖ XChaCha20-Poly1305(ciphertext ‖ 16-byte tag). */
export const LINK_ENVELOPE_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES;

/** What both devices agree on: the account, the relay's token and both ephemeral public keys (33 bytes each). */
export interface LinkTranscriptParts {
  accountId: Uint8Array;
  linkToken: Uint8Array;
  existingKey: Uint8Array;
  newKey: Uint8Array;
}

/** "cipherpost-link-v2" ‖ account id (16) ‖ link token (32) ‖ existing device's key (33) ‖ new device's key (33). */
export function linkTranscript(p: LinkTranscriptParts): Uint8Array {
  if (p.accountId.length !== 16 || p.linkToken.length !== 32)
    throw new CryptoError("INVALID_KEY", "link transcript: account id is 16 bytes, link token 32");
  if (p.existingKey.length !== EC_PUBLIC_KEY_BYTES || p.newKey.length !== EC_PUBLIC_KEY_BYTES)
    throw new CryptoError("INVALID_KEY", "link transcript: ephemeral keys are 33-byte EC public keys");
  return concatBytes(LABEL, p.accountId, p.linkToken, p.existingKey, p.newKey);
}

export interface LinkSecrets {
  /** Keys the sealed hand-over. */
  key: Uint8Array;
  /** The short code both screens show, `VERIFICATION_DIGITS` decimal digits. */
  verificationCode: string;
}

/**
 * HKDF-SHA-256(ikm = X25519(ours, theirs), salt = SHA-256(transcript), info = "cipherpost-link-v2", 37 bytes):
 * the first 32 key the envelope, the last 5 (big-endian, mod 10⁶) are the verification code. The agreement is
 * in the code, so someone who answered a link code with their own key cannot make the code the genuine new
 * device shows: it depends on that device's private key.
 */
export function deriveLinkSecrets(ourPrivateKey: Uint8Array, theirPublicKey: Uint8Array, transcript: Uint8Array) {
  let shared: Uint8Array;
  try {
    shared = calculateAgreement(ourPrivateKey, theirPublicKey);
  } catch (e) {
    throw new CryptoError("INVALID_KEY", `link agreement: ${(e as Error).message}`);
  }
  const okm = hkdf(sha256, shared, sha256(transcript), LABEL, 37);
  const n = okm.subarray(32).reduce((acc, b) => acc * 256 + b, 0);
  const verificationCode = String(n % 10 ** VERIFICATION_DIGITS).padStart(VERIFICATION_DIGITS, "0");
  return { key: okm.slice(0, 32), verificationCode } satisfies LinkSecrets;
}

const aad = (transcript: Uint8Array) => concatBytes(new Uint8Array([VERSION]), transcript);

/** Encrypts `plaintext` under `key` with the transcript as associated data, under a fresh 192-bit random nonce. */
export function sealLinkEnvelope(key: Uint8Array, transcript: Uint8Array, plaintext: Uint8Array): Uint8Array {
  if (key.length !== 32) throw new CryptoError("INVALID_KEY", "link key must be 32 bytes");
  const nonce = randomBytes(NONCE_BYTES);
  return concatBytes(
    new Uint8Array([VERSION]),
    nonce,
    xchacha20poly1305(key, nonce, aad(transcript)).encrypt(plaintext),
  );
}

/** Opens a sealed envelope; throws CryptoError DECRYPTION_FAILED on any change, another transcript or key. */
export function openLinkEnvelope(key: Uint8Array, transcript: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (key.length !== 32) throw new CryptoError("INVALID_KEY", "link key must be 32 bytes");
  if (!(sealed instanceof Uint8Array) || sealed.length < LINK_ENVELOPE_OVERHEAD)
    throw new CryptoError("INVALID_MESSAGE", "link envelope is too short");
  if (sealed[0] !== VERSION) throw new CryptoError("INVALID_MESSAGE", `unknown link envelope version ${sealed[0]}`);
  try {
    return xchacha20poly1305(key, sealed.subarray(1, 1 + NONCE_BYTES), aad(transcript)).decrypt(
      sealed.subarray(1 + NONCE_BYTES),
    );
  } catch {
    throw new CryptoError("DECRYPTION_FAILED", "link envelope failed authentication: altered, or not for this link");
  }
}
