// Limits that are part of the wire protocol itself: the same for every deployment, so schemas, the SDK and
// the API document can state them. Operational limits an operator tunes live in src/server/config.ts.

/** One-time prekeys of each kind per upload, as Signal-Server allows. */
export const MAX_PREKEYS_PER_UPLOAD = 100;
/** Registration ids are 14 bits, device ids 7 bits, as in libsignal. */
export const MIN_REGISTRATION_ID = 1;
export const MAX_REGISTRATION_ID = 16383;
export const MIN_DEVICE_ID = 1;
export const MAX_DEVICE_ID = 127;
/** The device every account is created with; it can only go by deleting the account. */
export const PRIMARY_DEVICE_ID = 1;
/** Key ids are unsigned 32-bit integers in libsignal. */
export const MAX_KEY_ID = 0xffff_ffff;
/** A device password is base64 of at least 16 random bytes; a longer one is accepted up to this many characters. */
export const MIN_PASSWORD_CHARS = 24;
export const MAX_PASSWORD_CHARS = 256;
/** Proof-of-work challenge: 32 random bytes; the solution nonce is at most 16 bytes. */
export const POW_CHALLENGE_BYTES = 32;
export const POW_NONCE_MAX_BYTES = 16;
/** Byte sizes of the key encodings (libsignal's serialisations). */
export const EC_PUBLIC_KEY_BYTES = 33;
export const KEM_PUBLIC_KEY_BYTES = 1569;
export const SIGNATURE_BYTES = 64;
/** Link tokens are 32 random bytes. */
export const LINK_TOKEN_BYTES = 32;
/** Domain separation for the signatures and hashes the relay asks for. */
export const REGISTRATION_PROOF_CONTEXT = "cipherpost-register-v1";

/** What a registration's `proof` signs: UTF-8 "cipherpost-register-v1" ‖ challenge (32 bytes) ‖ identityKey (33 bytes). */
export function registrationProofMessage(challenge: Uint8Array, identityKey: Uint8Array): Uint8Array {
  const context = new TextEncoder().encode(REGISTRATION_PROOF_CONTEXT);
  const out = new Uint8Array(context.length + challenge.length + identityKey.length);
  out.set(context, 0);
  out.set(challenge, context.length);
  out.set(identityKey, context.length + challenge.length);
  return out;
}
export const POW_CONTEXT = "cipherpost-pow-v1";
