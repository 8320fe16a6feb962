// A copy for a connected, caught-up device is pushed before it is stored and written only if its ack is not back
// within MAX_ACK_WAIT_MS (docs/mailbox.md). Nothing accepted may be lost on the way: the socket is dropped and the
// recipient's object is reset (abortAllDurableObjects) at each step, and every send answered 200 must reach the
// device exactly once after de-duplication by id (the ciphertext, which a client recognises: libsignal refuses
// a message it has already decrypted, the SDK keeps each message id it has seen). The object's clock is a
// ManualClock: MAX_ACK_WAIT_MS runs out only when a test moves it, never because the machine is slow.
import { abortAllDurableObjects, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { MessageFrame } from "../../src/protocol/frames.ts";
import { ManualClock } from "../support/manual-clock.ts";
import {
  accountStub,
  ciphertext,
  connect,
  linkDevice,
  newAccount,
  primary,
  queueDepth,
  send,
  to,
  useClock,
  withObjectVars,
  type Conn,
  type Device,
} from "./ws-helpers.ts";

const MAX_ACK_WAIT_MS = 500; // the default (wrangler.toml)

/** Rows in the recipient's queue table, whatever the in-memory totals say. */
const queuedRows = (accountId: string) =>
  runInDurableObject(
    accountStub(accountId),
    (_o, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM mb_queue").one().n,
  );

/** A device connected and caught up (queue-empty received), on an object whose clock moves only when told. */
async function caughtUp(d: Device): Promise<Conn> {
  const conn = await connect(d.auth);
  await conn.next("queue_empty");
  return conn;
}

/** A send whose answer is awaited later: its status, or "failed" if the call itself failed. */
function pending(from: Device, to_: Device, content: string, key?: string): Promise<number | "failed"> {
  return send(from, to_.accountId, [to(to_, content)], { timestamp: 7, ...(key ? { idempotencyKey: key } : {}) }).then(
    (r) => r.status,
    () => "failed" as const,
  );
}

/** Waits until a promise has settled, or answers undefined while it has not (checked after a settle). */
async function settledValue<T>(p: Promise<T>): Promise<T | undefined> {
  return Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), 50))]);
}

async function setup() {
  const alice = primary(await newAccount());
  const bob = primary(await newAccount());
  const manual = new ManualClock();
  await useClock(bob.accountId, manual);
  // Moved inside the object: the timers it runs settle the object's own promises, which only it may touch.
  const clock = {
    advance: (ms: number) => runInDurableObject(accountStub(bob.accountId), () => manual.advance(ms)),
  };
  return { alice, bob, clock };
}

describe("a copy pushed before it is stored (MAX_ACK_WAIT_MS)", () => {
  it("acked in time: 200, nothing written, delivered once", async () => {
    const { alice, bob } = await setup();
    const b = await caughtUp(bob);
    const content = ciphertext();
    const answer = pending(alice, bob, content);
    const [m] = await b.messages(1);
    expect(m!.envelope.content).toBe(content);
    b.ack([m!.id]);
    expect(await answer).toBe(200);
    expect(await queuedRows(bob.accountId)).toBe(0);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(0);
    expect(await b.quiet()).toBe(true);
  });

  it("no ack within MAX_ACK_WAIT_MS: stored before the 200; a late ack on the same connection deletes it", async () => {
    const { alice, bob, clock } = await setup();
    const b = await caughtUp(bob);
    const answer = pending(alice, bob, ciphertext());
    const [m] = await b.messages(1);
    await b.settle();
    expect(await settledValue(answer)).toBeUndefined(); // the answer waits for the ack
    expect(await queuedRows(bob.accountId)).toBe(0);
    await clock.advance(MAX_ACK_WAIT_MS);
    expect(await answer).toBe(200);
    expect(await queuedRows(bob.accountId)).toBe(1); // the 200 has a durable row behind it
    b.ack([m!.id]);
    await b.settle();
    expect(await queuedRows(bob.accountId)).toBe(0);
    expect(await b.quiet()).toBe(true); // in flight on this connection: not sent again
  });

  it("the socket dropped after the push, before the ack: stored, then sent again on the next connection", async () => {
    const { alice, bob } = await setup();
    const b = await caughtUp(bob);
    const content = ciphertext();
    const answer = pending(alice, bob, content);
    const [first] = await b.messages(1);
    b.close(1000); // received, never acked
    expect(await answer).toBe(200);
    expect(await queuedRows(bob.accountId)).toBe(1);
    const again = await connect(bob.auth);
    const [second] = await again.messages(1);
    expect(second!.id).toBe(first!.id); // the same frame: the client recognises it by id
    again.ack([second!.id]);
    await again.next("queue_empty");
    await again.settle();
    expect(await queuedRows(bob.accountId)).toBe(0);
  });

  it("the socket dropped before the push reached the device: stored, delivered on the next connection", async () => {
    const { alice, bob } = await setup();
    const b = await caughtUp(bob);
    // Closed from the device's side with a send already on its way: whichever comes first, the copy is stored.
    const content = ciphertext();
    const answer = pending(alice, bob, content);
    b.close(1000);
    expect(await answer).toBe(200);
    const again = await connect(bob.auth);
    const got = await again.messages(1);
    expect(got.map((m) => m.envelope.content)).toEqual([content]);
    again.ack(got.map((m) => m.id));
    await again.next("queue_empty");
    await again.settle();
    expect(await queuedRows(bob.accountId)).toBe(0);
  });

  it("acked, then the socket dropped: the ack counts, nothing is stored or sent again", async () => {
    const { alice, bob } = await setup();
    const b = await caughtUp(bob);
    const answer = pending(alice, bob, ciphertext());
    const [m] = await b.messages(1);
    b.ack([m!.id]);
    await b.settle(); // the ack is in (one sent just before a close may be lost with it: the next test)
    b.close(1000);
    expect(await answer).toBe(200);
    expect(await queuedRows(bob.accountId)).toBe(0);
    const again = await connect(bob.auth);
    await again.next("queue_empty");
    expect(await again.quiet()).toBe(true);
  });

  it("the object reset after the push, before the ack: never 200; the retry with the same key is delivered, once after de-duplication", async () => {
    const { alice, bob } = await setup();
    const b = await caughtUp(bob);
    const content = ciphertext();
    const answer = pending(alice, bob, content, "evict-1");
    const [first] = await b.messages(1);
    await abortAllDurableObjects();
    // No row and no ack behind it: the sender must never be told it delivered. (On the platform the call fails
    // with the reset; the local runtime may leave it unanswered, which is as good: either way, no 200.)
    const status = await Promise.race([answer, new Promise((r) => setTimeout(() => r("no answer"), 200))]);
    expect(status).not.toBe(200);
    // The sender retries with the same key (the SDK does); the device reconnects.
    expect(await pending(alice, bob, content, "evict-1")).toBe(200);
    const again = await connect(bob.auth);
    const got = await again.messages(1);
    again.ack(got.map((m) => m.id));
    await again.next("queue_empty");
    const seen = new Set([first!, ...got].map((m: MessageFrame) => m.envelope.content));
    expect([...seen]).toEqual([content]);
  });

  it("the object reset after the copy was stored for want of an ack: the 200 stands, the copy is delivered", async () => {
    const { alice, bob, clock } = await setup();
    const b = await caughtUp(bob);
    const content = ciphertext();
    const answer = pending(alice, bob, content);
    await b.messages(1);
    await clock.advance(MAX_ACK_WAIT_MS);
    expect(await answer).toBe(200);
    await abortAllDurableObjects();
    const again = await connect(bob.auth);
    const got = await again.messages(1);
    expect(got.map((m) => m.envelope.content)).toEqual([content]);
    again.ack(got.map((m) => m.id));
    await again.next("queue_empty");
  });

  it("the object reset after an acked send whose 200 was lost: the retry is delivered again and de-duplicated by id", async () => {
    // The one case the idempotency key no longer covers: every copy acked (nothing written) and the object's
    // memory gone before the retry. The device recognises the copy (docs/mailbox.md: the trade).
    const { alice, bob } = await setup();
    const b = await caughtUp(bob);
    const content = ciphertext();
    const answer = pending(alice, bob, content, "lost-1");
    const [first] = await b.messages(1);
    b.ack([first!.id]);
    expect(await answer).toBe(200);
    await abortAllDurableObjects();
    expect(await pending(alice, bob, content, "lost-1")).toBe(200);
    const again = await connect(bob.auth);
    const got = await again.messages(1);
    again.ack(got.map((m) => m.id));
    await again.next("queue_empty");
    expect(new Set([first!, ...got].map((m) => m.envelope.content))).toEqual(new Set([content]));
  });

  it("a retry while the first attempt still waits for its ack is answered from it and stores nothing twice", async () => {
    const { alice, bob, clock } = await setup();
    const b = await caughtUp(bob);
    const content = ciphertext();
    const first = pending(alice, bob, content, "wait-1");
    const [m] = await b.messages(1);
    const retry = send(alice, bob.accountId, [to(bob, content)], { timestamp: 7, idempotencyKey: "wait-1" });
    await b.settle();
    await clock.advance(MAX_ACK_WAIT_MS); // no ack: stored
    expect(await first).toBe(200);
    const r = await retry;
    expect(r.status).toBe(200);
    expect(r.headers.get("idempotent-replayed")).toBe("true");
    expect(await queuedRows(bob.accountId)).toBe(1);
    b.ack([m!.id]);
    await b.settle();
    expect(await b.quiet()).toBe(true);
    // And after a restart, while the copy waits, the key is still known from the row.
    const again = await send(alice, bob.accountId, [to(bob, content)], { timestamp: 7, idempotencyKey: "wait-1" });
    expect(again.headers.get("idempotent-replayed")).toBe("true");
  });

  it("a send to a connected device and an offline one: the offline copy is stored at once, the other pushed", async () => {
    const bobAccount = await newAccount();
    const bob = primary(bobAccount);
    const tablet = await linkDevice(bobAccount, 5151);
    const alice = primary(await newAccount());
    await useClock(bob.accountId, new ManualClock());
    const b = await caughtUp(bob);
    const contents = [ciphertext(), ciphertext()];
    const answer = send(alice, bob.accountId, [to(bob, contents[0]), to(tablet, contents[1])]).then((r) => r.status);
    const [m] = await b.messages(1);
    expect(await queuedRows(bob.accountId)).toBe(1); // the tablet's copy, before any answer
    b.ack([m!.id]);
    expect(await answer).toBe(200);
    expect(await queuedRows(bob.accountId)).toBe(1);
    const t = await connect(tablet.auth);
    expect((await t.messages(1)).map((x) => x.envelope.content)).toEqual([contents[1]]);
  });

  it("MAX_ACK_WAIT_MS 0 stores every copy first, as before", async () => {
    const { alice, bob } = await setup();
    await withObjectVars(bob.accountId, { MAX_ACK_WAIT_MS: "0" });
    const b = await caughtUp(bob);
    expect(await pending(alice, bob, ciphertext())).toBe(200); // answered without waiting for any ack
    expect(await queuedRows(bob.accountId)).toBe(1);
    b.ack((await b.messages(1)).map((m) => m.id));
    await b.settle();
    expect(await queuedRows(bob.accountId)).toBe(0);
  });

  it("many sends at once to a connected device, the socket dropped halfway: every 200 arrives exactly once", async () => {
    const { alice, bob } = await setup();
    const b = await caughtUp(bob);
    const contents = Array.from({ length: 20 }, () => ciphertext());
    const answers = contents.map((c, i) => pending(alice, bob, c, `many-${i}`));
    const firstBatch = await b.messages(10);
    b.ack(firstBatch.slice(0, 5).map((m) => m.id)); // five acked, five received only, the rest in transit
    b.close(1000);
    const statuses = await Promise.all(answers);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const again = await connect(bob.auth);
    const got: MessageFrame[] = [];
    for (;;) {
      const f = await again.next("the rest");
      if (f.type === "queue_empty") break;
      if (f.type === "message") {
        got.push(f);
        again.ack([f.id]);
      }
    }
    // Exactly once after de-duplication by id: every content arrived, and each under one frame id only (an ack
    // sent just before the close may be lost with it; its copy then comes again, under the same id).
    const idsByContent = new Map<string, Set<string>>();
    for (const m of [...firstBatch, ...got]) {
      const ids = idsByContent.get(m.envelope.content) ?? new Set();
      ids.add(m.id);
      idsByContent.set(m.envelope.content, ids);
    }
    expect(new Set(idsByContent.keys())).toEqual(new Set(contents));
    expect([...idsByContent.values()].every((ids) => ids.size === 1)).toBe(true);
    await again.settle();
    expect(await queuedRows(bob.accountId)).toBe(0);
  });

  it("crossing sends do not wait on each other: a copy for a device whose own send is waiting is stored first", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const [aliceClock, bobClock] = [new ManualClock(), new ManualClock()];
    await useClock(alice.accountId, aliceClock);
    await useClock(bob.accountId, bobClock);
    const [a, b] = [await caughtUp(alice), await caughtUp(bob)];
    // Bob's device sends to Alice over its connection; Alice's device receives it and does not ack yet, so Bob's
    // send waits (the clocks never move here).
    b.ws.send(
      JSON.stringify({
        type: "send",
        id: "crossing-1",
        destination: alice.accountId,
        message: { messages: [to(alice, ciphertext())], timestamp: 9 },
      }),
    );
    const [fromBob] = await a.messages(1);
    // Meanwhile Alice sends to Bob: his device is waiting on its own send, so the copy is stored at once and the
    // send answered without his ack.
    const content = ciphertext();
    expect(await pending(alice, bob, content)).toBe(200);
    expect(await queuedRows(bob.accountId)).toBe(1);
    const [toBob] = await b.messages(1);
    expect(toBob!.envelope.content).toBe(content);
    // Alice acks: Bob's send is answered, with nothing stored on Alice's side.
    a.ack([fromBob!.id]);
    const result = await b.next("send_result");
    expect(result).toMatchObject({ type: "send_result", id: "crossing-1", status: 200 });
    expect(await queuedRows(alice.accountId)).toBe(0);
    b.ack([toBob!.id]);
    await b.settle();
    expect(await queuedRows(bob.accountId)).toBe(0);
  });
});
