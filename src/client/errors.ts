// The SDK's one error class: every failure an application sees carries a code from a closed set — the relay's
// codes (src/protocol/errors.ts, with the relay's own retry advice) plus the client-side ones below — so an
// application branches on `CipherpostError.is(e, "RATE_LIMITED")` rather than on messages or statuses.
import { CryptoError } from "../crypto/errors.ts";
import { ERRORS, type ErrorCode } from "../protocol/errors.ts";

/** Failures that happen on this side of the wire; `retry` says whether trying again can help. */
export const CLIENT_ERRORS = {
  UNREACHABLE: {
    retry: true,
    summary: "The relay could not be reached (connection refused, DNS, TLS, or the network is down).",
  },
  TIMEOUT: { retry: true, summary: "The relay did not answer in time." },
  INVALID_RESPONSE: { retry: true, summary: "The relay answered something that does not match the protocol." },
  ABORTED: { retry: false, summary: "The operation was cancelled by its AbortSignal." },
  CLOSED: { retry: false, summary: "The client was closed." },
  INVALID_ARGUMENT: { retry: false, summary: "An argument is out of range or malformed; nothing was sent." },
  NOT_REGISTERED: { retry: false, summary: "The storage holds no device: register or link first." },
  ALREADY_REGISTERED: {
    retry: false,
    summary: "The storage already holds a device; use another storage to register again.",
  },
  INVALID_LINK_CODE: {
    retry: false,
    summary: "The link code is malformed, or its hand-over does not decrypt with it.",
  },
  DECRYPTION_FAILED: {
    retry: false,
    summary: "A message could not be decrypted; the sender has been asked to resend it.",
  },
  INVALID_CONTENT: { retry: false, summary: "A message decrypted but its content does not parse." },
  IDENTITY_CHANGED: { retry: false, summary: "A contact's identity key changed: compare the new safety number first." },
  DIGEST_MISMATCH: { retry: false, summary: "A downloaded attachment does not match the digest its sender recorded." },
  DEVICE_REMOVED: { retry: false, summary: "This device was removed from its account, or the account was deleted." },
  CALL_BUSY: { retry: true, summary: "This device is already in a call; hang up first." },
  CALLS_UNAVAILABLE: {
    retry: false,
    summary: "This client cannot make calls: it was made without an RTCPeerConnection factory.",
  },
  PROFILE_LOCKED: { retry: true, summary: "Another process is using this profile." },
  STORAGE_UNREADABLE: {
    retry: false,
    summary: "The encrypted storage does not open with its storage key: a wrong or missing key, or a damaged file.",
  },
  UNEXPECTED: {
    retry: false,
    summary: "A local failure the SDK did not anticipate (a file system error, a bug); the message says what.",
  },
} as const satisfies Record<string, { retry: boolean; summary: string }>;

export type ClientErrorCode = keyof typeof CLIENT_ERRORS;
/** Every code a CipherpostError can carry: the relay's closed set and the client's. */
export type CipherpostErrorCode = ErrorCode | ClientErrorCode;

export interface CipherpostErrorOptions {
  /** The HTTP status, when the relay answered. */
  status?: number;
  /** The relay's request id, for its logs. */
  requestId?: string;
  /** Seconds to wait before retrying (Retry-After, or retryAfterSeconds in a group send's result). */
  retryAfterSeconds?: number;
  /** Code-specific fields: missingDevices, extraDevices, staleDevices, limitBytes, offset, … */
  extras?: Record<string, unknown>;
  cause?: unknown;
}

export class CipherpostError extends Error {
  override readonly name = "CipherpostError";
  readonly code: CipherpostErrorCode;
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly extras: Record<string, unknown>;

  constructor(code: CipherpostErrorCode, message: string, options: CipherpostErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.requestId = options.requestId;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.extras = options.extras ?? {};
  }

  /** Whether trying the same operation again later can succeed (after `retryAfterSeconds` when given). */
  get retryable(): boolean {
    return isRetryable(this.code);
  }

  /** Type guard: `CipherpostError.is(e)` or `CipherpostError.is(e, "MISMATCHED_DEVICES")`. */
  static is(error: unknown, code?: CipherpostErrorCode): error is CipherpostError {
    return error instanceof CipherpostError && (code === undefined || error.code === code);
  }

  /** `{code, message}` — the shape the CLI prints. */
  toJSON(): { code: CipherpostErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isRetryable(code: CipherpostErrorCode): boolean {
  return code in ERRORS ? ERRORS[code as ErrorCode].retry : CLIENT_ERRORS[code as ClientErrorCode].retry;
}

/** Every code, for documentation and exhaustive tests. */
export const CIPHERPOST_ERROR_CODES = [...Object.keys(ERRORS), ...Object.keys(CLIENT_ERRORS)] as CipherpostErrorCode[];

export function isRelayErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

/**
 * Any failure as a CipherpostError: a CipherpostError as it is, the crypto layer's IDENTITY_CHANGED with its keys,
 * any other CryptoError as DECRYPTION_FAILED (`extras.cryptoCode` says which), anything else as INVALID_RESPONSE.
 */
export function asCipherpostError(e: unknown): CipherpostError {
  if (CipherpostError.is(e)) return e;
  if (CryptoError.is(e)) {
    if (e.code === "IDENTITY_CHANGED") {
      return new CipherpostError("IDENTITY_CHANGED", e.message, {
        extras: { trustedIdentityKey: e.extras.trustedIdentityKey, receivedIdentityKey: e.extras.receivedIdentityKey },
        cause: e,
      });
    }
    return new CipherpostError("DECRYPTION_FAILED", `${e.code}: ${e.message}`, {
      extras: { cryptoCode: e.code },
      cause: e,
    });
  }
  return new CipherpostError("INVALID_RESPONSE", e instanceof Error ? e.message : String(e), { cause: e });
}
