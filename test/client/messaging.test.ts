// The SDK against the relay started locally (test/support/relay.ts), one relay for the file: conversations, linked
// devices, groups, disappearing messages, 500 messages across a dropped connection and a restart, retry receipts,
// prekey upkeep, devices and account deletion, sends over the connection, and reconnecting after a relay restart.
import { describe, expect, it } from "vitest";
import {
  CipherpostClient,
  CipherpostError,
  MemoryStorage,
  type DecryptionErrorEvent,
  type StoredMessage,
} from "../../src/client/index.ts";
import { openProfileStorage } from "../../src/client/node.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { clientOptions, nextEvent, relayForFile, waitFor } from "./helpers.ts";

const fixture = relayForFile();
const client = fixture.client;

const texts = (list: StoredMessage[]) => list.map((m) => m.text);

describe("two accounts and a linked device", () => {
  let a1: CipherpostClient;
  let b: CipherpostClient;
  let a2: CipherpostClient;

  it("two accounts exchange text both ways, with delivery receipts", async () => {
    a1 = await client();
    b = await client();
    await Promise.all([a1.connect(), b.connect()]);

    const atB = nextEvent(b, "message");
    const sent = await a1.send(b.accountId, "hello from A");
    const got = await atB;
    expect(got).toMatchObject({
      id: sent.id,
      direction: "incoming",
      from: a1.accountId,
      fromDevice: 1,
      to: b.accountId,
      text: "hello from A",
      timestamp: sent.timestamp,
    });

    const atA = nextEvent(a1, "message");
    const reply = await b.send(a1.accountId, "hello back from B");
    expect(await atA).toMatchObject({ id: reply.id, from: b.accountId, to: a1.accountId, text: "hello back from B" });

    // B's delivery receipt for A's message reaches A and marks its stored copy.
    await waitFor("A's message marked delivered", () =>
      a1.messages.get(sent.id, a1.accountId)?.delivered?.includes(b.accountId),
    );
    expect(texts(a1.messages.list({ with: b.accountId }))).toEqual(["hello from A", "hello back from B"]);
    expect(texts(b.messages.list({ with: a1.accountId }))).toEqual(["hello from A", "hello back from B"]);
    expect(await a1.safetyNumber(b.accountId)).toBe(await b.safetyNumber(a1.accountId));
    expect(await a1.safetyNumber(b.accountId)).toMatch(/^(\d{5} ){11}\d{5}$/);
  });

  it("typing indicators reach connected devices only; read receipts mark the sender's copy", async () => {
    const typing = nextEvent(b, "typing");
    await a1.sendTyping(b.accountId, "started");
    expect(await typing).toEqual({ from: a1.accountId, fromDevice: 1, action: "started" });
    const [first] = a1.messages.list({ with: b.accountId });
    const read = nextEvent(a1, "receipt", (r) => r.kind === "read");
    await b.sendReceipt(a1.accountId, "read", [first!.id]);
    expect((await read).messageIds).toEqual([first!.id]);
    expect(a1.messages.get(first!.id, a1.accountId)?.read).toEqual([b.accountId]);
    // Never stored: a device that connects later never sees an old typing indicator.
    const late = await client();
    await a1.sendTyping(late.accountId, "started");
    let typed = false;
    late.on("typing", () => {
      typed = true;
    });
    await late.connect();
    await late.waitForQueueEmpty().catch(() => undefined);
    expect(typed).toBe(false);
  });

  it("a second device linked to A receives both sides of the conversation from then on", async () => {
    const { code, requests } = await a1.createLinkCode();
    expect(code).toMatch(/^cplink2\.[A-Za-z0-9_-]{107}$/);
    let shown: string | undefined;
    const linking = CipherpostClient.link({
      server: fixture.relay().url,
      code,
      onVerificationCode: (v) => {
        shown = v;
      },
      ...clientOptions(),
    });
    for await (const request of requests()) {
      expect(request.verificationCode).toBe(await waitFor("the new device's verification code", () => shown));
      await request.approve();
    }
    a2 = await linking;
    fixture.track(a2);
    expect(a2.accountId).toBe(a1.accountId);
    expect(a2.deviceId).toBe(2);
    expect(a2.identityKey).toEqual(a1.identityKey);
    await a2.connect();
    expect((await a1.devices()).map((d) => d.deviceId)).toEqual([1, 2]);

    // B only knows A's device 1: the relay's 409 makes it fetch device 2's keys and send again.
    const fromB = await b.send(a1.accountId, "B writes to both of A's devices");
    const [at1, at2] = await Promise.all([
      waitFor("A1 gets B's message", () => a1.messages.get(fromB.id, b.accountId)),
      waitFor("A2 gets B's message", () => a2.messages.get(fromB.id, b.accountId)),
    ]);
    expect(at1.text).toBe("B writes to both of A's devices");
    expect(at2).toMatchObject({
      direction: "incoming",
      from: b.accountId,
      to: a1.accountId,
      text: "B writes to both of A's devices",
    });

    // A1's own message reaches A2 as a sync copy naming its destination.
    const fromA1 = await a1.send(b.accountId, "A1 answers B");
    const sync = await waitFor("A2 gets A1's sync copy", () => a2.messages.get(fromA1.id, a1.accountId));
    expect(sync).toMatchObject({
      direction: "outgoing",
      from: a1.accountId,
      fromDevice: 1,
      to: b.accountId,
      text: "A1 answers B",
    });
    await waitFor("B gets A1's answer", () => b.messages.get(fromA1.id, a1.accountId));

    // And A2 writes too: B and A1 both get it.
    const fromA2 = await a2.send(b.accountId, "A2 joins in");
    await waitFor("B gets A2's message", () => b.messages.get(fromA2.id, a1.accountId)?.fromDevice === 2);
    await waitFor("A1 gets A2's sync copy", () => a1.messages.get(fromA2.id, a1.accountId)?.to === b.accountId);
    expect(texts(a2.messages.list({ with: b.accountId }))).toEqual([
      "B writes to both of A's devices",
      "A1 answers B",
      "A2 joins in",
    ]);
  });

  it("an undecryptable message is reported and the sender resends it on a fresh session", async () => {
    // B loses its session with A (as after restoring an old backup): A's next ratchet message cannot be read.
    const storage = new MemoryStorage();
    const c = await client({ storage });
    const d = await client();
    await Promise.all([c.connect(), d.connect()]);
    await c.send(d.accountId, "first");
    await waitFor("D gets the first message", () => d.messages.list({ with: c.accountId }).length === 1);
    await d.send(c.accountId, "answer");
    await waitFor("C gets the answer", () => c.messages.list({ with: d.accountId }).length === 2);
    await c.close();
    for (const [k] of await storage.list(`s/${d.accountId}/`)) await storage.write({ delete: [k] });
    const c2 = await CipherpostClient.open(clientOptions(storage));
    fixture.track(c2);
    // (D's delivery receipt for "first" may be among the failures too: it was sent on the lost session.)
    const reports: DecryptionErrorEvent[] = [];
    c2.on("decryptionError", (e) => void reports.push(e));
    await c2.connect();

    const lost = await d.send(c.accountId, "this one needs a resend");
    const report = await waitFor("the failure is reported", () => reports.find((r) => r.timestamp === lost.timestamp));
    expect(report).toMatchObject({ from: d.accountId, fromDevice: 1, timestamp: lost.timestamp });
    expect(CipherpostError.is(report.error, "DECRYPTION_FAILED")).toBe(true);
    expect(report.error.retryable).toBe(false);
    const resent = await waitFor("C gets the resent message", () => c2.messages.get(lost.id, d.accountId));
    expect(resent.text).toBe("this one needs a resend");
    expect(c2.messages.list({ with: d.accountId }).filter((m) => m.id === lost.id)).toHaveLength(1);
  });

  it("device removal stops the removed device; a removed device's account sees one device again", async () => {
    const stopped = nextEvent(a2, "stopped");
    await a1.removeDevice(2);
    const err = await stopped;
    expect(CipherpostError.is(err, "DEVICE_REMOVED")).toBe(true);
    expect((await a1.devices()).map((d) => d.deviceId)).toEqual([1]);
    // B still has a session with A's device 2: the relay's 409 extraDevices drops it and the send goes through.
    const m = await b.send(a1.accountId, "after the removal");
    await waitFor("A1 gets it", () => a1.messages.get(m.id, b.accountId));
  });
});

describe("groups and disappearing messages", () => {
  it("a group message reaches three accounts through the multi-recipient send", async () => {
    const [a, b, c, d] = await Promise.all([client(), client(), client(), client()]);
    await Promise.all([b, c, d].map((x) => x.connect()));
    const r = await a.sendGroup([b.accountId, c.accountId, d.accountId], "hello group");
    expect(r.failed).toEqual([]);
    for (const x of [b, c, d]) {
      const m = await waitFor(`${x.accountId} gets the group message`, () => x.messages.get(r.id, a.accountId));
      expect(m).toMatchObject({ text: "hello group", from: a.accountId, group: { id: r.groupId } });
      expect(new Set(m.group!.members)).toEqual(new Set([a.accountId, b.accountId, c.accountId, d.accountId]));
    }
    expect(a.messages.list({ groupId: r.groupId })).toHaveLength(1);
    // A reply to the group from a member who now has sessions with everyone.
    const reply = await c.sendGroup([a.accountId, b.accountId, d.accountId], "reply", { groupId: r.groupId });
    await a.connect();
    await waitFor("A gets C's reply", () => a.messages.get(reply.id, c.accountId));
    await waitFor("D gets C's reply", () => d.messages.get(reply.id, c.accountId));
  });

  it("a disappearing message is gone from the receiver's store after its timer, and expires on the relay too", async () => {
    // A's and B's timers run on a clock the test moves, so the two-second timer takes no time.
    const clock = new ManualClock();
    const [a, b, offline] = await Promise.all([client({ clock }), client({ clock }), client()]);
    await b.connect();
    const gone = nextEvent(b, "expired");
    const m = await a.send(b.accountId, { text: "this disappears", expireSeconds: 2 });
    const stored = await waitFor("B stores it", () => b.messages.get(m.id, a.accountId));
    expect(stored.expireSeconds).toBe(2);
    expect(stored.expiresAt! - stored.storedAt).toBe(2000);
    clock.advance(stored.expiresAt! - clock.now() - 1);
    expect(b.messages.list({ with: a.accountId }).map((x) => x.id)).toEqual([m.id]);
    clock.advance(1);
    expect((await gone).map((x) => x.id)).toEqual([m.id]);
    expect(clock.now()).toBeGreaterThanOrEqual(stored.expiresAt!);
    expect(b.messages.get(m.id, a.accountId)).toBeUndefined();
    // The sender's own copy goes too, on its own timer (run by the same advance; its deletion is asynchronous).
    await waitFor("A's own copy expires", () => a.messages.get(m.id, a.accountId) === undefined, 5_000);

    // The relay keeps an undelivered copy no longer than the timer: a device offline past it never sees it.
    const expireSeconds = 1;
    const expiring = await a.send(offline.accountId, { text: "expires unread", expireSeconds });
    const kept = await a.send(offline.accountId, "stays");
    // The relay stamps the copy's expiry with its own clock, which is this machine's: wait until that moment has
    // passed (the condition itself, not a guessed pause).
    await waitFor(
      "the relay's expiry of the first copy",
      () => Date.now() > expiring.serverTimestamp + expireSeconds * 1000,
    );
    await offline.connect();
    await waitFor("the lasting message arrives", () => offline.messages.get(kept.id, a.accountId));
    expect(texts(offline.messages.list({ with: a.accountId }))).toEqual(["stays"]);
  });
});

describe("a long conversation across connection loss", () => {
  it("500 messages arrive exactly once and in order through a dropped connection and a restarted receiver", async () => {
    const dir = fixture.tempDir("cipherpost-sdk-");
    const a = await client();
    let storage = await openProfileStorage(dir);
    let b = await client({ storage });
    const events: string[] = [];
    let sent = 0;
    let dropped = false;
    let restarted = false;
    const listen = (c: CipherpostClient) =>
      c.on("message", async (m) => {
        events.push(m.text!);
        if (events.length === 120 && !dropped) {
          // Listeners run in the receive queue: while this one waits, frames for the next messages arrive and
          // wait behind it unacknowledged. Dropping the socket now makes the relay deliver them again on the
          // next connection, where they must be recognised and dropped.
          await waitFor("more messages in flight", () => sent >= 130);
          await new Promise((r) => setTimeout(r, 100));
          dropped = true;
          c.reconnect();
        }
      });
    listen(b);
    await b.connect();

    const N = 500;
    let duplicates = 0;
    const started = performance.now();
    for (let i = 0; i < N; i++) {
      await a.send(b.accountId, `m${i}`);
      sent++;
      if (!restarted && events.length >= 260) {
        restarted = true;
        // The receiving app stops and starts again from its files.
        await b.close();
        duplicates += b.stats.duplicates;
        await storage.close();
        storage = await openProfileStorage(dir);
        b = await CipherpostClient.open(clientOptions(storage));
        fixture.track(b);
        listen(b);
        await b.connect();
      }
    }
    const sendSeconds = (performance.now() - started) / 1000;
    await waitFor("all 500 messages stored", () => b.messages.list({ with: a.accountId }).length >= N, 60_000);
    // A barrier rather than a pause: a message sent now is queued on the relay behind every copy it still holds
    // for B, and B processes frames in order, so once its event is out no earlier delivery can still come.
    const c = await client();
    await c.send(b.accountId, "barrier");
    await waitFor("the barrier message's event", () => events.includes("barrier"));
    expect(dropped && restarted).toBe(true);
    expect(texts(b.messages.list({ with: a.accountId }))).toEqual(Array.from({ length: N }, (_, i) => `m${i}`));
    expect(events).toEqual([...Array.from({ length: N }, (_, i) => `m${i}`), "barrier"]);
    duplicates += b.stats.duplicates;
    expect(duplicates).toBeGreaterThan(0);
    console.log(
      JSON.stringify({
        event: "sdk_500_messages",
        sendSeconds: +sendSeconds.toFixed(1),
        perMessageMs: +((sendSeconds * 1000) / N).toFixed(1),
        duplicatesDropped: duplicates,
      }),
    );
    await b.close();
    await storage.close();
  }, 180_000);
});

describe("prekeys, errors and the account", () => {
  it("a keys_low notice makes the device refill its one-time keys", async () => {
    // The relay sends keys_low when a claim leaves fewer than PREKEY_LOW_THRESHOLD (10) keys.
    const b = await client({ preKeys: { batch: 12, threshold: 11 } });
    await b.connect();
    await waitFor("the first upkeep ran", async () => (await b.preKeyCounts()).count === 12);
    for (let i = 0; i < 3; i++) {
      const s = await client();
      await s.send(b.accountId, `claim ${i}`);
    }
    await waitFor("the keys are topped up to 12", async () => {
      const c = await b.preKeyCounts();
      return c.count === 12 && c.pqCount === 12;
    });
  });

  it("the signed prekey rotates on schedule and new contacts still reach the device", async () => {
    const b = await client({ preKeys: { batch: 5, threshold: 2, rotationMs: 0, graceMs: 60_000 } });
    const r = await b.refreshPreKeys();
    expect(r.signedPreKey).toBe(true);
    expect(r.lastResort).toBe(true);
    await b.connect();
    const a = await client();
    const m = await a.send(b.accountId, "after rotation");
    await waitFor("B decrypts with its new signed prekey", () => b.messages.get(m.id, a.accountId));
  });

  it("errors carry the relay's codes, and an unreachable relay says so", async () => {
    const a = await client();
    await expect(a.send("not-an-account", "x")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const missing = await a.send(crypto.randomUUID(), "to nobody").catch((e: unknown) => e);
    expect(CipherpostError.is(missing, "NOT_FOUND")).toBe(true);
    expect((missing as CipherpostError).status).toBe(404);
    expect((missing as CipherpostError).requestId).toMatch(/^[0-9a-f-]{36}$/);
    const down = await CipherpostClient.register({ server: "http://127.0.0.1:9", ...clientOptions() }).catch(
      (e: unknown) => e,
    );
    expect(CipherpostError.is(down, "UNREACHABLE")).toBe(true);
    expect((down as CipherpostError).retryable).toBe(true);
    expect((down as CipherpostError).message).toContain("cannot reach the relay at http://127.0.0.1:9");
  });

  it("a deleted account is gone: its credentials stop working and messages to it are refused", async () => {
    const [a, d] = await Promise.all([client(), client()]);
    await d.deleteAccount();
    const e = await a.send(d.accountId, "hello?").catch((x: unknown) => x);
    expect(CipherpostError.is(e, "NOT_FOUND")).toBe(true);
    await expect(CipherpostClient.open(clientOptions(new MemoryStorage()))).rejects.toMatchObject({
      code: "NOT_REGISTERED",
    });
  });
});

describe("a relay restart (a deploy closes every socket)", () => {
  it("the SDK reconnects by itself and messages keep flowing", async () => {
    const [a, b] = await Promise.all([client(), client()]);
    await Promise.all([a.connect(), b.connect()]);
    const first = await a.send(b.accountId, "before the restart");
    await waitFor("B gets the first", () => b.messages.get(first.id, a.accountId));

    const closed = nextEvent(b, "connection", (e) => e.state === "closed");
    const reopened = nextEvent(b, "connection", (e) => e.state === "open", 30_000);
    await fixture.relay().restart({ downMs: 200 });
    expect((await closed).state).toBe("closed");
    await reopened;

    const second = await a.send(b.accountId, "after the restart");
    await waitFor("B gets the second without any help", () => b.messages.get(second.id, a.accountId));
    expect(texts(b.messages.list({ with: a.accountId }))).toEqual(["before the restart", "after the restart"]);
  }, 60_000);
});

describe("sending over the mailbox connection", () => {
  /** A fetch that records each send request (method, path, idempotency key) and its replay header. */
  function recordingFetch() {
    const sends: { path: string; key: string | null; replayed: string | null }[] = [];
    const fetchImpl = async (input: string | URL | Request, init?: RequestInit) => {
      const res = await globalThis.fetch(input, init);
      const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
      if (init?.method === "PUT" && url.pathname.startsWith("/v1/messages/"))
        sends.push({
          path: url.pathname,
          key: new Headers(init.headers).get("idempotency-key"),
          replayed: res.headers.get("idempotent-replayed"),
        });
      return res;
    };
    return { sends, fetchImpl };
  }

  it("while connected, a send goes over the connection; without one, over HTTP", async () => {
    const rec = recordingFetch();
    const storage = new MemoryStorage();
    const a = await client({ storage, fetch: rec.fetchImpl });
    const b = await client();
    await Promise.all([a.connect(), b.connect()]);
    const over = await a.send(b.accountId, "over the socket");
    await waitFor("B gets it", () => b.messages.get(over.id, a.accountId));
    // A group send too (send_multi): one frame, answered per recipient.
    const d = await client();
    await d.connect();
    const group = await a.sendGroup([b.accountId, d.accountId], "to the group, over the socket");
    expect(group.failed).toEqual([]);
    await waitFor(
      "both members get it",
      () => b.messages.get(group.id, a.accountId) && d.messages.get(group.id, a.accountId),
    );
    expect(rec.sends).toEqual([]);

    await a.close();
    const c = await CipherpostClient.open(clientOptions(storage, { fetch: rec.fetchImpl }));
    fixture.track(c);
    const viaHttp = await c.send(b.accountId, "over HTTP");
    await waitFor("B gets the second", () => b.messages.get(viaHttp.id, a.accountId));
    expect(rec.sends).toHaveLength(1);
    expect(rec.sends[0]).toMatchObject({ path: `/v1/messages/${b.accountId}`, replayed: null });
    expect(rec.sends[0]!.key).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("a connection lost before the answer: the send is retried over HTTP with its key, and stored once", async () => {
    const Base = clientOptions().WebSocket!;
    let dropNextAnswer = true;
    let frameKey: string | undefined;
    /** Passes everything through, except that the first send's answer is swallowed and the socket closed, as a network would. */
    class LosingWebSocket extends (Base as unknown as typeof WebSocket) {
      override send(data: string) {
        const f = JSON.parse(data) as { type: string; idempotencyKey?: string };
        if (f.type === "send" && frameKey === undefined) frameKey = f.idempotencyKey;
        super.send(data);
      }
      override addEventListener(
        type: string,
        listener: EventListenerOrEventListenerObject,
        options?: boolean | AddEventListenerOptions,
      ) {
        if (type !== "message" || typeof listener !== "function")
          return super.addEventListener(type, listener, options);
        super.addEventListener("message", ((ev: MessageEvent) => {
          if (dropNextAnswer && typeof ev.data === "string" && ev.data.includes('"type":"send_result"')) {
            dropNextAnswer = false;
            this.close(4000, "lost");
            return;
          }
          listener(ev);
        }) as EventListener);
      }
    }
    const rec = recordingFetch();
    const a = await client({ fetch: rec.fetchImpl, WebSocket: LosingWebSocket as unknown as typeof Base });
    const b = await client();
    await Promise.all([a.connect(), b.connect()]);
    const sent = await a.send(b.accountId, "answered by the retry");
    // The relay stored it from the frame; the HTTP retry with the same key was answered from that, not stored again.
    expect(rec.sends).toHaveLength(1);
    expect(rec.sends[0]).toMatchObject({ key: frameKey, replayed: "true" });
    await waitFor("B gets it", () => b.messages.get(sent.id, a.accountId));
    // A barrier rather than a pause: a second copy would be queued ahead of A's next message, so once B has that
    // one, any second copy has been processed.
    const next = await a.send(b.accountId, "after it");
    await waitFor("B gets the next message", () => b.messages.get(next.id, a.accountId));
    expect(b.messages.list({ with: a.accountId }).filter((m) => m.id === sent.id)).toHaveLength(1);
  });
});
