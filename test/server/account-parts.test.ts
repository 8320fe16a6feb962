// The account object's parts on their own, on a real SQLite (an object nobody registered, so its storage is
// empty) and a ManualClock: queue totals for the quota, acks and expiry; the outbox's retry schedule; the
// alarm's choice of the earliest due time; link tokens and authentication in the device registry.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Clock } from "../../src/protocol/clock.ts";
import { AlarmSchedule } from "../../src/server/account/alarm.ts";
import { configOf, type PartContext } from "../../src/server/account/context.ts";
import { DeviceRegistry } from "../../src/server/account/device-registry.ts";
import { DirectoryOutbox, type OutboxCallbacks } from "../../src/server/account/outbox.ts";
import { RateWindow } from "../../src/server/account/rate-window.ts";
import type { Config } from "../../src/server/config.ts";
import { MessageQueues, QUEUE_SCHEMA_VERSION } from "../../src/server/mailbox/queues.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { deviceKeys, newIdentity } from "./helpers.ts";

const DAY = 86_400_000;

/** Runs `fn` inside a fresh, empty account object, with the context its parts are built with. */
function inEmptyObject(
  clock: Clock,
  fn: (ctx: PartContext, state: DurableObjectState) => Promise<void>,
  objectEnv: () => Cloudflare.Env = () => env,
): Promise<void> {
  return runInDurableObject(env.ACCOUNT.getByName(crypto.randomUUID()), (_o, state) =>
    fn(
      {
        sql: state.storage.sql,
        storage: state.storage,
        clock,
        env: objectEnv,
        config: () => configOf(objectEnv()),
        waitUntil: (p) => state.waitUntil(p),
      },
      state,
    ),
  );
}

const callbacks = (over: Partial<OutboxCallbacks> = {}): OutboxCallbacks => ({
  hasTables: () => true,
  purgeLocal: () => {},
  drained: async () => {},
  ...over,
});

describe("MessageQueues", () => {
  it("keeps queue totals for the quota, recounts after an ack, and expires copies only when asked", async () => {
    const t = Date.now();
    await inEmptyObject(new ManualClock(t), async (ctx) => {
      const q = new MessageQueues(ctx.sql);
      q.createTables();
      expect(q.totals(1)).toEqual({ messages: 0, bytes: 0 });
      const copies = [
        { device: 1, id: "a", bytes: 10, expiresAt: t + 1000 },
        { device: 1, id: "b", bytes: 20, expiresAt: t + 5000 },
        { device: 1, id: "c", bytes: 30, expiresAt: t + 9000 },
        { device: 2, id: "x", bytes: 5, expiresAt: t + 2000 },
      ];
      const seqs = new Map<string, number>();
      ctx.storage.transactionSync(() => {
        for (const c of copies)
          seqs.set(c.id, q.insert(c.device, c.id, `{"id":"${c.id}"}`, c.bytes, c.expiresAt, "alice"));
      });
      for (const c of copies) q.counted(c.device, c.bytes, "alice");
      expect(q.totals(1)).toEqual({ messages: 3, bytes: 60 });
      // The totals in memory agree with a count from the rows (what a restarted object starts from).
      expect(new MessageQueues(ctx.sql).totals(1)).toEqual({ messages: 3, bytes: 60 });
      expect(q.totals(2)).toEqual({ messages: 1, bytes: 5 });
      expect(q.nextExpiry()).toBe(t + 1000);
      // A connection that sent up to "b" may delete "a" but not "c", which it never sent.
      expect(q.ack(1, seqs.get("b")!, ["a", "c"])).toBe(1);
      expect(q.totals(1)).toEqual({ messages: 2, bytes: 50 });
      expect(q.nextExpiry()).toBe(t + 2000);
      expect(q.nextUnsent(1, 0, 10, t).map((r) => r.seq)).toEqual([seqs.get("b"), seqs.get("c")]);
      // Expired copies stay counted (and unsent) until the sweep deletes them.
      expect(q.nextUnsent(1, 0, 10, t + 5000).map((r) => r.seq)).toEqual([seqs.get("c")]);
      expect(q.totals(1).messages).toBe(2);
      expect(q.expire(t + 5000)).toBe(2);
      expect(q.totals(1)).toEqual({ messages: 1, bytes: 30 });
      expect(q.totals(2)).toEqual({ messages: 0, bytes: 0 });
      expect(q.nextExpiry()).toBe(t + 9000);
    });
  });

  it("numbers copies above every earlier reservation, even after the queue empties and the object restarts", async () => {
    const t = Date.now();
    await inEmptyObject(new ManualClock(t), async (ctx) => {
      const q = new MessageQueues(ctx.sql);
      q.createTables();
      const first = ctx.storage.transactionSync(() => [1, 2].map((i) => q.insert(1, `m${i}`, "{}", 1, t + DAY, "a")));
      expect(first).toEqual([1, 2]);
      expect(q.ack(1, 2, ["m1", "m2"])).toBe(2);
      const restarted = new MessageQueues(ctx.sql);
      expect(ctx.storage.transactionSync(() => restarted.insert(1, "m3", "{}", 1, t + DAY, "a"))).toBe(1001);
    });
  });

  it("remembers an idempotent answer in memory until its window ends, and from a queued copy after a restart", async () => {
    const t = Date.now();
    const ttl = 600_000;
    await inEmptyObject(new ManualClock(t), async (ctx) => {
      const q = new MessageQueues(ctx.sql);
      q.createTables();
      expect(q.nextRecordExpiry()).toBeNull(); // nothing stored on its own: the alarm never sweeps records
      q.remember("alice.1:k", { digest: "d1", serverTimestamp: t }, t + 1000, 100, t);
      q.remember("alice.1:l", { digest: "d2", serverTimestamp: t }, t + 5000, 100, t);
      expect(q.recall("alice.1:k", t, ttl)).toMatchObject({ digest: "d1", serverTimestamp: t });
      expect(q.recall("alice.1:k", t + 1000, ttl)).toBeUndefined();
      q.sweepRecords(t + 5000);
      expect(q.rememberedCount).toBe(0);
      // A send that queued copies: its key rides in each row, so a restarted object still answers a retry
      // while any copy waits (and for no longer than the window).
      ctx.storage.transactionSync(() => {
        for (const d of [1, 2])
          q.insert(d, `m${d}`, "{}", 1, t + DAY, "alice", {
            key: "alice.1:q",
            record: { digest: "d3", serverTimestamp: t },
          });
      });
      const restarted = new MessageQueues(ctx.sql);
      expect(restarted.recall("alice.1:q", t + 1, ttl)).toMatchObject({ digest: "d3", serverTimestamp: t });
      expect(new MessageQueues(ctx.sql).recall("alice.1:q", t + ttl, ttl)).toBeUndefined();
      // Every copy acked, and the object restarted: the answer is gone with the rows (docs/mailbox.md).
      restarted.ack(1, 1000, ["m1"]);
      restarted.ack(2, 1000, ["m2"]);
      expect(new MessageQueues(ctx.sql).recall("alice.1:q", t + 1, ttl)).toBeUndefined();
      expect(ctx.sql.exec("SELECT name FROM sqlite_master WHERE name = 'mb_idempotency'").toArray()).toEqual([]);
    });
  });

  it("keeps at most MAX_IDEMPOTENCY_ANSWERS answers in memory; a forgotten one whose copy is queued is still found", async () => {
    const t = Date.now();
    const ttl = 600_000;
    await inEmptyObject(new ManualClock(t), async (ctx) => {
      const q = new MessageQueues(ctx.sql);
      q.createTables();
      const record = (i: number) => ({ digest: `d${i}`, serverTimestamp: t });
      ctx.storage.transactionSync(() => q.insert(1, "m0", "{}", 1, t + DAY, "alice", { key: "k0", record: record(0) }));
      for (let i = 0; i < 5; i++) q.remember(`k${i}`, record(i), t + ttl, 3, t);
      expect(q.rememberedCount).toBe(3);
      expect(q.recall("k4", t, ttl)).toMatchObject({ digest: "d4" });
      expect(q.recall("k1", t, ttl)).toBeUndefined(); // forgotten, and nothing of it queued
      expect(q.recall("k0", t, ttl)).toMatchObject({ digest: "d0" }); // forgotten, but its copy still waits
    });
  });

  it("moves a version-1 queue (rowid table, index, idempotency table) to the WITHOUT ROWID queue once", async () => {
    const t = Date.now();
    await inEmptyObject(new ManualClock(t), async (ctx) => {
      ctx.sql.exec(`CREATE TABLE mb_messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, device_id INTEGER NOT NULL,
        frame TEXT NOT NULL, bytes INTEGER NOT NULL, expires_at INTEGER NOT NULL, sender TEXT NOT NULL DEFAULT '')`);
      ctx.sql.exec("CREATE INDEX mb_messages_device ON mb_messages (device_id, seq)");
      ctx.sql.exec("CREATE TABLE mb_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
      ctx.sql.exec("INSERT INTO mb_meta VALUES ('seq', 2000)");
      ctx.sql.exec(`CREATE TABLE mb_idempotency (
        key TEXT PRIMARY KEY, digest TEXT NOT NULL, answer TEXT NOT NULL, expires_at INTEGER NOT NULL)`);
      ctx.sql.exec("INSERT INTO mb_messages VALUES (1500, 'x', 1, '{\"id\":\"x\"}', 7, ?, 'alice')", t + DAY);
      ctx.sql.exec("INSERT INTO mb_messages VALUES (1501, 'y', 2, '{\"id\":\"y\"}', 8, ?, 'bob')", t + DAY);
      ctx.sql.exec(
        "INSERT INTO mb_idempotency VALUES ('alice.1:k', 'dk', ?, ?)",
        `{"ok":true,"serverTimestamp":${t}}`,
        t + 1000,
      );
      const q = new MessageQueues(ctx.sql);
      q.createTables();
      q.createTables(); // at every start: the second time there is nothing to move
      expect(q.schemaVersion()).toBe(QUEUE_SCHEMA_VERSION);
      const tables = ctx.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE name LIKE 'mb_%' ORDER BY name")
        .toArray()
        .map((r) => r.name);
      expect(tables).toEqual(["mb_meta", "mb_queue"]);
      expect(ctx.sql.exec("SELECT sql FROM sqlite_master WHERE name = 'mb_queue'").one().sql).toContain(
        "WITHOUT ROWID",
      );
      // Every copy kept with its own sequence number, device and sender; the window's answer kept in memory.
      expect(q.nextUnsent(1, 0, 10, t)).toEqual([{ seq: 1500, frame: '{"id":"x"}' }]);
      expect(q.senderTotals(2, "bob")).toEqual({ messages: 1, bytes: 8 });
      expect(q.recall("alice.1:k", t, 600_000)).toMatchObject({ digest: "dk", serverTimestamp: t });
      // Numbering resumes above the old reservation; a delete is one row now.
      expect(ctx.storage.transactionSync(() => q.insert(1, "z", "{}", 1, t + DAY, "a"))).toBe(2001);
      expect(q.ack(1, 1500, ["x"])).toBe(1);
    });
  });

  it("keeps each sender's share of a device queue, recounted from the rows as the device's totals are", async () => {
    const t = Date.now();
    await inEmptyObject(new ManualClock(t), async (ctx) => {
      const q = new MessageQueues(ctx.sql);
      q.createTables();
      const copies = [
        { id: "a", sender: "alice", bytes: 10 },
        { id: "b", sender: "bob", bytes: 20 },
        { id: "c", sender: "alice", bytes: 30 },
      ];
      expect(q.totals(1)).toEqual({ messages: 0, bytes: 0 }); // totals now in memory: counted() keeps them
      const seqs = ctx.storage.transactionSync(() =>
        copies.map((c) => q.insert(1, c.id, `{"id":"${c.id}"}`, c.bytes, t + DAY, c.sender)),
      );
      for (const c of copies) q.counted(1, c.bytes, c.sender);
      expect(q.senderTotals(1, "alice")).toEqual({ messages: 2, bytes: 40 });
      expect(q.senderTotals(1, "bob")).toEqual({ messages: 1, bytes: 20 });
      expect(q.senderTotals(1, "carol")).toEqual({ messages: 0, bytes: 0 });
      expect(q.senderTotals(2, "alice")).toEqual({ messages: 0, bytes: 0 });
      // What a restarted object counts from the rows, with no row per sender.
      const restarted = new MessageQueues(ctx.sql);
      expect(restarted.senderTotals(1, "alice")).toEqual({ messages: 2, bytes: 40 });
      expect(restarted.totals(1)).toEqual({ messages: 3, bytes: 60 });
      q.ack(1, seqs[2]!, ["a"]);
      expect(q.senderTotals(1, "alice")).toEqual({ messages: 1, bytes: 30 });
    });
  });

  it("fills in the sender of copies queued before copies named it, from each stored frame", async () => {
    const t = Date.now();
    await inEmptyObject(new ManualClock(t), async (ctx) => {
      // The table as it was: no sender column.
      ctx.sql.exec(`CREATE TABLE mb_messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, device_id INTEGER NOT NULL,
        frame TEXT NOT NULL, bytes INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
      const frame = (from: string) => JSON.stringify({ type: "message", id: "x", envelope: { sourceAccountId: from } });
      ctx.sql.exec("INSERT INTO mb_messages VALUES (1, 'x', 1, ?, 7, ?)", frame("alice"), t + DAY);
      ctx.sql.exec("INSERT INTO mb_messages VALUES (2, 'y', 1, ?, 8, ?)", frame("bob"), t + DAY);
      const q = new MessageQueues(ctx.sql);
      q.createTables();
      q.createTables(); // at every start: the second time there is nothing to move
      expect(q.senderTotals(1, "alice")).toEqual({ messages: 1, bytes: 7 });
      expect(q.senderTotals(1, "bob")).toEqual({ messages: 1, bytes: 8 });
    });
  });
});

describe("DirectoryOutbox", () => {
  const down = () => {
    throw new Error("D1_ERROR: unavailable");
  };
  const brokenD1 = { prepare: down, batch: down, exec: down } as unknown as D1Database;
  const brokenEnv = { ...env, DB_0: brokenD1, DB_1: brokenD1, DB_2: brokenD1 } as Cloudflare.Env;

  it("retries the op at its head after 1 s, 5 s, 30 s, 2 min, then every 10 min, until D1 answers", async () => {
    const clock = new ManualClock(Date.now());
    let objectEnv = brokenEnv;
    const drained: number[] = [];
    await inEmptyObject(
      clock,
      async (ctx) => {
        const outbox = new DirectoryOutbox(ctx, callbacks({ drained: async (left) => void drained.push(left) }));
        outbox.createTables();
        expect(outbox.nextDueAt()).toBeNull();
        ctx.storage.transactionSync(() =>
          outbox.record({ op: "device_removed", accountId: crypto.randomUUID(), deviceId: 2, deviceUid: 77 }),
        );
        expect(outbox.nextDueAt()).toBe(0); // due at once
        const delays: number[] = [];
        for (let i = 0; i < 7; i++) {
          await outbox.drain();
          delays.push(outbox.nextDueAt()! - clock.now());
          clock.advance(delays.at(-1)!);
        }
        expect(delays).toEqual([1_000, 5_000, 30_000, 120_000, 600_000, 600_000, 600_000]);
        expect(outbox.pending()).toBe(1);
        objectEnv = env;
        await outbox.drain();
        expect(outbox.pending()).toBe(0);
        expect(outbox.nextDueAt()).toBeNull();
        expect(drained).toEqual([1, 1, 1, 1, 1, 1, 1, 0]);
      },
      () => objectEnv,
    );
  });

  it("runs one drain at a time, and purges the object's own copies first when deleting an account", async () => {
    const order: string[] = [];
    await inEmptyObject(
      new ManualClock(),
      async (ctx) => {
        const outbox = new DirectoryOutbox(
          ctx,
          callbacks({
            purgeLocal: () => void order.push("purgeLocal"),
            drained: async (left) => void order.push(`drained ${left}`),
          }),
        );
        outbox.createTables();
        outbox.record({ op: "account_deleted", accountId: crypto.randomUUID() });
        const a = outbox.drain();
        expect(outbox.drain()).toBe(a);
        await a;
        // D1 failed after the local purge: the op stays for the retry, which purges again (idempotent).
        expect(order).toEqual(["purgeLocal", "drained 1"]);
      },
      () => brokenEnv,
    );
  });

  it("does nothing in an object without tables", async () => {
    await inEmptyObject(new ManualClock(), async (ctx) => {
      let drained = false;
      const outbox = new DirectoryOutbox(
        ctx,
        callbacks({
          hasTables: () => false,
          drained: async () => {
            drained = true;
          },
        }),
      );
      await outbox.drain();
      expect(outbox.pending()).toBe(0);
      expect(outbox.nextDueAt()).toBeNull();
      expect(drained).toBe(false);
    });
  });
});

describe("AlarmSchedule", () => {
  it("keeps the alarm at the earliest due time of all parts, never in the past, and none when nothing is due", async () => {
    // A day ahead of the runtime: nothing set here fires by itself.
    const clock = new ManualClock(Date.now() + DAY);
    await inEmptyObject(clock, async (_ctx, state) => {
      const t0 = clock.now();
      let due: (number | null)[] = [null, null];
      const alarm = new AlarmSchedule(state.storage, clock, () => due);
      await alarm.schedule();
      expect(await state.storage.getAlarm()).toBeNull();
      due = [t0 + 5000, null, t0 + 3000];
      expect(alarm.next()).toBe(t0 + 3000);
      await alarm.schedule();
      expect(await state.storage.getAlarm()).toBe(t0 + 3000);
      // A later due time leaves an earlier alarm alone (the alarm recomputes when it runs) ...
      due = [t0 + 9000];
      await alarm.schedule();
      expect(await state.storage.getAlarm()).toBe(t0 + 3000);
      // ... unless that alarm is already past.
      clock.advance(4000);
      await alarm.schedule();
      expect(await state.storage.getAlarm()).toBe(t0 + 9000);
      // Due now (an outbox op to retry at once): at least 10 ms ahead.
      due = [0, t0 + 9000];
      await alarm.schedule();
      expect(await state.storage.getAlarm()).toBe(clock.now() + 10);
      // `by` only ever moves the alarm earlier.
      due = [t0 + 20_000];
      await alarm.by(t0 + 60_000);
      expect(await state.storage.getAlarm()).toBe(clock.now() + 10);
      await state.storage.setAlarm(t0 + 50_000);
      await alarm.by(t0 + 30_000);
      expect(await state.storage.getAlarm()).toBe(t0 + 20_000);
      due = [];
      await alarm.schedule();
      expect(await state.storage.getAlarm()).toBeNull();
    });
  });
});

describe("DeviceRegistry", () => {
  it("authenticates on its own rows, expires link tokens on the object's clock, and records each change in the outbox", async () => {
    const clock = new ManualClock(Date.now());
    await inEmptyObject(clock, async (ctx) => {
      const cfg = configOf(env) as Config;
      const outbox = new DirectoryOutbox(ctx, callbacks());
      const rates = new RateWindow(ctx.sql);
      const devices = new DeviceRegistry(ctx, outbox, rates);
      expect(devices.holdsAccount()).toBe(false);
      expect((await devices.authenticate(1, "x".repeat(24))).ok).toBe(false); // no tables, same answer
      devices.createTables();
      outbox.createTables();
      rates.createTables();
      const identity = newIdentity();
      const keys = deviceKeys(identity);
      const accountId = crypto.randomUUID();
      await devices.createAccount(accountId, "identity", keys);
      expect(devices.holdsAccount()).toBe(true);
      expect(outbox.pending()).toBe(1);
      const ok = await devices.authenticate(1, keys.password);
      expect(ok).toMatchObject({ ok: true, accountId, deviceId: 1, registrationId: keys.registrationId });
      expect(await devices.authenticate(1, `${keys.password}x`)).toMatchObject({ ok: false, code: "UNAUTHORIZED" });
      expect(await devices.authenticate(2, keys.password)).toMatchObject({ ok: false, code: "UNAUTHORIZED" });
      const link = await devices.createLinkToken(cfg);
      if (!link.ok) throw new Error(link.message);
      expect(link.expiresAt).toBe(clock.now() + cfg.LINK_TOKEN_TTL_SECONDS * 1000);
      expect(await devices.requestLink(link.linkToken, "key")).toEqual({ ok: true });
      expect(await devices.linkEnvelope(link.linkToken, "key")).toEqual({ ok: true, envelope: null });
      expect(await devices.approvedLinkIdentity(link.linkToken)).toMatchObject({
        ok: false,
        code: "LINK_TOKEN_INVALID",
      });
      expect(await devices.approveLink(link.linkToken, "key", "envelope")).toEqual({ ok: true });
      expect(await devices.linkEnvelope(link.linkToken, "key")).toEqual({ ok: true, envelope: "envelope" });
      expect(await devices.approvedLinkIdentity(link.linkToken)).toEqual({ ok: true, identityKey: "identity" });
      clock.advance(cfg.LINK_TOKEN_TTL_SECONDS * 1000);
      expect(await devices.linkEnvelope(link.linkToken, "key")).toMatchObject({
        ok: false,
        code: "LINK_TOKEN_INVALID",
      });
      expect(devices.markDeleted()).toEqual({ ok: true });
      expect(await devices.authenticate(1, keys.password)).toMatchObject({ ok: false, code: "UNAUTHORIZED" });
      expect(outbox.pending()).toBe(2);
    });
  });
});
