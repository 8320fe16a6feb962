// The one error class of src/crypto, with a closed set of codes the SDK can branch on
// (modelled on libsignal's client errors: a code, a message, typed extras).

export const CRYPTO_ERROR_CODES = {
  /** Bytes that do not parse: wrong version, truncated, wrong lengths or type bytes. */
  INVALID_MESSAGE: "INVALID_MESSAGE",
  /** Authentication failed: tampered header or body, wrong associated data, wrong key. */
  DECRYPTION_FAILED: "DECRYPTION_FAILED",
  /** A message whose key was already used (a replay or a duplicate delivery). */
  DUPLICATE_MESSAGE: "DUPLICATE_MESSAGE",
  /** A message number further ahead than the skipped-key bound allows (Double Ratchet MAX_SKIP). */
  TOO_MANY_SKIPPED_MESSAGES: "TOO_MANY_SKIPPED_MESSAGES",
  /**
   * The message's key may have been dropped to bound storage (more skipped keys than a chain keeps, or more
   * receiving chains than a session keeps): not a proven duplicate, so the sender should be asked to resend.
   */
  MESSAGE_KEY_EVICTED: "MESSAGE_KEY_EVICTED",
  /** Decrypting would cost more ratchet work than one message, or its sender this minute, is allowed (work.ts). */
  WORK_LIMIT: "WORK_LIMIT",
  /** A key that is malformed, of the wrong type, or (for X25519) of small order. */
  INVALID_KEY: "INVALID_KEY",
  /** A prekey bundle signature that does not verify under the bundle's identity key. */
  INVALID_SIGNATURE: "INVALID_SIGNATURE",
  /** The bundle offers only libsignal's pre-standard Kyber1024 (0x08), which this SDK does not speak. */
  UNSUPPORTED_KEM: "UNSUPPORTED_KEM",
  /** A prekey message names a prekey the recipient no longer has. */
  MISSING_PREKEY: "MISSING_PREKEY",
  /** No session with this device: a whisper message (type 2) arrived before any prekey message. */
  NO_SESSION: "NO_SESSION",
  /** The remote identity key differs from the one trusted for this contact. */
  IDENTITY_CHANGED: "IDENTITY_CHANGED",
  /** A serialised session record that cannot be read (corrupt or from an unknown version). */
  INVALID_STATE: "INVALID_STATE",
} as const;

export type CryptoErrorCode = keyof typeof CRYPTO_ERROR_CODES;

export interface CryptoErrorExtras {
  /** IDENTITY_CHANGED: the identity key trusted until now and the one just seen (33 bytes each). */
  trustedIdentityKey?: Uint8Array;
  receivedIdentityKey?: Uint8Array;
  /** MISSING_PREKEY: which kind of key and its id. */
  missingKey?: { kind: "preKey" | "signedPreKey" | "kemPreKey"; keyId: number };
}

export class CryptoError extends Error {
  override readonly name = "CryptoError";
  readonly code: CryptoErrorCode;
  readonly extras: CryptoErrorExtras;

  constructor(code: CryptoErrorCode, message: string, extras: CryptoErrorExtras = {}) {
    super(message);
    this.code = code;
    this.extras = extras;
  }

  /** Type guard: `CryptoError.is(e, "IDENTITY_CHANGED")`. */
  static is(error: unknown, code?: CryptoErrorCode): error is CryptoError {
    return error instanceof CryptoError && (code === undefined || error.code === code);
  }
}
