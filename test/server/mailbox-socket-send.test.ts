// Sending over the device's own connection (the send frame): the same send as PUT /v1/messages/{accountId},
// with the same answers, limits and idempotency, authenticated by the connection itself.
import { describe, expect, it } from "vitest";
import type { SendResultFrame, ServerFrame } from "../../src/protocol/frames.ts";
import type { OutgoingMessage } from "../../src/protocol/messages.ts";
import { call } from "./helpers.ts";
import {
  ciphertext,
  connect,
  linkDevice,
  newAccount,
  primary,
  queueDepth,
  send,
  to,
  withObjectVars,
  type Conn,
  type Device,
} from "./ws-helpers.ts";

let frameIds = 0;

/** Sends a send frame on `conn` and waits for its send_result (other frames are left in place). */
async function sendOver(
  conn: Conn,
  destination: string,
  messages: OutgoingMessage[],
  extra: { idempotencyKey?: string; online?: boolean; timestamp?: number } = {},
) {
  const id = `s${++frameIds}`;
  const { idempotencyKey, ...rest } = extra;
  conn.ws.send(
    JSON.stringify({
      type: "send",
      id,
      destination,
      ...(idempotencyKey ? { idempotencyKey } : {}),
      message: { messages, timestamp: rest.timestamp ?? Date.now(), ...rest },
    }),
  );
  return resultFor(conn, id);
}

async function resultFor(conn: Conn, id: string, timeoutMs = 5000): Promise<SendResultFrame> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const f = conn.frames.find((x): x is SendResultFrame => x.type === "send_result" && x.id === id);
    if (f) return f;
    if (Date.now() > deadline)
      throw new Error(`no send_result for ${id}; frames: ${JSON.stringify(conn.frames).slice(0, 400)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The next frame of a kind, skipping send results (which the sender's own connection also carries). */
async function nextOf(conn: Conn, type: ServerFrame["type"]): Promise<ServerFrame> {
  for (;;) {
    const f = await conn.next(type);
    if (f.type === type) return f;
    if (f.type !== "send_result") throw new Error(`expected ${type}, got ${JSON.stringify(f).slice(0, 200)}`);
  }
}

async function connected(d: Device): Promise<Conn> {
  const conn = await connect(d.auth);
  await conn.next("queue_empty");
  return conn;
}

describe("sending over the connection", () => {
  it("delivers to the recipient stamped with the connection's account and device, and answers 200 by id", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const a = await connected(alice);
    const b = await connected(bob);
    const content = ciphertext(100);
    const r = await sendOver(a, bob.accountId, [to(bob, content)]);
    expect(r).toMatchObject({ type: "send_result", status: 200, body: { needsSync: false } });
    const serverTimestamp = (r.body as { serverTimestamp: number }).serverTimestamp;
    const [m] = await b.messages(1);
    expect(m!.envelope).toMatchObject({
      content,
      sourceAccountId: alice.accountId,
      sourceDeviceId: alice.deviceId,
      serverTimestamp,
    });
    b.ack([m!.id]);
    await b.settle();
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(0);
    a.close();
    b.close();
  });

  it("answers several outstanding sends, each matched by its id", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const a = await connected(alice);
    const results = await Promise.all(Array.from({ length: 10 }, () => sendOver(a, bob.accountId, [to(bob)])));
    expect(new Set(results.map((r) => r.id)).size).toBe(10);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(10);
    a.close();
  });

  it("answers 409 and 410 with the device lists, 404 for an unknown account, and stores nothing", async () => {
    const alice = primary(await newAccount());
    const bobAcct = await newAccount();
    const bob = primary(bobAcct);
    const bob2 = await linkDevice(bobAcct, bob.registrationId === 16383 ? 1 : bob.registrationId + 1);
    const a = await connected(alice);
    const missing = await sendOver(a, bob.accountId, [to(bob)]);
    expect(missing).toMatchObject({
      status: 409,
      body: { code: "MISMATCHED_DEVICES", missingDevices: [bob2.deviceId], extraDevices: [] },
    });
    const stale = await sendOver(a, bob.accountId, [
      to(bob),
      to({ ...bob2, registrationId: bob2.registrationId === 1 ? 2 : bob2.registrationId - 1 }),
    ]);
    expect(stale).toMatchObject({ status: 410, body: { code: "STALE_DEVICES", staleDevices: [bob2.deviceId] } });
    const nobody = await sendOver(a, crypto.randomUUID(), [to(bob)]);
    expect(nobody).toMatchObject({ status: 404, body: { code: "NOT_FOUND" } });
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(0);
    expect((await queueDepth(bob.accountId, bob2.deviceId)).messages).toBe(0);
    a.close();
  });

  it("to your own account, covers your other devices and never the sending one; needsSync stays false", async () => {
    const acct = await newAccount();
    const d1 = primary(acct);
    const d2 = await linkDevice(acct, d1.registrationId === 16383 ? 1 : d1.registrationId + 1);
    const c1 = await connected(d1);
    const withSelf = await sendOver(c1, acct.accountId, [to(d1), to(d2)]);
    expect(withSelf).toMatchObject({ status: 409, body: { code: "MISMATCHED_DEVICES", extraDevices: [d1.deviceId] } });
    const ok = await sendOver(c1, acct.accountId, [to(d2)]);
    expect(ok).toMatchObject({ status: 200, body: { needsSync: false } });
    expect((await queueDepth(acct.accountId, d2.deviceId)).messages).toBe(1);
    expect((await queueDepth(acct.accountId, d1.deviceId)).messages).toBe(0);
    // To someone else, a sender with a linked device is told to send a transcript.
    const bob = primary(await newAccount());
    expect(await sendOver(c1, bob.accountId, [to(bob)])).toMatchObject({ status: 200, body: { needsSync: true } });
    c1.close();
  });

  it("refuses a ciphertext over MAX_MESSAGE_BYTES with 413 MESSAGE_TOO_LARGE and its limit", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const a = await connected(alice);
    const r = await sendOver(a, bob.accountId, [to(bob, ciphertext(98_305))]);
    expect(r).toMatchObject({ status: 413, body: { code: "MESSAGE_TOO_LARGE", limitBytes: 98_304 } });
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(0);
    a.close();
  });

  it("a frame over MAX_SEND_REQUEST_BYTES + 4096 characters is refused with PAYLOAD_TOO_LARGE; the connection stays", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await withObjectVars(alice.accountId, { MAX_SEND_REQUEST_BYTES: "65536" });
    const a = await connected(alice);
    a.ws.send(
      JSON.stringify({
        type: "send",
        id: "big",
        destination: bob.accountId,
        message: { messages: [to(bob, ciphertext(60_000))], timestamp: Date.now() },
      }),
    );
    const err = await nextOf(a, "error");
    expect(err).toMatchObject({ type: "error", code: "PAYLOAD_TOO_LARGE" });
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(0);
    expect(await sendOver(a, bob.accountId, [to(bob)])).toMatchObject({ status: 200 });
    a.close();
  });

  it("a malformed send frame gets an error frame naming the field, and nothing is sent", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const a = await connected(alice);
    a.ws.send(
      JSON.stringify({
        type: "send",
        id: "x",
        destination: "not-a-uuid",
        message: { messages: [to(bob)], timestamp: Date.now() },
      }),
    );
    expect(await nextOf(a, "error")).toMatchObject({
      code: "BAD_REQUEST",
      message: expect.stringContaining("destination"),
    });
    a.ws.send(
      JSON.stringify({
        type: "send",
        id: "y",
        destination: bob.accountId,
        message: { messages: [{ ...to(bob), type: 6 }], timestamp: Date.now() },
      }),
    );
    expect(await nextOf(a, "error")).toMatchObject({
      code: "BAD_REQUEST",
      message: expect.stringContaining("message.messages.0.type"),
    });
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(0);
    a.close();
  });

  it("counts against the sending device's limit, shared with HTTP sends: 429 with retryAfterSeconds", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await withObjectVars(alice.accountId, { SENDS_PER_DEVICE_LIMIT: "2" });
    const a = await connected(alice);
    expect((await sendOver(a, bob.accountId, [to(bob)])).status).toBe(200);
    expect((await send(alice, bob.accountId, [to(bob)])).status).toBe(200);
    const limited = await sendOver(a, bob.accountId, [to(bob)]);
    expect(limited).toMatchObject({ status: 429, body: { code: "RATE_LIMITED" } });
    expect(limited.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(2);
    a.close();
  });

  it("an idempotency key is shared with HTTP: a send whose answer was lost can be retried over HTTP, and is stored once", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const a = await connected(alice);
    const messages = [to(bob)];
    const timestamp = Date.now();
    const first = await sendOver(a, bob.accountId, messages, { idempotencyKey: "k-1", timestamp });
    expect(first.status).toBe(200);
    const again = await sendOver(a, bob.accountId, messages, { idempotencyKey: "k-1", timestamp });
    expect(again).toMatchObject({ status: 200, replayed: true, body: first.body });
    const overHttp = await send(alice, bob.accountId, messages, { idempotencyKey: "k-1", timestamp });
    expect(overHttp.status).toBe(200);
    expect(overHttp.headers.get("idempotent-replayed")).toBe("true");
    expect(await overHttp.json()).toEqual(first.body);
    const reused = await sendOver(a, bob.accountId, [to(bob)], { idempotencyKey: "k-1", timestamp });
    expect(reused).toMatchObject({ status: 422, body: { code: "IDEMPOTENCY_KEY_REUSED" } });
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(1);
    a.close();
  });

  it("a removed device's connection is closed, so it can no longer send over it", async () => {
    const acct = await newAccount();
    const d1 = primary(acct);
    const d2 = await linkDevice(acct, d1.registrationId === 16383 ? 1 : d1.registrationId + 1);
    const bob = primary(await newAccount());
    const c2 = await connected(d2);
    expect((await sendOver(c2, bob.accountId, [to(bob)])).status).toBe(200);
    expect((await call("DELETE", `/v1/devices/${d2.deviceId}`, { auth: d1.auth })).status).toBe(204);
    expect((await c2.closed).code).toBe(4410);
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(1);
  });
});

describe("group sends over the connection", () => {
  async function sendMultiOver(
    conn: Conn,
    recipients: { accountId: string; messages: OutgoingMessage[] }[],
    extra: { idempotencyKey?: string; timestamp?: number } = {},
  ) {
    const id = `m${++frameIds}`;
    const { idempotencyKey, timestamp } = extra;
    conn.ws.send(
      JSON.stringify({
        type: "send_multi",
        id,
        ...(idempotencyKey ? { idempotencyKey } : {}),
        message: { recipients, timestamp: timestamp ?? Date.now() },
      }),
    );
    return resultFor(conn, id);
  }

  it("fans out to every recipient and answers per recipient, a bad one failing alone", async () => {
    const alice = primary(await newAccount());
    const [bob, carol] = [primary(await newAccount()), primary(await newAccount())];
    const a = await connected(alice);
    const ghost = crypto.randomUUID();
    const r = await sendMultiOver(a, [
      { accountId: bob.accountId, messages: [to(bob)] },
      { accountId: ghost, messages: [to(bob)] },
      {
        accountId: carol.accountId,
        messages: [to({ ...carol, registrationId: carol.registrationId === 1 ? 2 : carol.registrationId - 1 })],
      },
    ]);
    expect(r.status).toBe(200);
    const results = (
      r.body as { results: { accountId: string; status: number; code?: string; staleDevices?: number[] }[] }
    ).results;
    expect(results.map((x) => [x.accountId, x.status, x.code])).toEqual([
      [bob.accountId, 200, undefined],
      [ghost, 404, "NOT_FOUND"],
      [carol.accountId, 410, "STALE_DEVICES"],
    ]);
    expect(results[2]!.staleDevices).toEqual([carol.deviceId]);
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(1);
    expect((await queueDepth(carol.accountId, carol.deviceId)).messages).toBe(0);
    a.close();
  });

  it("refuses the whole group as HTTP does: too many recipients, one twice; nothing is sent", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await withObjectVars(alice.accountId, { MAX_GROUP_RECIPIENTS: "1" });
    const a = await connected(alice);
    const carol = primary(await newAccount());
    const tooMany = await sendMultiOver(a, [
      { accountId: bob.accountId, messages: [to(bob)] },
      { accountId: carol.accountId, messages: [to(carol)] },
    ]);
    expect(tooMany).toMatchObject({ status: 400, body: { code: "BAD_REQUEST", limit: 1 } });
    await withObjectVars(alice.accountId, { MAX_GROUP_RECIPIENTS: "1000" });
    const twice = await sendMultiOver(a, [
      { accountId: bob.accountId, messages: [to(bob)] },
      { accountId: bob.accountId.toUpperCase(), messages: [to(bob)] },
    ]);
    expect(twice).toMatchObject({ status: 400, body: { code: "BAD_REQUEST" } });
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(0);
    a.close();
  });

  it("shares idempotency keys with PUT /v1/messages/multi: a retry over HTTP stores nothing twice", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const a = await connected(alice);
    const timestamp = Date.now();
    const recipients = [{ accountId: bob.accountId, messages: [to(bob)] }];
    const first = await sendMultiOver(a, recipients, { idempotencyKey: "g-1", timestamp });
    expect(first.status).toBe(200);
    const retry = await call("PUT", "/v1/messages/multi", {
      auth: alice.auth,
      headers: { "idempotency-key": "g-1" },
      body: { recipients, timestamp },
    });
    expect(retry.status).toBe(200);
    const body = (await retry.json()) as { results: { status: number; serverTimestamp: number }[] };
    expect(body.results[0]!.serverTimestamp).toBe(
      (first.body as { results: { serverTimestamp: number }[] }).results[0]!.serverTimestamp,
    );
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(1);
    a.close();
  });
});
