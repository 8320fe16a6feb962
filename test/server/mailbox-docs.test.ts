// The published descriptions of the mailbox: the AsyncAPI 3 document generated from the frame schemas, the
// send routes in the OpenAPI document, and the mailbox settings' defaults.
import { describe, expect, it } from "vitest";
import { FRAME_TYPES, ServerFrame } from "../../src/protocol/frames.ts";
import { ConfigSchema } from "../../src/server/config.ts";
import { callJson } from "./helpers.ts";
import { connect, newAccount, primary, sendOk } from "./ws-helpers.ts";

interface AsyncApiDoc {
  asyncapi: string;
  channels: { mailbox: { address: string; messages: Record<string, unknown> } };
  operations: Record<string, { action: string; messages: { $ref: string }[] }>;
  components: {
    schemas: Record<string, { properties?: Record<string, { const?: string }>; required?: string[] }>;
    messages: Record<string, { payload: { $ref: string } }>;
  };
}

describe("mailbox documents", () => {
  it("publishes an AsyncAPI 3 document with every frame type, generated from the zod schemas", async () => {
    const doc = await callJson<AsyncApiDoc>("GET", "/v1/asyncapi.json");
    expect(doc.asyncapi).toBe("3.0.0");
    expect(doc.channels.mailbox.address).toBe("/v1/websocket");
    expect(Object.keys(doc.channels.mailbox.messages).sort()).toEqual(Object.keys(FRAME_TYPES).sort());
    const send = doc.operations.deliver!.messages.map((m) => m.$ref.split("/").pop());
    const receive = doc.operations.acknowledge!.messages.map((m) => m.$ref.split("/").pop());
    expect(doc.operations.deliver!.action).toBe("send");
    expect(doc.operations.acknowledge!.action).toBe("receive");
    expect(receive.sort()).toEqual(["ack", "ping", "send", "send_multi"]);
    expect(send.sort()).toEqual(["error", "keys_low", "message", "pong", "queue_empty", "send_result"]);
    for (const [name, m] of Object.entries(doc.components.messages)) {
      const schema = doc.components.schemas[m.payload.$ref.split("/").pop()!]!;
      expect(schema.properties?.type?.const, name).toBe(name);
      expect(schema.required).toContain("type");
    }
    // Every reference resolves inside the document.
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs) {
      const target = ref.split("/").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], doc);
      expect(target, ref).toBeDefined();
    }
    const msg = doc.components.schemas.MessageFrame!;
    expect(msg.required).toEqual(expect.arrayContaining(["id", "envelope"]));
  });

  it("what the mailbox sends parses with the published frame schema", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await sendOk(alice, [bob]);
    const conn = await connect(bob.auth);
    await conn.messages(1);
    await conn.next("queue_empty");
    conn.ping();
    await conn.next("pong");
    for (const f of conn.frames) expect(ServerFrame.safeParse(f).success, JSON.stringify(f).slice(0, 120)).toBe(true);
    conn.close();
  });

  it("lists the send and WebSocket routes in the OpenAPI document", async () => {
    const doc = await callJson<{ paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }>(
      "GET",
      "/v1/openapi.json",
    );
    expect(Object.keys(doc.paths["/v1/messages/{accountId}"]!.put!.responses)).toEqual(
      expect.arrayContaining(["200", "409", "410", "413", "422", "429", "507"]),
    );
    expect(doc.paths["/v1/messages/multi"]?.put).toBeDefined();
    expect(doc.paths["/v1/websocket"]?.get).toBeDefined();
    expect(doc.paths["/v1/websocket/ticket"]?.post).toBeDefined();
  });

  it("every mailbox limit has its documented default", () => {
    const d = ConfigSchema.parse({});
    expect({
      MAX_MESSAGE_BYTES: d.MAX_MESSAGE_BYTES,
      MAX_SEND_REQUEST_BYTES: d.MAX_SEND_REQUEST_BYTES,
      MAX_GROUP_RECIPIENTS: d.MAX_GROUP_RECIPIENTS,
      MESSAGE_TTL_SECONDS: d.MESSAGE_TTL_SECONDS,
      QUEUE_MAX_MESSAGES: d.QUEUE_MAX_MESSAGES,
      QUEUE_MAX_BYTES: d.QUEUE_MAX_BYTES,
      QUEUE_SENDER_MAX_MESSAGES: d.QUEUE_SENDER_MAX_MESSAGES,
      QUEUE_SENDER_MAX_BYTES: d.QUEUE_SENDER_MAX_BYTES,
      MAX_UNACKED_PER_CONNECTION: d.MAX_UNACKED_PER_CONNECTION,
      IDLE_TIMEOUT_SECONDS: d.IDLE_TIMEOUT_SECONDS,
      SENDS_PER_DEVICE_LIMIT: d.SENDS_PER_DEVICE_LIMIT,
      SENDS_PER_DEVICE_WINDOW_SECONDS: d.SENDS_PER_DEVICE_WINDOW_SECONDS,
      SENDS_PER_PAIR_LIMIT: d.SENDS_PER_PAIR_LIMIT,
      SENDS_PER_PAIR_WINDOW_SECONDS: d.SENDS_PER_PAIR_WINDOW_SECONDS,
      PREKEY_LOW_THRESHOLD: d.PREKEY_LOW_THRESHOLD,
      WS_TICKET_TTL_SECONDS: d.WS_TICKET_TTL_SECONDS,
      IDEMPOTENCY_TTL_SECONDS: d.IDEMPOTENCY_TTL_SECONDS,
    }).toEqual({
      MAX_MESSAGE_BYTES: 98_304,
      MAX_SEND_REQUEST_BYTES: 8_388_608,
      MAX_GROUP_RECIPIENTS: 1000,
      MESSAGE_TTL_SECONDS: 2_592_000,
      QUEUE_MAX_MESSAGES: 10_000,
      QUEUE_MAX_BYTES: 104_857_600,
      QUEUE_SENDER_MAX_MESSAGES: 1000,
      QUEUE_SENDER_MAX_BYTES: 10_485_760,
      MAX_UNACKED_PER_CONNECTION: 100,
      IDLE_TIMEOUT_SECONDS: 90,
      SENDS_PER_DEVICE_LIMIT: 1200,
      SENDS_PER_DEVICE_WINDOW_SECONDS: 60,
      SENDS_PER_PAIR_LIMIT: 120,
      SENDS_PER_PAIR_WINDOW_SECONDS: 60,
      PREKEY_LOW_THRESHOLD: 10,
      WS_TICKET_TTL_SECONDS: 30,
      IDEMPOTENCY_TTL_SECONDS: 600,
    });
  });
});
