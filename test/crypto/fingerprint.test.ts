// Safety numbers (src/crypto/fingerprint.ts): libsignal's published test vector, symmetry, and a
// different number when any key or identifier differs (a man in the middle).

import { describe, expect, it } from "vitest";
import { fromHex, toHex } from "../../src/crypto/bytes.ts";
import { identityStatus, safetyNumber, safetyNumbersMatch } from "../../src/crypto/fingerprint.ts";
import { generateEcKeyPair } from "../../src/crypto/keys.ts";

// libsignal rust/protocol/src/fingerprint.rs, fingerprint_test_v1 (testVectorsVersion1 in Java).
const ALICE_IDENTITY = fromHex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868");
const BOB_IDENTITY = fromHex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b");
const DISPLAYABLE = "300354477692869396892869876765458257569162576843440918079131";

describe("safety numbers", () => {
  it("reproduce libsignal's published vector from both sides", () => {
    const a = safetyNumber({
      localIdentifier: "+14152222222",
      localIdentityKey: ALICE_IDENTITY,
      remoteIdentifier: "+14153333333",
      remoteIdentityKey: BOB_IDENTITY,
    });
    const b = safetyNumber({
      localIdentifier: "+14153333333",
      localIdentityKey: BOB_IDENTITY,
      remoteIdentifier: "+14152222222",
      remoteIdentityKey: ALICE_IDENTITY,
    });
    expect(a.digits).toBe(DISPLAYABLE);
    expect(b.digits).toBe(DISPLAYABLE);
    // The scannable halves libsignal serialises (ALICE_SCANNABLE_FINGERPRINT_V1).
    expect(toHex(a.localFingerprint)).toBe("1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df");
    expect(toHex(a.remoteFingerprint)).toBe("d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d");
    expect(a.display).toBe("30035 44776 92869 39689 28698 76765 45825 75691 62576 84344 09180 79131");
    expect(safetyNumbersMatch(a.display, b.digits)).toBe(true);
  });
  it("differ when a man in the middle substitutes a key, or an identifier differs", () => {
    const alice = generateEcKeyPair().publicKey;
    const bob = generateEcKeyPair().publicKey;
    const mallory = generateEcKeyPair().publicKey;
    const base = { localIdentifier: "alice", remoteIdentifier: "bob", iterations: 1024 };
    const honestA = safetyNumber({ ...base, localIdentityKey: alice, remoteIdentityKey: bob });
    const honestB = safetyNumber({
      localIdentifier: "bob",
      remoteIdentifier: "alice",
      iterations: 1024,
      localIdentityKey: bob,
      remoteIdentityKey: alice,
    });
    expect(honestA.digits).toBe(honestB.digits);
    const mitmA = safetyNumber({ ...base, localIdentityKey: alice, remoteIdentityKey: mallory });
    expect(safetyNumbersMatch(mitmA.digits, honestB.digits)).toBe(false);
    const otherId = safetyNumber({
      ...base,
      remoteIdentifier: "bob2",
      localIdentityKey: alice,
      remoteIdentityKey: bob,
    });
    expect(otherId.digits).not.toBe(honestA.digits);
    expect(honestA.digits).toMatch(/^\d{60}$/);
  });
  it("refuse malformed keys and iteration counts", () => {
    const k = generateEcKeyPair().publicKey;
    expect(() =>
      safetyNumber({
        localIdentifier: "a",
        remoteIdentifier: "b",
        localIdentityKey: k.subarray(1),
        remoteIdentityKey: k,
      }),
    ).toThrow();
    expect(() =>
      safetyNumber({
        localIdentifier: "a",
        remoteIdentifier: "b",
        localIdentityKey: k,
        remoteIdentityKey: k,
        iterations: 1,
      }),
    ).toThrow();
  });
});

describe("identity status", () => {
  it("is new, unchanged or changed", () => {
    const a = generateEcKeyPair().publicKey;
    const b = generateEcKeyPair().publicKey;
    expect(identityStatus(undefined, a)).toBe("new");
    expect(identityStatus(a, a.slice())).toBe("unchanged");
    expect(identityStatus(a, b)).toBe("changed");
  });
});
