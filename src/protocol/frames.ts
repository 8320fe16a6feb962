// The mailbox's WebSocket frames: JSON text, one object per frame, a discriminated union on `type`. Server and
// SDK both import these; the AsyncAPI document at /v1/asyncapi.json is generated from them.
import { z } from "zod";
import { ErrorBody } from "./errors.ts";
import {
  Envelope,
  IDEMPOTENCY_KEY,
  MultiRecipientSendRequest,
  MultiRecipientSendResponse,
  SendMessageRequest,
  SendMessageResponse,
} from "./messages.ts";

/** Every frame type string, with its direction. */
export const FRAME_TYPES = {
  /** server → client: one message (queued or live); ack it by `id`. */
  message: "message",
  /** server → client: every message queued when the connection opened has been sent; live messages follow. */
  queue_empty: "queue_empty",
  /** server → client: a prekey claim left this device with few one-time keys; upload more (PUT /v2/keys). */
  keys_low: "keys_low",
  /** server → client: a frame from the client was refused; the connection stays open. */
  error: "error",
  /** client → server: delete these messages, delivered on this connection. */
  ack: "ack",
  /** client → server: keep-alive; must be exactly PING_FRAME to be answered without waking the mailbox. */
  ping: "ping",
  /** server → client: the answer to PING_FRAME, exactly PONG_FRAME. */
  pong: "pong",
  /** client → server: send one message to one account over this connection (PUT /v1/messages/{accountId}). */
  send: "send",
  /** client → server: a group send over this connection (PUT /v1/messages/multi). */
  send_multi: "send_multi",
  /** server → client: the answer to one send or send_multi frame, matched by its `id`. */
  send_result: "send_result",
} as const;
export type FrameType = keyof typeof FRAME_TYPES;

/** WebSocket close codes a mailbox client can receive (4000–4999 are the application's). */
export const CLOSE_CODES = {
  /** Normal close, e.g. answering the client's own close. */
  normal: 1000,
  /** Sent by the platform, not the relay: a frame over 32 MiB, the Durable Objects limit per received message. */
  messageTooBig: 1009,
  /** No ping for IDLE_TIMEOUT_SECONDS. */
  idle: 4408,
  /** Another connection of the same device replaced this one. */
  displaced: 4409,
  /** This device was removed from the account. */
  deviceRemoved: 4410,
  /** The account was deleted. */
  accountDeleted: 4411,
} as const;

/** What each close code tells a client, for the published documents (AsyncAPI, docs/mailbox.md). */
export const CLOSE_CODE_MEANINGS: Record<(typeof CLOSE_CODES)[keyof typeof CLOSE_CODES], string> = {
  1000: "the relay's answer to the client's own close, echoing its code (1000 when it gave none)",
  1009: "a frame over 32 MiB (33,554,432 bytes), closed by the platform before the relay sees it",
  4408: "no ping for IDLE_TIMEOUT_SECONDS",
  4409: "another connection of the same device replaced this one (its unacked messages go to the new one)",
  4410: "this device was removed from the account",
  4411: "the account was deleted",
};

/** The keep-alive pair, byte for byte: the runtime answers it without waking the object (auto-response). */
export const PING_FRAME = '{"type":"ping"}';
export const PONG_FRAME = '{"type":"pong"}';

/** At most this many ids in one ack frame. */
export const MAX_ACK_IDS = 1000;
/** A client frame is at most MAX_SEND_REQUEST_BYTES plus this many characters (the send frame's own fields). */
export const CLIENT_FRAME_OVERHEAD_CHARS = 4096;

export const MessageId = z
  .uuid()
  .meta({ description: "The relay's random id of one queued copy; the de-duplication key." });

// ---- server → client ----

export const MessageFrame = z.object({ type: z.literal(FRAME_TYPES.message), id: MessageId, envelope: Envelope }).meta({
  id: "MessageFrame",
  description:
    "One message for this device. Stored ones come in the order the mailbox accepted them, oldest first: frames carry no sequence number, the order of arrival on a connection is the order. Unacked ones come again on the next connection with the same id.",
});
export const QueueEmptyFrame = z.object({ type: z.literal(FRAME_TYPES.queue_empty) }).meta({
  id: "QueueEmptyFrame",
  description: "Sent once per connection, after the backlog that was queued at connect time.",
});
export const KeysLowFrame = z
  .object({
    type: z.literal(FRAME_TYPES.keys_low),
    count: z.number().int().meta({ description: "One-time EC prekeys left." }),
    pqCount: z.number().int().meta({ description: "One-time KEM prekeys left." }),
    threshold: z
      .number()
      .int()
      .meta({ description: "PREKEY_LOW_THRESHOLD: the frame is sent when either count is below it." }),
  })
  .meta({ id: "KeysLowFrame" });
export const ErrorFrame = z
  .object({ type: z.literal(FRAME_TYPES.error), code: ErrorBody.shape.code, message: z.string() })
  .meta({
    id: "ErrorFrame",
    description: "A client frame was malformed; nothing was done and the connection stays open.",
  });
export const PongFrame = z
  .object({ type: z.literal(FRAME_TYPES.pong) })
  .meta({ id: "PongFrame", description: `Exactly ${PONG_FRAME}.` });

export const SendResultFrame = z
  .object({
    type: z.literal(FRAME_TYPES.send_result),
    id: z.string().meta({ description: "The `id` of the send frame this answers." }),
    status: z.number().int().meta({ description: "The HTTP status PUT /v1/messages/{accountId} would have answered." }),
    body: z.union([SendMessageResponse, MultiRecipientSendResponse, ErrorBody]).meta({
      description:
        "The body that answer would have had: SendMessageResponse (send) or MultiRecipientSendResponse (send_multi) on 200, an Error otherwise (with missingDevices/extraDevices on 409, staleDevices on 410).",
    }),
    retryAfterSeconds: z
      .number()
      .int()
      .optional()
      .meta({ description: "On 429 and 503: the Retry-After the HTTP answer would have carried." }),
    replayed: z.boolean().optional().meta({
      description:
        "True when an earlier send with the same idempotency key answered this one (HTTP: Idempotent-Replayed).",
    }),
  })
  .meta({
    id: "SendResultFrame",
    description:
      "The answer to a send frame. Answers may come in any order when several sends are outstanding; match them by id.",
  });
export type SendResultFrame = z.infer<typeof SendResultFrame>;

export const ServerFrame = z
  .discriminatedUnion("type", [MessageFrame, QueueEmptyFrame, KeysLowFrame, ErrorFrame, PongFrame, SendResultFrame])
  .meta({ id: "ServerFrame" });
export type ServerFrame = z.infer<typeof ServerFrame>;
export type MessageFrame = z.infer<typeof MessageFrame>;
export type KeysLowFrame = z.infer<typeof KeysLowFrame>;

// ---- client → server ----

export const AckFrame = z
  .object({ type: z.literal(FRAME_TYPES.ack), ids: z.array(z.string().max(64)).min(1).max(MAX_ACK_IDS) })
  .meta({
    id: "AckFrame",
    description:
      "Deletes the named messages, but only those delivered on this connection: any other well-formed id deletes nothing. No answer either way. Acks also open the in-flight window.",
  });
export const PingFrame = z
  .object({ type: z.literal(FRAME_TYPES.ping) })
  .meta({ id: "PingFrame", description: `Exactly ${PING_FRAME}; send about every 30 s.` });

export const SendFrame = z
  .object({
    type: z.literal(FRAME_TYPES.send),
    id: z.string().min(1).max(64).meta({ description: "Chosen by the client to match the answer; not interpreted." }),
    destination: z
      .uuid()
      .meta({ description: "The recipient account, as {accountId} in PUT /v1/messages/{accountId}." }),
    idempotencyKey: z.string().regex(IDEMPOTENCY_KEY).optional().meta({
      description:
        "As the Idempotency-Key header; shared with HTTP sends of the same device, so a send whose answer was lost with the connection can be retried over HTTP safely.",
    }),
    message: SendMessageRequest,
  })
  .meta({
    id: "SendFrame",
    description:
      "Sends one message over the device's own authenticated connection, exactly as PUT /v1/messages/{accountId} would (same checks, limits and errors), without a new request or a password check. A frame is at most MAX_SEND_REQUEST_BYTES + 4096 characters.",
  });
export type SendFrame = z.infer<typeof SendFrame>;

export const SendMultiFrame = z
  .object({
    type: z.literal(FRAME_TYPES.send_multi),
    id: z.string().min(1).max(64).meta({ description: "Chosen by the client to match the answer; not interpreted." }),
    idempotencyKey: z
      .string()
      .regex(IDEMPOTENCY_KEY)
      .optional()
      .meta({ description: "As the Idempotency-Key header of PUT /v1/messages/multi, shared with it." }),
    message: MultiRecipientSendRequest,
  })
  .meta({
    id: "SendMultiFrame",
    description:
      "A group send over the device's own connection, exactly as PUT /v1/messages/multi would (same checks, limits and per-recipient results). A frame is at most MAX_SEND_REQUEST_BYTES + 4096 characters.",
  });
export type SendMultiFrame = z.infer<typeof SendMultiFrame>;
export type SendMultiFrameInput = z.input<typeof SendMultiFrame>;
/** A send frame as a client writes it (optional fields may be left out). */
export type SendFrameInput = z.input<typeof SendFrame>;

export const ClientFrame = z
  .discriminatedUnion("type", [AckFrame, PingFrame, SendFrame, SendMultiFrame])
  .meta({ id: "ClientFrame" });
export type ClientFrame = z.infer<typeof ClientFrame>;
export type AckFrame = z.infer<typeof AckFrame>;
