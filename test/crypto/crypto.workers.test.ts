// The same src/crypto module inside workerd: libsignal's XEdDSA vectors verify and a fresh
// key pair signs and verifies, so the relay's signature checks and the SDK share one implementation.

import { describe, expect, it } from "vitest";
import { fromBase64, generateEcKeyPair, xeddsaSign, xeddsaVerify } from "../../src/crypto/index.js";
import signatures from "../vectors/libsignal-xeddsa.json";

describe("src/crypto inside workerd", () => {
  it("verifies all 200 libsignal signatures and refuses altered ones", () => {
    expect(signatures.length).toBe(200);
    for (const v of signatures) {
      const pub = fromBase64(v.publicKey);
      const msg = fromBase64(v.message);
      const sig = fromBase64(v.signature);
      expect(xeddsaVerify(pub, msg, sig)).toBe(true);
      const bad = sig.slice();
      bad[5]! ^= 1;
      expect(xeddsaVerify(pub, msg, bad)).toBe(false);
    }
  });
  it("signs and verifies with a fresh key pair", () => {
    const { privateKey, publicKey } = generateEcKeyPair();
    const msg = crypto.getRandomValues(new Uint8Array(100));
    const sig = xeddsaSign(privateKey, msg);
    expect(xeddsaVerify(publicKey, msg, sig)).toBe(true);
    expect(xeddsaVerify(publicKey, msg.subarray(1), sig)).toBe(false);
  });
});
