// The closed set of error codes cipherpost answers with, each with its HTTP status and whether a client
// should retry. Server and SDK both import this table; a code not listed here is never sent.
import { z } from "zod";

export const ERRORS = {
  // Input
  BAD_REQUEST: { status: 400, retry: false, summary: "A parameter or body field is missing or malformed." },
  INVALID_JSON: { status: 400, retry: false, summary: "The body is not valid JSON." },
  PAYLOAD_TOO_LARGE: { status: 413, retry: false, summary: "The request body is larger than the route accepts." },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retry: false, summary: "The Content-Type is not the one the route takes." },
  INVALID_SIGNATURE: {
    status: 422,
    retry: false,
    summary: "A signature does not verify with the account's identity key.",
  },
  INVALID_KEY: { status: 422, retry: false, summary: "A public key has the wrong type byte or length." },
  // Authentication and authorisation
  UNAUTHORIZED: { status: 401, retry: false, summary: "Missing or wrong device credentials." },
  FORBIDDEN: { status: 403, retry: false, summary: "The authenticated device may not do this." },
  // Resources
  NOT_FOUND: { status: 404, retry: false, summary: "No such resource." },
  // Registration and devices
  CHALLENGE_INVALID: {
    status: 403,
    retry: false,
    summary: "The proof-of-work challenge is unknown, used, expired, or not solved.",
  },
  PROOF_INVALID: { status: 422, retry: false, summary: "The proof of identity-key possession does not verify." },
  TOO_MANY_DEVICES: { status: 409, retry: false, summary: "The account already has the maximum number of devices." },
  REGISTRATION_ID_TAKEN: {
    status: 409,
    retry: false,
    summary: "Another device of the account uses this registration id.",
  },
  LINK_TOKEN_INVALID: { status: 403, retry: false, summary: "The link token is unknown, used or expired." },
  PRIMARY_DEVICE: { status: 403, retry: false, summary: "Device 1 cannot be removed; delete the account instead." },
  // Usernames (the nickname and discriminator rules are checked by the client, which never sends the name)
  USERNAME_INVALID: {
    status: 400,
    retry: false,
    summary: "The nickname breaks a rule: 3 to 32 of a-z, 0-9 and _, not starting with a digit.",
  },
  DISCRIMINATOR_INVALID: {
    status: 400,
    retry: false,
    summary: "The discriminator breaks a rule: 2 to 9 digits, not all zeros, no leading zero past two digits.",
  },
  USERNAME_TAKEN: { status: 409, retry: false, summary: "Every username offered is held by someone else." },
  USERNAME_NOT_RESERVED: {
    status: 409,
    retry: false,
    summary: "The account holds no live reservation of this username: reserve it (again) first.",
  },
  // Keys
  TOO_MANY_KEYS: {
    status: 409,
    retry: false,
    summary: "The device would hold more one-time keys of a kind than the relay keeps; nothing was stored.",
  },
  // Messages
  MISMATCHED_DEVICES: {
    status: 409,
    retry: false,
    summary: "The message does not cover exactly the recipient's current devices.",
  },
  STALE_DEVICES: { status: 410, retry: false, summary: "A registration id no longer matches the device's." },
  MESSAGE_TOO_LARGE: { status: 413, retry: false, summary: "A ciphertext is larger than the per-message limit." },
  QUEUE_FULL: {
    status: 507,
    retry: true,
    summary: "The recipient device's queue is at its quota; try again after it drains.",
  },
  SENDER_QUEUE_SHARE_EXCEEDED: {
    status: 429,
    retry: true,
    summary:
      "Your share of the recipient device's queue is used up (other senders still get through); try again after Retry-After.",
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    retry: false,
    summary: "The Idempotency-Key was already used for a different request.",
  },
  // Attachments
  UPLOAD_OFFSET_MISMATCH: {
    status: 409,
    retry: false,
    summary: "Upload-Offset does not match the upload's current offset.",
  },
  UPLOAD_TOO_LARGE: { status: 413, retry: false, summary: "The upload is larger than the attachment size limit." },
  UPLOAD_OVERRUN: { status: 400, retry: false, summary: "The bytes sent would pass Upload-Length." },
  CHECKSUM_MISMATCH: {
    status: 460,
    retry: true,
    summary: "The Upload-Checksum does not match the bytes received; they were discarded.",
  },
  QUOTA_EXCEEDED: { status: 413, retry: false, summary: "The account's storage quota would be exceeded." },
  TOO_MANY_ATTACHMENTS: {
    status: 409,
    retry: false,
    summary: "The account holds the most attachments and unfinished uploads it may; delete some or let them expire.",
  },
  PRECONDITION_FAILED: { status: 412, retry: false, summary: "The Tus-Resumable version is not supported." },
  RANGE_NOT_SATISFIABLE: {
    status: 416,
    retry: false,
    summary: "The Range does not overlap the attachment; Content-Range gives its size.",
  },
  // Push
  PUSH_NOT_CONFIGURED: {
    status: 501,
    retry: false,
    summary: "This relay sends no push wake-ups (no VAPID key is configured).",
  },
  // Calls
  CALLS_NOT_CONFIGURED: {
    status: 501,
    retry: false,
    summary: "This relay has no TURN provider configured, so it offers no calls (no ICE servers).",
  },
  // Limits and platform
  RATE_LIMITED: { status: 429, retry: true, summary: "Too many requests; wait for Retry-After seconds." },
  MISCONFIGURED: {
    status: 503,
    retry: true,
    summary: "The relay's configuration does not parse; an operator must fix it.",
  },
  UNAVAILABLE: {
    status: 503,
    retry: true,
    summary: "A storage service, or the TURN provider calls use, did not answer; try again.",
  },
  INTERNAL: { status: 500, retry: true, summary: "An unexpected error; it has been logged with the request id." },
} as const satisfies Record<string, { status: number; retry: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERRORS;
export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

/** Every error body: a stable code, a one-line message, the request id, and code-specific extras. */
export const ErrorBody = z
  .object({
    code: z.enum(ERROR_CODES as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    requestId: z.string(),
  })
  .catchall(z.unknown())
  .meta({ id: "Error", description: "Every error answer. Extra fields depend on the code (e.g. missingDevices)." });
export type ErrorBody = z.infer<typeof ErrorBody>;

export function statusOf(code: ErrorCode): number {
  return ERRORS[code].status;
}
