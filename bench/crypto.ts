// Client-cryptography benchmark (`npm run bench:crypto`): PQXDH session setups on both sides,
// steady-state 1 KiB encrypt and decrypt in one direction, and ping-pong round trips in which
// every turn is a DH ratchet step. Prints one JSON object on its last line.

import {
  type Backend,
  type EcKeyPair,
  type EncryptedMessage,
  forceBackend,
  generateEcKeyPair,
  generateKemKeyPair,
  initiateSession,
  type KemKeyPair,
  type LocalIdentity,
  nativeBackends,
  type PreKeyBundle,
  type PreKeyStore,
  SessionRecord,
  sessionDecrypt,
  sessionEncrypt,
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
    store: { signedPreKey: () => signed, preKey: (id) => pre.get(id), kemPreKey: (id) => kem.get(id) },
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

async function suite(backend: Backend | undefined) {
  forceBackend(backend);
  await benchSetups(5); // warm-up (JIT, backend probes)
  await benchOneWay(500);
  const setups = await benchSetups(Number(process.env.BENCH_SETUPS ?? 200));
  const { encrypt, decrypt } = await benchOneWay(Number(process.env.BENCH_MESSAGES ?? 20000));
  const pingPong = await benchPingPong(Number(process.env.BENCH_ROUNDS ?? 1000));
  const r = (t: Timing) => Math.round(t.perSec);
  return {
    sessionSetupsPerSec: r(setups),
    encryptPerSec: r(encrypt),
    decryptPerSec: r(decrypt),
    pingPongPerSec: r(pingPong),
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

const noble = await suite("noble");
console.log("noble only:", JSON.stringify(noble));
const native = await suite(undefined);
const backends = await nativeBackends();
console.log("native where available:", JSON.stringify(native));
console.log(
  JSON.stringify({
    ...native,
    backends,
    nobleOnly: noble,
    messageBytes: MESSAGE.length,
    node: process.version,
  }),
);
