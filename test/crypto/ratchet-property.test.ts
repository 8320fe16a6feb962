// Property-based Double Ratchet tests: random interleavings of sends by both parties, out-of-order
// delivery, drops, duplicates and restarts over hundreds of messages. Every message delivered
// once decrypts to what was sent, unless it was held back until its chain's keys were dropped
// (MESSAGE_KEY_EVICTED, checked against the receiver's state); every duplicate is refused; and
// every refusal leaves the record unchanged.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CryptoError,
  type EncryptedMessage,
  fromUtf8,
  initiateSession,
  parsePreKeyMessage,
  parseWhisperMessage,
  SessionRecord,
  sessionDecrypt,
  sessionEncrypt,
  toHex,
  utf8,
} from "../../src/crypto/index.ts";
import { makeDevice, type TestDevice } from "./helpers.ts";

type Action =
  | { kind: "send"; from: 0 | 1; size: number }
  | { kind: "deliver"; pick: number }
  | { kind: "duplicate"; pick: number }
  | { kind: "drop"; pick: number }
  | { kind: "restart"; who: 0 | 1 };

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("send" as const),
      from: fc.constantFrom(0 as const, 1 as const),
      size: fc.nat(300),
    }),
  },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("deliver" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("duplicate" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drop" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("restart" as const), who: fc.constantFrom(0 as const, 1 as const) }),
  },
);

interface InFlight {
  to: 0 | 1;
  message: EncryptedMessage;
  text: string;
}

/** The ratchet key and number of a message, from its header. */
function headerOf(m: EncryptedMessage) {
  return parseWhisperMessage(m.type === 3 ? parsePreKeyMessage(m.body).message : m.body).header;
}

async function run(actions: Action[]): Promise<{ delivered: number; duplicates: number; evicted: number }> {
  const devices: [TestDevice, TestDevice] = [makeDevice(), makeDevice()];
  const records: [SessionRecord, SessionRecord] = [
    await initiateSession(devices[0].identity, devices[1].bundle()),
    new SessionRecord(),
  ];
  const inFlight: InFlight[] = [];
  const done: InFlight[] = [];
  let sent = 0;
  let delivered = 0;
  let duplicates = 0;
  let evicted = 0;

  const decrypt = (m: InFlight) => {
    const d = devices[m.to];
    return sessionDecrypt(records[m.to], d.identity, d.store, m.message.type, m.message.body);
  };
  const deliver = async (m: InFlight) => {
    const before = toHex(records[m.to].serialize());
    let res: Awaited<ReturnType<typeof decrypt>>;
    try {
      res = await decrypt(m);
    } catch (e) {
      if (!CryptoError.is(e, "MESSAGE_KEY_EVICTED")) throw e;
      // Held back past MAX_RECEIVING_CHAINS turns: its chain, or its key in it, is really gone.
      const { ratchetKey, counter } = headerOf(m.message);
      const chain = records[m.to].current?.receivingChains.find((c) => toHex(c.ratchetKey) === toHex(ratchetKey));
      expect(chain === undefined || counter <= chain.evictedMax).toBe(true);
      expect(toHex(records[m.to].serialize())).toBe(before);
      evicted++;
      return;
    }
    expect(fromUtf8(res.plaintext)).toBe(m.text);
    done.push(m);
    delivered++;
  };

  for (const a of actions) {
    switch (a.kind) {
      case "send": {
        if (!records[a.from].hasCurrentSession()) break; // the responder cannot speak first
        const text = `${a.from}:${sent++}:${"x".repeat(a.size)}`;
        inFlight.push({ to: a.from === 0 ? 1 : 0, message: sessionEncrypt(records[a.from], utf8(text)), text });
        break;
      }
      case "deliver": {
        if (inFlight.length === 0) break;
        const [m] = inFlight.splice(a.pick % inFlight.length, 1);
        await deliver(m!);
        break;
      }
      case "duplicate": {
        if (done.length === 0) break;
        const m = done[a.pick % done.length]!;
        const before = toHex(records[m.to].serialize());
        let error: unknown;
        try {
          await decrypt(m);
        } catch (e) {
          error = e;
        }
        // Within the remembered chains a replay is named as such (or as possibly evicted, never silently
        // accepted); older ones fail authentication.
        expect(
          ["DUPLICATE_MESSAGE", "MESSAGE_KEY_EVICTED", "DECRYPTION_FAILED"].includes((error as CryptoError).code),
        ).toBe(true);
        expect(toHex(records[m.to].serialize())).toBe(before);
        duplicates++;
        break;
      }
      case "drop": {
        if (inFlight.length > 0) inFlight.splice(a.pick % inFlight.length, 1);
        break;
      }
      case "restart": {
        records[a.who] = SessionRecord.deserialize(records[a.who].serialize());
        break;
      }
    }
  }
  // Whatever is still in flight decrypts at the end, in reverse order.
  for (const m of inFlight.reverse()) await deliver(m);
  return { delivered, duplicates, evicted };
}

describe("Double Ratchet under random schedules", () => {
  it("random interleavings, reordering, drops, duplicates and restarts (property)", async () => {
    let totalDelivered = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 300, maxLength: 700, size: "max" }), async (actions) => {
        const { delivered } = await run(actions);
        totalDelivered += delivered;
      }),
      { numRuns: 30 },
    );
    expect(totalDelivered / 30).toBeGreaterThan(100); // hundreds of messages per run on average
  });
  it("one long conversation of 1,500 steps", async () => {
    const actions = fc.sample(fc.array(action, { minLength: 1500, maxLength: 1500 }), { numRuns: 1, seed: 4242 })[0]!;
    const { delivered, duplicates, evicted } = await run(actions);
    expect(delivered).toBeGreaterThan(300);
    expect(evicted).toBeLessThan(delivered / 10);
    expect(duplicates).toBeGreaterThan(50);
  });
  it("strict alternation: every turn is a DH ratchet step, 300 round trips", async () => {
    const actions: Action[] = [];
    for (let i = 0; i < 300; i++) {
      actions.push(
        { kind: "send", from: 0, size: i },
        { kind: "deliver", pick: 0 },
        { kind: "send", from: 1, size: i },
        { kind: "deliver", pick: 0 },
      );
    }
    const { delivered } = await run(actions);
    expect(delivered).toBe(600);
  });
});
