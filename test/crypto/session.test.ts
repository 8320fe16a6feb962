// Sessions end to end (src/crypto/session-store.ts over ratchet.ts and pqxdh.ts): message types,
// out-of-order delivery, tampering, wrong associated data, replays, the skip bound, restarts,
// identity changes, missing prekeys, concurrency and Sesame's several sessions per device.

import { describe, expect, it } from "vitest";
import {
  CryptoError,
  type EncryptedMessage,
  encryptForDevices,
  fromUtf8,
  generateEcKeyPair,
  initiateSession,
  MAX_ARCHIVED_SESSIONS,
  MAX_MESSAGE_WORK,
  MAX_RECEIVING_CHAINS,
  MAX_SKIP,
  MAX_SKIPPED_KEYS_PER_CHAIN,
  MAX_SKIPPED_KEYS_PER_RECORD,
  RatchetWork,
  DH_WORK,
  concatBytes,
  encodeWhisperHeader,
  fromBase64,
  randomBytes,
  parsePreKeyMessage,
  parseWhisperMessage,
  SessionRecord,
  sessionDecrypt,
  sessionEncrypt,
  toHex,
  utf8,
} from "../../src/crypto/index.ts";
import v1 from "../vectors/session-record-v1.json" with { type: "json" };
import { makeDevice, type TestDevice } from "./helpers.ts";

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === "function" ? p() : p);
    return undefined;
  } catch (e) {
    return CryptoError.is(e) ? e.code : `non-CryptoError: ${String(e)}`;
  }
}

interface Party {
  device: TestDevice;
  record: SessionRecord;
  send(text: string): EncryptedMessage;
  receive(m: EncryptedMessage): Promise<string>;
}

function party(device: TestDevice, record = new SessionRecord()): Party {
  const p: Party = {
    device,
    record,
    send: (text) => sessionEncrypt(p.record, utf8(text)),
    receive: async (m) => {
      const r = await sessionDecrypt(p.record, device.identity, device.store, m.type, m.body);
      device.recordUse(r.usedPreKeys);
      return fromUtf8(r.plaintext);
    },
  };
  return p;
}

async function pair(options: { withPreKey?: boolean; lastResort?: boolean } = {}) {
  const aliceDevice = makeDevice();
  const bobDevice = makeDevice();
  const alice = party(aliceDevice, await initiateSession(aliceDevice.identity, bobDevice.bundle(options)));
  const bob = party(bobDevice);
  return { alice, bob };
}

/** Alice opens, Bob answers, Alice reads the answer: both sides are past the prekey phase. */
async function established() {
  const { alice, bob } = await pair();
  expect(await bob.receive(alice.send("hello"))).toBe("hello");
  expect(await alice.receive(bob.send("hi"))).toBe("hi");
  return { alice, bob };
}

describe("message types and the first exchange", () => {
  it("sends prekey messages (3) until the first answer, then ratchet messages (2), both ways", async () => {
    const { alice, bob } = await pair();
    const m1 = alice.send("one");
    const m2 = alice.send("two");
    expect([m1.type, m2.type]).toEqual([3, 3]);
    expect(alice.record.isAwaitingFirstReply()).toBe(true);
    expect(await bob.receive(m1)).toBe("one");
    const r = bob.send("answer");
    expect(r.type).toBe(2);
    expect(await alice.receive(r)).toBe("answer");
    expect(alice.record.isAwaitingFirstReply()).toBe(false);
    const m3 = alice.send("three");
    expect(m3.type).toBe(2);
    expect(await bob.receive(m3)).toBe("three");
    expect(await bob.receive(m2)).toBe("two"); // the late prekey message still decrypts
  });
  it("the first message carries identity key, base key, prekey ids and the KEM ciphertext", async () => {
    const aliceDevice = makeDevice();
    const bobDevice = makeDevice();
    const bundle = bobDevice.bundle();
    const record = await initiateSession(aliceDevice.identity, bundle);
    const m = parsePreKeyMessage(sessionEncrypt(record, utf8("x")).body);
    expect(toHex(m.identityKey)).toBe(toHex(aliceDevice.identity.identityKeyPair.publicKey));
    expect(m.registrationId).toBe(aliceDevice.identity.registrationId);
    expect(m.signedPreKeyId).toBe(bundle.signedPreKey.keyId);
    expect(m.preKeyId).toBe(bundle.preKey!.keyId);
    expect(m.kemPreKeyId).toBe(bundle.pqPreKey.keyId);
    expect(m.kemCiphertext.length).toBe(1568);
    expect(m.baseKey.length).toBe(33);
  });
  it("several prekey messages sent before an answer set up one session, in any order", async () => {
    const { alice, bob } = await pair();
    const ms = [alice.send("a"), alice.send("b"), alice.send("c")];
    expect(await bob.receive(ms[2]!)).toBe("c");
    expect(await bob.receive(ms[0]!)).toBe("a");
    expect(await bob.receive(ms[1]!)).toBe("b");
    expect(bob.record.previous.length).toBe(0);
  });
  it("works without a one-time EC prekey and with the last-resort KEM key, and reports the keys used", async () => {
    const aliceDevice = makeDevice();
    const bobDevice = makeDevice();
    const record = await initiateSession(
      aliceDevice.identity,
      bobDevice.bundle({ withPreKey: false, lastResort: true }),
    );
    const m = sessionEncrypt(record, utf8("hi"));
    const res = await sessionDecrypt(new SessionRecord(), bobDevice.identity, bobDevice.store, m.type, m.body);
    expect(fromUtf8(res.plaintext)).toBe("hi");
    expect(res.newSession).toBe(true);
    expect(res.usedPreKeys).toEqual({
      signedPreKeyId: 1,
      kemPreKeyId: 1000,
      lastResort: true,
      baseKey: parsePreKeyMessage(m.body).baseKey,
    });
    expect(toHex(res.remoteIdentityKey)).toBe(toHex(aliceDevice.identity.identityKeyPair.publicKey));
  });
  it("reports a one-time EC and KEM prekey so the application can delete them", async () => {
    const aliceDevice = makeDevice();
    const bobDevice = makeDevice();
    const bundle = bobDevice.bundle();
    const record = await initiateSession(aliceDevice.identity, bundle);
    const m = sessionEncrypt(record, utf8("hi"));
    const res = await sessionDecrypt(new SessionRecord(), bobDevice.identity, bobDevice.store, m.type, m.body);
    expect(res.usedPreKeys).toEqual({
      signedPreKeyId: 1,
      preKeyId: bundle.preKey!.keyId,
      kemPreKeyId: bundle.pqPreKey.keyId,
      lastResort: false,
      baseKey: parsePreKeyMessage(m.body).baseKey,
    });
  });
  it("each change of speaker is a DH ratchet step (a new ratchet key in the header)", async () => {
    const { alice, bob } = await established();
    const keys = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const a = alice.send(`a${i}`);
      keys.add(toHex(parseWhisperMessage(a.body).header.ratchetKey));
      await bob.receive(a);
      const b = bob.send(`b${i}`);
      keys.add(toHex(parseWhisperMessage(b.body).header.ratchetKey));
      await alice.receive(b);
    }
    expect(keys.size).toBe(8);
    // Within one turn the key stays and the counter counts.
    const x = parseWhisperMessage(alice.send("x").body).header;
    const y = parseWhisperMessage(alice.send("y").body).header;
    expect(toHex(x.ratchetKey)).toBe(toHex(y.ratchetKey));
    expect(y.counter).toBe(x.counter + 1);
  });
});

describe("out-of-order delivery", () => {
  it("within one chain", async () => {
    const { alice, bob } = await established();
    const ms = Array.from({ length: 10 }, (_, i) => alice.send(`m${i}`));
    for (const i of [9, 0, 5, 3, 8, 1, 2, 7, 4, 6]) expect(await bob.receive(ms[i]!)).toBe(`m${i}`);
  });
  it("across chains: messages of an earlier chain arrive after the next chain's", async () => {
    const { alice, bob } = await established();
    const chain1 = [alice.send("c1-0"), alice.send("c1-1"), alice.send("c1-2")];
    expect(await bob.receive(chain1[0]!)).toBe("c1-0");
    expect(await alice.receive(bob.send("turn"))).toBe("turn");
    const chain2 = [alice.send("c2-0"), alice.send("c2-1")];
    expect(await bob.receive(chain2[1]!)).toBe("c2-1");
    expect(await bob.receive(chain1[2]!)).toBe("c1-2");
    expect(await bob.receive(chain2[0]!)).toBe("c2-0");
    expect(await bob.receive(chain1[1]!)).toBe("c1-1");
  });
  it("concurrent decryptions of one record are serialised and all succeed", async () => {
    const { alice, bob } = await established();
    const ms = Array.from({ length: 20 }, (_, i) => alice.send(`m${i}`));
    const order = [...ms.keys()].reverse();
    const out = await Promise.all(order.map((i) => bob.receive(ms[i]!)));
    expect(out).toEqual(order.map((i) => `m${i}`));
  });
});

describe("tampering, wrong associated data and replays are refused, and leave the record unchanged", () => {
  it("every bit of a ratchet message header", async () => {
    const { alice, bob } = await established();
    const m = alice.send("secret");
    const before = toHex(bob.record.serialize());
    for (let bit = 0; bit < 41 * 8; bit++) {
      const body = m.body.slice();
      body[bit >> 3]! ^= 1 << (bit & 7);
      const code = await codeOf(bob.receive({ type: 2, body }));
      expect(["DECRYPTION_FAILED", "INVALID_MESSAGE", "TOO_MANY_SKIPPED_MESSAGES", "INVALID_KEY"]).toContain(code);
    }
    expect(toHex(bob.record.serialize())).toBe(before);
    expect(await bob.receive(m)).toBe("secret");
  });
  it("every bit of a ratchet message body", async () => {
    const { alice, bob } = await established();
    const m = alice.send("secret");
    const before = toHex(bob.record.serialize());
    for (let bit = 41 * 8; bit < m.body.length * 8; bit += 3) {
      const body = m.body.slice();
      body[bit >> 3]! ^= 1 << (bit & 7);
      expect(await codeOf(bob.receive({ type: 2, body }))).toBe("DECRYPTION_FAILED");
    }
    expect(await codeOf(bob.receive({ type: 2, body: m.body.subarray(0, m.body.length - 1) }))).toBe(
      "DECRYPTION_FAILED",
    );
    expect(toHex(bob.record.serialize())).toBe(before);
    expect(await bob.receive(m)).toBe("secret");
  });
  it("every byte of a prekey message header; no session is created and no prekey is spent", {
    tags: ["slow"],
  }, async () => {
    const { alice, bob } = await pair();
    const m = alice.send("first");
    const headerLength = parsePreKeyMessage(m.body).headerBytes.length;
    for (let i = 0; i < headerLength; i++) {
      const body = m.body.slice();
      body[i]! ^= 1 << (i % 8);
      const code = await codeOf(bob.receive({ type: 3, body }));
      expect(code, `byte ${i}`).toMatch(/^(DECRYPTION_FAILED|INVALID_MESSAGE|MISSING_PREKEY|INVALID_KEY)$/);
      expect(bob.record.hasCurrentSession()).toBe(false);
    }
    expect(bob.record.seenBaseKeys.length).toBe(0);
    expect(await bob.receive(m)).toBe("first");
  });
  it("wrong associated data: a session whose identity keys differ cannot decrypt", async () => {
    const { alice, bob } = await established();
    const m = alice.send("bound to both identities");
    const s = bob.record.current!;
    const real = s.localIdentityKey;
    s.localIdentityKey = generateEcKeyPair().publicKey;
    expect(await codeOf(bob.receive(m))).toBe("DECRYPTION_FAILED");
    s.localIdentityKey = real;
    expect(await bob.receive(m)).toBe("bound to both identities");
  });
  it("a prekey message re-labelled with another identity key fails", async () => {
    const { alice, bob } = await pair();
    const m = alice.send("from alice");
    const parsed = parsePreKeyMessage(m.body);
    const body = m.body.slice();
    body.set(generateEcKeyPair().publicKey, parsed.headerBytes.length - 1568 - 33);
    expect(await codeOf(bob.receive({ type: 3, body }))).toBe("DECRYPTION_FAILED");
    expect(bob.record.hasCurrentSession()).toBe(false);
  });
  it("replays: same chain, a consumed skipped key, an earlier chain, and a prekey message", async () => {
    const { alice, bob } = await pair();
    const p = alice.send("prekey");
    expect(await bob.receive(p)).toBe("prekey");
    expect(await codeOf(bob.receive(p))).toBe("DUPLICATE_MESSAGE");
    expect(await alice.receive(bob.send("answer"))).toBe("answer");
    const a = [alice.send("a0"), alice.send("a1"), alice.send("a2")];
    await bob.receive(a[2]!);
    await bob.receive(a[0]!); // from the skipped keys
    expect(await codeOf(bob.receive(a[2]!))).toBe("DUPLICATE_MESSAGE");
    expect(await codeOf(bob.receive(a[0]!))).toBe("DUPLICATE_MESSAGE");
    await alice.receive(bob.send("turn"));
    await bob.receive(alice.send("new chain"));
    expect(await codeOf(bob.receive(a[2]!))).toBe("DUPLICATE_MESSAGE"); // a finished chain
    expect(await bob.receive(a[1]!)).toBe("a1"); // its skipped key is still there
    expect(await codeOf(bob.receive(p))).toBe("DUPLICATE_MESSAGE");
  });
  it("a replayed prekey message cannot set its session up again after that session is dropped", async () => {
    const { alice, bob } = await pair();
    const p = alice.send("prekey");
    await bob.receive(p);
    bob.record.current = null;
    bob.record.previous = [];
    expect(await codeOf(bob.receive(p))).toBe("DUPLICATE_MESSAGE");
  });
  it("unknown types, empty records and garbage are refused with CryptoErrors", async () => {
    const { alice, bob } = await established();
    const m = alice.send("x");
    expect(await codeOf(bob.receive({ type: 1 as 2, body: m.body }))).toBe("INVALID_MESSAGE");
    const stranger = party(makeDevice());
    expect(await codeOf(stranger.receive(m))).toBe("NO_SESSION");
    expect(await codeOf(bob.receive({ type: 2, body: new Uint8Array(10) }))).toBe("INVALID_MESSAGE");
    expect(await codeOf(bob.receive({ type: 3, body: new Uint8Array(100) }))).toBe("INVALID_MESSAGE");
    expect(await codeOf(() => sessionEncrypt(new SessionRecord(), utf8("x")))).toBe("NO_SESSION");
  });
});

describe("hostile bytes", () => {
  it("truncations of a prekey message and random bodies give CryptoErrors only, and no session", async () => {
    const { alice, bob } = await pair();
    const m = alice.send("x");
    for (let n = 0; n < m.body.length; n += 23) {
      const code = await codeOf(bob.receive({ type: 3, body: m.body.subarray(0, n) }));
      expect(code).toMatch(/^(INVALID_MESSAGE|DECRYPTION_FAILED)$/);
    }
    for (let i = 0; i < 100; i++) {
      const body = crypto.getRandomValues(new Uint8Array(1 + ((i * 97) % 3000)));
      expect(await codeOf(bob.receive({ type: 2, body }))).toMatch(/^(INVALID_MESSAGE|NO_SESSION)$/);
      body[0] = 1; // a plausible version byte gets past the first check
      body[1] = i % 2;
      expect(await codeOf(bob.receive({ type: 3, body }))).toMatch(
        /^(INVALID_MESSAGE|MISSING_PREKEY|INVALID_KEY|DECRYPTION_FAILED)$/,
      );
    }
    expect(bob.record.hasCurrentSession()).toBe(false);
    expect(await bob.receive(m)).toBe("x");
  });
});

describe("the skipped-key bounds: libsignal's 2,000 per chain and 5 chains per session, a jump of MAX_SKIP", () => {
  const newest = (p: Party) => p.record.current!.receivingChains.at(-1)!;
  it(`accepts a jump of exactly MAX_SKIP (${MAX_SKIP}) and refuses one more`, async () => {
    const { alice, bob } = await established();
    const ms = Array.from({ length: MAX_SKIP + 3 }, (_, i) => alice.send(`m${i}`));
    await bob.receive(ms[0]!);
    const saved = bob.record.serialize();
    expect(await codeOf(bob.receive(ms[MAX_SKIP + 2]!))).toBe("TOO_MANY_SKIPPED_MESSAGES");
    expect(toHex(bob.record.serialize())).toBe(toHex(saved));
    expect(await bob.receive(ms[MAX_SKIP + 1]!)).toBe(`m${MAX_SKIP + 1}`);
    expect(newest(bob).skipped.size).toBe(MAX_SKIP);
    expect(await bob.receive(ms[1]!)).toBe("m1");
  });
  it("refuses a new chain whose first message number is beyond MAX_SKIP", async () => {
    const { alice, bob } = await established();
    await bob.receive(alice.send("x"));
    await alice.receive(bob.send("turn"));
    const ms = Array.from({ length: MAX_SKIP + 2 }, (_, i) => alice.send(`m${i}`));
    expect(await codeOf(bob.receive(ms[MAX_SKIP + 1]!))).toBe("TOO_MANY_SKIPPED_MESSAGES");
    expect(await bob.receive(ms[MAX_SKIP]!)).toBe(`m${MAX_SKIP}`);
  });
  it(`keeps ${MAX_SKIPPED_KEYS_PER_CHAIN} keys per chain, lowest dropped first: an evicted key's message is MESSAGE_KEY_EVICTED, never a duplicate`, async () => {
    const { alice, bob } = await established();
    const ms = Array.from({ length: 2 * MAX_SKIP + 2 }, (_, i) => alice.send(`m${i}`));
    expect(await bob.receive(ms[MAX_SKIP]!)).toBe(`m${MAX_SKIP}`); // 0 .. MAX_SKIP−1 skipped
    expect(await bob.receive(ms[3]!)).toBe("m3");
    expect(await bob.receive(ms[2 * MAX_SKIP + 1]!)).toBe(`m${2 * MAX_SKIP + 1}`); // MAX_SKIP more: the old ones go
    expect(newest(bob).skipped.size).toBe(MAX_SKIPPED_KEYS_PER_CHAIN);
    const before = toHex(bob.record.serialize());
    expect(await codeOf(bob.receive(ms[5]!))).toBe("MESSAGE_KEY_EVICTED");
    // Consumed, but below keys that were evicted: no proof it is a duplicate, so it is reported too.
    expect(await codeOf(bob.receive(ms[3]!))).toBe("MESSAGE_KEY_EVICTED");
    // Above everything evicted: certainly consumed.
    expect(await codeOf(bob.receive(ms[MAX_SKIP]!))).toBe("DUPLICATE_MESSAGE");
    expect(toHex(bob.record.serialize())).toBe(before);
    expect(await bob.receive(ms[MAX_SKIP + 1]!)).toBe(`m${MAX_SKIP + 1}`);
  });
  it(`keeps ${MAX_RECEIVING_CHAINS} receiving chains: a late message on a dropped chain is MESSAGE_KEY_EVICTED, a replay from a consumed one a duplicate`, async () => {
    const { alice, bob } = await pair();
    const hello = alice.send("hello");
    expect(await bob.receive(hello)).toBe("hello");
    await alice.receive(bob.send("answer"));
    const late: EncryptedMessage[] = [];
    for (let round = 0; round <= MAX_RECEIVING_CHAINS; round++) {
      const [skipped, next] = [alice.send(`late ${round}`), alice.send(`r${round}`)];
      late.push(skipped);
      expect(await bob.receive(next)).toBe(`r${round}`);
      await alice.receive(bob.send(`turn ${round}`));
    }
    expect(bob.record.current!.receivingChains).toHaveLength(MAX_RECEIVING_CHAINS);
    // The chain of "hello" (every key used) and the chain of "late 0" have been dropped.
    expect(await codeOf(bob.receive(late[0]!))).toBe("MESSAGE_KEY_EVICTED");
    expect(await codeOf(bob.receive(hello))).toBe("DUPLICATE_MESSAGE");
    expect(await bob.receive(late[1]!)).toBe("late 1");
    const restored = SessionRecord.deserialize(bob.record.serialize());
    expect(restored.current!.finishedChains).toEqual(bob.record.current!.finishedChains);
  });
  it(`holds a record to ${MAX_SKIPPED_KEYS_PER_RECORD} skipped keys, taking them from the oldest archived sessions first`, async () => {
    const { bob } = await established();
    const template = bob.record.current!;
    const session = (fill: number) => ({
      ...template,
      receivingChains: [
        {
          ratchetKey: generateEcKeyPair().publicKey,
          key: null,
          index: fill,
          skipped: new Map(Array.from({ length: fill }, (_, i) => [i, new Uint8Array(32)] as const)),
          evictedMax: -1,
        },
      ],
      finishedChains: [],
    });
    const record = new SessionRecord();
    record.current = session(MAX_SKIPPED_KEYS_PER_CHAIN);
    record.previous = Array.from({ length: 12 }, () => session(MAX_SKIPPED_KEYS_PER_CHAIN));
    record.boundSkippedKeys();
    const counts = [record.current, ...record.previous].map((s) => s.receivingChains[0]!.skipped.size);
    expect(counts.reduce((a, b) => a + b)).toBe(MAX_SKIPPED_KEYS_PER_RECORD);
    expect(counts.slice(0, 10)).toEqual(Array(10).fill(MAX_SKIPPED_KEYS_PER_CHAIN));
    expect(counts.slice(10)).toEqual([0, 0, 0]);
    expect(record.previous.at(-1)!.receivingChains[0]!.evictedMax).toBe(MAX_SKIPPED_KEYS_PER_CHAIN - 1);
  });
});

describe("bounded work before authentication", () => {
  /** Bob's record for Alice's device, holding `n` sessions (each has received one message). */
  async function sessions(n: number) {
    const aliceDevice = makeDevice();
    const bob = party(makeDevice());
    const alice = new SessionRecord();
    for (let i = 0; i < n; i++) {
      await initiateSession(aliceDevice.identity, bob.device.bundle({ withPreKey: false }), { record: alice });
      await bob.receive(sessionEncrypt(alice, utf8(`s${i}`)));
    }
    return { bob, alice: party(aliceDevice, alice) };
  }
  const forged = (previousCounter: number, counter: number): EncryptedMessage => ({
    type: 2,
    body: concatBytes(
      encodeWhisperHeader({ ratchetKey: generateEcKeyPair().publicKey, previousCounter, counter }),
      randomBytes(288),
    ),
  });
  const decryptWith = (p: Party, m: EncryptedMessage, work: RatchetWork) =>
    sessionDecrypt(p.record, p.device.identity, p.device.store, m.type, m.body, { work });

  it("a forged message with a fresh ratchet key and PN = N = MAX_SKIP, against 41 sessions, costs at most MAX_MESSAGE_WORK and changes nothing", async () => {
    const { bob } = await sessions(MAX_ARCHIVED_SESSIONS + 1);
    expect(bob.record.previous).toHaveLength(MAX_ARCHIVED_SESSIONS);
    const before = toHex(bob.record.serialize());
    const work = new RatchetWork();
    expect(await codeOf(decryptWith(bob, forged(MAX_SKIP, MAX_SKIP), work))).toBe("WORK_LIMIT");
    expect(work.spent).toBeLessThanOrEqual(MAX_MESSAGE_WORK);
    expect(Math.floor(work.spent / (DH_WORK + MAX_SKIP + 1))).toBe(2); // two candidates tried, not 41
    expect(toHex(bob.record.serialize())).toBe(before);
  });
  it("PN costs nothing before authentication: a forged N = 0 message is tried on all 41 sessions for one DH each", async () => {
    const { bob } = await sessions(MAX_ARCHIVED_SESSIONS + 1);
    const work = new RatchetWork();
    expect(await codeOf(decryptWith(bob, forged(MAX_SKIP, 0), work))).toBe("DECRYPTION_FAILED");
    expect(work.spent).toBe((MAX_ARCHIVED_SESSIONS + 1) * (DH_WORK + 1));
  });
  it("a genuine message starting a new chain on the oldest of 41 sessions still decrypts, within the budget", async () => {
    const { alice, bob } = await sessions(1);
    expect(await alice.receive(bob.send("answer"))).toBe("answer");
    const first = alice.record.current!;
    for (let i = 1; i <= MAX_ARCHIVED_SESSIONS; i++) {
      await initiateSession(alice.device.identity, bob.device.bundle({ withPreKey: false }), { record: alice.record });
      await bob.receive(alice.send(`s${i}`));
    }
    expect(toHex(bob.record.previous.at(-1)!.baseKey)).toBe(toHex(first.baseKey));
    alice.record.promote(first);
    const m = alice.send("on the oldest session");
    expect(m.type).toBe(2);
    const work = new RatchetWork();
    expect(fromUtf8((await decryptWith(bob, m, work)).plaintext)).toBe("on the oldest session");
    expect(work.spent).toBe((MAX_ARCHIVED_SESSIONS + 1) * (DH_WORK + 1));
    expect(toHex(bob.record.current!.baseKey)).toBe(toHex(first.baseKey));
  });
  it("a lowered budget (the SDK's per-sender budget) refuses the work with WORK_LIMIT and leaves the record as it was", async () => {
    const { alice, bob } = await established();
    const ms = Array.from({ length: 50 }, (_, i) => alice.send(`m${i}`));
    const before = toHex(bob.record.serialize());
    const small = new RatchetWork(10);
    expect(await codeOf(decryptWith(bob, ms[49]!, small))).toBe("WORK_LIMIT");
    expect(toHex(bob.record.serialize())).toBe(before);
    const enough = new RatchetWork(200);
    expect(fromUtf8((await decryptWith(bob, ms[49]!, enough)).plaintext)).toBe("m49");
    expect(enough.spent).toBeGreaterThanOrEqual(DH_WORK + 50);
    expect(new RatchetWork(10 * MAX_MESSAGE_WORK).limit).toBe(MAX_MESSAGE_WORK);
  });
});

describe("last-resort prekey replays (libsignal's (kyberId, signedPreKeyId, baseKey) check)", () => {
  it("a last-resort prekey message replayed after its session record was deleted is refused; a new one is not", async () => {
    const { alice, bob } = await pair({ withPreKey: false, lastResort: true });
    const p = alice.send("first");
    expect(await bob.receive(p)).toBe("first");
    bob.record = new SessionRecord(); // e.g. after a 409 named the device as extra
    expect(await codeOf(bob.receive(p))).toBe("DUPLICATE_MESSAGE");
    expect(bob.record.hasCurrentSession()).toBe(false);
    const again = party(
      alice.device,
      await initiateSession(alice.device.identity, bob.device.bundle({ withPreKey: false, lastResort: true })),
    );
    expect(await bob.receive(again.send("a new session on the same keys"))).toBe("a new session on the same keys");
  });
});

describe("restarts: the record serialises to bytes and back", () => {
  it("mid-conversation, with skipped keys, a pending prekey header and archived sessions", async () => {
    const { alice, bob } = await pair();
    const pending = [alice.send("p0"), alice.send("p1")];
    alice.record = SessionRecord.deserialize(alice.record.serialize());
    const p2 = alice.send("p2");
    expect(p2.type).toBe(3);
    expect(await bob.receive(p2)).toBe("p2");
    bob.record = SessionRecord.deserialize(bob.record.serialize());
    expect(await bob.receive(pending[0]!)).toBe("p0");
    await alice.receive(bob.send("answer"));
    const late = [alice.send("l0"), alice.send("l1"), alice.send("l2")];
    await bob.receive(late[2]!);
    const bytes = bob.record.serialize();
    const restored = SessionRecord.deserialize(bytes);
    expect(toHex(restored.serialize())).toBe(toHex(bytes));
    bob.record = restored;
    expect(await bob.receive(late[0]!)).toBe("l0");
    expect(await bob.receive(pending[1]!)).toBe("p1");
    alice.record = SessionRecord.deserialize(alice.record.serialize());
    expect(await alice.receive(bob.send("after restart"))).toBe("after restart");
    expect(await bob.receive(alice.send("and back"))).toBe("and back");
  });
  it("refuses truncated, extended, re-versioned or random bytes with INVALID_STATE", async () => {
    const { bob } = await established();
    const bytes = bob.record.serialize();
    for (let n = 0; n < bytes.length; n += 37)
      expect(await codeOf(() => SessionRecord.deserialize(bytes.subarray(0, n)))).toBe("INVALID_STATE");
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    expect(await codeOf(() => SessionRecord.deserialize(longer))).toBe("INVALID_STATE");
    const v2 = bytes.slice();
    v2[0] = 2;
    expect(await codeOf(() => SessionRecord.deserialize(v2))).toBe("INVALID_STATE");
    const state3 = bytes.slice();
    state3[2] = 3; // the current session's state version
    expect(await codeOf(() => SessionRecord.deserialize(state3))).toBe("INVALID_STATE");
    for (let i = 0; i < 200; i++) {
      const junk = crypto.getRandomValues(new Uint8Array(1 + (i % 300)));
      expect(await codeOf(() => SessionRecord.deserialize(junk))).toBe("INVALID_STATE");
    }
  });
});

describe("identity key changes", () => {
  it("initiating with a bundle under a new identity key throws IDENTITY_CHANGED until the new key is trusted", async () => {
    const { alice, bob } = await established();
    const reinstalled = makeDevice(); // same contact, new identity key (a reinstall, or a man in the middle)
    let error: unknown;
    try {
      await initiateSession(alice.device.identity, reinstalled.bundle(), { record: alice.record });
    } catch (e) {
      error = e;
    }
    expect(CryptoError.is(error, "IDENTITY_CHANGED")).toBe(true);
    const extras = (error as CryptoError).extras;
    expect(toHex(extras.trustedIdentityKey!)).toBe(toHex(bob.device.identity.identityKeyPair.publicKey));
    expect(toHex(extras.receivedIdentityKey!)).toBe(toHex(reinstalled.identity.identityKeyPair.publicKey));
    // Still talking to the old identity: nothing changed.
    expect(await bob.receive(alice.send("still you?"))).toBe("still you?");
    // After the user compares the new safety number and accepts it:
    const newKey = reinstalled.identity.identityKeyPair.publicKey;
    await initiateSession(alice.device.identity, reinstalled.bundle(), {
      record: alice.record,
      trustedIdentityKey: newKey,
    });
    expect(toHex(alice.record.remoteIdentityKey()!)).toBe(toHex(newKey));
    expect(alice.record.previous.length).toBe(0); // sessions with the old identity are gone
    const nb = party(reinstalled);
    expect(await nb.receive(alice.send("hello again"))).toBe("hello again");
  });
  it("a prekey message from a new identity into an existing record throws IDENTITY_CHANGED and changes nothing", async () => {
    const { bob } = await established();
    const impostor = makeDevice();
    const record = await initiateSession(impostor.identity, bob.device.bundle());
    const m = sessionEncrypt(record, utf8("it's me, alice"));
    const before = toHex(bob.record.serialize());
    expect(await codeOf(bob.receive(m))).toBe("IDENTITY_CHANGED");
    expect(toHex(bob.record.serialize())).toBe(before);
    const res = await sessionDecrypt(bob.record, bob.device.identity, bob.device.store, m.type, m.body, {
      trustedIdentityKey: impostor.identity.identityKeyPair.publicKey,
    });
    expect(fromUtf8(res.plaintext)).toBe("it's me, alice");
    expect(res.newSession).toBe(true);
  });
});

describe("missing prekeys", () => {
  it("a prekey message naming a deleted one-time key throws MISSING_PREKEY with the id", async () => {
    const { alice, bob } = await pair();
    const m = alice.send("x");
    const id = parsePreKeyMessage(m.body).preKeyId!;
    bob.device.preKeys.delete(id);
    let error: unknown;
    try {
      await bob.receive(m);
    } catch (e) {
      error = e;
    }
    expect(CryptoError.is(error, "MISSING_PREKEY")).toBe(true);
    expect((error as CryptoError).extras.missingKey).toEqual({ kind: "preKey", keyId: id });
    expect(bob.record.hasCurrentSession()).toBe(false);
  });
  it("a missing signed or KEM prekey is reported too", async () => {
    const { alice, bob } = await pair();
    const m = alice.send("x");
    const kemId = parsePreKeyMessage(m.body).kemPreKeyId;
    const kem = bob.device.kemPreKeys.get(kemId)!;
    bob.device.kemPreKeys.delete(kemId);
    expect(await codeOf(bob.receive(m))).toBe("MISSING_PREKEY");
    bob.device.kemPreKeys.set(kemId, kem);
    const spk = bob.device.signedPreKeys.get(1)!;
    bob.device.signedPreKeys.delete(1);
    expect(await codeOf(bob.receive(m))).toBe("MISSING_PREKEY");
    bob.device.signedPreKeys.set(1, spk);
    expect(await bob.receive(m)).toBe("x");
  });
});

describe("Sesame: several sessions per device", () => {
  it("simultaneous initiation: both sides end up on the same session", async () => {
    const aDev = makeDevice();
    const bDev = makeDevice();
    const alice = party(aDev, await initiateSession(aDev.identity, bDev.bundle()));
    const bob = party(bDev, await initiateSession(bDev.identity, aDev.bundle()));
    const fromA = alice.send("hi from alice");
    const fromB = bob.send("hi from bob");
    expect(await bob.receive(fromA)).toBe("hi from alice");
    expect(await alice.receive(fromB)).toBe("hi from bob");
    for (let i = 0; i < 3; i++) {
      expect(await bob.receive(alice.send(`a${i}`))).toBe(`a${i}`);
      expect(await alice.receive(bob.send(`b${i}`))).toBe(`b${i}`);
    }
    expect(toHex(alice.record.current!.baseKey)).toBe(toHex(bob.record.current!.baseKey));
    expect(alice.record.current!.pendingPreKey).toBeNull();
  });
  it("messages in flight on an older session still decrypt after a new session, and the sides converge", async () => {
    const { alice, bob } = await established();
    const inFlight = [alice.send("old-1"), alice.send("old-2")];
    await initiateSession(alice.device.identity, bob.device.bundle(), { record: alice.record });
    expect(alice.record.previous.length).toBe(1);
    expect(await bob.receive(alice.send("new session"))).toBe("new session");
    expect(bob.record.previous.length).toBe(1);
    expect(await bob.receive(inFlight[1]!)).toBe("old-2");
    expect(await bob.receive(inFlight[0]!)).toBe("old-1");
    for (let i = 0; i < 2; i++) {
      expect(await alice.receive(bob.send(`b${i}`))).toBe(`b${i}`);
      expect(await bob.receive(alice.send(`a${i}`))).toBe(`a${i}`);
    }
    expect(toHex(alice.record.current!.baseKey)).toBe(toHex(bob.record.current!.baseKey));
  });
  it(`keeps at most ${MAX_ARCHIVED_SESSIONS} inactive sessions`, async () => {
    const aDev = makeDevice();
    const bDev = makeDevice();
    const record = new SessionRecord();
    for (let i = 0; i < MAX_ARCHIVED_SESSIONS + 3; i++)
      await initiateSession(aDev.identity, bDev.bundle({ withPreKey: false, lastResort: true }), { record });
    expect(record.previous.length).toBe(MAX_ARCHIVED_SESSIONS);
    const restored = SessionRecord.deserialize(record.serialize());
    expect(restored.previous.length).toBe(MAX_ARCHIVED_SESSIONS);
  });
  it("an archived current session stops sending but still receives", async () => {
    const { alice, bob } = await established();
    const m = alice.send("in flight");
    bob.record.archiveCurrentSession();
    expect(await codeOf(() => bob.send("x"))).toBe("NO_SESSION");
    expect(await bob.receive(m)).toBe("in flight");
    expect(bob.record.hasCurrentSession()).toBe(true); // the session that decrypted is active again
  });
  it("encryptForDevices sends one copy per device with an active session, addressed by registration id", async () => {
    const me = makeDevice();
    const phone = makeDevice();
    const laptop = makeDevice(phone.identity.identityKeyPair); // the contact's second device, same identity
    const records = new Map<number, SessionRecord>([
      [1, await initiateSession(me.identity, phone.bundle())],
      [2, await initiateSession(me.identity, laptop.bundle())],
      [3, new SessionRecord()], // no session yet: skipped
    ]);
    const out = encryptForDevices(records, utf8("to every device"));
    expect(out.map((m) => m.destinationDeviceId)).toEqual([1, 2]);
    expect(out.map((m) => m.destinationRegistrationId)).toEqual([
      phone.identity.registrationId,
      laptop.identity.registrationId,
    ]);
    expect(toHex(out[0]!.body)).not.toBe(toHex(out[1]!.body));
    for (const [m, dev] of [
      [out[0]!, phone],
      [out[1]!, laptop],
    ] as const) {
      const res = await sessionDecrypt(new SessionRecord(), dev.identity, dev.store, m.type, m.body);
      expect(fromUtf8(res.plaintext)).toBe("to every device");
    }
  });
});

describe("records written before per-chain skipped keys (session state version 1)", () => {
  // Made by the previous code (test/vectors/README.md): Bob holds one session with Alice in which the chain of
  // c1-* is closed with c1-1 skipped, and the live chain has c2-0 skipped and c2-2 still to come.
  const noKeys = {
    signedPreKey: () => undefined,
    preKey: () => undefined,
    kemPreKey: () => undefined,
    lastResortUsed: () => false,
  };
  const message = (m: { type: number; body: string }): EncryptedMessage => ({
    type: m.type as 2 | 3,
    body: fromBase64(m.body),
  });
  const read = async (record: SessionRecord, m: { type: number; body: string }) => {
    const { type, body } = message(m);
    return fromUtf8((await sessionDecrypt(record, makeDevice().identity, noKeys, type, body)).plaintext);
  };
  it("are read, keep every skipped key and the live chain, and are written back as version 2", async () => {
    const record = SessionRecord.deserialize(fromBase64(v1.record));
    expect(record.current!.receivingChains.map((c) => c.skipped.size)).toEqual([1, 1]);
    expect(await read(record, v1.messages.c1[1]!)).toBe("c1-1");
    expect(await read(record, v1.messages.c2[0]!)).toBe("c2-0");
    expect(await read(record, v1.messages.c2[2]!)).toBe("c2-2");
    const bytes = record.serialize();
    expect(bytes[2]).toBe(2); // the current session's state version
    expect(toHex(SessionRecord.deserialize(bytes).serialize())).toBe(toHex(bytes));
  });
  it("report a missing key of a migrated chain as possibly evicted, never as a duplicate", async () => {
    const record = SessionRecord.deserialize(fromBase64(v1.record));
    for (const m of [v1.messages.c1[0]!, v1.messages.c1[2]!, v1.messages.c2[1]!, v1.messages.hello]) {
      expect(await codeOf(read(record, m))).toBe("MESSAGE_KEY_EVICTED");
    }
  });
});
