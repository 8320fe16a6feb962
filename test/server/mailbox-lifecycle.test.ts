// Keeping storage bounded and objects honest: expiry from the alarm, the idle close, an object reset that
// still delivers everything queued, device removal and account deletion. Time moves on a ManualClock.
import { abortAllDurableObjects, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { MessageFrame } from "../../src/protocol/frames.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { call } from "./helpers.ts";
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
} from "./ws-helpers.ts";

const alarmOf = (accountId: string) =>
  runInDurableObject(accountStub(accountId), (_i, state) => state.storage.getAlarm());

describe("mailbox lifecycle", () => {
  it("expires queued messages from the alarm, set to the earliest expiry; a sender may shorten the TTL", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    // An hour ahead of the runtime's time: the alarms this sets lie in the runtime's future, so only the test
    // fires them (runDurableObjectAlarm), after moving the clock.
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock(bob.accountId, clock);
    const keep = ciphertext();
    await sendOk(alice, [bob], { content: keep });
    const keepAlarm = await alarmOf(bob.accountId);
    const short = await sendOk(alice, [bob], { ttlSeconds: 1 });
    const alarm = await alarmOf(bob.accountId);
    expect(alarm).toBe(short.serverTimestamp + 1000); // moved earlier, to the short message's expiry
    expect(keepAlarm).toBeGreaterThan(alarm!);
    clock.advance(1100);
    // Only the alarm deletes expired copies: the depth counts them until it runs.
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(2);
    expect(await runDurableObjectAlarm(accountStub(bob.accountId))).toBe(true);
    expect((await queueDepth(bob.accountId, 1)).messages).toBe(1);
    // Rescheduled for the next expiry, 30 days out by default (and not once more for the copy just expired).
    expect(await alarmOf(bob.accountId)).toBeGreaterThan(clock.now() + 29 * 86_400_000);
    const conn = await connect(bob.auth);
    const [m] = (await conn.messages(1)) as [MessageFrame];
    expect(m.envelope.content).toBe(keep);
    expect((await conn.next("queue_empty")).type).toBe("queue_empty");
    conn.close();
    // A requested TTL never passes MESSAGE_TTL_SECONDS.
    const long = await sendOk(alice, [bob], { ttlSeconds: 400 * 86_400 });
    const again = await connect(bob.auth);
    const frames = await again.messages(2);
    expect(frames[1]!.envelope.expiresAt).toBe(long.serverTimestamp + 2_592_000_000);
    again.close();
  });

  it("closes a socket with no ping for IDLE_TIMEOUT_SECONDS from the alarm; pings keep it open", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await withObjectVars(bob.accountId, { IDLE_TIMEOUT_SECONDS: "3" });
    // The runtime stamps the pings it answers itself with its own time, so the object's clock starts 1.5 s
    // behind the runtime's and catches up just before the ping: on that clock the ping comes 1.5 s after the
    // connection opened.
    const clock = new ManualClock(Date.now() - 1500);
    await useClock(bob.accountId, clock);
    const conn = await connect(bob.auth);
    await conn.next("queue_empty");
    expect(await alarmOf(bob.accountId)).not.toBeNull(); // an idle check is due while a socket is open
    clock.advance(Math.max(1500, Date.now() - clock.now()));
    conn.ping();
    expect(await conn.next("pong")).toEqual({ type: "pong" }); // answered by the runtime (auto-response)
    clock.advance(1500);
    await runDurableObjectAlarm(accountStub(bob.accountId));
    // Still open: the ping 1.5 s ago counts, though the connection is 3 s old. (Acked as it arrives: the send
    // waits for the ack of a copy pushed to a caught-up device, MAX_ACK_WAIT_MS on the object's clock.)
    await Promise.all([sendOk(alice, [bob]), conn.messages(1).then((ms) => conn.ack(ms.map((m) => m.id)))]);
    clock.advance(3100);
    await runDurableObjectAlarm(accountStub(bob.accountId));
    expect((await conn.closed).code).toBe(4408);
  });

  it("an object reset (abortAllDurableObjects) still delivers everything queued, in order", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const sent: string[] = [];
    for (let i = 0; i < 6; i++) {
      const c = ciphertext();
      sent.push(c);
      await sendOk(alice, [bob], { content: c });
    }
    const conn = await connect(bob.auth);
    const firstTwo = await conn.messages(2);
    conn.ack([firstTwo[0]!.id]); // one acked, the rest delivered-but-unacked or still queued
    await conn.settle();
    let closed = false;
    void conn.closed.then(() => {
      closed = true;
    });
    await abortAllDurableObjects();
    await expect.poll(() => closed, { timeout: 5000 }).toBe(true); // the reset took the socket with it
    const again = await connect(bob.auth);
    const rest = await again.messages(5);
    expect(rest.map((m) => m.envelope.content)).toEqual(sent.slice(1));
    expect((await again.next("queue_empty")).type).toBe("queue_empty");
    // Fresh state still works: a live message after the reset.
    await sendOk(alice, [bob]);
    await again.messages(1);
    again.close();
  });

  it("removing a device drops its queue and closes its socket with 4410", async () => {
    const alice = primary(await newAccount());
    const bobAcct = await newAccount();
    const bob1 = primary(bobAcct);
    const bob2 = await linkDevice(bobAcct, bob1.registrationId === 16383 ? 1 : bob1.registrationId + 1);
    await sendOk(alice, [bob1, bob2]);
    await sendOk(alice, [bob1, bob2]);
    const conn2 = await connect(bob2.auth);
    await conn2.messages(2);
    expect((await queueDepth(bobAcct.accountId, 2)).messages).toBe(2);
    expect((await call("DELETE", "/v1/devices/2", { auth: bob1.auth })).status).toBe(204);
    expect((await conn2.closed).code).toBe(4410);
    expect(await queueDepth(bobAcct.accountId, 2)).toEqual({ messages: 0, bytes: 0 });
    expect((await queueDepth(bobAcct.accountId, 1)).messages).toBe(2);
    // Sends now cover device 1 only.
    const r = await send(alice, bobAcct.accountId, [to(bob1), to(bob2)]);
    expect(r.status).toBe(409);
    await sendOk(alice, [bob1]);
  });

  it("deleting the account wipes the mailbox and closes every socket with 4411", async () => {
    const alice = primary(await newAccount());
    const bobAcct = await newAccount();
    const bob1 = primary(bobAcct);
    const bob2 = await linkDevice(bobAcct, bob1.registrationId === 16383 ? 1 : bob1.registrationId + 1);
    await sendOk(alice, [bob1, bob2]);
    const c1 = await connect(bob1.auth);
    const c2 = await connect(bob2.auth);
    await c1.messages(1);
    await c2.messages(1);
    expect((await call("DELETE", "/v1/accounts/me", { auth: bob1.auth })).status).toBe(204);
    expect((await c1.closed).code).toBe(4411);
    expect((await c2.closed).code).toBe(4411);
    expect(await queueDepth(bobAcct.accountId, 1)).toEqual({ messages: 0, bytes: 0 });
    expect(await queueDepth(bobAcct.accountId, 2)).toEqual({ messages: 0, bytes: 0 });
    expect((await send(alice, bobAcct.accountId, [to(bob1)])).status).toBe(404);
    await expect(connect(bob1.auth)).rejects.toThrow(/401/);
  });
});
