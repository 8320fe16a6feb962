// Byte helpers (src/crypto/bytes.ts): strict base64 against RFC 4648 §10 vectors and hostile
// input, concatenation, constant-time equality, UTF-8.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  concatBytes,
  equalBytes,
  fromBase64,
  fromHex,
  fromUtf8,
  randomBytes,
  toBase64,
  toHex,
  utf8,
} from "../../src/crypto/bytes.ts";

describe("base64", () => {
  it("matches the RFC 4648 §10 test vectors both ways", () => {
    const vectors: [string, string][] = [
      ["", ""],
      ["f", "Zg=="],
      ["fo", "Zm8="],
      ["foo", "Zm9v"],
      ["foob", "Zm9vYg=="],
      ["fooba", "Zm9vYmE="],
      ["foobar", "Zm9vYmFy"],
    ];
    for (const [plain, encoded] of vectors) {
      expect(toBase64(utf8(plain))).toBe(encoded);
      expect(fromUtf8(fromBase64(encoded))).toBe(plain);
    }
  });
  it("round trips any bytes and agrees with the platform's encoder", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const s = toBase64(b);
        expect(s).toBe(Buffer.from(b).toString("base64"));
        expect(toHex(fromBase64(s))).toBe(toHex(b));
      }),
    );
  });
  it("throws on bad input instead of guessing", () => {
    for (const bad of [
      "Zg",
      "Zg=",
      "Zg===",
      "Z===",
      "Zm9v\n",
      " Zm9v",
      "Zm-v",
      "Zm_v",
      "Zh==",
      "Zm9=",
      "=Zm9",
      "Zm=v",
      "Zg==Zg==",
      "Zm9vé",
    ]) {
      expect(() => fromBase64(bad), bad).toThrow();
    }
  });
});

describe("bytes", () => {
  it("concatBytes joins in order", () => {
    expect(toHex(concatBytes(fromHex("01"), new Uint8Array(0), fromHex("0203")))).toBe("010203");
  });
  it("equalBytes compares content and length", () => {
    const a = randomBytes(32);
    expect(equalBytes(a, a.slice())).toBe(true);
    const b = a.slice();
    b[31]! ^= 1;
    expect(equalBytes(a, b)).toBe(false);
    expect(equalBytes(a, a.subarray(0, 31))).toBe(false);
    expect(equalBytes(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
  it("utf8 round trips and refuses malformed input", () => {
    expect(fromUtf8(utf8("héllo ✉"))).toBe("héllo ✉");
    expect(() => fromUtf8(fromHex("c3"))).toThrow();
  });
  it("randomBytes fills more than one getRandomValues call allows", () => {
    const r = randomBytes(70000);
    expect(r.length).toBe(70000);
    expect(r.subarray(66000).some((x) => x !== 0)).toBe(true);
  });
  it("hex is strict", () => {
    expect(() => fromHex("0")).toThrow();
    expect(() => fromHex("zz")).toThrow();
  });
});
