// Wire shapes of sending: one message to an account as per-device ciphertexts (Signal-Server's names), the
// multi-recipient form for groups, the 409/410 device-set answers, and the envelope the mailbox delivers.
import { z } from "zod";
import { BASE64_PATTERN } from "./base64.ts";
import { AccountId, DeviceId, RegistrationId } from "./directory.ts";

/** libsignal's CiphertextMessageType values the relay carries. 6 (sealed sender) is reserved and refused. */
export const CIPHERTEXT_TYPES = {
  /** A Double Ratchet message (libsignal `Whisper`). */
  message: 2,
  /** A PQXDH/X3DH prekey message that starts a session. */
  preKeyMessage: 3,
  /** A sender-key (group) message. */
  senderKeyMessage: 7,
  /** A plaintext content message (decryption-error receipts). */
  plaintext: 8,
} as const;
export const CiphertextType = z.union([z.literal(2), z.literal(3), z.literal(7), z.literal(8)]).meta({
  id: "CiphertextType",
  description:
    "libsignal CiphertextMessageType: 2 message, 3 prekey message, 7 sender-key message, 8 plaintext. 6 (sealed sender) is reserved and refused.",
});
export type CiphertextType = z.infer<typeof CiphertextType>;

/** Protocol ceiling of one ciphertext; a deployment's MAX_MESSAGE_BYTES (default 96 KiB) is at most this. */
export const MAX_CIPHERTEXT_BYTES_CEILING = 1_048_576;
/** At most one ciphertext per possible device id in one send. */
export const MAX_MESSAGES_PER_SEND = 127;
/** An Idempotency-Key header: 1..128 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
/** Longest expiry a sender may ask for; the relay also caps it at MESSAGE_TTL_SECONDS. */
export const MAX_TTL_SECONDS = 10 * 365 * 86_400;

export const Ciphertext = z
  .string()
  .min(4)
  .max(4 * Math.ceil(MAX_CIPHERTEXT_BYTES_CEILING / 3))
  .regex(BASE64_PATTERN, "must be standard base64 with padding")
  .meta({
    description:
      "The ciphertext, standard base64 with padding; at most MAX_MESSAGE_BYTES decoded bytes (default 98304).",
    format: "byte",
  });

export const OutgoingMessage = z
  .object({
    type: CiphertextType,
    destinationDeviceId: DeviceId,
    destinationRegistrationId: RegistrationId,
    content: Ciphertext,
  })
  .meta({ id: "OutgoingMessage", description: "One ciphertext for one device of the recipient." });
export type OutgoingMessage = z.infer<typeof OutgoingMessage>;

const sendFields = {
  timestamp: z.number().int().min(0).meta({
    description: "The sender's timestamp of the message (ms since the epoch), passed through to the recipient.",
  }),
  online: z.boolean().default(false).meta({
    description: "Deliver only to devices connected now and never store (typing indicators, call signalling).",
  }),
  urgent: z.boolean().default(true).meta({
    description: "Passed through to the recipient; a push service would wake the device only for urgent messages.",
  }),
  ttlSeconds: z.number().int().min(1).max(MAX_TTL_SECONDS).optional().meta({
    description:
      "Expire queued copies after this many seconds (disappearing messages); capped at MESSAGE_TTL_SECONDS, the default.",
  }),
};

export const SendMessageRequest = z
  .object({ messages: z.array(OutgoingMessage).max(MAX_MESSAGES_PER_SEND), ...sendFields })
  .meta({
    id: "SendMessageRequest",
    description:
      "One message to one account: exactly one ciphertext per current device of the recipient (the sending device itself excluded when sending to your own account).",
  });
export type SendMessageRequest = z.input<typeof SendMessageRequest>;

export const SendMessageResponse = z
  .object({
    needsSync: z
      .boolean()
      .meta({ description: "True when the sender has other devices that should get a sync transcript." }),
    serverTimestamp: z.number().int().meta({
      description: "When the mailbox accepted the message (ms since the epoch); the same on an idempotent retry.",
    }),
  })
  .meta({ id: "SendMessageResponse" });
export type SendMessageResponse = z.infer<typeof SendMessageResponse>;

export const MismatchedDevicesBody = z
  .object({
    code: z.literal("MISMATCHED_DEVICES"),
    message: z.string(),
    requestId: z.string(),
    missingDevices: z.array(DeviceId).meta({ description: "Current devices of the recipient the request left out." }),
    extraDevices: z
      .array(DeviceId)
      .meta({ description: "Device ids in the request the recipient does not have (or the sending device itself)." }),
  })
  .meta({ id: "MismatchedDevices" });
export const StaleDevicesBody = z
  .object({
    code: z.literal("STALE_DEVICES"),
    message: z.string(),
    requestId: z.string(),
    staleDevices: z
      .array(DeviceId)
      .meta({ description: "Devices whose registration id no longer matches: fetch a new bundle." }),
  })
  .meta({ id: "StaleDevices" });

// ---- Groups ----

export const MultiRecipientEntry = z
  .object({ accountId: AccountId, messages: z.array(OutgoingMessage).max(MAX_MESSAGES_PER_SEND) })
  .meta({ id: "MultiRecipientEntry" });
export const MultiRecipientSendRequest = z
  .object({ recipients: z.array(MultiRecipientEntry).min(1), ...sendFields })
  .meta({
    id: "MultiRecipientSendRequest",
    description:
      "Per-recipient, per-device ciphertexts for up to MAX_GROUP_RECIPIENTS accounts (default 1000) within MAX_SEND_REQUEST_BYTES.",
  });
export type MultiRecipientSendRequest = z.input<typeof MultiRecipientSendRequest>;

export const RecipientResult = z
  .object({
    accountId: AccountId,
    status: z.number().int().meta({
      description:
        "200 when stored (or delivered, for online messages); otherwise the status a single send would have had.",
    }),
    code: z.string().optional().meta({
      description:
        "The error code when status is not 200 (NOT_FOUND, MISMATCHED_DEVICES, STALE_DEVICES, QUEUE_FULL, RATE_LIMITED, UNAVAILABLE…).",
    }),
    message: z.string().optional(),
    missingDevices: z.array(DeviceId).optional(),
    extraDevices: z.array(DeviceId).optional(),
    staleDevices: z.array(DeviceId).optional(),
    retryAfterSeconds: z.number().int().optional(),
    serverTimestamp: z.number().int().optional(),
  })
  .meta({ id: "RecipientResult" });
export type RecipientResult = z.infer<typeof RecipientResult>;

export const MultiRecipientSendResponse = z
  .object({
    needsSync: z.boolean(),
    results: z.array(RecipientResult).meta({ description: "One entry per recipient, in request order." }),
  })
  .meta({ id: "MultiRecipientSendResponse" });
export type MultiRecipientSendResponse = z.infer<typeof MultiRecipientSendResponse>;

// ---- What the recipient gets ----

export const Envelope = z
  .object({
    type: CiphertextType,
    sourceAccountId: AccountId.meta({ description: "The authenticated sending account, stamped by the relay." }),
    sourceDeviceId: DeviceId.meta({ description: "The authenticated sending device, stamped by the relay." }),
    destinationDeviceId: DeviceId,
    timestamp: z.number().int().meta({ description: "The sender's timestamp, as sent." }),
    serverTimestamp: z.number().int().meta({ description: "When the mailbox accepted the message." }),
    urgent: z.boolean(),
    online: z
      .boolean()
      .meta({ description: "True for an online-only message, which was never stored and needs no ack." }),
    expiresAt: z
      .number()
      .int()
      .meta({ description: "When an unacknowledged queued copy is deleted (ms since the epoch)." }),
    content: Ciphertext,
  })
  .meta({ id: "Envelope", description: "A ciphertext as the relay delivers it. The relay never learns its content." });
export type Envelope = z.infer<typeof Envelope>;

export const WebSocketTicketResponse = z
  .object({
    ticket: z.string().meta({ description: "Pass as `?ticket=` on GET /v1/websocket. Single use." }),
    expiresAt: z.number().int().meta({ description: "Milliseconds since the epoch; valid for WS_TICKET_TTL_SECONDS." }),
  })
  .meta({ id: "WebSocketTicketResponse" });
export type WebSocketTicketResponse = z.infer<typeof WebSocketTicketResponse>;
