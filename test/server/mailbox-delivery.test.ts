// Delivery over real WebSockets: backlog order then live messages, a dropped connection in a 1,000-message
// backlog, acks that name the wrong id, the in-flight window, 4409 displacement, online messages, tickets,
// the keys-low frame.
import { describe, expect, it } from "vitest";
import type { MessageFrame } from "../../src/protocol/frames.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { call, callJson } from "./helpers.ts";
import {
  accountStub,
  ciphertext,
  connect,
  linkDevice,
  newAccount,
  primary,
  queueDepth,
  sendOk,
  to,
  useClock,
  withObjectVars,
} from "./ws-helpers.ts";

describe("mailbox delivery", () => {
  it("delivers the backlog oldest first, then queue_empty, then live messages", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const contents: string[] = [];
    for (let i = 0; i < 5; i++) {
      const c = ciphertext();
      contents.push(c);
      await sendOk(alice, [bob], { content: c });
    }
    const conn = await connect(bob.auth);
    const backlog = await conn.messages(5);
    expect(backlog.map((f) => f.envelope.content)).toEqual(contents);
    expect((await conn.next("queue_empty")).type).toBe("queue_empty");
    const live = ciphertext();
    const sent = await sendOk(alice, [bob], { content: live, timestamp: 1234 });
    const [f] = (await conn.messages(1)) as [MessageFrame];
    expect(f.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(f.envelope).toMatchObject({
      content: live,
      sourceAccountId: alice.accountId,
      sourceDeviceId: 1,
      destinationDeviceId: 1,
      timestamp: 1234,
      serverTimestamp: sent.serverTimestamp,
      type: 2,
      urgent: true,
      online: false,
    });
    expect(f.envelope.expiresAt).toBe(sent.serverTimestamp + 2_592_000_000);
    conn.close();
  });

  it("a connection dropped halfway through a 1,000-message backlog loses nothing; after de-duplication each arrives once", {
    tags: ["slow"],
    timeout: 60_000,
  }, async () => {
    const alice = await newAccount();
    const bob = primary(await newAccount());
    await withObjectVars(bob.accountId, { SENDS_PER_PAIR_LIMIT: "5000" });
    const stub = accountStub(bob.accountId);
    const sent: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const m = to(bob, ciphertext(32));
      sent.push(m.content);
      const r = await stub.deliver({
        sender: { accountId: alice.accountId, deviceId: 1 },
        messages: [m],
        timestamp: i,
        online: false,
        urgent: true,
      });
      expect(r.ok).toBe(true);
    }
    // First connection: take about half, acking only some of what arrived, then drop.
    const first = await connect(bob.auth);
    const seen: MessageFrame[] = [];
    while (seen.length < 500) {
      const batch = await first.messages(50);
      seen.push(...batch);
      first.ack(batch.slice(5).map((f) => f.id)); // 5 of each fifty stay unacked
    }
    first.close();
    await first.closed;
    // Second connection: everything unacked comes again, oldest first, then the rest, then queue_empty.
    const second = await connect(bob.auth);
    for (;;) {
      const f = await second.next("the rest of the backlog");
      if (f.type === "queue_empty") break;
      expect(f.type).toBe("message");
      seen.push(f as MessageFrame);
      if (second.frames.filter((x) => x.type === "message").length % 100 === 0)
        second.ack(second.frames.flatMap((x) => (x.type === "message" ? [x.id] : [])).slice(-100));
    }
    const unique = new Map<string, string>();
    for (const f of seen) unique.set(f.id, f.envelope.content);
    expect(unique.size).toBe(1000);
    expect(new Set(unique.values())).toEqual(new Set(sent));
    // Order on each connection follows acceptance order.
    const order = (fs: MessageFrame[]) => fs.map((f) => sent.indexOf(f.envelope.content));
    const secondOrder = order(second.frames.filter((x): x is MessageFrame => x.type === "message"));
    expect(secondOrder).toEqual([...secondOrder].sort((a, b) => a - b));
    expect(seen.length).toBeGreaterThan(1000); // some really were delivered twice
    // Ack everything left; the queue is then empty.
    second.ack(second.frames.flatMap((x) => (x.type === "message" ? [x.id] : [])));
    await second.settle();
    expect(await queueDepth(bob.accountId, 1)).toEqual({ messages: 0, bytes: 0 });
    second.close();
  });

  it("an ack for an id not delivered on this connection deletes nothing", async () => {
    const a = await newAccount();
    const alice = primary(a);
    const bob = await newAccount();
    const bob1 = primary(bob);
    const bob2 = await linkDevice(bob, bob1.registrationId + 1 > 16000 ? 7 : bob1.registrationId + 1);
    await sendOk(alice, [bob1, bob2]);
    const c1 = await connect(bob1.auth);
    const c2 = await connect(bob2.auth);
    const [m1] = (await c1.messages(1)) as [MessageFrame];
    const [m2] = (await c2.messages(1)) as [MessageFrame];
    // Device 1 acks device 2's message id and a made-up id: neither deletes anything.
    c1.ack([m2.id, crypto.randomUUID()]);
    await c1.settle();
    expect(await queueDepth(bob.accountId, 2)).toEqual({ messages: 1, bytes: 48 });
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
    // A message from an earlier connection acked on a new one before it is sent there deletes nothing either:
    // the new connection sends it again first, and only then does an ack of it count.
    c2.close();
    await c2.closed;
    const c2b = await connect(bob2.auth);
    const [again] = (await c2b.messages(1)) as [MessageFrame];
    expect(again.id).toBe(m2.id);
    c2b.ack([m2.id]);
    c1.ack([m1.id]);
    await Promise.all([c1.settle(), c2b.settle()]);
    expect(await queueDepth(bob.accountId, 2)).toEqual({ messages: 0, bytes: 0 });
    expect(await queueDepth(bob.accountId, 1)).toEqual({ messages: 0, bytes: 0 });
    c1.close();
    c2b.close();
  });

  it("bounds unacked messages in flight and resumes as acks arrive", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await withObjectVars(bob.accountId, { MAX_UNACKED_PER_CONNECTION: "3" });
    for (let i = 0; i < 5; i++) await sendOk(alice, [bob]);
    const conn = await connect(bob.auth);
    const firstThree = await conn.messages(3);
    expect(await conn.quiet()).toBe(true); // window full: nothing more, not even queue_empty
    conn.ack([firstThree[0]!.id]);
    await conn.messages(1);
    expect(await conn.quiet()).toBe(true);
    conn.ack(conn.frames.flatMap((f) => (f.type === "message" ? [f.id] : [])));
    await conn.messages(1);
    expect((await conn.next("queue_empty")).type).toBe("queue_empty");
    // Live messages respect the window too: three in flight, the rest wait for acks.
    conn.ack(conn.frames.flatMap((f) => (f.type === "message" ? [f.id] : [])));
    await conn.settle();
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(0);
    for (let i = 0; i < 5; i++) await sendOk(alice, [bob]);
    const live = await conn.messages(3);
    expect(await conn.quiet()).toBe(true);
    conn.ack([live[1]!.id, live[2]!.id]);
    await conn.messages(2);
    expect(await conn.quiet()).toBe(true);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(3);
    conn.close();
  });

  it("a second connection of the same device closes the first with 4409", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const first = await connect(bob.auth);
    expect((await first.next("queue_empty")).type).toBe("queue_empty");
    const second = await connect(bob.auth);
    const closed = await first.closed;
    expect(closed.code).toBe(4409);
    expect((await second.next("queue_empty")).type).toBe("queue_empty");
    await sendOk(alice, [bob]);
    await second.messages(1);
    expect(first.frames).toHaveLength(1);
    second.close();
  });

  it("online messages reach only devices connected now and are never stored", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await sendOk(alice, [bob], { online: true });
    expect(await queueDepth(bob.accountId, 1)).toEqual({ messages: 0, bytes: 0 });
    const conn = await connect(bob.auth);
    expect((await conn.next("queue_empty")).type).toBe("queue_empty"); // the earlier online message is gone
    const typing = ciphertext(8);
    await sendOk(alice, [bob], { online: true, content: typing });
    const [f] = (await conn.messages(1)) as [MessageFrame];
    expect(f.envelope).toMatchObject({ content: typing, online: true });
    expect(await queueDepth(bob.accountId, 1)).toEqual({ messages: 0, bytes: 0 });
    conn.close();
    await conn.closed;
    const again = await connect(bob.auth);
    expect((await again.next("queue_empty")).type).toBe("queue_empty");
    again.close();
  });

  it("a single-use ticket opens the socket without an Authorization header", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const t = await callJson<{ ticket: string; expiresAt: number }>("POST", "/v1/websocket/ticket", { auth: bob.auth });
    expect(t.expiresAt).toBeGreaterThan(Date.now());
    expect(t.ticket.startsWith(`${bob.accountId}.`)).toBe(true);
    const conn = await connect({ ticket: t.ticket });
    expect((await conn.next("queue_empty")).type).toBe("queue_empty");
    await sendOk(alice, [bob]);
    await conn.messages(1);
    conn.close();
    await expect(connect({ ticket: t.ticket })).rejects.toThrow(/401/);
    await expect(connect({ ticket: `${bob.accountId}.not-a-ticket` })).rejects.toThrow(/401/);
    await expect(connect({ ticket: "garbage" })).rejects.toThrow(/401/);
    await expect(connect(`${alice.auth.slice(0, -4)}AAAA`)).rejects.toThrow(/401/);
    expect((await call("GET", "/v1/websocket", { auth: bob.auth })).status).toBe(400); // not an upgrade
  });

  it("an expired ticket is refused", async () => {
    const bob = primary(await newAccount());
    await withObjectVars(bob.accountId, { WS_TICKET_TTL_SECONDS: "1" });
    const clock = new ManualClock();
    await useClock(bob.accountId, clock);
    const t = await callJson<{ ticket: string }>("POST", "/v1/websocket/ticket", { auth: bob.auth });
    clock.advance(1100);
    await expect(connect({ ticket: t.ticket })).rejects.toThrow(/401/);
  });

  it("tells a connected device its one-time prekeys are low after a claim", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount({ preKeys: 3, pqPreKeys: 2 }));
    const conn = await connect(bob.auth);
    expect((await conn.next("queue_empty")).type).toBe("queue_empty");
    await callJson("GET", `/v2/keys/${bob.accountId}/1`, { auth: alice.auth });
    expect(await conn.next("keys_low")).toEqual({ type: "keys_low", count: 2, pqCount: 1, threshold: 10 });
    // Above the threshold nothing is said.
    await withObjectVars(bob.accountId, { PREKEY_LOW_THRESHOLD: "0" });
    await callJson("GET", `/v2/keys/${bob.accountId}/1`, { auth: alice.auth });
    expect(await conn.quiet()).toBe(true);
    conn.close();
  });

  it("answers malformed client frames with an error frame and keeps the socket", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const conn = await connect(bob.auth);
    await conn.next("queue_empty");
    conn.ws.send("not json");
    expect(await conn.next("error")).toMatchObject({ type: "error", code: "INVALID_JSON" });
    conn.ws.send(JSON.stringify({ type: "ack", ids: [] }));
    expect(await conn.next("error")).toMatchObject({ type: "error", code: "BAD_REQUEST" });
    conn.ws.send(JSON.stringify({ type: "nope" }));
    expect(await conn.next("error")).toMatchObject({ type: "error", code: "BAD_REQUEST" });
    conn.ws.send(JSON.stringify({ type: "ack", ids: Array.from({ length: 1001 }, () => "x") }));
    expect(await conn.next("error")).toMatchObject({ type: "error", code: "BAD_REQUEST" });
    conn.ws.send(new Uint8Array([1, 2, 3]));
    expect(await conn.next("error")).toMatchObject({ type: "error", code: "BAD_REQUEST" });
    conn.ping();
    expect(await conn.next("pong")).toEqual({ type: "pong" });
    conn.ws.send('{ "type": "ping" }'); // not byte-exact: answered by the object itself
    expect(await conn.next("pong")).toEqual({ type: "pong" });
    await sendOk(alice, [bob]);
    await conn.messages(1);
    conn.close();
  });
});
