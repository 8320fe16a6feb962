// Fixtures made by libsignal itself (test/vectors/README.md has the generator): its XEdDSA
// signatures verify here, altered ones do not, and every prekey signature of its registrations verifies.

import { describe, expect, it } from "vitest";
import { concatBytes, fromBase64 } from "../../src/crypto/bytes.ts";
import { isEcPublicKey, isKemPublicKey, KEM_KEY_TYPE_KYBER1024 } from "../../src/crypto/keys.ts";
import { xeddsaSign, xeddsaVerify } from "../../src/crypto/xeddsa.ts";
import signatures from "../vectors/libsignal-xeddsa.json" with { type: "json" };
import registration from "../vectors/libsignal-registration.json" with { type: "json" };

const flipBit = (b: Uint8Array, bit: number) => {
  const c = b.slice();
  c[bit >> 3]! ^= 1 << (bit & 7);
  return c;
};
const vectors = signatures.map((v) => ({
  publicKey: fromBase64(v.publicKey),
  message: fromBase64(v.message),
  signature: fromBase64(v.signature),
  privateKey: fromBase64(v.privateKey),
}));

describe("libsignal XEdDSA signatures", () => {
  it("there are 200 of them, with both sign-bit values", () => {
    expect(vectors.length).toBe(200);
    const bits = new Set(vectors.map((v) => v.signature[63]! >> 7));
    expect(bits).toEqual(new Set([0, 1]));
  });
  it("all 200 verify", () => {
    for (const v of vectors) {
      expect(isEcPublicKey(v.publicKey)).toBe(true);
      expect(xeddsaVerify(v.publicKey, v.message, v.signature)).toBe(true);
    }
  });
  it("every one fails with one bit of the signature, the message or the key flipped", () => {
    for (const [i, v] of vectors.entries()) {
      // Sweep the positions across vectors so every byte of the signature and key is hit somewhere.
      const sigBit = (i * 37) % 512;
      const keyBit = 8 + ((i * 29) % 256); // past the type byte: those bits are covered below
      expect(xeddsaVerify(v.publicKey, v.message, flipBit(v.signature, sigBit))).toBe(false);
      expect(xeddsaVerify(v.publicKey, v.message, flipBit(v.signature, 511))).toBe(false);
      expect(xeddsaVerify(flipBit(v.publicKey, keyBit), v.message, v.signature)).toBe(false);
      expect(xeddsaVerify(flipBit(v.publicKey, i % 8), v.message, v.signature)).toBe(false);
      const altered =
        v.message.length === 0 ? new Uint8Array([0]) : flipBit(v.message, (i * 13) % (v.message.length * 8));
      expect(xeddsaVerify(v.publicKey, altered, v.signature)).toBe(false);
      expect(xeddsaVerify(v.publicKey, concatBytes(v.message, new Uint8Array([0])), v.signature)).toBe(false);
    }
  });
  it("our signatures under libsignal's private keys verify under libsignal's public keys", () => {
    for (const v of vectors.slice(0, 50)) {
      const sig = xeddsaSign(v.privateKey, v.message);
      expect(sig[63]! >> 7).toBe(v.signature[63]! >> 7); // same key, same Edwards sign bit
      expect(xeddsaVerify(v.publicKey, v.message, sig)).toBe(true);
    }
  });
});

type SignedKey = { keyId: number; publicKey: string; signature: string };
type DeviceKeys = {
  registrationId: number;
  signedPreKey: SignedKey;
  pqLastResortPreKey: SignedKey;
  preKeys: { keyId: number; publicKey: string }[];
  pqPreKeys: SignedKey[];
};

function checkDevice(identityKey: Uint8Array, device: DeviceKeys) {
  expect(device.registrationId).toBeGreaterThanOrEqual(1);
  expect(device.registrationId).toBeLessThanOrEqual(16383);
  const spk = fromBase64(device.signedPreKey.publicKey);
  expect(isEcPublicKey(spk)).toBe(true);
  expect(xeddsaVerify(identityKey, spk, fromBase64(device.signedPreKey.signature))).toBe(true);
  const signedKem = [device.pqLastResortPreKey, ...device.pqPreKeys];
  expect(signedKem.length).toBe(6);
  for (const k of signedKem) {
    const pub = fromBase64(k.publicKey);
    expect(isKemPublicKey(pub)).toBe(true);
    expect(pub[0]).toBe(KEM_KEY_TYPE_KYBER1024);
    // Signed over the full 1569-byte serialisation, type byte included.
    expect(xeddsaVerify(identityKey, pub, fromBase64(k.signature))).toBe(true);
    expect(xeddsaVerify(identityKey, pub.subarray(1), fromBase64(k.signature))).toBe(false);
  }
  expect(device.preKeys.length).toBe(5);
  for (const k of device.preKeys) expect(isEcPublicKey(fromBase64(k.publicKey))).toBe(true);
  // A signature moved to another key does not verify.
  expect(
    xeddsaVerify(identityKey, fromBase64(device.preKeys[0]!.publicKey), fromBase64(device.signedPreKey.signature)),
  ).toBe(false);
}

describe("libsignal registrations", () => {
  it("has two accounts with distinct identities", () => {
    expect(registration.accounts.length).toBe(2);
    expect(registration.accounts[0]!.identityKey).not.toBe(registration.accounts[1]!.identityKey);
  });
  for (const [i, account] of registration.accounts.entries()) {
    it(`account ${i}: every prekey signature verifies under its identity key and not under the other's`, () => {
      const identityKey = fromBase64(account.identityKey);
      expect(isEcPublicKey(identityKey)).toBe(true);
      checkDevice(identityKey, account);
      const other = fromBase64(registration.accounts[1 - i]!.identityKey);
      expect(
        xeddsaVerify(other, fromBase64(account.signedPreKey.publicKey), fromBase64(account.signedPreKey.signature)),
      ).toBe(false);
    });
  }
  it("the linked device's keys are signed by account 0's identity key", () => {
    expect(registration.linkedDevice.account).toBe(0);
    checkDevice(fromBase64(registration.accounts[0]!.identityKey), registration.linkedDevice);
  });
  it("our signature with libsignal's identity private key verifies, as a relay challenge needs", () => {
    for (const account of registration.accounts) {
      const challenge = crypto.getRandomValues(new Uint8Array(32));
      const sig = xeddsaSign(fromBase64(account.identityPrivateKey), challenge);
      expect(xeddsaVerify(fromBase64(account.identityKey), challenge, sig)).toBe(true);
    }
  });
});
