// Published vectors for the primitives under the protocol: RFC 5869 HKDF-SHA256, FIPS 203
// ML-KEM-1024 (a C2SP/CCTV vector through noble), and the ratchet's KDF building blocks.

import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { ml_kem1024 } from "@noble/post-quantum/ml-kem.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { concatBytes, fromHex, randomBytes, toHex, utf8 } from "../../src/crypto/bytes.ts";
import {
  hkdfSha256,
  INFO,
  kdfChainKey,
  kdfRootKey,
  messageKeyMaterial,
  messageKeyOf,
  nextChainKey,
  pqxdhSecret,
} from "../../src/crypto/kdf.ts";
import { encodeEcPublicKey, KEM_KEY_TYPE_MLKEM1024, kemDecapsulate, kemEncapsulate } from "../../src/crypto/keys.ts";
import kat from "../vectors/mlkem1024-cctv-unlucky.json" with { type: "json" };

describe("RFC 5869 HKDF-SHA256", () => {
  it("test case 1", () => {
    const okm = hkdfSha256(
      new Uint8Array(22).fill(0x0b),
      fromHex("000102030405060708090a0b0c"),
      fromHex("f0f1f2f3f4f5f6f7f8f9"),
      42,
    );
    expect(toHex(okm)).toBe("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  });
  it("test case 3 (no salt, no info)", () => {
    const okm = hkdfSha256(new Uint8Array(22).fill(0x0b), undefined, new Uint8Array(0), 42);
    expect(toHex(okm)).toBe("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
  });
  it("agrees with WebCrypto's HKDF on random inputs", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 100 }),
        fc.uint8Array({ minLength: 0, maxLength: 64 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.integer({ min: 1, max: 200 }),
        async (ikm, salt, info, len) => {
          const key = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
          const ref = new Uint8Array(
            await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, key, len * 8),
          );
          expect(toHex(hkdfSha256(ikm, salt, info, len))).toBe(toHex(ref));
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe("FIPS 203 ML-KEM-1024", () => {
  const seed = concatBytes(fromHex(kat.d), fromHex(kat.z));
  const { publicKey, secretKey } = ml_kem1024.keygen(seed);
  it("KeyGen(d, z) reproduces the C2SP/CCTV encapsulation and decapsulation keys", () => {
    expect(publicKey.length).toBe(1568);
    expect(secretKey.length).toBe(3168);
    expect(toHex(publicKey.subarray(0, 32))).toBe(kat.ekFirst32);
    expect(toHex(publicKey.subarray(-32))).toBe(kat.ekLast32);
    expect(toHex(secretKey.subarray(-64))).toBe(kat.dkLast64); // H(ek) ‖ z
  });
  it("Encaps(ek, m) reproduces the ciphertext and shared key, and our kemDecapsulate recovers K", () => {
    const { cipherText, sharedSecret } = ml_kem1024.encapsulate(publicKey, fromHex(kat.m));
    expect(toHex(sharedSecret)).toBe(kat.K);
    expect(toHex(cipherText.subarray(0, 32))).toBe(kat.cFirst32);
    expect(toHex(cipherText.subarray(-32))).toBe(kat.cLast32);
    expect(toHex(kemDecapsulate(secretKey, cipherText))).toBe(kat.K);
  });
  it("our typed 0x0A key encapsulates to the same key pair", () => {
    const typed = concatBytes(new Uint8Array([KEM_KEY_TYPE_MLKEM1024]), publicKey);
    const { cipherText, sharedSecret } = kemEncapsulate(typed);
    expect(toHex(kemDecapsulate(secretKey, cipherText))).toBe(toHex(sharedSecret));
  });
});

describe("protocol KDFs", () => {
  it("PQXDH SK = HKDF(0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 ‖ DH4 ‖ SS, zero salt, info)", () => {
    const dhs = [randomBytes(32), randomBytes(32), randomBytes(32), randomBytes(32)];
    const ss = randomBytes(32);
    const expected = hkdfSha256(
      concatBytes(new Uint8Array(32).fill(0xff), ...dhs, ss),
      new Uint8Array(32),
      INFO.pqxdh,
      32,
    );
    expect(toHex(pqxdhSecret(dhs, ss))).toBe(toHex(expected));
    // Without DH4 the input is shorter, and the order matters.
    expect(toHex(pqxdhSecret(dhs.slice(0, 3), ss))).not.toBe(toHex(expected));
    expect(toHex(pqxdhSecret([dhs[1]!, dhs[0]!, dhs[2]!, dhs[3]!], ss))).not.toBe(toHex(expected));
    expect(toHex(INFO.pqxdh)).toBe(toHex(utf8("cipherpost_PQXDH_CURVE25519_SHA-256_ML-KEM-1024")));
  });
  it("KDF_CK uses HMAC-SHA256 with 0x01 for the message key and 0x02 for the next chain key", () => {
    // The chain step runs on its own allocation-free HMAC over noble's compression function: it must agree with
    // noble's general HMAC on every key, including all-zero and all-one keys, and leave its input alone.
    for (const ck of [
      new Uint8Array(32),
      new Uint8Array(32).fill(0xff),
      ...Array.from({ length: 500 }, () => randomBytes(32)),
    ]) {
      const copy = toHex(ck);
      const [next, mk] = kdfChainKey(ck);
      expect(toHex(mk)).toBe(toHex(hmac(sha256, ck, new Uint8Array([1]))));
      expect(toHex(next)).toBe(toHex(hmac(sha256, ck, new Uint8Array([2]))));
      expect(toHex(nextChainKey(ck))).toBe(toHex(next));
      expect(toHex(messageKeyOf(ck))).toBe(toHex(mk));
      expect(toHex(ck)).toBe(copy);
    }
    expect(() => nextChainKey(new Uint8Array(31))).toThrow();
  });
  it("KDF_RK uses the root key as HKDF salt and splits 64 bytes", () => {
    const rk = randomBytes(32);
    const dh = randomBytes(32);
    const [rk2, ck] = kdfRootKey(rk, dh);
    const out = hkdfSha256(dh, rk, INFO.rootKey, 64);
    expect(toHex(rk2)).toBe(toHex(out.subarray(0, 32)));
    expect(toHex(ck)).toBe(toHex(out.subarray(32)));
  });
  it("message keys give a 32-byte AEAD key and a 12-byte nonce", () => {
    const { key, nonce } = messageKeyMaterial(randomBytes(32));
    expect(key.length).toBe(32);
    expect(nonce.length).toBe(12);
  });
  it("typed keys are 0x05 ‖ u", () => {
    expect(toHex(encodeEcPublicKey(new Uint8Array(32).fill(1)))).toBe(`05${"01".repeat(32)}`);
  });
});
