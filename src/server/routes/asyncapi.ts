// The AsyncAPI 3 document of the mailbox WebSocket at /v1/asyncapi.json, generated from the frame schemas in
// protocol/frames.ts with zod 4's z.toJSONSchema, so it can never drift from what the server parses and sends.
import { z } from "zod";
import {
  AckFrame,
  CLOSE_CODE_MEANINGS,
  ErrorFrame,
  KeysLowFrame,
  MessageFrame,
  PING_FRAME,
  PONG_FRAME,
  PingFrame,
  PongFrame,
  QueueEmptyFrame,
  SendFrame,
  SendMultiFrame,
  SendResultFrame,
} from "../../protocol/frames.ts";
import { newRouter } from "../app.ts";

export const asyncapi = newRouter();

const FRAMES = {
  message: { schema: MessageFrame, direction: "send" },
  queue_empty: { schema: QueueEmptyFrame, direction: "send" },
  keys_low: { schema: KeysLowFrame, direction: "send" },
  error: { schema: ErrorFrame, direction: "send" },
  pong: { schema: PongFrame, direction: "send" },
  send_result: { schema: SendResultFrame, direction: "send" },
  ack: { schema: AckFrame, direction: "receive" },
  ping: { schema: PingFrame, direction: "receive" },
  send: { schema: SendFrame, direction: "receive" },
  send_multi: { schema: SendMultiFrame, direction: "receive" },
} as const;

function buildDocument() {
  const schemas: Record<string, unknown> = {};
  const messages: Record<string, unknown> = {};
  const refs: Record<string, { $ref: string }> = {};
  for (const [name, f] of Object.entries(FRAMES)) {
    // draft-07 is the base of AsyncAPI's default schema format. Named schemas (.meta({id})) come out as
    // draft-07 `definitions`; they are hoisted into components.schemas and the references rewritten to match.
    // A frame the relay receives is described as the parser takes it (io "input": fields with a default, such as
    // `online` and `urgent`, are optional, and unknown fields are ignored), exactly as the OpenAPI document
    // describes the same schemas as request bodies; a frame the relay sends, as it comes out (io "output").
    const io = f.direction === "receive" ? "input" : "output";
    const out = z.toJSONSchema(f.schema, { target: "draft-07", io, unrepresentable: "any" }) as Record<string, unknown>;
    const text = JSON.stringify(out).replaceAll('"#/definitions/', '"#/components/schemas/');
    const {
      $schema: _s,
      $ref: _r,
      definitions,
      ...root
    } = JSON.parse(text) as Record<string, unknown> & { definitions?: Record<string, unknown> };
    for (const [id, schema] of Object.entries(definitions ?? {})) {
      // A schema both directions use (AccountId, CiphertextType) must read the same either way.
      if (id in schemas && JSON.stringify(schemas[id]) !== JSON.stringify(schema))
        throw new Error(`AsyncAPI: schema ${id} differs between the frames the relay sends and receives`);
      schemas[id] = schema;
    }
    const meta = f.schema.meta() as { id?: string; description?: string } | undefined;
    const schemaName = meta?.id ?? name;
    if (!(schemaName in schemas)) schemas[schemaName] = root;
    messages[name] = {
      name,
      title: schemaName,
      contentType: "application/json",
      ...(meta?.description ? { summary: meta.description } : {}),
      payload: { $ref: `#/components/schemas/${schemaName}` },
    };
    refs[name] = { $ref: `#/channels/mailbox/messages/${name}` };
  }
  const ops = (direction: "send" | "receive") =>
    Object.entries(FRAMES)
      .filter(([, f]) => f.direction === direction)
      .map(([name]) => refs[name]!);
  return {
    asyncapi: "3.0.0",
    info: {
      title: "cipherpost mailbox WebSocket",
      version: "1.0.0",
      description: [
        "One WebSocket per device at /v1/websocket (HTTP Basic, or ?ticket= from POST /v1/websocket/ticket). Frames are JSON text; ciphertext is standard base64.",
        "Order: on connect the relay sends the device's queued messages oldest first (by the order it accepted them), then queue_empty, then live messages, each on the connection in the order the mailbox accepted it; serverTimestamp is the relay's clock at acceptance (not unique, and not the ordering key). Online-only messages are never stored: they go out the moment they arrive, outside that order and outside the in-flight window, and need no ack.",
        "Acks delete only messages delivered on the same connection; an ack for any other well-formed id deletes nothing and gets no answer. Unacked messages come again on the next connection, oldest first, so delivery is at least once: drop duplicates by id.",
        "At most MAX_UNACKED_PER_CONNECTION stored messages are in flight (sent, not acked); sending pauses until acks arrive.",
        `Keep-alive: send exactly ${PING_FRAME}, answered ${PONG_FRAME} without waking the mailbox; no ping for IDLE_TIMEOUT_SECONDS closes the socket.`,
        "A device may also send messages over its connection (send and send_multi frames, answered by send_result frames matched by id), exactly as PUT /v1/messages/{accountId} and PUT /v1/messages/multi with the connection as its credential.",
        "Answers: ack, none; ping, pong; send and send_multi, send_result; a frame that is not JSON text of a known shape, or over MAX_SEND_REQUEST_BYTES + 4096 characters, an error frame (nothing done, the socket stays open).",
        `Close codes: ${Object.entries(CLOSE_CODE_MEANINGS)
          .map(([code, meaning]) => `${code} ${meaning}`)
          .join("; ")}.`,
      ].join(" "),
    },
    defaultContentType: "application/json",
    servers: {
      local: {
        host: "127.0.0.1:8787",
        protocol: "ws",
        pathname: "/v1/websocket",
        description: "Local development (npm start)",
      },
    },
    channels: {
      mailbox: {
        address: "/v1/websocket",
        title: "A device's mailbox",
        messages: Object.fromEntries(
          Object.keys(FRAMES).map((name) => [name, { $ref: `#/components/messages/${name}` }]),
        ),
        bindings: {
          ws: {
            method: "GET",
            query: {
              type: "object",
              properties: {
                ticket: { type: "string", description: "Single-use ticket instead of an Authorization header." },
              },
            },
          },
        },
      },
    },
    operations: {
      deliver: {
        action: "send",
        channel: { $ref: "#/channels/mailbox" },
        summary: "Frames the relay sends to the device.",
        messages: ops("send"),
      },
      acknowledge: {
        action: "receive",
        channel: { $ref: "#/channels/mailbox" },
        summary: "Frames the device sends to the relay.",
        messages: ops("receive"),
      },
    },
    components: { schemas, messages },
  };
}

let cached: ReturnType<typeof buildDocument> | undefined;

asyncapi.get("/", (c) => {
  cached ??= buildDocument();
  return c.json(cached);
});
