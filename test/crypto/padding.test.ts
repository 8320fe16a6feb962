// Plaintext padding (src/crypto/padding.ts): sizes hide lengths (one size for short messages,
// Padmé buckets above), round trips, strict unpadding.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../src/crypto/bytes.ts";
import {
  MIN_PADDED_LENGTH,
  paddedLength,
  padmeLength,
  padPlaintext,
  unpadPlaintext,
} from "../../src/crypto/padding.ts";

describe("padding", () => {
  it("pads every message of 0–255 bytes to the same size", () => {
    const sizes = new Set<number>();
    for (let n = 0; n < MIN_PADDED_LENGTH; n++) sizes.add(padPlaintext(new Uint8Array(n)).length);
    expect([...sizes]).toEqual([MIN_PADDED_LENGTH]);
  });
  it("matches the Padmé examples and keeps overhead within 12%", () => {
    expect(padmeLength(1000)).toBe(1024);
    expect(padmeLength(1025)).toBe(1088);
    expect(padmeLength(257)).toBe(272);
    expect(padmeLength(98304)).toBe(98304);
    for (let n = MIN_PADDED_LENGTH; n < 100_000; n += 97) {
      const p = paddedLength(n);
      expect(p).toBeGreaterThan(n);
      expect(p).toBeLessThanOrEqual(Math.ceil((n + 1) * 1.12));
    }
  });
  it("reveals far fewer distinct sizes than lengths", () => {
    const sizes = new Set<number>();
    for (let n = 0; n <= 96 * 1024; n++) sizes.add(paddedLength(n));
    expect(sizes.size).toBeLessThan(400); // vs 98,305 distinct lengths
  });
  it("round trips any plaintext, including trailing zeros and 0x80 bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (pt) => {
        expect(toHex(unpadPlaintext(padPlaintext(pt)))).toBe(toHex(pt));
      }),
    );
    const tricky = fromHex("80000080");
    expect(toHex(unpadPlaintext(padPlaintext(tricky)))).toBe("80000080");
  });
  it("refuses padding without its 0x80 marker", () => {
    expect(() => unpadPlaintext(new Uint8Array(256))).toThrow(/padding/);
    expect(() => unpadPlaintext(fromHex("0102"))).toThrow(/padding/);
    expect(() => unpadPlaintext(new Uint8Array(0))).toThrow(/padding/);
  });
});
