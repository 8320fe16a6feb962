// Client-cryptography benchmark (`npm run bench:crypto`): PQXDH session setups on both sides,
// steady-state 1 KiB encrypt and decrypt in one direction, ping-pong round trips in which every
// turn is a DH ratchet step, what a worst-case forged message costs its receiver, and what a write
// to the encrypted profile storage costs. Prints one JSON object on its last line.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { EncryptedFileStorage } from "../src/client/node.ts";
import { generateKeys } from "../src/client/prekeys.ts";

import {
  type Backend,
  type EcKeyPair,
  type EncryptedMessage,
  forceBackend,
  generateEcKeyPair,
  encodeWhisperHeader,
  generateKemKeyPair,
  initiateSession,
  MAX_SKIP,
  type KemKeyPair,
  type LocalIdentity,
  nativeBackends,
  type PreKeyBundle,
  type PreKeyStore,
  SessionRecord,
  sessionDecrypt,
  sessionEncrypt,
  randomBytes,
  toBase64,
  xeddsaSign,
} from "../src/crypto/index.ts";

const MESSAGE = new Uint8Array(1024).fill(0x61);

interface Timing {
  perSec: number;
  /** CPU seconds used per wall second (all threads; WebCrypto work runs on libuv's pool). */
  cpuPerWall: number;
  /** Operations per CPU-second: the one-core figure, independent of other load on the machine. */
  perCpuSec: number;
}

async function timed(n: number, body: () => Promise<void>): Promise<Timing> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await body();
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return { perSec: n / wall, cpuPerWall: cpuSeconds / wall, perCpuSec: n / cpuSeconds };
}

function device(): { identity: LocalIdentity; store: PreKeyStore; bundles: (n: number) => PreKeyBundle[] } {
  const identityKeyPair = generateEcKeyPair();
  const identity: LocalIdentity = { identityKeyPair, registrationId: 42 };
  const signed = generateEcKeyPair();
  const pre = new Map<number, EcKeyPair>();
  const kem = new Map<number, KemKeyPair>();
  const sign = (k: Uint8Array) => xeddsaSign(identityKeyPair.privateKey, k);
  const spkSig = sign(signed.publicKey);
  return {
    identity,
    store: {
      signedPreKey: () => signed,
      preKey: (id) => pre.get(id),
      kemPreKey: (id) => kem.get(id),
      lastResortUsed: () => false, // every bundle here has its own one-time KEM key
    },
    // One-time EC and KEM prekeys are made at upload time, not during session setup: made here, untimed.
    bundles: (n) =>
      Array.from({ length: n }, (_, i) => {
        const opk = generateEcKeyPair();
        const k = generateKemKeyPair();
        pre.set(i, opk);
        kem.set(i, k);
        return {
          identityKey: identityKeyPair.publicKey,
          deviceId: 1,
          registrationId: 42,
          signedPreKey: { keyId: 1, publicKey: signed.publicKey, signature: spkSig },
          preKey: { keyId: i, publicKey: opk.publicKey },
          pqPreKey: { keyId: i, publicKey: k.publicKey, signature: sign(k.publicKey) },
        };
      }),
  };
}

async function benchSetups(n: number): Promise<Timing> {
  const alice = device();
  const bob = device();
  const bundles = bob.bundles(n);
  return timed(n, async () => {
    for (const bundle of bundles) {
      const a = await initiateSession(alice.identity, bundle);
      const m = sessionEncrypt(a, MESSAGE);
      await sessionDecrypt(new SessionRecord(), bob.identity, bob.store, m.type, m.body);
    }
  });
}

async function established() {
  const alice = device();
  const bob = device();
  const [bundle] = bob.bundles(1);
  const a = await initiateSession(alice.identity, bundle!);
  const b = new SessionRecord();
  const m = sessionEncrypt(a, MESSAGE);
  await sessionDecrypt(b, bob.identity, bob.store, m.type, m.body);
  const r = sessionEncrypt(b, MESSAGE);
  await sessionDecrypt(a, alice.identity, alice.store, r.type, r.body);
  return { alice, bob, a, b };
}

async function benchOneWay(n: number): Promise<{ encrypt: Timing; decrypt: Timing }> {
  const { bob, a, b } = await established();
  const out: EncryptedMessage[] = new Array(n);
  const encrypt = await timed(n, async () => {
    for (let i = 0; i < n; i++) out[i] = sessionEncrypt(a, MESSAGE);
  });
  const decrypt = await timed(n, async () => {
    for (const m of out) await sessionDecrypt(b, bob.identity, bob.store, m.type, m.body);
  });
  return { encrypt, decrypt };
}

async function benchPingPong(n: number): Promise<Timing> {
  const { alice, bob, a, b } = await established();
  return timed(n, async () => {
    for (let i = 0; i < n; i++) {
      const m = sessionEncrypt(a, MESSAGE);
      await sessionDecrypt(b, bob.identity, bob.store, m.type, m.body);
      const r = sessionEncrypt(b, MESSAGE);
      await sessionDecrypt(a, alice.identity, alice.store, r.type, r.body);
    }
  });
}

/**
 * The CPU (ms) one forged ratchet message costs its receiver in the worst case: the sender's record holds 41
 * sessions (the active one and 40 archived), each with a receiving chain, and the message carries a fresh ratchet
 * key with PN = N = the forward-jump limit, so every session is a candidate for a DH ratchet step. Median of `n`.
 */
async function benchForgedMessage(n: number): Promise<number> {
  const alice = device();
  const bob = device();
  const a = new SessionRecord();
  const b = new SessionRecord();
  for (const bundle of bob.bundles(41)) {
    await initiateSession(alice.identity, bundle, { record: a });
    const m = sessionEncrypt(a, MESSAGE);
    await sessionDecrypt(b, bob.identity, bob.store, m.type, m.body);
  }
  if (b.previous.length !== 40 || !b.current) throw new Error("expected 41 sessions on the receiving side");
  const costs: number[] = [];
  for (let i = 0; i < n; i++) {
    const header = encodeWhisperHeader({
      ratchetKey: generateEcKeyPair().publicKey,
      previousCounter: MAX_SKIP,
      counter: MAX_SKIP,
    });
    const forged = new Uint8Array([...header, ...randomBytes(288)]);
    const cpu0 = process.cpuUsage();
    await sessionDecrypt(b, bob.identity, bob.store, 2, forged).then(
      () => {
        throw new Error("a forged message decrypted");
      },
      () => undefined,
    );
    const cpu = process.cpuUsage(cpu0);
    costs.push((cpu.user + cpu.system) / 1000);
  }
  costs.sort((x, y) => x - y);
  return +costs[Math.floor(costs.length / 2)]!.toFixed(1);
}

async function suite(backend: Backend | undefined) {
  forceBackend(backend);
  await benchSetups(5); // warm-up (JIT, backend probes)
  await benchOneWay(500);
  const setups = await benchSetups(Number(process.env.BENCH_SETUPS ?? 200));
  const { encrypt, decrypt } = await benchOneWay(Number(process.env.BENCH_MESSAGES ?? 20000));
  const pingPong = await benchPingPong(Number(process.env.BENCH_ROUNDS ?? 1000));
  const forgedMessageCostMs = await benchForgedMessage(Number(process.env.BENCH_FORGED ?? 5));
  const r = (t: Timing) => Math.round(t.perSec);
  return {
    sessionSetupsPerSec: r(setups),
    encryptPerSec: r(encrypt),
    decryptPerSec: r(decrypt),
    pingPongPerSec: r(pingPong),
    forgedMessageCostMs,
    // Encrypt plus decrypt of one message, back to back on one thread.
    steadyStateMessagesPerSec: Math.round(1 / (1 / encrypt.perSec + 1 / decrypt.perSec)),
    cpuPerWall: {
      setups: +setups.cpuPerWall.toFixed(2),
      decrypt: +decrypt.cpuPerWall.toFixed(2),
      pingPong: +pingPong.cpuPerWall.toFixed(2),
    },
    perCpuSecond: {
      sessionSetups: Math.round(setups.perCpuSec),
      encrypt: Math.round(encrypt.perCpuSec),
      decrypt: Math.round(decrypt.perCpuSec),
      pingPong: Math.round(pingPong.perCpuSec),
    },
  };
}

/**
 * Milliseconds per write to the encrypted profile storage (fsync on), for a receive's batch (the sender's session
 * record, the message, its seen marker) against a realistic profile: 100 + 100 one-time prekeys, 30 contacts'
 * session records, 2,000 stored messages, 1,000 seen markers, 200 send-log entries (about 2.3 MB of state). Also
 * what rewriting the whole state in one file would cost per write, the design the shards replace.
 */
async function benchStorage(n: number): Promise<{ writeMs: number; wholeStateRewriteMs: number; stateBytes: number }> {
  const dir = mkdtempSync(join(tmpdir(), "cipherpost-bench-store-"));
  try {
    const store = await EncryptedFileStorage.open(dir, { key: randomBytes(32) });
    const keys = generateKeys(randomBytes(32), 1, { signed: true, lastResort: true, ec: 100, kem: 100 }, Date.now());
    const profile: Record<string, string> = { ...keys.batch.set, device: "x".repeat(600) };
    const record = () => toBase64(randomBytes(1800));
    const message = (i: number) =>
      JSON.stringify({
        id: crypto.randomUUID(),
        direction: "incoming",
        from: crypto.randomUUID(),
        text: `message ${i} `.repeat(12),
        timestamp: Date.now(),
      });
    for (let c = 0; c < 30; c++) profile[`s/${crypto.randomUUID()}/001`] = record();
    for (let i = 0; i < 2000; i++) profile[`m/${String(i).padStart(16, "0")}`] = message(i);
    for (let i = 0; i < 1000; i++) profile[`seen/${crypto.randomUUID()}`] = String(Date.now());
    for (let i = 0; i < 200; i++)
      profile[`sent/${String(Date.now() + i).padStart(15, "0")}/${crypto.randomUUID()}`] = message(i);
    await store.write({ set: profile });
    const session = Object.keys(profile).find((k) => k.startsWith("s/"))!;
    const costs: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await store.write({
        set: {
          [session]: record(),
          [`m/${String(2000 + i).padStart(16, "0")}`]: message(i),
          [`seen/${crypto.randomUUID()}`]: String(Date.now()),
        },
      });
      costs.push(performance.now() - t0);
    }
    await store.close();
    costs.sort((a, b) => a - b);
    // The alternative: the whole state serialised, encrypted and written to one new file per write (no fsync here).
    const whole = new TextEncoder().encode(JSON.stringify(profile));
    const t0 = performance.now();
    for (let i = 0; i < 5; i++)
      xchacha20poly1305(randomBytes(32), randomBytes(24)).encrypt(new TextEncoder().encode(JSON.stringify(profile)));
    const wholeStateRewriteMs = +((performance.now() - t0) / 5).toFixed(1);
    return { writeMs: +costs[Math.floor(n / 2)]!.toFixed(1), wholeStateRewriteMs, stateBytes: whole.length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const storage = await benchStorage(Number(process.env.BENCH_STORAGE_WRITES ?? 100));
console.log("encrypted storage:", JSON.stringify(storage));
const noble = await suite("noble");
console.log("noble only:", JSON.stringify(noble));
const native = await suite(undefined);
const backends = await nativeBackends();
console.log("native where available:", JSON.stringify(native));
console.log(
  JSON.stringify({
    ...native,
    backends,
    storage,
    nobleOnly: noble,
    messageBytes: MESSAGE.length,
    node: process.version,
  }),
);
