// Throw-away accounts against the account side (issue 11), each attack made and shown not to work any more: the
// sender's share of a queue, the claim budget per device, the one-time key cap and upload window, group sends
// counting each recipient, and no idempotency answer kept past its window (and no row for one at all).
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { toBase64 } from "../../src/crypto/bytes.ts";
import { generateEcKeyPair, generateKemKeyPair } from "../../src/crypto/keys.ts";
import { xeddsaSign } from "../../src/crypto/xeddsa.ts";
import type { SendResultFrame } from "../../src/protocol/frames.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { call, callJson, expectError, registerAccount } from "./helpers.ts";
import {
  accountStub,
  ciphertext,
  connect,
  linkDevice,
  newAccount,
  primary,
  queueDepth,
  send,
  sendOk,
  to,
  useClock,
  withObjectVars,
  type Conn,
  type Device,
} from "./ws-helpers.ts";

interface Bundle {
  devices: { preKey?: { keyId: number }; pqPreKey: { keyId: number } }[];
}

interface OpenApi {
  paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
}

/** The description of one documented error status of an operation (it names every code of that status). */
async function documented(path: string, method: string, status: number): Promise<string> {
  const doc = await callJson<OpenApi>("GET", "/v1/openapi.json");
  return doc.paths[path]?.[method]?.responses[String(status)]?.description ?? "";
}

describe("a sender's share of a device's queue", () => {
  it("nine senders fill their shares, then a tenth sender's message gets 200 and the fillers get 429", async () => {
    const bob = primary(await newAccount());
    const fillers = await Promise.all(Array.from({ length: 9 }, async () => primary(await newAccount())));
    const tenth = primary(await newAccount());
    // Vars set once everyone is registered: an object keeps them until it is reset, so the test runs briefly.
    await withObjectVars(bob.accountId, {
      QUEUE_MAX_MESSAGES: "100",
      QUEUE_MAX_BYTES: "65536",
      QUEUE_SENDER_MAX_MESSAGES: "10",
      QUEUE_SENDER_MAX_BYTES: "4096",
    });
    // Five fill their share by count (10 small copies), four by bytes (4 of 1,024 bytes).
    for (const [i, f] of fillers.entries()) {
      const [n, size] = i < 5 ? [10, 100] : [4, 1024];
      for (let k = 0; k < n; k++) await sendOk(f, [bob], { content: ciphertext(size) });
      const refused = await send(f, bob.accountId, [to(bob, ciphertext(size))]);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
      const body = await expectError(refused, 429, "SENDER_QUEUE_SHARE_EXCEEDED");
      expect(body).toMatchObject({ devices: [1], limitMessages: 10, limitBytes: 4096 });
    }
    const depth = await queueDepth(bob.accountId, 1);
    expect(depth).toEqual({ messages: 5 * 10 + 4 * 4, bytes: 5 * 10 * 100 + 4 * 4 * 1024 });
    // Someone else still gets through; every filler is still refused, on its own and in a group send.
    await sendOk(tenth, [bob]);
    for (const f of fillers)
      await expectError(await send(f, bob.accountId, [to(bob)]), 429, "SENDER_QUEUE_SHARE_EXCEEDED");
    const group = await callJson<{ results: { status: number; code?: string; retryAfterSeconds?: number }[] }>(
      "PUT",
      "/v1/messages/multi",
      {
        auth: fillers[0]!.auth,
        body: {
          timestamp: 1,
          recipients: [
            { accountId: bob.accountId, messages: [to(bob)] },
            { accountId: tenth.accountId, messages: [to(tenth)] },
          ],
        },
      },
    );
    expect(group.results.map((r) => [r.status, r.code])).toEqual([
      [429, "SENDER_QUEUE_SHARE_EXCEEDED"],
      [200, undefined],
    ]);
    expect(group.results[0]!.retryAfterSeconds).toBeGreaterThan(0);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(depth.messages + 1);
    // Once bob has fetched and acked, the fillers may send again.
    const conn = await connect(bob.auth);
    const got = await conn.messages(depth.messages + 1);
    conn.ack(got.map((m) => m.id));
    await conn.next("queue_empty");
    await conn.settle();
    await sendOk(fillers[0]!, [bob]);
    conn.close();
    // The code is documented where a send can answer it.
    expect(await documented("/v1/messages/{accountId}", "put", 429)).toContain("SENDER_QUEUE_SHARE_EXCEEDED");
  });

  it("the total quota still applies, and your own devices have no share", async () => {
    const bobAccount = await newAccount();
    const bob = primary(bobAccount);
    const bob2 = await linkDevice(bobAccount, bob.registrationId === 16383 ? 1 : bob.registrationId + 1);
    const [alice, carol] = await Promise.all([1, 2].map(async () => primary(await newAccount())));
    await withObjectVars(bob.accountId, { QUEUE_MAX_MESSAGES: "5", QUEUE_SENDER_MAX_MESSAGES: "2" });
    // Self-sends (transcripts to your other devices) count only against the quota: 3 of them, past a share of 2.
    for (let i = 0; i < 3; i++) await sendOk(bob, [bob2]);
    for (let i = 0; i < 2; i++) await sendOk(alice!, [bob, bob2]);
    // Device 2's queue is at its quota of 5; a stranger within its share still gets 507 for it.
    const full = await expectError(await send(carol!, bob.accountId, [to(bob), to(bob2)]), 507, "QUEUE_FULL");
    expect(full.devices).toEqual([2]);
    // A sender past its share hears about its share first.
    const shared = await expectError(
      await send(alice!, bob.accountId, [to(bob), to(bob2)]),
      429,
      "SENDER_QUEUE_SHARE_EXCEEDED",
    );
    expect(shared.devices).toEqual([1, 2]);
    expect((await queueDepth(bob.accountId, 2)).messages).toBe(5);
  });
});

describe("the claim budget of a device, across all requesters", () => {
  it("seven throw-away accounts claiming in a row leave the stock above the budget's floor", async () => {
    const target = await registerAccount({ preKeys: 100, pqPreKeys: 100 });
    const attackers = await Promise.all(Array.from({ length: 7 }, () => registerAccount({ preKeys: 0, pqPreKeys: 0 })));
    const later = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    // An hour ahead of the runtime, so the window is moved only by the test.
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock(target.accountId, clock);
    const budget = 30; // PREKEY_CLAIMS_PER_DEVICE_LIMIT's default, per PREKEY_CLAIMS_PER_DEVICE_WINDOW_SECONDS (3600)
    const bundles: Bundle[] = [];
    for (const a of attackers) {
      // Each takes all its pair limit allows (6), then is refused.
      for (let i = 0; i < 6; i++)
        bundles.push(await callJson<Bundle>("GET", `/v2/keys/${target.accountId}/*`, { auth: a.auth }));
      await expectError(await call("GET", `/v2/keys/${target.accountId}/1`, { auth: a.auth }), 429, "RATE_LIMITED");
    }
    const lastResort = target.keys.pqLastResortPreKey.keyId;
    const oneTime = bundles.filter((b) => b.devices[0]!.preKey !== undefined);
    expect(oneTime).toHaveLength(budget);
    expect(oneTime.every((b) => b.devices[0]!.pqPreKey.keyId !== lastResort)).toBe(true);
    // Past the budget a session still starts: signed prekey and last-resort KEM key, no one-time key.
    for (const b of bundles.slice(budget)) {
      expect(b.devices[0]!.preKey).toBeUndefined();
      expect(b.devices[0]!.pqPreKey.keyId).toBe(lastResort);
    }
    expect(await callJson("GET", "/v2/keys", { auth: target.auth })).toEqual({
      count: 100 - budget,
      pqCount: 100 - budget,
    });
    // The window moves on: one-time keys are handed out again.
    clock.advance(3_600_000);
    const next = await callJson<Bundle>("GET", `/v2/keys/${target.accountId}/1`, { auth: later.auth });
    expect(next.devices[0]!.preKey?.keyId).toBe(target.keys.preKeys[budget]!.keyId);
  }, 60_000);
});

/** `n` one-time keys of each kind under ids from `from`, reusing one key pair (the attack needs no fresh keys). */
function reusedKeys(identity: { privateKey: Uint8Array }, from: number, n: number) {
  const ec = toBase64(generateEcKeyPair().publicKey);
  const kem = generateKemKeyPair().publicKey;
  const signature = toBase64(xeddsaSign(identity.privateKey, kem));
  return {
    preKeys: Array.from({ length: n }, (_, i) => ({ keyId: from + i, publicKey: ec })),
    pqPreKeys: Array.from({ length: n }, (_, i) => ({ keyId: from + i, publicKey: toBase64(kem), signature })),
  };
}

describe("one-time key uploads", () => {
  it("thirty uploads of 100 keys stop at the cap (409 TOO_MANY_KEYS), then at the window (429 RATE_LIMITED)", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await call("PUT", "/v2/keys", { auth: a.auth, body: reusedKeys(a.identity, 1 + i * 100, 100) });
      statuses.push(res.status);
      if (i === 10) {
        const body = await expectError(res, 409, "TOO_MANY_KEYS");
        expect(body).toMatchObject({ limit: 1000, count: 1100, pqCount: 1100 });
      }
      if (i === 29) {
        await expectError(res, 429, "RATE_LIMITED");
        expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(3000);
      }
    }
    // MAX_ONE_TIME_PREKEYS_PER_DEVICE (1000) reached by ten uploads; KEY_UPLOADS_PER_DEVICE_LIMIT (20) per hour.
    expect(statuses).toEqual([...Array(10).fill(204), ...Array(10).fill(409), ...Array(10).fill(429)]);
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 1000, pqCount: 1000 });
    expect(await documented("/v2/keys", "put", 409)).toContain("TOO_MANY_KEYS");
    expect(await documented("/v2/keys", "put", 429)).toContain("RATE_LIMITED");
  }, 60_000);

  it("a refused upload stores nothing, a re-sent id is not counted twice, and claims make room", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    await withObjectVars(a.accountId, { MAX_ONE_TIME_PREKEYS_PER_DEVICE: "100" });
    const put = (body: object) => call("PUT", "/v2/keys", { auth: a.auth, body });
    const counts = () => callJson("GET", "/v2/keys", { auth: a.auth });
    const first = reusedKeys(a.identity, 1, 60);
    expect((await put(first)).status).toBe(204);
    // Over the cap: neither the one-time keys nor the signed prekey that came with them are stored.
    const spk = generateEcKeyPair().publicKey;
    const signature = toBase64(xeddsaSign(a.identity.privateKey, spk));
    const over = await put({
      ...reusedKeys(a.identity, 61, 41),
      signedPreKey: { keyId: 9, publicKey: toBase64(spk), signature },
    });
    expect(await expectError(over, 409, "TOO_MANY_KEYS")).toMatchObject({ limit: 100, count: 101, pqCount: 101 });
    expect(await counts()).toEqual({ count: 60, pqCount: 60 });
    // The same 60 re-sent with 40 new make exactly 100: accepted; one more is not.
    const more = reusedKeys(a.identity, 61, 40);
    expect(
      (await put({ preKeys: [...first.preKeys, ...more.preKeys], pqPreKeys: [...first.pqPreKeys, ...more.pqPreKeys] }))
        .status,
    ).toBe(204);
    expect(await counts()).toEqual({ count: 100, pqCount: 100 });
    await expectError(await put(reusedKeys(a.identity, 500, 1)), 409, "TOO_MANY_KEYS");
    // A claim makes room for one more of each kind; the signed prekey is still the registered one.
    const b = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    const bundle = await callJson<{ devices: { signedPreKey: { keyId: number } }[] }>(
      "GET",
      `/v2/keys/${a.accountId}/1`,
      { auth: b.auth },
    );
    expect(bundle.devices[0]!.signedPreKey.keyId).toBe(a.keys.signedPreKey.keyId);
    expect(await counts()).toEqual({ count: 99, pqCount: 99 });
    expect((await put(reusedKeys(a.identity, 500, 1))).status).toBe(204);
    expect(await counts()).toEqual({ count: 100, pqCount: 100 });
  });

  it("the upload window is per device and counts only well-formed uploads; it moves on with the object's clock", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock(a.accountId, clock);
    await withObjectVars(a.accountId, {
      KEY_UPLOADS_PER_DEVICE_LIMIT: "2",
      KEY_UPLOADS_PER_DEVICE_WINDOW_SECONDS: "60",
    });
    // Malformed bodies are refused before the window is counted.
    for (let i = 0; i < 3; i++)
      await expectError(await call("PUT", "/v2/keys", { auth: a.auth, body: { preKeys: "x" } }), 400, "BAD_REQUEST");
    for (let i = 0; i < 2; i++)
      expect((await call("PUT", "/v2/keys", { auth: a.auth, body: reusedKeys(a.identity, 1 + i, 1) })).status).toBe(
        204,
      );
    const res = await call("PUT", "/v2/keys", { auth: a.auth, body: reusedKeys(a.identity, 10, 1) });
    expect(Number(res.headers.get("retry-after"))).toBe(60);
    await expectError(res, 429, "RATE_LIMITED");
    // A wrong password is still 401, not a count against the device.
    const { basic } = await import("./helpers.ts");
    await expectError(
      await call("PUT", "/v2/keys", {
        auth: basic(a.accountId, 1, "A".repeat(24)),
        body: reusedKeys(a.identity, 20, 1),
      }),
      401,
      "UNAUTHORIZED",
    );
    clock.advance(60_000);
    expect((await call("PUT", "/v2/keys", { auth: a.auth, body: reusedKeys(a.identity, 30, 1) })).status).toBe(204);
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 3, pqCount: 3 });
  });
});

/** A group body to `recipients` unknown accounts plus `real` (first). */
function groupBody(real: Device, unknown: number) {
  return {
    timestamp: 1,
    recipients: [
      { accountId: real.accountId, messages: [to(real)] },
      ...Array.from({ length: unknown }, () => ({ accountId: crypto.randomUUID(), messages: [to(real)] })),
    ],
  };
}

/** Sends a send_multi frame and waits for its send_result, skipping what else the connection carries. */
async function sendMultiOver(conn: Conn, id: string, message: object): Promise<SendResultFrame> {
  conn.ws.send(JSON.stringify({ type: "send_multi", id, message }));
  for (;;) {
    const f = await conn.next(`the send_result of ${id}`);
    if (f.type === "send_result" && f.id === id) return f;
  }
}

describe("group sends count each recipient against the sending device's limit", () => {
  it("a 1,000-recipient group send counts 1,000: after one other send it no longer fits a limit of 1,000", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await withObjectVars(alice.accountId, { SENDS_PER_DEVICE_LIMIT: "1000", SENDS_PER_DEVICE_WINDOW_SECONDS: "60" });
    await sendOk(alice, [bob]);
    // Counted once, as before, it would have fitted (2 of 1,000) and gone to 1,000 mailboxes.
    const res = await call("PUT", "/v1/messages/multi", { auth: alice.auth, body: groupBody(bob, 999) });
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    await expectError(res, 429, "RATE_LIMITED");
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1); // refused whole: sent to no one
    // The same over the connection: a send_multi frame.
    const conn = await connect(alice.auth);
    const result = await sendMultiOver(conn, "g1", groupBody(bob, 999));
    expect(result).toMatchObject({ id: "g1", status: 429, body: { code: "RATE_LIMITED" } });
    expect(result.retryAfterSeconds).toBeGreaterThan(0);
    conn.close();
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
    // A group larger than the whole limit could never fit: refused as too many recipients, not 429 for ever.
    // (Over the connection, where the checks run in the object whose vars the test changes.)
    await withObjectVars(alice.accountId, { SENDS_PER_DEVICE_LIMIT: "999" });
    const again = await connect(alice.auth);
    const tooMany = await sendMultiOver(again, "g2", groupBody(bob, 999));
    expect(tooMany).toMatchObject({ id: "g2", status: 400, body: { code: "BAD_REQUEST", limit: 999 } });
    again.close();
  });

  it("each recipient counts exactly once, shared with single sends", async () => {
    const alice = primary(await newAccount());
    const [bob, carol, dave] = await Promise.all([1, 2, 3].map(async () => primary(await newAccount())));
    await withObjectVars(alice.accountId, { SENDS_PER_DEVICE_LIMIT: "5", SENDS_PER_DEVICE_WINDOW_SECONDS: "60" });
    const recipients = [bob!, carol!, dave!].map((d) => ({ accountId: d.accountId, messages: [to(d)] }));
    const ok = await callJson<{ results: { status: number }[] }>("PUT", "/v1/messages/multi", {
      auth: alice.auth,
      body: { timestamp: 1, recipients },
    });
    expect(ok.results.map((r) => r.status)).toEqual([200, 200, 200]);
    // 3 of 5 used: another group of 3 does not fit, two single sends do, a third does not.
    await expectError(
      await call("PUT", "/v1/messages/multi", { auth: alice.auth, body: { timestamp: 2, recipients } }),
      429,
      "RATE_LIMITED",
    );
    await sendOk(alice, [bob!]);
    await sendOk(alice, [carol!]);
    await expectError(await send(alice, dave!.accountId, [to(dave!)]), 429, "RATE_LIMITED");
    expect((await queueDepth(dave!.accountId, 1)).messages).toBe(1);
  });
});

describe("idempotency records", () => {
  it("no idempotency row is stored, so none outlives its window (IDEMPOTENCY_TTL_SECONDS, 600 s): answers live in memory and in queued copies", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock(bob.accountId, clock);
    const windowMs = 600_000;
    // Three sends with keys, at 0 s, 100 s and 550 s; each copy is acked as it arrives (pushed to the
    // caught-up device before being stored, so nothing is written for it).
    const conn = await connect(bob.auth);
    await conn.next("queue_empty");
    const start = clock.now();
    const firstSend = { content: ciphertext(), timestamp: 42 };
    for (const [i, at] of [0, 100_000, 550_000].entries()) {
      clock.advance(start + at - clock.now());
      await Promise.all([
        sendOk(alice, [bob], { ...(i === 0 ? firstSend : {}), idempotencyKey: `k${i}` }),
        conn.messages(1).then((ms) => conn.ack(ms.map((m) => m.id))),
      ]);
      await conn.settle();
    }
    conn.close();
    const tables = await runInDurableObject(accountStub(bob.accountId), (_o, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'mb_%'")
        .toArray()
        .map((t) => t.name),
    );
    expect(tables).not.toContain("mb_idempotency");
    // A retry late in its window (550 s of 600) is still answered, and stores nothing.
    const late = await send(alice, bob.accountId, [to(bob, firstSend.content)], {
      timestamp: 42,
      idempotencyKey: "k0",
    });
    expect(late.status).toBe(200);
    expect(late.headers.get("idempotent-replayed")).toBe("true");
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(0);
    // Past its window the key is forgotten: the same request is a new send.
    clock.advance(start + windowMs - clock.now());
    const after = await send(alice, bob.accountId, [to(bob, firstSend.content)], {
      timestamp: 42,
      idempotencyKey: "k0",
    });
    expect(after.status).toBe(200);
    expect(after.headers.get("idempotent-replayed")).toBeNull();
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
  });
});
