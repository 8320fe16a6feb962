// The same src/crypto module inside workerd: libsignal's XEdDSA vectors verify (sync and native
// async), and a full PQXDH + Double Ratchet session and a link envelope round trip there.

import { describe, expect, it } from "vitest";
import {
  fromBase64,
  fromUtf8,
  generateEcKeyPair,
  generateKemKeyPair,
  initiateSession,
  nativeBackends,
  openLinkEnvelope,
  type PreKeyBundle,
  sealLinkEnvelope,
  SessionRecord,
  sessionDecrypt,
  sessionEncrypt,
  utf8,
  xeddsaSign,
  xeddsaVerify,
  xeddsaVerifyAsync,
} from "../../src/crypto/index.ts";
import signatures from "../vectors/libsignal-xeddsa.json";

describe("src/crypto inside workerd", () => {
  it("verifies all 200 libsignal signatures and refuses altered ones", async () => {
    expect(signatures.length).toBe(200);
    for (const v of signatures) {
      const pub = fromBase64(v.publicKey);
      const msg = fromBase64(v.message);
      const sig = fromBase64(v.signature);
      expect(xeddsaVerify(pub, msg, sig)).toBe(true);
      expect(await xeddsaVerifyAsync(pub, msg, sig)).toBe(true);
      const bad = sig.slice();
      bad[5]! ^= 1;
      expect(xeddsaVerify(pub, msg, bad)).toBe(false);
      expect(await xeddsaVerifyAsync(pub, msg, bad)).toBe(false);
    }
  });
  it("signs and verifies with a fresh key pair", () => {
    const { privateKey, publicKey } = generateEcKeyPair();
    const msg = crypto.getRandomValues(new Uint8Array(100));
    const sig = xeddsaSign(privateKey, msg);
    expect(xeddsaVerify(publicKey, msg, sig)).toBe(true);
    expect(xeddsaVerify(publicKey, msg.subarray(1), sig)).toBe(false);
  });
  it("runs a PQXDH session with a ratchet exchange", async () => {
    const backends = await nativeBackends();
    expect(["webcrypto", "noble"]).toContain(backends.x25519);
    const aliceIdentity = { identityKeyPair: generateEcKeyPair(), registrationId: 1 };
    const bobIdentity = { identityKeyPair: generateEcKeyPair(), registrationId: 2 };
    const spk = generateEcKeyPair();
    const kem = generateKemKeyPair();
    const opk = generateEcKeyPair();
    const sign = (k: Uint8Array) => xeddsaSign(bobIdentity.identityKeyPair.privateKey, k);
    const bundle: PreKeyBundle = {
      identityKey: bobIdentity.identityKeyPair.publicKey,
      deviceId: 1,
      registrationId: 2,
      signedPreKey: { keyId: 1, publicKey: spk.publicKey, signature: sign(spk.publicKey) },
      preKey: { keyId: 7, publicKey: opk.publicKey },
      pqPreKey: { keyId: 9, publicKey: kem.publicKey, signature: sign(kem.publicKey) },
    };
    const store = { signedPreKey: () => spk, preKey: () => opk, kemPreKey: () => kem, lastResortUsed: () => false };
    const alice = await initiateSession(aliceIdentity, bundle);
    const bob = new SessionRecord();
    const m1 = sessionEncrypt(alice, utf8("hello from workerd"));
    expect(m1.type).toBe(3);
    expect(fromUtf8((await sessionDecrypt(bob, bobIdentity, store, m1.type, m1.body)).plaintext)).toBe(
      "hello from workerd",
    );
    const m2 = sessionEncrypt(bob, utf8("reply"));
    expect(m2.type).toBe(2);
    expect(fromUtf8((await sessionDecrypt(alice, aliceIdentity, store, m2.type, m2.body)).plaintext)).toBe("reply");
    const restored = SessionRecord.deserialize(bob.serialize());
    const m3 = sessionEncrypt(alice, utf8("after restart"));
    expect(fromUtf8((await sessionDecrypt(restored, bobIdentity, store, m3.type, m3.body)).plaintext)).toBe(
      "after restart",
    );
  });
  it("seals and opens a link envelope", () => {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const transcript = utf8("transcript");
    const sealed = sealLinkEnvelope(key, transcript, utf8("identity key"));
    expect(fromUtf8(openLinkEnvelope(key, transcript, sealed))).toBe("identity key");
    sealed[sealed.length - 1]! ^= 1;
    expect(() => openLinkEnvelope(key, transcript, sealed)).toThrow(/altered/);
  });
});
