// The constant-time signing path (src/crypto/scalar.ts under xeddsaSign): the limb arithmetic mod L agrees with
// BigInt on random and edge inputs, and the signer gives byte for byte the signatures of the textbook BigInt
// formula (the implementation it replaced), which libsignal's verifier accepted (test/vectors/README.md).

import { ed25519 } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromBase64, randomBytes, toHex } from "../../src/crypto/bytes.ts";
import { clampPrivateKey } from "../../src/crypto/keys.ts";
import { reduceScalar, scalarMulAdd } from "../../src/crypto/scalar.ts";
import { xeddsaSign, xeddsaVerify } from "../../src/crypto/xeddsa.ts";
import signatures from "../vectors/libsignal-xeddsa.json" with { type: "json" };

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const fromLe = (b: Uint8Array) => b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n);
const le = (n: bigint, len = 32) => {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return out;
};

/** The variable-time reference: libsignal's calculate_signature in BigInt, as xeddsa.ts computed it before. */
function referenceSign(privateKey: Uint8Array, message: Uint8Array, Z: Uint8Array): Uint8Array {
  const k = clampPrivateKey(privateKey);
  const a = fromLe(k) % L;
  const A = ed25519.Point.BASE.multiply(a).toBytes();
  const prefix = new Uint8Array(32).fill(0xff);
  prefix[0] = 0xfe;
  const r = fromLe(sha512.create().update(prefix).update(k).update(message).update(Z).digest()) % L;
  const R = ed25519.Point.BASE.multiply(r).toBytes();
  const h = fromLe(sha512.create().update(R).update(A).update(message).digest()) % L;
  const sig = new Uint8Array(64);
  sig.set(R);
  sig.set(le((r + h * a) % L), 32);
  sig[63]! |= A[31]! & 0x80;
  return sig;
}

const EDGES = [0n, 1n, L - 1n, L, L + 1n, 2n * L, 2n ** 252n, 2n ** 255n - 19n, 2n ** 256n - 1n];

describe("scalar arithmetic mod L in byte limbs", () => {
  it("reduces 32- and 64-byte numbers exactly as BigInt does, edges included", () => {
    for (const n of [...EDGES, 2n ** 512n - 1n, L * L, (2n ** 512n - 1n) % (L * 2n ** 255n)]) {
      const bytes = n < 2n ** 256n ? le(n) : le(n, 64);
      expect(fromLe(reduceScalar(bytes))).toBe(n % L);
    }
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), (b) => fromLe(reduceScalar(b)) === fromLe(b) % L),
      { numRuns: 2000 },
    );
  });
  it("computes (r + h·a) mod L for reduced h and r and any 32-byte a", () => {
    const reduced = fc.uint8Array({ minLength: 64, maxLength: 64 }).map((b) => le(fromLe(b) % L));
    fc.assert(
      fc.property(reduced, fc.uint8Array({ minLength: 32, maxLength: 32 }), reduced, (h, a, r) => {
        return fromLe(scalarMulAdd(h, a, r)) === (fromLe(r) + fromLe(h) * fromLe(a)) % L;
      }),
      { numRuns: 2000 },
    );
    for (const h of [0n, 1n, L - 1n])
      for (const a of [0n, 1n, L - 1n, 2n ** 255n - 1n, 2n ** 256n - 1n])
        for (const r of [0n, L - 1n]) expect(fromLe(scalarMulAdd(le(h), le(a), le(r)))).toBe((r + h * a) % L);
  });
  it("refuses inputs of the wrong size", () => {
    expect(() => reduceScalar(new Uint8Array(65))).toThrow();
    expect(() => scalarMulAdd(new Uint8Array(31), new Uint8Array(32), new Uint8Array(32))).toThrow();
  });
});

describe("the constant-time signer", () => {
  it("gives the reference signature byte for byte, for random keys, messages and Z", () => {
    for (let i = 0; i < 100; i++) {
      const key = randomBytes(32);
      const msg = randomBytes(i * 13);
      const Z = randomBytes(64);
      expect(toHex(xeddsaSign(key, msg, Z))).toBe(toHex(referenceSign(key, msg, Z)));
    }
  });
  it("signs under all 200 libsignal keys: the same as the reference, same sign bit, verifying under libsignal's public key", () => {
    for (const v of signatures) {
      const priv = fromBase64(v.privateKey);
      const msg = fromBase64(v.message);
      const Z = randomBytes(64);
      const sig = xeddsaSign(priv, msg, Z);
      expect(toHex(sig)).toBe(toHex(referenceSign(priv, msg, Z)));
      expect(sig[63]! >> 7).toBe(fromBase64(v.signature)[63]! >> 7);
      expect(xeddsaVerify(fromBase64(v.publicKey), msg, sig)).toBe(true);
    }
  });
  it("leaves the caller's private key as it was", () => {
    const key = randomBytes(32);
    const copy = key.slice();
    xeddsaSign(key, randomBytes(10));
    expect(toHex(key)).toBe(toHex(copy));
  });
});
