// Device linking's cryptography (src/crypto/link-envelope.ts): both sides derive the same key and verification
// code, a different request key gives a different code, and the sealed hand-over is bound to its key and
// transcript: every single-bit change, truncation, other transcript or key is refused with a clear error.

import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { describe, expect, it } from "vitest";
import { concatBytes, randomBytes, toHex, utf8 } from "../../src/crypto/bytes.ts";
import { CryptoError } from "../../src/crypto/errors.ts";
import { calculateAgreement, generateEcKeyPair } from "../../src/crypto/keys.ts";
import {
  deriveLinkSecrets,
  LINK_ENVELOPE_OVERHEAD,
  linkTranscript,
  openLinkEnvelope,
  sealLinkEnvelope,
} from "../../src/crypto/link-envelope.ts";

function handShake() {
  const existing = generateEcKeyPair();
  const fresh = generateEcKeyPair();
  const transcript = linkTranscript({
    accountId: randomBytes(16),
    linkToken: randomBytes(32),
    existingKey: existing.publicKey,
    newKey: fresh.publicKey,
  });
  return { existing, fresh, transcript };
}

describe("link secrets", () => {
  it("are the same on both devices, and follow the documented HKDF", () => {
    const { existing, fresh, transcript } = handShake();
    const a = deriveLinkSecrets(existing.privateKey, fresh.publicKey, transcript);
    const b = deriveLinkSecrets(fresh.privateKey, existing.publicKey, transcript);
    expect(toHex(a.key)).toBe(toHex(b.key));
    expect(a.verificationCode).toBe(b.verificationCode);
    expect(a.verificationCode).toMatch(/^\d{6}$/);
    const okm = hkdf(
      sha256,
      calculateAgreement(existing.privateKey, fresh.publicKey),
      sha256(transcript),
      utf8("cipherpost-link-v2"),
      37,
    );
    expect(toHex(a.key)).toBe(toHex(okm.subarray(0, 32)));
    const n = okm.subarray(32).reduce((acc, x) => acc * 256 + x, 0);
    expect(Number(a.verificationCode)).toBe(n % 1_000_000);
  });

  it("differ for another requesting key or another transcript (a code reader's request shows another code)", () => {
    const { existing, fresh, transcript } = handShake();
    const genuine = deriveLinkSecrets(fresh.privateKey, existing.publicKey, transcript).verificationCode;
    const codes = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const snooper = generateEcKeyPair();
      codes.add(deriveLinkSecrets(existing.privateKey, snooper.publicKey, transcript).verificationCode);
    }
    expect(codes.size).toBeGreaterThan(15);
    const other = concatBytes(transcript.subarray(0, -1), Uint8Array.of(transcript.at(-1)! ^ 1));
    expect(toHex(deriveLinkSecrets(fresh.privateKey, existing.publicKey, other).key)).not.toBe(
      toHex(deriveLinkSecrets(fresh.privateKey, existing.publicKey, transcript).key),
    );
    expect(genuine).toMatch(/^\d{6}$/);
  });

  it("refuse a small-order key and malformed transcript parts", () => {
    const { existing, transcript } = handShake();
    expect(() => deriveLinkSecrets(existing.privateKey, Uint8Array.of(5, ...new Uint8Array(32)), transcript)).toThrow(
      CryptoError,
    );
    expect(() =>
      linkTranscript({
        accountId: randomBytes(15),
        linkToken: randomBytes(32),
        existingKey: existing.publicKey,
        newKey: existing.publicKey,
      }),
    ).toThrow(/16 bytes/);
  });
});

describe("link envelopes", () => {
  const key = randomBytes(32);
  const transcript = handShake().transcript;

  it("round trip plaintexts of several sizes, empty included, with a fresh nonce each time", () => {
    for (const n of [0, 1, 32, 1000, 70000]) {
      const pt = randomBytes(n);
      const sealed = sealLinkEnvelope(key, transcript, pt);
      expect(sealed.length).toBe(n + LINK_ENVELOPE_OVERHEAD);
      expect(toHex(openLinkEnvelope(key, transcript, sealed))).toBe(toHex(pt));
    }
    const a = sealLinkEnvelope(key, transcript, utf8("x"));
    const b = sealLinkEnvelope(key, transcript, utf8("x"));
    expect(toHex(a.subarray(1, 25))).not.toBe(toHex(b.subarray(1, 25)));
  });

  it("are XChaCha20-Poly1305 with 0x02 ‖ transcript as associated data", () => {
    const sealed = sealLinkEnvelope(key, transcript, utf8("hello"));
    expect(sealed[0]).toBe(2);
    const aad = concatBytes(Uint8Array.of(2), transcript);
    expect(utf8("hello")).toEqual(xchacha20poly1305(key, sealed.subarray(1, 25), aad).decrypt(sealed.subarray(25)));
  });

  it("refuse every single-bit change with DECRYPTION_FAILED or INVALID_MESSAGE", () => {
    const sealed = sealLinkEnvelope(key, transcript, randomBytes(40));
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const bad = sealed.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      let error: unknown;
      try {
        openLinkEnvelope(key, transcript, bad);
      } catch (e) {
        error = e;
      }
      expect(CryptoError.is(error)).toBe(true);
      expect((error as CryptoError).code).toBe(bit < 8 ? "INVALID_MESSAGE" : "DECRYPTION_FAILED");
    }
  });

  it("refuse another key or transcript, truncation, appended bytes and keys not 32 bytes", () => {
    const sealed = sealLinkEnvelope(key, transcript, randomBytes(10));
    expect(() => openLinkEnvelope(randomBytes(32), transcript, sealed)).toThrow(/not for this link/);
    expect(() => openLinkEnvelope(key, handShake().transcript, sealed)).toThrow(/not for this link/);
    expect(() => openLinkEnvelope(key, transcript, sealed.subarray(0, sealed.length - 1))).toThrow(CryptoError);
    expect(() => openLinkEnvelope(key, transcript, sealed.subarray(0, 20))).toThrow(/too short/);
    expect(() => openLinkEnvelope(key, transcript, concatBytes(sealed, Uint8Array.of(0)))).toThrow(CryptoError);
    expect(() => sealLinkEnvelope(randomBytes(31), transcript, utf8("x"))).toThrow(/32 bytes/);
  });
});
