// XEdDSA in libsignal's variant (src/crypto/xeddsa.ts): RFC 8032 Ed25519 vectors through the
// Montgomery mapping, round trips, every single-bit change refused, hostile inputs give false.

import { ed25519 } from "@noble/curves/ed25519.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { concatBytes, fromHex, randomBytes, toHex } from "../../src/crypto/bytes.ts";
import { ecPublicKeyFromPrivate, encodeEcPublicKey, generateEcKeyPair } from "../../src/crypto/keys.ts";
import { montgomeryUToEdwards, xeddsaSign, xeddsaVerify } from "../../src/crypto/xeddsa.ts";

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const le = (n: bigint) => {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return out;
};
const fromLe = (b: Uint8Array) => b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n);
const flipBit = (b: Uint8Array, bit: number) => {
  const c = b.slice();
  c[bit >> 3]! ^= 1 << (bit & 7);
  return c;
};

// RFC 8032 §7.1 TEST 1, 2 and 3: secret seed, public key A, message, signature.
const RFC8032 = [
  {
    secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    message: "",
    signature:
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  },
  {
    secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    message: "72",
    signature:
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  },
  {
    secret: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    message: "af82",
    signature:
      "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
  },
];

describe("RFC 8032 Ed25519 vectors through the Montgomery mapping", () => {
  for (const [i, v] of RFC8032.entries()) {
    it(`TEST ${i + 1}: the Ed25519 signature verifies as XEdDSA with u = (1 + y)/(1 − y) and A's sign bit in byte 63`, () => {
      const A = fromHex(v.publicKey);
      const msg = fromHex(v.message);
      const sig = fromHex(v.signature);
      expect(ed25519.verify(sig, msg, A, { zip215: false })).toBe(true); // the vector itself is intact
      const u = ed25519.utils.toMontgomery(A);
      const signBit = A[31]! >> 7;
      const xsig = sig.slice();
      xsig[63]! |= signBit << 7;
      expect(xeddsaVerify(encodeEcPublicKey(u), msg, xsig)).toBe(true);
      expect(xeddsaVerify(u, msg, xsig)).toBe(true);
      // The wrong sign bit names the other point ±A and must fail.
      expect(xeddsaVerify(u, msg, flipBit(xsig, 511))).toBe(false);
      // And the mapping back lands on A exactly.
      expect(toHex(montgomeryUToEdwards(u, signBit as 0 | 1)!)).toBe(v.publicKey);
    });
    it(`TEST ${i + 1}: the expanded Ed25519 scalar, used as an X25519 key, makes XEdDSA signatures under the same A`, () => {
      const scalar = ed25519.utils.toMontgomerySecret(fromHex(v.secret));
      const A = fromHex(v.publicKey);
      expect(toHex(ecPublicKeyFromPrivate(scalar).subarray(1))).toBe(toHex(ed25519.utils.toMontgomery(A)));
      const msg = fromHex(v.message);
      const sig = xeddsaSign(scalar, msg, new Uint8Array(64).fill(7));
      expect(sig[63]! >> 7).toBe(A[31]! >> 7);
      // A plain RFC 8032 verifier accepts it once the sign bit is cleared, against A itself.
      const plain = sig.slice();
      plain[63]! &= 0x7f;
      expect(ed25519.verify(plain, msg, A, { zip215: false })).toBe(true);
      expect(xeddsaVerify(ecPublicKeyFromPrivate(scalar), msg, sig)).toBe(true);
    });
  }
});

describe("sign and verify", () => {
  it("round trips for fresh keys and messages of many lengths, both sign-bit values occurring", () => {
    const signBits = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const { privateKey, publicKey } = generateEcKeyPair();
      const msg = randomBytes(i * 37);
      const sig = xeddsaSign(privateKey, msg);
      expect(sig.length).toBe(64);
      signBits.add(sig[63]! >> 7);
      expect(xeddsaVerify(publicKey, msg, sig)).toBe(true);
      expect(xeddsaVerify(publicKey.subarray(1), msg, sig)).toBe(true);
    }
    expect(signBits).toEqual(new Set([0, 1]));
  });
  it("is deterministic in the random input and differs when it differs", () => {
    const { privateKey, publicKey } = generateEcKeyPair();
    const msg = randomBytes(50);
    const z1 = randomBytes(64);
    const z2 = randomBytes(64);
    expect(toHex(xeddsaSign(privateKey, msg, z1))).toBe(toHex(xeddsaSign(privateKey, msg, z1)));
    const s2 = xeddsaSign(privateKey, msg, z2);
    expect(toHex(s2)).not.toBe(toHex(xeddsaSign(privateKey, msg, z1)));
    expect(xeddsaVerify(publicKey, msg, s2)).toBe(true);
  });
  it("refuses a random input that is not 64 bytes", () => {
    const { privateKey } = generateEcKeyPair();
    expect(() => xeddsaSign(privateKey, new Uint8Array(1), new Uint8Array(32))).toThrow();
  });
  it("refuses a signature under another key", () => {
    const a = generateEcKeyPair();
    const b = generateEcKeyPair();
    const msg = randomBytes(32);
    expect(xeddsaVerify(b.publicKey, msg, xeddsaSign(a.privateKey, msg))).toBe(false);
  });
});

describe("every single-bit change is refused", () => {
  for (let round = 0; round < 3; round++) {
    it(`round ${round + 1}: each bit of message, signature and key`, () => {
      const { privateKey, publicKey } = generateEcKeyPair();
      const msg = randomBytes(24);
      const sig = xeddsaSign(privateKey, msg);
      expect(xeddsaVerify(publicKey, msg, sig)).toBe(true);
      for (let bit = 0; bit < msg.length * 8; bit++)
        expect(xeddsaVerify(publicKey, flipBit(msg, bit), sig)).toBe(false);
      for (let bit = 0; bit < 512; bit++) expect(xeddsaVerify(publicKey, msg, flipBit(sig, bit))).toBe(false);
      for (let bit = 0; bit < 33 * 8; bit++) expect(xeddsaVerify(flipBit(publicKey, bit), msg, sig)).toBe(false);
    });
  }
});

describe("strict verification returns false and never throws", () => {
  const good = generateEcKeyPair();
  const msg = randomBytes(40);
  const sig = xeddsaSign(good.privateKey, msg);

  it("wrong lengths of key and signature", () => {
    for (const n of [0, 1, 31, 34, 64]) expect(xeddsaVerify(new Uint8Array(n).fill(5), msg, sig)).toBe(false);
    for (const n of [0, 32, 63, 65, 128]) expect(xeddsaVerify(good.publicKey, msg, new Uint8Array(n))).toBe(false);
    expect(xeddsaVerify(good.publicKey, msg, concatBytes(sig, new Uint8Array(1)))).toBe(false);
    expect(xeddsaVerify(concatBytes(good.publicKey, new Uint8Array(1)), msg, sig)).toBe(false);
  });
  it("wrong type byte", () => {
    for (const t of [0x00, 0x04, 0x06, 0x08, 0x0a, 0x85]) {
      const k = good.publicKey.slice();
      k[0] = t;
      expect(xeddsaVerify(k, msg, sig)).toBe(false);
    }
  });
  it("non-JavaScript-typed inputs", () => {
    const f = xeddsaVerify as (a: unknown, b: unknown, c: unknown) => boolean;
    expect(f(null, msg, sig)).toBe(false);
    expect(f(good.publicKey, "hello", sig)).toBe(false);
    expect(f(good.publicKey, msg, Array.from(sig))).toBe(false);
  });
  it("non-canonical u (≥ p, or bit 255 set) even when u mod p is the signer's key", () => {
    const u = fromLe(good.publicKey.subarray(1));
    if (u + P < 2n ** 256n) expect(xeddsaVerify(le(u + P), msg, sig)).toBe(false);
    // Setting bit 255 gives a value ≥ p; X25519 would mask it, a strict verifier must not.
    const high = good.publicKey.slice();
    high[32]! |= 0x80;
    expect(xeddsaVerify(high, msg, sig)).toBe(false);
    for (const n of [P, P + 1n, P + 18n, 2n ** 255n - 1n, 2n ** 256n - 1n])
      expect(xeddsaVerify(le(n), msg, sig)).toBe(false);
  });
  it("u = p − 1, where u + 1 = 0 has no inverse", () => {
    expect(montgomeryUToEdwards(le(P - 1n), 0)).toBeNull();
    for (const s of [sig, new Uint8Array(64), new Uint8Array(64).fill(0xff)]) {
      expect(xeddsaVerify(le(P - 1n), msg, s)).toBe(false);
      expect(xeddsaVerify(encodeEcPublicKey(le(P - 1n)), msg, s)).toBe(false);
    }
  });
  // u-coordinates of the points of order 1, 2, 4 and 8 (RFC 7748 §7 and the usual X25519 blocklist).
  const SMALL_ORDER_U = [
    0n,
    1n,
    fromLe(fromHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")),
    fromLe(fromHex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")),
  ];
  it("small-order keys refuse even the (identity R, S = 0) forgery a cofactored check would accept for any message", () => {
    const identityR = fromHex(`01${"00".repeat(31)}`);
    for (const u of SMALL_ORDER_U) {
      for (const signBit of [0, 1]) {
        const forged = concatBytes(identityR, new Uint8Array(32));
        forged[63] = signBit << 7;
        expect(xeddsaVerify(le(u), msg, forged)).toBe(false);
        expect(xeddsaVerify(le(u), randomBytes(10), forged)).toBe(false);
      }
    }
  });
  it("u whose image is not on the curve (the twist) gives false", () => {
    let tried = 0;
    for (let i = 0; i < 200 && tried < 20; i++) {
      const u = randomBytes(32);
      u[31]! &= 0x7f;
      const A = montgomeryUToEdwards(u, 0);
      if (A === null) continue;
      let onCurve = true;
      try {
        ed25519.Point.fromBytes(A);
      } catch {
        onCurve = false;
      }
      if (onCurve) continue;
      tried++;
      expect(xeddsaVerify(u, msg, sig)).toBe(false);
    }
    expect(tried).toBe(20);
  });
  it("non-canonical S (S + L) is refused although S + L ≡ S (mod L)", () => {
    const s = fromLe(sig.subarray(32)) & ((1n << 255n) - 1n);
    const bad = concatBytes(sig.subarray(0, 32), le(s + L));
    bad[63]! |= sig[63]! & 0x80;
    expect(s + L < 2n ** 253n).toBe(true); // still fits below the sign bit
    expect(xeddsaVerify(good.publicKey, msg, bad)).toBe(false);
    expect(xeddsaVerify(good.publicKey, msg, sig)).toBe(true);
  });
  it("non-canonical R (y ≥ p) is refused", () => {
    for (const y of [P, P + 1n, P + 18n]) {
      const bad = concatBytes(le(y), sig.subarray(32));
      expect(xeddsaVerify(good.publicKey, msg, bad)).toBe(false);
    }
  });
  it("random garbage of any shape never throws (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 40 }),
        fc.uint8Array({ minLength: 0, maxLength: 70 }),
        fc.uint8Array({ minLength: 0, maxLength: 70 }),
        (key, m, s) => {
          const keyVariants = [
            key,
            key.length >= 32 ? key.subarray(0, 32) : key,
            concatBytes(new Uint8Array([5]), key.subarray(0, 32)),
          ];
          const sigVariants = [s, s.length >= 64 ? s.subarray(0, 64) : concatBytes(s, new Uint8Array(64 - s.length))];
          for (const k of keyVariants)
            for (const g of sigVariants) expect(typeof xeddsaVerify(k, m, g)).toBe("boolean");
        },
      ),
      { numRuns: 200 },
    );
  });
});
