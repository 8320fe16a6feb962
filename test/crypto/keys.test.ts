// Key encodings and generation (src/crypto/keys.ts): RFC 7748 X25519 vectors, type bytes, sizes,
// ML-KEM-1024 round trips, and agreement with libsignal-made X25519 keys.

import { describe, expect, it } from "vitest";
import { fromBase64, fromHex, toHex } from "../../src/crypto/bytes.ts";
import {
  calculateAgreement,
  clampPrivateKey,
  EC_KEY_TYPE,
  EC_PUBLIC_KEY_BYTES,
  ecPublicKeyFromPrivate,
  encodeEcPublicKey,
  generateEcKeyPair,
  generateKemKeyPair,
  isEcPublicKey,
  isKemPublicKey,
  isMlKemPublicKey,
  KEM_CIPHERTEXT_BYTES,
  KEM_KEY_TYPE_KYBER1024,
  KEM_KEY_TYPE_MLKEM1024,
  KEM_PUBLIC_KEY_BYTES,
  kemDecapsulate,
  kemEncapsulate,
  SIGNATURE_BYTES,
} from "../../src/crypto/keys.ts";
import agreements from "../vectors/libsignal-agreement.json" with { type: "json" };
import registration from "../vectors/libsignal-registration.json" with { type: "json" };

const typed = (hex: string) => encodeEcPublicKey(fromHex(hex));

describe("constants", () => {
  it("match the directory API's wire forms", () => {
    expect(EC_KEY_TYPE).toBe(0x05);
    expect(KEM_KEY_TYPE_KYBER1024).toBe(0x08);
    expect(KEM_KEY_TYPE_MLKEM1024).toBe(0x0a);
    expect(EC_PUBLIC_KEY_BYTES).toBe(33);
    expect(KEM_PUBLIC_KEY_BYTES).toBe(1569);
    expect(SIGNATURE_BYTES).toBe(64);
  });
});

describe("RFC 7748 X25519", () => {
  // RFC 7748 §5.2: scalar multiplication of arbitrary u-coordinates (scalars are clamped inside).
  it("§5.2 test vector 1", () => {
    const k = fromHex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    const u = "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c";
    expect(toHex(calculateAgreement(k, typed(u)))).toBe(
      "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    );
  });
  it("§5.2 test vector 2 (u with bit 255 set is masked, as §5 requires)", () => {
    const k = fromHex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
    const u = "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493";
    expect(toHex(calculateAgreement(k, typed(u)))).toBe(
      "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    );
  });
  it("§5.2 iterated: 1 and 1,000 iterations", () => {
    let k: Uint8Array = fromHex("0900000000000000000000000000000000000000000000000000000000000000");
    let u: Uint8Array = k.slice();
    for (let i = 1; i <= 1000; i++) {
      const next = calculateAgreement(k, encodeEcPublicKey(u));
      u = k;
      k = next;
      if (i === 1) expect(toHex(k)).toBe("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
    }
    expect(toHex(k)).toBe("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
  });
  it("§6.1 Diffie-Hellman: both public keys and the shared secret", () => {
    const alicePriv = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const bobPriv = fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    const alicePub = ecPublicKeyFromPrivate(alicePriv);
    const bobPub = ecPublicKeyFromPrivate(bobPriv);
    expect(toHex(alicePub)).toBe("05" + "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    expect(toHex(bobPub)).toBe("05" + "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    expect(toHex(calculateAgreement(alicePriv, bobPub))).toBe(shared);
    expect(toHex(calculateAgreement(bobPriv, alicePub))).toBe(shared);
  });
  it("refuses an agreement with a small-order key (all-zero output)", () => {
    const { privateKey } = generateEcKeyPair();
    expect(() => calculateAgreement(privateKey, typed("00".repeat(32)))).toThrow();
    expect(() => calculateAgreement(privateKey, typed(`01${"00".repeat(31)}`))).toThrow();
    expect(() =>
      calculateAgreement(privateKey, typed("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")),
    ).toThrow();
  });
  it("refuses an untyped or wrongly typed public key", () => {
    const { privateKey, publicKey } = generateEcKeyPair();
    expect(() => calculateAgreement(privateKey, publicKey.subarray(1))).toThrow();
    const wrong = publicKey.slice();
    wrong[0] = 0x06;
    expect(() => calculateAgreement(privateKey, wrong)).toThrow();
  });
});

describe("EC keys", () => {
  it("generateEcKeyPair returns a clamped 32-byte private key and its 0x05-typed public key", () => {
    for (let i = 0; i < 20; i++) {
      const { privateKey, publicKey } = generateEcKeyPair();
      expect(privateKey.length).toBe(32);
      expect(privateKey[0]! & 7).toBe(0);
      expect(privateKey[31]! & 0xc0).toBe(0x40);
      expect(toHex(clampPrivateKey(privateKey))).toBe(toHex(privateKey));
      expect(publicKey.length).toBe(33);
      expect(publicKey[0]).toBe(0x05);
      expect(toHex(ecPublicKeyFromPrivate(privateKey))).toBe(toHex(publicKey));
    }
  });
  it("two generated key pairs agree on a shared secret", () => {
    const a = generateEcKeyPair();
    const b = generateEcKeyPair();
    expect(toHex(calculateAgreement(a.privateKey, b.publicKey))).toBe(
      toHex(calculateAgreement(b.privateKey, a.publicKey)),
    );
  });
  it("isEcPublicKey accepts exactly 33 bytes starting 0x05", () => {
    const { publicKey } = generateEcKeyPair();
    expect(isEcPublicKey(publicKey)).toBe(true);
    expect(isEcPublicKey(publicKey.subarray(1))).toBe(false);
    expect(isEcPublicKey(new Uint8Array(34).fill(5))).toBe(false);
    const wrong = publicKey.slice();
    wrong[0] = 0x08;
    expect(isEcPublicKey(wrong)).toBe(false);
  });
  it("agrees with libsignal on public keys and X25519 shared secrets", () => {
    expect(agreements.length).toBe(20);
    for (const v of agreements) {
      const priv = fromBase64(v.privateKey);
      expect(toHex(ecPublicKeyFromPrivate(priv))).toBe(toHex(fromBase64(v.publicKey)));
      expect(toHex(calculateAgreement(priv, fromBase64(v.theirPublicKey)))).toBe(toHex(fromBase64(v.sharedSecret)));
    }
  });
  it("derives libsignal's identity public keys from its identity private keys", () => {
    for (const account of registration.accounts) {
      expect(toHex(ecPublicKeyFromPrivate(fromBase64(account.identityPrivateKey)))).toBe(
        toHex(fromBase64(account.identityKey)),
      );
    }
  });
});

describe("KEM keys", () => {
  it("generateKemKeyPair returns a 0x0A-typed 1569-byte ML-KEM-1024 key", () => {
    const { secretKey, publicKey } = generateKemKeyPair();
    expect(publicKey.length).toBe(1569);
    expect(publicKey[0]).toBe(0x0a);
    expect(secretKey.length).toBe(3168);
    expect(isKemPublicKey(publicKey)).toBe(true);
    expect(isMlKemPublicKey(publicKey)).toBe(true);
  });
  it("encapsulation and decapsulation agree; a changed ciphertext does not", () => {
    const { secretKey, publicKey } = generateKemKeyPair();
    const { cipherText, sharedSecret } = kemEncapsulate(publicKey);
    expect(cipherText.length).toBe(KEM_CIPHERTEXT_BYTES);
    expect(toHex(kemDecapsulate(secretKey, cipherText))).toBe(toHex(sharedSecret));
    const bad = cipherText.slice();
    bad[100]! ^= 1;
    // FIPS 203 implicit rejection: no exception, a different secret.
    expect(toHex(kemDecapsulate(secretKey, bad))).not.toBe(toHex(sharedSecret));
  });
  it("isKemPublicKey accepts libsignal's 0x08 keys, but encapsulation refuses them", () => {
    const kyber = fromBase64(registration.accounts[0]!.pqLastResortPreKey.publicKey);
    expect(kyber[0]).toBe(0x08);
    expect(isKemPublicKey(kyber)).toBe(true);
    expect(isMlKemPublicKey(kyber)).toBe(false);
    expect(() => kemEncapsulate(kyber)).toThrow(/0x08/);
  });
  it("isKemPublicKey refuses wrong lengths and type bytes", () => {
    const { publicKey } = generateKemKeyPair();
    expect(isKemPublicKey(publicKey.subarray(1))).toBe(false);
    for (const t of [0x00, 0x05, 0x07, 0x09, 0x0b]) {
      const k = publicKey.slice();
      k[0] = t;
      expect(isKemPublicKey(k)).toBe(false);
    }
  });
});
