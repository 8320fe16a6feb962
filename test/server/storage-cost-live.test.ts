// What the SDK's real traffic costs in rows written (docs/cost.md), measured with real SDK clients: CipherpostClient
// from src/client runs here inside workerd, its fetch calling this Worker and its WebSocket an adapter over the
// Worker's own WebSocket upgrade, so every request and frame is the one the SDK makes (sessions, sends over the
// connection with idempotency keys, acks after storing, coalesced delivery receipts, sync copies, send_multi).
// storage-cost-sdk.test.ts replays the same frames by hand; this file checks the replay did not miss anything.
// Every SqlStorage cursor of each account object is counted (by table), and every D1 shard's changes. The objects'
// clocks are held (ManualClock), so MAX_ACK_WAIT_MS never runs out on a loaded machine: whether a copy is stored
// depends on what the recipient did (acked, or was offline), never on timing.
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import {
  CipherpostClient,
  type ClientEvents,
  type ClientOptions,
  MemoryStorage,
  type WebSocketConstructor,
} from "../../src/client/index.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { BASE, randomIp } from "./helpers.ts";
import { queueDepth, useClock } from "./ws-helpers.ts";

// ---------- the SDK inside workerd ----------

type Listener = (ev: unknown) => void;

/**
 * A WHATWG-shaped WebSocket for the SDK over the Worker's own upgrade: `new (url)`, then `open`, `message`,
 * `close` and `error` events, `readyState`, `send` and `close`.
 */
class WorkerWebSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readyState = 0;
  readonly url: string;
  #ws: WebSocket | null = null;
  #closeWanted: { code: number; reason: string } | null = null;
  #closeFired = false;
  readonly #listeners = new Map<string, Set<Listener>>();

  constructor(url: string) {
    this.url = url;
    void this.#open(url.replace(/^ws/, "http"));
  }

  async #open(url: string): Promise<void> {
    let res: Response;
    try {
      res = await exports.default.fetch(url, { headers: { upgrade: "websocket" } });
    } catch (e) {
      this.#fail(`upgrade failed: ${String(e)}`);
      return;
    }
    const ws = res.webSocket;
    if (res.status !== 101 || !ws) {
      await res.body?.cancel();
      this.#fail(`upgrade answered ${res.status}`);
      return;
    }
    ws.accept();
    this.#ws = ws;
    ws.addEventListener("message", (e) => this.#emit("message", { data: e.data }));
    ws.addEventListener("close", (e) => this.#closed(e.code, e.reason));
    ws.addEventListener("error", () => this.#emit("error", {}));
    if (this.#closeWanted) {
      ws.close(this.#closeWanted.code, this.#closeWanted.reason);
      this.#closed(this.#closeWanted.code, this.#closeWanted.reason);
      return;
    }
    this.readyState = 1;
    this.#emit("open", {});
  }

  #fail(reason: string): void {
    this.#emit("error", {});
    this.#closed(1006, reason);
  }

  #closed(code: number, reason: string): void {
    this.readyState = 3;
    if (this.#closeFired) return;
    this.#closeFired = true;
    this.#emit("close", { code, reason, wasClean: code !== 1006 });
  }

  #emit(type: string, ev: object): void {
    for (const l of [...(this.#listeners.get(type) ?? [])]) l({ type, ...ev });
  }

  addEventListener(type: string, listener: Listener): void {
    const set = this.#listeners.get(type) ?? new Set<Listener>();
    this.#listeners.set(type, set);
    set.add(listener);
  }

  removeEventListener(type: string, listener: Listener): void {
    this.#listeners.get(type)?.delete(listener);
  }

  send(data: string | ArrayBuffer): void {
    if (this.readyState !== 1 || !this.#ws) throw new Error("the WebSocket is not open");
    this.#ws.send(data);
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    if (this.#ws) this.#ws.close(code, reason);
    else this.#closeWanted = { code, reason };
  }
}

/** Small prekey batches keep registration fast (as test/client/helpers.ts). */
const FAST_KEYS = { batch: 10, threshold: 5 };

/** The options of an SDK client here: memory storage, this Worker as its relay, one address per client. */
function options(extra: Partial<ClientOptions> = {}): ClientOptions & { server: string } {
  const ip = randomIp();
  return {
    server: BASE,
    storage: new MemoryStorage(),
    fetch: (input, init) => {
      const req = new Request(input, init);
      req.headers.set("cf-connecting-ip", ip);
      return exports.default.fetch(req);
    },
    WebSocket: WorkerWebSocket as unknown as WebSocketConstructor,
    preKeys: FAST_KEYS,
    connection: { initialDelayMs: 50, maxDelayMs: 500 },
    ...extra,
  };
}

const clients: CipherpostClient[] = [];
const track = (c: CipherpostClient) => {
  clients.push(c);
  return c;
};
afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
});

/** The options each client was made with (to open its storage again). */
const optionsOf = new WeakMap<CipherpostClient, ClientOptions>();

const register = async (extra: Partial<ClientOptions> = {}) => {
  const o = options(extra);
  const c = track(await CipherpostClient.register(o));
  optionsOf.set(c, o);
  return c;
};

/**
 * Opens the device of `client` again from its storage (it was closed), runs `before` on the new client (to
 * subscribe to events), connects it and waits until its backlog has been processed.
 */
async function reopen(client: CipherpostClient, before?: (c: CipherpostClient) => void): Promise<CipherpostClient> {
  const c = track(await CipherpostClient.open(optionsOf.get(client)!));
  optionsOf.set(c, optionsOf.get(client)!);
  before?.(c);
  await online(c);
  return c;
}

/** A second device of `existing`'s account, through the SDK's link flow (code, request, approval, hand-over). */
async function linked(existing: CipherpostClient): Promise<CipherpostClient> {
  const session = await existing.createLinkCode();
  const o = options();
  const linking = CipherpostClient.link({ ...o, code: session.code });
  for await (const request of session.requests()) await request.approve();
  const c = track(await linking);
  optionsOf.set(c, o);
  return c;
}

/** Connects and waits until what was queued for it has been processed. */
async function online(c: CipherpostClient): Promise<void> {
  const empty = c.waitForQueueEmpty();
  await c.connect({ failFast: true });
  await empty;
}

/** Polls `check` until it is truthy; fails naming `what` after `timeoutMs`. */
async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Every event `name` of `client` from now on, collected. */
function collect<K extends keyof ClientEvents>(client: CipherpostClient, name: K): ClientEvents[K][] {
  const out: ClientEvents[K][] = [];
  client.on(name, (v) => {
    out.push(v);
  });
  return out;
}

/** Message ids `from` has had delivery receipts for, so far. */
const delivered = (receipts: ClientEvents["receipt"][]) =>
  new Set(receipts.filter((r) => r.kind === "delivery").flatMap((r) => r.messageIds));

/** Errors the clients report in the background (failed receipts, prekey upkeep): none are expected. */
function watchErrors(cs: CipherpostClient[]): ClientEvents["error"][] {
  const out: ClientEvents["error"][] = [];
  for (const c of cs) c.on("error", (e) => void out.push(e));
  return out;
}

/** The SDK's receipt delay (src/client/receipts.ts RECEIPT_DELAY_MS is 50 ms) with room to spare. */
const RECEIPT_WAIT_MS = 1000;

/**
 * Waits for `receipts` (from `from`, if given) to cover `ids`; with `senderClock`, moves the receipt sender's SDK
 * clock on while waiting (its coalescing timer runs on it).
 */
async function receiptsFor(
  receipts: ClientEvents["receipt"][],
  ids: string[],
  senderClock?: ManualClock,
  from?: string,
) {
  await waitFor(`delivery receipts for ${ids.length} messages`, () => {
    const got = delivered(from ? receipts.filter((r) => r.from === from) : receipts);
    if (ids.every((id) => got.has(id))) return true;
    senderClock?.advance(RECEIPT_WAIT_MS);
    return false;
  });
}

// ---------- counting rows ----------

/** Each object gets a clock that moves only when told (see the top of the file). */
const holdClocks = (accountIds: string[]) => Promise.all(accountIds.map((id) => useClock(id, new ManualClock())));

/** Waits until the object's outbox (registration's and linking's directory changes) has drained to D1. */
async function settled(accountId: string): Promise<void> {
  await waitFor(
    `the outbox of ${accountId} to drain`,
    async () => (await env.ACCOUNT.getByName(accountId).pendingOutbox()) === 0,
  );
}

/** The table a statement writes, or null for a read. */
function writtenTable(query: string): string | null {
  const m =
    /^\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+["`]?(\w+)/i.exec(
      query,
    );
  return m ? m[1]! : null;
}

interface Metered {
  query: string;
  cursor: SqlStorageCursor<Record<string, SqlStorageValue>>;
}

/** Counts every cursor the object's SqlStorage.exec hands out from now on; `read` answers rows written by table. */
async function meter(accountId: string): Promise<{ read(): Record<string, number> }> {
  await settled(accountId);
  const seen: Metered[] = [];
  await runInDurableObject(env.ACCOUNT.getByName(accountId), (_o, state) => {
    const sql = state.storage.sql as SqlStorage & { __liveMeter?: Metered[] };
    if (!sql.__liveMeter) {
      const exec = sql.exec.bind(sql);
      sql.exec = ((query: string, ...bindings: unknown[]) => {
        const cursor = exec(query, ...(bindings as SqlStorageValue[]));
        sql.__liveMeter!.push({ query, cursor });
        return cursor;
      }) as SqlStorage["exec"];
    }
    sql.__liveMeter = seen;
  });
  return {
    read() {
      const byTable: Record<string, number> = {};
      for (const { query, cursor } of seen) {
        const n = cursor.rowsWritten;
        if (n === 0) continue;
        const t = writtenTable(query) ?? `other: ${query.replace(/\s+/g, " ").slice(0, 60)}`;
        byTable[t] = (byTable[t] ?? 0) + n;
      }
      seen.length = 0;
      return byTable;
    },
  };
}

/** Rows of everything but the queue's sequence reservation (mb_meta: a thousand numbers at a time). */
const withoutReservation = (byTable: Record<string, number>) => total(byTable) - (byTable.mb_meta ?? 0);

/** Two by-table counts added up. */
function sum(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [t, n] of Object.entries(b)) out[t] = (out[t] ?? 0) + n;
  return out;
}

const total = (byTable: Record<string, number>) => Object.values(byTable).reduce((s, n) => s + n, 0);
/** Rows of everything but the connection tickets (one insert when the SDK asks for one, one delete on use). */
const withoutTickets = (byTable: Record<string, number>) => total(byTable) - (byTable.mb_tickets ?? 0);

/** Rows changed in every D1 shard so far (total_changes() of each shard's one connection). */
async function d1Changes(): Promise<number> {
  let n = 0;
  for (const name of JSON.parse(env.TEST_SHARDS as unknown as string) as string[]) {
    const db = (env as unknown as Record<string, D1Database>)[name]!;
    n += (await db.prepare("SELECT total_changes() AS n").first<{ n: number }>())!.n;
  }
  return n;
}

/** Every object named and every D1 shard metered from now on; `read` answers the counts and starts again. */
async function meterAll(named: Record<string, string>) {
  const entries = Object.entries(named);
  const meters = await Promise.all(entries.map(([, id]) => meter(id)));
  // Reading total_changes() is itself a query that each shard counts; measured here and taken off.
  const first = await d1Changes();
  let d1 = await d1Changes();
  const overhead = d1 - first;
  return {
    async read() {
      const objects = Object.fromEntries(entries.map(([name], i) => [name, meters[i]!.read()]));
      const d1Now = await d1Changes();
      const d1RowsWritten = d1Now - d1 - overhead;
      d1 = d1Now;
      return { objects, d1RowsWritten };
    },
  };
}

/**
 * Alice and Bob, both connected, after a warm-up both ways (sessions made, a message and a receipt each way, any
 * prekey refill done), so the measured window holds only what a test sends. `bobClock`: Bob's SDK clock, for
 * tests that decide when his coalesced receipts go out.
 */
async function warmPair(bobClock?: ManualClock) {
  const alice = await register();
  const bob = await register(bobClock ? { clock: bobClock } : {});
  await holdClocks([alice.accountId, bob.accountId]);
  const errors = watchErrors([alice, bob]);
  await online(alice);
  await online(bob);
  const bobGot = collect(bob, "message");
  const aliceReceipts = collect(alice, "receipt");
  const bobReceipts = collect(bob, "receipt");
  const w1 = await alice.send(bob.accountId, "hello");
  await receiptsFor(aliceReceipts, [w1.id], bobClock);
  const w2 = await bob.send(alice.accountId, "hi");
  await receiptsFor(bobReceipts, [w2.id]);
  await Promise.all([alice.refreshPreKeys(), bob.refreshPreKeys()]);
  return { alice, bob, errors, bobGot, aliceReceipts, bobReceipts };
}

// ---------- the measurements ----------

describe("storage cost of real SDK clients", () => {
  it("messages to a connected device, its acks and its coalesced delivery receipts", async () => {
    // Bob's SDK runs on a clock the test moves: its delivery receipts (coalesced behind a short timer) go out
    // when the test says, after Alice's sends; see the next test for what a receipt crossing a send costs.
    const bobClock = new ManualClock();
    const { alice, bob, errors, bobGot, aliceReceipts } = await warmPair(bobClock);

    const m = await meterAll({ alice: alice.accountId, bob: bob.accountId });
    const receiptsBefore = aliceReceipts.length;
    const N = 10;
    const ids: string[] = [];
    // Each send's answer comes once Bob's device has acked the copy pushed to it (or once it was stored).
    for (let i = 0; i < N; i++) ids.push((await alice.send(bob.accountId, `message ${i}`)).id);
    expect(bobGot.slice(1).map((x) => x.id)).toEqual(ids);
    // Bob's receipt timer runs out: one delivery receipt for all N, to Alice's connected device.
    await receiptsFor(aliceReceipts, ids, bobClock);
    const receiptSends = aliceReceipts.length - receiptsBefore;
    // Closing Bob waits for his receipt send's answer, which comes once Alice's device acked it: every ack of
    // the window has been handled (an unacked copy would be stored on the close, and counted).
    await bob.close();
    await alice.close();
    const r = await m.read();
    const sends = N + receiptSends;
    const report = {
      messages: N,
      receiptSends,
      rowsPerMessageCopy: total(r.objects.bob!) / N,
      rowsPerSendInclReceipts: (total(r.objects.alice!) + total(r.objects.bob!)) / sends,
      ...r,
    };
    console.warn(`SDK clients, connected recipient: ${JSON.stringify(report)}`);
    expect(errors).toEqual([]);
    expect(r.d1RowsWritten).toBe(0);
    // Bob's object: the N copies pushed before being stored, acked within MAX_ACK_WAIT_MS: nothing written.
    // (Stored and deleted, as before issue #16, they would be 2+ rows each.)
    expect(total(r.objects.bob!)).toBe(0);
    // Alice's object: her sends (their idempotency answers kept in memory) and Bob's receipt pushed to her
    // connected device and acked: nothing written either.
    expect(total(r.objects.alice!)).toBe(0);
    // The SDK coalesces: one receipt for the N messages.
    expect(receiptSends).toBe(1);
  });

  it("a delivery receipt crossing the next message: stored at once, never waiting for MAX_ACK_WAIT_MS", async () => {
    // The SDK holds its one mutex while a send waits for its answer, and takes it to process an incoming copy; the
    // relay answers a send to a connected device once that device acks (or MAX_ACK_WAIT_MS passed). So when Bob's
    // receipt for message 1 goes out while Alice's message 2 is on its way, each device would wait for the other's
    // ack until MAX_ACK_WAIT_MS ran out in both objects (with the clocks held here: forever). The relay stores a
    // copy for a device whose own send frame it is handling instead of pushing it (Sockets.pushTarget), which
    // ends the cycle at once: one or both crossing copies are stored (2 rows each), depending on which frame
    // reached which object first; the other is pushed and acked (0). Were a crossing to wait again, Alice's send
    // below would never be answered and the test would time out.
    const bobClock = new ManualClock();
    const { alice, bob, errors, bobGot, aliceReceipts } = await warmPair(bobClock);

    const m = await meterAll({ alice: alice.accountId, bob: bob.accountId });
    const m1 = await alice.send(bob.accountId, "message 1");
    // Bob has acked message 1 (Alice's send was answered); his receipt for it waits on his clock. Now it goes
    // out, taking Bob's mutex until it is answered, and in the same turn Alice's next message takes hers.
    bobClock.advance(RECEIPT_WAIT_MS);
    const m2 = await alice.send(bob.accountId, "message 2");
    await receiptsFor(aliceReceipts, [m1.id, m2.id], bobClock);
    expect(bobGot.slice(1).map((x) => x.id)).toEqual([m1.id, m2.id]);
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(0);
    await bob.close();
    await alice.close();
    expect((await queueDepth(alice.accountId, alice.deviceId)).messages).toBe(0);
    const r = await m.read();
    const crossingRows = (r.objects.alice!.mb_queue ?? 0) + (r.objects.bob!.mb_queue ?? 0);
    console.warn(`SDK clients, a receipt crossing a message: ${JSON.stringify({ crossingRows, ...r })}`);
    expect(errors).toEqual([]);
    expect(r.d1RowsWritten).toBe(0);
    // Each stored copy: its insert and its delete on the ack. These are the first copies either object stored,
    // so each also reserves its queue's sequence numbers (mb_meta: a thousand at a time, once per thousand stored
    // copies and object start).
    for (const rows of [r.objects.alice!, r.objects.bob!]) {
      expect([0, 2]).toContain(rows.mb_queue ?? 0);
      expect(Object.keys(rows).filter((t) => t !== "mb_queue" && t !== "mb_meta")).toEqual([]);
      expect(rows.mb_meta ?? 0).toBeLessThanOrEqual(2);
    }
    expect([2, 4]).toContain(crossingRows);
  });

  it("a burst with the SDK's own receipt timing: copies crossing a receipt are stored, nothing waits", async () => {
    // Both SDKs on their own clocks, as in an application: Bob's coalesced receipts go out 50 ms after his
    // incoming queue is idle, so some cross Alice's next message (the test above). The objects' clocks are still
    // held: a copy that waited for MAX_ACK_WAIT_MS would hang the test. How many cross depends on timing; the
    // figures are reported, and bounded.
    const { alice, bob, errors, aliceReceipts } = await warmPair();

    const m = await meterAll({ alice: alice.accountId, bob: bob.accountId });
    const receiptsBefore = aliceReceipts.length;
    const N = 20;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) ids.push((await alice.send(bob.accountId, `message ${i}`)).id);
    await receiptsFor(aliceReceipts, ids);
    await bob.close();
    await alice.close();
    const r = await m.read();
    const receiptSends = aliceReceipts.length - receiptsBefore;
    const storedCopies = ((r.objects.alice!.mb_queue ?? 0) + (r.objects.bob!.mb_queue ?? 0)) / 2;
    const report = {
      messages: N,
      receiptSends,
      storedCopies,
      storedShare: storedCopies / (N + receiptSends),
      rowsPerCopy: (withoutReservation(r.objects.alice!) + withoutReservation(r.objects.bob!)) / (N + receiptSends),
      ...r,
    };
    console.warn(`SDK clients, a burst with the SDK's receipt timing: ${JSON.stringify(report)}`);
    expect(errors).toEqual([]);
    expect(r.d1RowsWritten).toBe(0);
    // Only queued copies (insert and delete) and the queue's sequence reservation; never more than 2 per copy.
    for (const rows of [r.objects.alice!, r.objects.bob!]) {
      expect(Object.keys(rows).filter((t) => t !== "mb_queue" && t !== "mb_meta")).toEqual([]);
      expect((rows.mb_queue ?? 0) % 2).toBe(0);
    }
    expect(storedCopies).toBeLessThanOrEqual(N + receiptSends);
  });

  it("messages to an offline device, drained when it connects", async () => {
    // Warmed up both ways, as above; then Bob hangs up.
    const { alice, bob, errors, aliceReceipts } = await warmPair();
    await bob.close();
    // And one copy that waits for Bob, fetched when he comes back: the queue has reserved its sequence numbers
    // (a thousand at a time) before the measured window, as storage-cost-sdk.test.ts's warm-up does.
    const w3 = await alice.send(bob.accountId, "are you there?");
    let bobNow = await reopen(bob);
    await receiptsFor(aliceReceipts, [w3.id]);
    await bobNow.close();

    const m = await meterAll({ alice: alice.accountId, bob: bob.accountId });
    const N = 10;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) ids.push((await alice.send(bob.accountId, `message ${i}`)).id);
    const queuedBeforeConnect = await queueDepth(bob.accountId, bob.deviceId);
    const atSend = await m.read();
    let bobGot: ClientEvents["message"][] = [];
    // Bob's device connects again (the same storage), drains the backlog, acks each copy and sends its receipt.
    bobNow = await reopen(bob, (c) => {
      bobGot = collect(c, "message");
    });
    await receiptsFor(aliceReceipts, ids);
    expect(bobGot.map((x) => x.id)).toEqual(ids);
    // Alice's receipt event comes after the acks on Bob's connection were handled; the queue is empty.
    expect((await queueDepth(bob.accountId, bob.deviceId)).messages).toBe(0);
    await bobNow.close();
    await alice.close();
    const atDrain = await m.read();
    const bobRows = sum(atSend.objects.bob!, atDrain.objects.bob!);
    const report = {
      messages: N,
      rowsPerCopy: withoutTickets(bobRows) / N,
      ticketRowsPerConnection: bobRows.mb_tickets ?? 0,
      atSend,
      atDrain,
    };
    console.warn(`SDK clients, offline recipient: ${JSON.stringify(report)}`);
    expect(errors).toEqual([]);
    expect(queuedBeforeConnect.messages).toBe(N);
    // Each copy: one row into the WITHOUT ROWID queue at send, its delete on ack: 2. Nothing else.
    expect(atSend.objects.bob).toEqual({ mb_queue: N });
    expect(withoutTickets(atDrain.objects.bob!)).toBe(N);
    expect(withoutTickets(bobRows) / N).toBe(2);
    // The reconnect's single-use ticket (issued, then used) is the connection's, not the copies': a few rows.
    expect(bobRows.mb_tickets).toBeGreaterThan(0);
    expect(bobRows.mb_tickets).toBeLessThanOrEqual(4);
    // Alice's object: nothing for her sends; Bob's receipt reaches her connected device and is acked in time.
    expect(atSend.objects.alice).toEqual({});
    expect(atDrain.objects.alice).toEqual({});
    // D1: the sends make no D1 query at all. The drain makes one: the SDK's prekey count check on every
    // connection opening (GET /v2/keys, a read; local D1's total_changes() counts every query, reads included).
    expect(atSend.d1RowsWritten).toBe(0);
    expect(atDrain.d1RowsWritten).toBe(1);
  });

  it("sync copies to a second device of the sender, and group sends to a connected and an offline member", async () => {
    // Alice has a phone and a desktop linked with the SDK's link flow, both connected; Bob is connected, Carol is
    // offline during the sends and drains when she comes back. Bob's and Carol's receipts go out on their clocks,
    // after Alice's sends (the crossing is measured above).
    const bobClock = new ManualClock();
    const carolClock = new ManualClock();
    const phone = await register();
    const desktop = await linked(phone);
    const bob = await register({ clock: bobClock });
    const carol = await register({ clock: carolClock });
    const accounts = { alice: phone.accountId, bob: bob.accountId, carol: carol.accountId };
    await holdClocks(Object.values(accounts));
    const errors = watchErrors([phone, desktop, bob, carol]);
    for (const c of [phone, desktop, bob, carol]) await online(c);
    const phoneReceipts = collect(phone, "receipt");
    const desktopReceipts = collect(desktop, "receipt");
    const desktopGot = collect(desktop, "message");
    const bobGot = collect(bob, "message");
    // Warm-up: sessions with every device (the phone learns of the desktop from the relay's needsSync and its
    // 409; Bob and Carol of the desktop from theirs), then one copy that waits for Carol, fetched when she is back.
    const w1 = await phone.send(bob.accountId, "hello");
    await receiptsFor(phoneReceipts, [w1.id], bobClock);
    const w2 = await phone.sendGroup([bob.accountId, carol.accountId], "hello both");
    await receiptsFor(phoneReceipts, [w2.id], bobClock, bob.accountId);
    await receiptsFor(phoneReceipts, [w2.id], carolClock, carol.accountId);
    await Promise.all([phone, desktop, bob, carol].map((c) => c.refreshPreKeys()));
    await carol.close();
    const w3 = await phone.send(carol.accountId, "are you there?");
    let carolNow = await reopen(carol);
    await receiptsFor(phoneReceipts, [w3.id], carolClock, carol.accountId);
    await carolNow.close();
    await waitFor("the desktop's sync copies of the warm-up", () => desktopGot.length === 3);
    await waitFor("the desktop's receipts of the warm-up", () => delivered(desktopReceipts).has(w3.id));

    const m = await meterAll(accounts);
    const phoneReceiptsBefore = phoneReceipts.length;
    const K = 5;
    const direct: string[] = [];
    const group: string[] = [];
    for (let i = 0; i < K; i++) {
      direct.push((await phone.send(bob.accountId, `to Bob ${i}`)).id);
      const g = await phone.sendGroup([bob.accountId, carol.accountId], `to the group ${i}`);
      expect(g.failed).toEqual([]);
      group.push(g.id);
    }
    // Every send's answer came after the connected devices acked its copies: Bob's 2K, the desktop's 2K syncs.
    await waitFor("the desktop's sync copies", () => desktopGot.length === 3 + 2 * K);
    expect(bobGot.slice(2).map((x) => x.id)).toEqual(direct.flatMap((id, i) => [id, group[i]]));
    // Bob's one coalesced receipt, to both of Alice's devices.
    await receiptsFor(phoneReceipts, [...direct, ...group], bobClock);
    await waitFor("Bob's receipt at the desktop", () =>
      [...direct, ...group].every((id) => delivered(desktopReceipts).has(id)),
    );
    const atSend = await m.read();
    // Carol comes back, drains the K group copies, and sends her receipt to both of Alice's devices.
    carolNow = await reopen(carol);
    await receiptsFor(phoneReceipts, group, carolClock, carol.accountId);
    await receiptsFor(desktopReceipts, group, carolClock, carol.accountId);
    expect((await queueDepth(carol.accountId, carol.deviceId)).messages).toBe(0);
    for (const c of [carolNow, bob, desktop, phone]) await c.close();
    const atDrain = await m.read();
    // Receipt sends in the window (each one send with a copy for each of Alice's two devices).
    const receiptSends = phoneReceipts.length - phoneReceiptsBefore;
    const sends = 2 * K + receiptSends;
    const copies = K + 2 * K + 2 * K + 2 * receiptSends; // to Bob; to Bob and Carol; syncs to the desktop; receipts
    const all = [atSend, atDrain].flatMap((x) => Object.values(x.objects)).reduce(sum, {});
    const report = {
      sends,
      copies,
      rowsPerSend: withoutTickets(all) / sends,
      rowsPerCopy: withoutTickets(all) / copies,
      atSend,
      atDrain,
    };
    console.warn(`SDK clients, sync copies and group sends: ${JSON.stringify(report)}`);
    expect(errors).toEqual([]);
    // Bob's object: his 2K copies pushed and acked; Alice's: the 2K sync copies for the desktop and the receipts
    // for both devices, all pushed and acked: nothing written. Carol's: her K copies, queued then acked: 2 each.
    expect(atSend.objects).toEqual({ alice: {}, bob: {}, carol: { mb_queue: K } });
    expect(atDrain.objects.alice).toEqual({});
    expect(atDrain.objects.bob).toEqual({});
    expect(withoutTickets(atDrain.objects.carol!)).toBe(K);
    expect(withoutTickets(all)).toBe(2 * K);
    // D1: none for the sends; Carol's reconnect's prekey count check is the drain's one query.
    expect(atSend.d1RowsWritten).toBe(0);
    expect(atDrain.d1RowsWritten).toBe(1);
  });
});
