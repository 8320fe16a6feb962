// Device-link envelopes (src/crypto/link-envelope.ts): round trips, fresh nonces, and every
// single-bit change, truncation or wrong secret refused with a clear error.

import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { describe, expect, it } from "vitest";
import { randomBytes, toHex, utf8 } from "../../src/crypto/bytes.ts";
import { CryptoError } from "../../src/crypto/errors.ts";
import { LINK_ENVELOPE_OVERHEAD, openLinkEnvelope, sealLinkEnvelope } from "../../src/crypto/link-envelope.ts";

describe("link envelopes", () => {
  it("round trip plaintexts of several sizes, empty included", () => {
    const secret = randomBytes(32);
    for (const n of [0, 1, 32, 1000, 70000]) {
      const pt = randomBytes(n);
      const sealed = sealLinkEnvelope(secret, pt);
      expect(sealed.length).toBe(n + LINK_ENVELOPE_OVERHEAD);
      expect(toHex(openLinkEnvelope(secret, sealed))).toBe(toHex(pt));
    }
  });
  it("use a fresh nonce each time", () => {
    const secret = randomBytes(32);
    const pt = utf8("identity key");
    const a = sealLinkEnvelope(secret, pt);
    const b = sealLinkEnvelope(secret, pt);
    expect(toHex(a.subarray(1, 25))).not.toBe(toHex(b.subarray(1, 25)));
    expect(toHex(a)).not.toBe(toHex(b));
  });
  it("encrypt under HKDF-SHA256(secret, info 'cipherpost-link-v1'), never the raw secret", () => {
    const secret = randomBytes(32);
    const pt = utf8("hello");
    const sealed = sealLinkEnvelope(secret, pt);
    const key = hkdf(sha256, secret, undefined, utf8("cipherpost-link-v1"), 32);
    const opened = xchacha20poly1305(key, sealed.subarray(1, 25), sealed.subarray(0, 1)).decrypt(sealed.subarray(25));
    expect(toHex(opened)).toBe(toHex(pt));
    expect(() =>
      xchacha20poly1305(secret, sealed.subarray(1, 25), sealed.subarray(0, 1)).decrypt(sealed.subarray(25)),
    ).toThrow();
  });
  it("refuse every single-bit change with DECRYPTION_FAILED or INVALID_MESSAGE", () => {
    const secret = randomBytes(32);
    const sealed = sealLinkEnvelope(secret, randomBytes(40));
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const bad = sealed.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      let error: unknown;
      try {
        openLinkEnvelope(secret, bad);
      } catch (e) {
        error = e;
      }
      expect(CryptoError.is(error)).toBe(true);
      expect((error as CryptoError).code).toBe(bit < 8 ? "INVALID_MESSAGE" : "DECRYPTION_FAILED");
    }
  });
  it("refuse a wrong secret, truncation and appended bytes", () => {
    const secret = randomBytes(32);
    const sealed = sealLinkEnvelope(secret, randomBytes(10));
    expect(() => openLinkEnvelope(randomBytes(32), sealed)).toThrow(/altered or the secret is wrong/);
    expect(() => openLinkEnvelope(secret, sealed.subarray(0, sealed.length - 1))).toThrow(CryptoError);
    expect(() => openLinkEnvelope(secret, sealed.subarray(0, 20))).toThrow(/too short/);
    const longer = new Uint8Array(sealed.length + 1);
    longer.set(sealed);
    expect(() => openLinkEnvelope(secret, longer)).toThrow(CryptoError);
  });
  it("refuse secrets that are not 32 bytes", () => {
    expect(() => sealLinkEnvelope(randomBytes(31), utf8("x"))).toThrow(/32 bytes/);
    expect(() => openLinkEnvelope(randomBytes(33), new Uint8Array(60))).toThrow(/32 bytes/);
  });
});
