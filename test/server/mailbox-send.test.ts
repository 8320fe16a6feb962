// Sending: Signal's device-set answers (409/410), self-sends, message types and sizes, idempotent retry, the
// queue quota, both rate limits, group fan-out with bad recipients, and sending while D1 is down.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { MessageFrame } from "../../src/protocol/frames.ts";
import { call, callJson, expectError } from "./helpers.ts";
import {
  ciphertext,
  connect,
  linkDevice,
  newAccount,
  primary,
  queueDepth,
  send,
  sendOk,
  to,
  withObjectVars,
  type Device,
} from "./ws-helpers.ts";

async function twoDeviceAccount() {
  const acct = await newAccount();
  const d1 = primary(acct);
  const d2 = await linkDevice(acct, d1.registrationId === 16383 ? 1 : d1.registrationId + 1);
  return { acct, d1, d2 };
}

describe("sending: device sets", () => {
  it("409 names missing and extra devices; 410 names stale ones; nothing is stored", async () => {
    const alice = primary(await newAccount());
    const { acct: bob, d1, d2 } = await twoDeviceAccount();
    const missing = await expectError(await send(alice, bob.accountId, [to(d1)]), 409, "MISMATCHED_DEVICES");
    expect(missing).toMatchObject({ missingDevices: [2], extraDevices: [] });
    const ghost: Device = { ...d2, deviceId: 5 };
    const extra = await expectError(
      await send(alice, bob.accountId, [to(d1), to(d2), to(ghost)]),
      409,
      "MISMATCHED_DEVICES",
    );
    expect(extra).toMatchObject({ missingDevices: [], extraDevices: [5] });
    const both = await expectError(await send(alice, bob.accountId, [to(d1), to(ghost)]), 409, "MISMATCHED_DEVICES");
    expect(both).toMatchObject({ missingDevices: [2], extraDevices: [5] });
    const stale = await expectError(
      await send(alice, bob.accountId, [
        to(d1),
        to({ ...d2, registrationId: d2.registrationId === 1 ? 2 : d2.registrationId - 1 }),
      ]),
      410,
      "STALE_DEVICES",
    );
    expect(stale).toMatchObject({ staleDevices: [2] });
    expect(await queueDepth(bob.accountId, 1)).toEqual({ messages: 0, bytes: 0 });
    await expectError(await send(alice, bob.accountId, [to(d1), to(d1), to(d2)]), 400, "BAD_REQUEST");
    await sendOk(alice, [d1, d2]);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
    expect((await queueDepth(bob.accountId, 2)).messages).toBe(1);
  });

  it("sending to your own account covers your other devices and never the sending one", async () => {
    const { acct, d1, d2 } = await twoDeviceAccount();
    const r = await sendOk(d1, [d2]);
    expect(r.needsSync).toBe(false);
    const self = await expectError(await send(d1, acct.accountId, [to(d1), to(d2)]), 409, "MISMATCHED_DEVICES");
    expect(self).toMatchObject({ missingDevices: [], extraDevices: [1] });
    const conn = await connect(d2.auth);
    const [m] = (await conn.messages(1)) as [MessageFrame];
    expect(m.envelope).toMatchObject({ sourceAccountId: acct.accountId, sourceDeviceId: 1, destinationDeviceId: 2 });
    expect(await queueDepth(acct.accountId, 1)).toEqual({ messages: 0, bytes: 0 });
    conn.close();
    // With no other device, a send to yourself covers nothing and stores nothing.
    const solo = primary(await newAccount());
    expect((await send(solo, solo.accountId, [])).status).toBe(200);
    expect(await queueDepth(solo.accountId, 1)).toEqual({ messages: 0, bytes: 0 });
  });

  it("needsSync tells a sender with linked devices to send a transcript", async () => {
    const { d1 } = await twoDeviceAccount();
    const bob = primary(await newAccount());
    expect((await sendOk(d1, [bob])).needsSync).toBe(true);
    const solo = primary(await newAccount());
    expect((await sendOk(solo, [bob])).needsSync).toBe(false);
  });

  it("refuses unknown accounts, bad credentials, type 6 and other types, and non-JSON", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await expectError(await send(alice, crypto.randomUUID(), [to(bob)]), 404, "NOT_FOUND");
    await expectError(
      await send({ ...alice, auth: `${alice.auth.slice(0, -4)}AAAA` }, bob.accountId, [to(bob)]),
      401,
      "UNAUTHORIZED",
    );
    for (const type of [6, 1, 4, 9]) {
      const res = await call("PUT", `/v1/messages/${bob.accountId}`, {
        auth: alice.auth,
        body: { messages: [{ ...to(bob), type }], timestamp: 1 },
      });
      await expectError(res, 400, "BAD_REQUEST");
    }
    for (const type of [2, 3, 7, 8] as const)
      await sendOk(alice, [bob]).then(() => send(alice, bob.accountId, [to(bob, ciphertext(), type)]));
    await expectError(
      await call("PUT", `/v1/messages/${bob.accountId}`, {
        auth: alice.auth,
        raw: "{}",
        headers: { "content-type": "text/plain" },
      }),
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
    await expectError(
      await call("PUT", `/v1/messages/not-a-uuid`, { auth: alice.auth, body: { messages: [], timestamp: 1 } }),
      400,
      "BAD_REQUEST",
    );
    await expectError(
      await call("PUT", `/v1/messages/${bob.accountId}`, {
        auth: alice.auth,
        body: { messages: [{ ...to(bob), content: "no base64!" }], timestamp: 1 },
      }),
      400,
      "BAD_REQUEST",
    );
  });

  it("each ciphertext is at most MAX_MESSAGE_BYTES (96 KiB) and the request at most MAX_SEND_REQUEST_BYTES (8 MiB)", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await sendOk(alice, [bob], { content: ciphertext(98_304) });
    const big = await expectError(
      await send(alice, bob.accountId, [to(bob, ciphertext(98_305))]),
      413,
      "MESSAGE_TOO_LARGE",
    );
    expect(big.limitBytes).toBe(98_304);
    const huge = JSON.stringify({ messages: [to(bob)], timestamp: 1, pad: "x".repeat(8_388_608) });
    await expectError(
      await call("PUT", `/v1/messages/${bob.accountId}`, {
        auth: alice.auth,
        raw: huge,
        headers: { "content-type": "application/json" },
      }),
      413,
      "PAYLOAD_TOO_LARGE",
    );
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
  });
});

describe("sending: storage and idempotency", () => {
  it("a retry with the same Idempotency-Key answers the first result and stores nothing more", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const content = ciphertext();
    const first = await send(alice, bob.accountId, [to(bob, content)], { idempotencyKey: "retry-1", timestamp: 7 });
    expect(first.status).toBe(200);
    const a = (await first.json()) as { serverTimestamp: number };
    await new Promise((r) => setTimeout(r, 5));
    const again = await send(alice, bob.accountId, [to(bob, content)], { idempotencyKey: "retry-1", timestamp: 7 });
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(((await again.json()) as { serverTimestamp: number }).serverTimestamp).toBe(a.serverTimestamp);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
    // The same key for a different request is refused rather than silently answered.
    await expectError(
      await send(alice, bob.accountId, [to(bob)], { idempotencyKey: "retry-1", timestamp: 7 }),
      422,
      "IDEMPOTENCY_KEY_REUSED",
    );
    // Keys are per sender: another device using the same key sends normally.
    const carol = primary(await newAccount());
    expect(
      (await send(carol, bob.accountId, [to(bob, content)], { idempotencyKey: "retry-1", timestamp: 7 })).status,
    ).toBe(200);
    await expectError(
      await send(alice, bob.accountId, [to(bob)], { idempotencyKey: "bad key with spaces" }),
      400,
      "BAD_REQUEST",
    );
    const conn = await connect(bob.auth);
    const msgs = await conn.messages(2);
    expect(msgs.map((m) => m.envelope.sourceAccountId)).toEqual([alice.accountId, carol.accountId]);
    expect((await conn.next("queue_empty")).type).toBe("queue_empty");
    conn.close();
  });

  it("a send that would pass the queue quota is refused with QUEUE_FULL and nothing is dropped", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await withObjectVars(bob.accountId, { QUEUE_MAX_MESSAGES: "3", QUEUE_MAX_BYTES: "1024" });
    for (let i = 0; i < 3; i++) await sendOk(alice, [bob], { content: ciphertext(100) });
    const full = await expectError(await send(alice, bob.accountId, [to(bob, ciphertext(100))]), 507, "QUEUE_FULL");
    expect(full.devices).toEqual([1]);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(3);
    // Acks make room again.
    const conn = await connect(bob.auth);
    const got = await conn.messages(3);
    conn.ack(got.map((m) => m.id));
    await conn.next("queue_empty");
    await conn.settle();
    // Bytes: 1000 fits, one more byte-heavy message does not.
    await sendOk(alice, [bob], { content: ciphertext(1000) });
    await conn.messages(1);
    await expectError(await send(alice, bob.accountId, [to(bob, ciphertext(100))]), 507, "QUEUE_FULL");
    conn.close();
  });
});

describe("sending: rate limits", () => {
  it("limits sends per sending device, counted in the sender's object: 429 with Retry-After", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const carol = primary(await newAccount());
    await withObjectVars(alice.accountId, { SENDS_PER_DEVICE_LIMIT: "2", SENDS_PER_DEVICE_WINDOW_SECONDS: "60" });
    const t0 = Date.now();
    await sendOk(alice, [bob]);
    await sendOk(alice, [carol]);
    const res = await send(alice, bob.accountId, [to(bob)]);
    // The 60 s window counted from the first send, less the time the sends took.
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(60 - Math.ceil((Date.now() - t0) / 1000));
    await expectError(res, 429, "RATE_LIMITED");
    await sendOk(carol, [bob]); // other senders are unaffected
  });

  it("limits sends per (sender, recipient) pair, counted in the recipient's object", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const carol = primary(await newAccount());
    await withObjectVars(bob.accountId, { SENDS_PER_PAIR_LIMIT: "2", SENDS_PER_PAIR_WINDOW_SECONDS: "30" });
    const t0 = Date.now();
    await sendOk(alice, [bob]);
    await sendOk(alice, [bob]);
    const res = await send(alice, bob.accountId, [to(bob)]);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(30 - Math.ceil((Date.now() - t0) / 1000));
    await expectError(res, 429, "RATE_LIMITED");
    await sendOk(alice, [carol]); // the same sender to someone else
    await sendOk(carol, [bob]); // someone else to the same recipient
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(3);
  });
});

describe("sending: groups", () => {
  it("fans out to every recipient and answers per recipient without failing the others", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const carol = primary(await newAccount());
    const { acct: dave, d1: dave1, d2: dave2 } = await twoDeviceAccount();
    const nobody = crypto.randomUUID();
    const conn = await connect(bob.auth);
    await conn.next("queue_empty");
    const body = {
      timestamp: 99,
      recipients: [
        { accountId: bob.accountId, messages: [to(bob)] },
        { accountId: nobody, messages: [to({ ...bob, accountId: nobody })] },
        { accountId: dave.accountId, messages: [to(dave1)] },
        {
          accountId: carol.accountId,
          messages: [to({ ...carol, registrationId: carol.registrationId === 1 ? 2 : carol.registrationId - 1 })],
        },
      ],
    };
    const r = await callJson<{ needsSync: boolean; results: Record<string, unknown>[] }>("PUT", "/v1/messages/multi", {
      auth: alice.auth,
      body,
    });
    expect(r.results).toEqual([
      { accountId: bob.accountId, status: 200, serverTimestamp: expect.any(Number) },
      { accountId: nobody, status: 404, code: "NOT_FOUND", message: expect.any(String) },
      {
        accountId: dave.accountId,
        status: 409,
        code: "MISMATCHED_DEVICES",
        message: expect.any(String),
        missingDevices: [2],
        extraDevices: [],
      },
      {
        accountId: carol.accountId,
        status: 410,
        code: "STALE_DEVICES",
        message: expect.any(String),
        staleDevices: [1],
      },
    ]);
    const [m] = (await conn.messages(1)) as [MessageFrame];
    expect(m.envelope).toMatchObject({ sourceAccountId: alice.accountId, timestamp: 99 });
    expect((await queueDepth(dave.accountId, 1)).messages).toBe(0);
    // Everyone valid: all delivered.
    const ok = await callJson<{ results: { status: number }[] }>("PUT", "/v1/messages/multi", {
      auth: alice.auth,
      body: {
        timestamp: 1,
        recipients: [
          { accountId: carol.accountId, messages: [to(carol)] },
          { accountId: dave.accountId, messages: [to(dave1), to(dave2)] },
        ],
      },
    });
    expect(ok.results.map((x) => x.status)).toEqual([200, 200]);
    expect((await queueDepth(dave.accountId, 2)).messages).toBe(1);
    conn.close();
  });

  it("a group retry with the same Idempotency-Key stores nothing twice; a rate-limited recipient answers 429 alone", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const carol = primary(await newAccount());
    await withObjectVars(carol.accountId, { SENDS_PER_PAIR_LIMIT: "1" });
    const body = {
      timestamp: 5,
      recipients: [
        { accountId: bob.accountId, messages: [to(bob)] },
        { accountId: carol.accountId, messages: [to(carol)] },
      ],
    };
    const put = () =>
      callJson<{ results: { status: number; serverTimestamp?: number; retryAfterSeconds?: number }[] }>(
        "PUT",
        "/v1/messages/multi",
        { auth: alice.auth, body, headers: { "idempotency-key": "group-1" } },
      );
    const first = await put();
    expect(first.results.map((r) => r.status)).toEqual([200, 200]);
    const again = await put();
    expect(again.results).toEqual(first.results);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
    expect((await queueDepth(carol.accountId, 1)).messages).toBe(1);
    // A new group message: carol's pair limit (1 per window) answers 429 for her only.
    const next = await callJson<{ results: { status: number; code?: string; retryAfterSeconds?: number }[] }>(
      "PUT",
      "/v1/messages/multi",
      {
        auth: alice.auth,
        body: { ...body, timestamp: 6 },
      },
    );
    expect(next.results[0]!.status).toBe(200);
    expect(next.results[1]).toMatchObject({ status: 429, code: "RATE_LIMITED" });
    expect(next.results[1]!.retryAfterSeconds).toBeGreaterThan(0);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(2);
  });

  it("refuses more than MAX_GROUP_RECIPIENTS (1000) recipients, and duplicates; a wide fan-out answers each", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const many = Array.from({ length: 1001 }, () => ({ accountId: crypto.randomUUID(), messages: [to(bob)] }));
    await expectError(
      await call("PUT", "/v1/messages/multi", { auth: alice.auth, body: { timestamp: 1, recipients: many } }),
      400,
      "BAD_REQUEST",
    );
    const dup = [
      { accountId: bob.accountId, messages: [to(bob)] },
      { accountId: bob.accountId, messages: [to(bob)] },
    ];
    await expectError(
      await call("PUT", "/v1/messages/multi", { auth: alice.auth, body: { timestamp: 1, recipients: dup } }),
      400,
      "BAD_REQUEST",
    );
    // A wide fan-out (100 recipients, all but one unknown): answered per recipient, the real one delivered. (Each
    // unknown id starts an object; workerd under vitest slows sharply with hundreds of live objects, so the test
    // stays at 100 while the limit itself is checked above.)
    const wide = [{ accountId: bob.accountId, messages: [to(bob)] }, ...many.slice(0, 99)];
    const r = await callJson<{ results: { status: number }[] }>("PUT", "/v1/messages/multi", {
      auth: alice.auth,
      body: { timestamp: 1, recipients: wide },
    });
    expect(r.results).toHaveLength(100);
    expect(r.results[0]!.status).toBe(200);
    expect(r.results.slice(1).every((x) => x.status === 404)).toBe(true);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
  }, 60_000);
});

describe("sending without D1", () => {
  it("messages flow while every D1 shard fails: authentication and device sets live in the account objects", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const conn = await connect(bob.auth);
    await conn.next("queue_empty");
    // Every D1 binding of the Worker and of the objects (they share the env) now throws on any use.
    const e = env as unknown as Record<string, unknown>;
    const shards = JSON.parse(e.TEST_SHARDS as string) as string[];
    const saved = shards.map((s) => e[s]);
    const down = () => {
      throw new Error("D1 is down");
    };
    for (const s of shards) e[s] = { prepare: down, batch: down, exec: down, dump: down, withSession: down };
    try {
      expect((await call("GET", "/v2/keys", { auth: bob.auth })).status).toBe(503); // D1 really is down
      const content = ciphertext();
      await sendOk(alice, [bob], { content });
      const [m] = (await conn.messages(1)) as [MessageFrame];
      expect(m.envelope.content).toBe(content);
      conn.ack([m.id]);
      const r = await callJson<{ results: { status: number }[] }>("PUT", "/v1/messages/multi", {
        auth: alice.auth,
        body: { timestamp: 1, recipients: [{ accountId: bob.accountId, messages: [to(bob)] }] },
      });
      expect(r.results[0]!.status).toBe(200);
      await conn.messages(1);
      // A fresh connection, by ticket, works too.
      const t = await callJson<{ ticket: string }>("POST", "/v1/websocket/ticket", { auth: bob.auth });
      const again = await connect({ ticket: t.ticket });
      await again.messages(1);
      again.close();
    } finally {
      for (const [i, s] of shards.entries()) e[s] = saved[i];
    }
    conn.close();
  });
});
