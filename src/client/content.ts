// What travels inside the encryption: the relay only ever sees the ciphertext of one of these, as UTF-8 JSON.
// A discriminated union on `type`; every field is checked on arrival, so a sender's bug or a hostile peer's
// bytes become INVALID_CONTENT instead of an exception deep in an application.
import { z } from "zod";
import { fromUtf8, utf8 } from "../crypto/bytes.ts";
import { AttachmentId } from "../protocol/attachments.ts";
import { base64Bytes } from "../protocol/base64.ts";
import { AccountId, DeviceId } from "../protocol/directory.ts";
import { MAX_TTL_SECONDS } from "../protocol/messages.ts";

/** Content sizes checked before encrypting, so a message always fits the relay's default MAX_MESSAGE_BYTES (96 KiB). */
export const MAX_TEXT_BYTES = 64 * 1024;
export const MAX_CONTENT_BYTES = 80 * 1024;
export const MAX_ATTACHMENTS_PER_MESSAGE = 32;
export const MAX_RECEIPT_IDS = 500;
/** Members named in a group message, the relay's default MAX_GROUP_RECIPIENTS plus the sender. */
export const MAX_GROUP_MEMBERS = 1001;

const ClientMessageId = z.uuid();
const Timestamp = z.number().int().min(0);

export const AttachmentPointer = z
  .object({
    /** The relay's attachment id: the download capability. */
    id: AttachmentId,
    /** The attachment's own 32-byte key (fresh per attachment). */
    key: base64Bytes(32, "attachment key"),
    /** SHA-256 of the whole encrypted blob as uploaded. */
    digest: base64Bytes(32, "SHA-256 of the encrypted blob"),
    /** Plaintext bytes. */
    size: z.number().int().min(0),
    /** Plaintext bytes encrypted: the file then zero bytes up to its size bucket (paddedSize()). Absent: not padded. */
    paddedSize: z.number().int().min(0).optional(),
    /** Plaintext bytes per encrypted segment (the blob is a sequence of AEAD segments). */
    segmentBytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024),
    name: z.string().max(255).optional(),
    contentType: z.string().max(255).optional(),
  })
  .refine((p) => p.paddedSize === undefined || p.paddedSize >= p.size, {
    message: "paddedSize is smaller than size",
    path: ["paddedSize"],
  })
  .meta({ id: "AttachmentPointer" });
export type AttachmentPointer = z.infer<typeof AttachmentPointer>;

export const GroupContext = z.object({ id: z.uuid(), members: z.array(AccountId).max(MAX_GROUP_MEMBERS) });
export type GroupContext = z.infer<typeof GroupContext>;

/** What every content carries after its `type`. */
const contentHeader = {
  /** The client message id: the same on every copy, the key receipts and de-duplication use. */
  id: ClientMessageId,
  /** The sender's clock, ms since the epoch. */
  timestamp: Timestamp,
};

const messageFields = {
  ...contentHeader,
  text: z.string().optional(),
  attachments: z.array(AttachmentPointer).max(MAX_ATTACHMENTS_PER_MESSAGE).optional(),
  /** Structured payload for applications (anything JSON). */
  data: z.unknown().optional(),
  /** Disappearing messages: every holder deletes the message this many seconds after storing it. */
  expireSeconds: z.number().int().min(1).max(MAX_TTL_SECONDS).optional(),
  group: GroupContext.optional(),
};

export const MessageContent = z.object({ type: z.literal("message"), ...messageFields });
export type MessageContent = z.infer<typeof MessageContent>;

/** A copy of a message this account sent, for the account's other devices: who it went to. */
export const SyncContent = z.object({
  type: z.literal("sync"),
  ...contentHeader,
  /** The account the message was written to (absent for a group message: see message.group). */
  destination: AccountId.optional(),
  message: MessageContent,
});
export type SyncContent = z.infer<typeof SyncContent>;

export const ReceiptContent = z.object({
  type: z.literal("receipt"),
  ...contentHeader,
  kind: z.enum(["delivery", "read"]),
  messageIds: z.array(ClientMessageId).min(1).max(MAX_RECEIPT_IDS),
});
export type ReceiptContent = z.infer<typeof ReceiptContent>;

/** Typing indicators travel as `online` sends: only to devices connected now, never stored. */
export const TypingContent = z.object({
  type: z.literal("typing"),
  ...contentHeader,
  action: z.enum(["started", "stopped"]),
  groupId: z.uuid().optional(),
});
export type TypingContent = z.infer<typeof TypingContent>;

/** The largest session description a call signal carries (an SDP with audio, video and data is a few KB). */
export const MAX_SDP_CHARS = 32 * 1024;
export const MAX_CALL_CANDIDATES = 64;

const IceCandidate = z.object({
  candidate: z.string().max(1024),
  sdpMid: z.string().max(64).nullable().optional(),
  sdpMLineIndex: z.number().int().min(0).max(255).nullable().optional(),
  usernameFragment: z.string().max(256).nullable().optional(),
});
export type IceCandidate = z.infer<typeof IceCandidate>;

/**
 * Call signalling (docs/calls.md), sent as `online` messages: only devices connected now get them, never stored.
 * The SDP inside carries each side's DTLS fingerprint, so the relay, which sees only ciphertext, cannot put itself
 * in the media path. `toDevice` names the one device of the peer a signal is for once a device answered; `handled`
 * goes to the callee's own other devices so they stop ringing.
 */
export const CallContent = z.object({
  type: z.literal("call"),
  ...contentHeader,
  callId: z.uuid(),
  signal: z.enum(["offer", "answer", "ice", "hangup", "busy", "decline", "handled"]),
  video: z.boolean().optional(),
  sdp: z.string().max(MAX_SDP_CHARS).optional(),
  candidates: z.array(IceCandidate).max(MAX_CALL_CANDIDATES).optional(),
  toDevice: DeviceId.optional(),
  /** In `handled`: the caller whose call another device of this account answered or declined, and which. */
  peer: AccountId.optional(),
  outcome: z.enum(["answered", "declined"]).optional(),
});
export type CallContent = z.infer<typeof CallContent>;

/**
 * A retry receipt (Signal's DecryptionErrorMessage): sent unencrypted (ciphertext type 8) because the session
 * may be what is broken. It names the device that failed, the sender timestamp of the message it could not read
 * and the ratchet key in that message's header; the original sender acts only if it sent that message to the
 * requesting device under that ratchet key, archiving its session with the device when that session is the
 * one the key belongs to, and sends the message again.
 */
export const RetryContent = z.object({
  type: z.literal("retry"),
  ...contentHeader,
  /** The original sender's device the failed message came from. */
  targetDevice: DeviceId,
  /** The failed message's sender timestamp (its envelope's `timestamp`). */
  originalTimestamp: Timestamp,
  /** The sender's ratchet key from the failed message's header; absent (and the receipt ignored) when it did not parse. */
  ratchetKey: base64Bytes(33, "ratchet key").optional(),
});
export type RetryContent = z.infer<typeof RetryContent>;

export const Content = z.discriminatedUnion("type", [
  MessageContent,
  SyncContent,
  ReceiptContent,
  TypingContent,
  RetryContent,
  CallContent,
]);
export type Content = z.infer<typeof Content>;

export function encodeContent(content: Content): Uint8Array {
  return utf8(JSON.stringify(content));
}

/** Parses decrypted bytes; undefined when they are not a valid Content. */
export function decodeContent(bytes: Uint8Array): Content | undefined {
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch {
    return undefined;
  }
  const parsed = Content.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}
