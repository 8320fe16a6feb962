// WebCrypto and noble backends (src/crypto/native.ts) agree: X25519 agreements and key generation,
// and the async XEdDSA verify (native Ed25519 after strict pre-checks) against the sync noble one,
// on libsignal's vectors, altered signatures and hostile inputs.

import { x25519 } from "@noble/curves/ed25519.js";
import { afterEach, describe, expect, it } from "vitest";
import {
  agreeAsync,
  type Backend,
  concatBytes,
  ecPublicKeyFromPrivate,
  forceBackend,
  fromBase64,
  fromHex,
  fromUtf8,
  generateEcKeyPair,
  generateEcKeyPairAsync,
  initiateSession,
  nativeBackends,
  SessionRecord,
  sessionDecrypt,
  sessionEncrypt,
  toHex,
  utf8,
  xeddsaSign,
  xeddsaVerify,
  xeddsaVerifyAsync,
} from "../../src/crypto/index.ts";
import signatures from "../vectors/libsignal-xeddsa.json" with { type: "json" };
import { makeDevice } from "./helpers.ts";

afterEach(() => forceBackend(undefined));

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const le = (n: bigint) => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));

describe("backend detection", () => {
  it("Node 20 gets the native WebCrypto X25519 and Ed25519", async () => {
    expect(await nativeBackends()).toEqual({ x25519: "webcrypto", ed25519: "webcrypto" });
  });
});

for (const backend of ["webcrypto", "noble"] as Backend[]) {
  describe(`${backend} backend`, () => {
    it("X25519 agreement equals noble's for random key pairs, and RFC 7748 §6.1", async () => {
      forceBackend(backend);
      for (let i = 0; i < 20; i++) {
        const a = generateEcKeyPair();
        const b = generateEcKeyPair();
        expect(toHex(await agreeAsync(a, b.publicKey))).toBe(
          toHex(x25519.getSharedSecret(a.privateKey, b.publicKey.subarray(1))),
        );
      }
      const alice = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
      const bobPub = fromHex("05de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
      expect(toHex(await agreeAsync({ privateKey: alice, publicKey: ecPublicKeyFromPrivate(alice) }, bobPub))).toBe(
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
      );
    });
    it("refuses small-order peer keys with INVALID_KEY", async () => {
      forceBackend(backend);
      const a = generateEcKeyPair();
      for (const u of [
        new Uint8Array(32),
        le(1n),
        fromHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
      ]) {
        await expect(agreeAsync(a, concatBytes(new Uint8Array([5]), u))).rejects.toMatchObject({ code: "INVALID_KEY" });
      }
    });
    it("generates clamped key pairs whose public key matches the private key", async () => {
      forceBackend(backend);
      for (let i = 0; i < 10; i++) {
        const k = await generateEcKeyPairAsync();
        expect(k.privateKey[0]! & 7).toBe(0);
        expect(k.privateKey[31]! & 0xc0).toBe(0x40);
        expect(toHex(ecPublicKeyFromPrivate(k.privateKey))).toBe(toHex(k.publicKey));
      }
    });
    it("xeddsaVerifyAsync agrees with xeddsaVerify on all 200 libsignal signatures and altered ones", async () => {
      forceBackend(backend);
      for (const [i, v] of signatures.entries()) {
        const pub = fromBase64(v.publicKey);
        const msg = fromBase64(v.message);
        const sig = fromBase64(v.signature);
        expect(await xeddsaVerifyAsync(pub, msg, sig)).toBe(true);
        const bad = sig.slice();
        bad[(i * 7) % 64]! ^= 1 << (i % 8);
        expect(await xeddsaVerifyAsync(pub, msg, bad)).toBe(xeddsaVerify(pub, msg, bad));
        expect(await xeddsaVerifyAsync(pub, msg, bad)).toBe(false);
      }
    });
    it("xeddsaVerifyAsync is as strict: non-canonical S, R and u, u = p − 1, small order, twist points, bad lengths", async () => {
      forceBackend(backend);
      const k = generateEcKeyPair();
      const msg = utf8("strict");
      const sig = xeddsaSign(k.privateKey, msg);
      const s = sig.subarray(32).reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n) & ((1n << 255n) - 1n);
      const nonCanonicalS = concatBytes(sig.subarray(0, 32), le(s + L));
      nonCanonicalS[63]! |= sig[63]! & 0x80;
      const cases: [Uint8Array, Uint8Array][] = [
        [k.publicKey, nonCanonicalS],
        [k.publicKey, concatBytes(le(P + 1n), sig.subarray(32))],
        [le(P - 1n), sig],
        [le(P + 1n), sig],
        [le(0n), concatBytes(fromHex(`01${"00".repeat(31)}`), new Uint8Array(32))],
        [le(1n), concatBytes(fromHex(`01${"00".repeat(31)}`), new Uint8Array(32))],
        [
          fromHex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
          concatBytes(fromHex(`01${"00".repeat(31)}`), new Uint8Array(32)),
        ],
        [k.publicKey.subarray(0, 32), sig],
        [k.publicKey, sig.subarray(0, 63)],
      ];
      for (const [pub, sg] of cases) {
        expect(xeddsaVerify(pub, msg, sg)).toBe(false);
        expect(await xeddsaVerifyAsync(pub, msg, sg)).toBe(false);
      }
      // Random u: about half map to points on the twist, which neither verifier may accept.
      for (let i = 0; i < 20; i++) {
        const u = crypto.getRandomValues(new Uint8Array(32));
        u[31]! &= 0x7f;
        expect(xeddsaVerify(u, msg, sig)).toBe(false);
        expect(await xeddsaVerifyAsync(u, msg, sig)).toBe(false);
      }
      expect(await xeddsaVerifyAsync(k.publicKey, msg, sig)).toBe(true);
    });
  });
}

describe("mixed backends interoperate", () => {
  it("a session set up and used under noble continues under WebCrypto and back", async () => {
    const aDev = makeDevice();
    const bDev = makeDevice();
    forceBackend("noble");
    const a = await initiateSession(aDev.identity, bDev.bundle());
    const m1 = sessionEncrypt(a, utf8("noble"));
    forceBackend("webcrypto");
    const b = new SessionRecord();
    expect(fromUtf8((await sessionDecrypt(b, bDev.identity, bDev.store, m1.type, m1.body)).plaintext)).toBe("noble");
    const m2 = sessionEncrypt(b, utf8("webcrypto"));
    forceBackend("noble");
    expect(fromUtf8((await sessionDecrypt(a, aDev.identity, aDev.store, m2.type, m2.body)).plaintext)).toBe(
      "webcrypto",
    );
    const m3 = sessionEncrypt(a, utf8("noble again"));
    forceBackend(undefined);
    expect(fromUtf8((await sessionDecrypt(b, bDev.identity, bDev.store, m3.type, m3.body)).plaintext)).toBe(
      "noble again",
    );
  });
});
