// Safety numbers: the numeric fingerprint of two identity keys that two people compare to detect a
// man in the middle (libsignal's NumericFingerprintGenerator, version 0 hashing, 5200 iterations),
// and the identity-change check the application shows to the user.

import { sha512 } from "@noble/hashes/sha2.js";
import { equalBytes, utf8 } from "./bytes.ts";
import { isEcPublicKey } from "./keys.ts";

/** libsignal's default; both sides must use the same count. */
export const FINGERPRINT_ITERATIONS = 5200;

/** 30 digits identifying one party: SHA-512 iterated over (version ‖ key ‖ id ‖ key), then (hash ‖ key). */
function partyFingerprint(identityKey: Uint8Array, stableId: Uint8Array, iterations: number): Uint8Array {
  let h = sha512
    .create()
    .update(new Uint8Array([0, 0]))
    .update(identityKey)
    .update(stableId)
    .update(identityKey)
    .digest();
  for (let i = 1; i < iterations; i++) h = sha512.create().update(h).update(identityKey).digest();
  return h;
}

/** Six 5-byte big-endian chunks, each mod 100000, as 5 zero-padded digits. */
function displayDigits(hash: Uint8Array): string {
  let s = "";
  for (let c = 0; c < 6; c++) {
    let x = 0;
    for (let i = 0; i < 5; i++) x = x * 256 + hash[c * 5 + i]!;
    s += String(x % 100000).padStart(5, "0");
  }
  return s;
}

export interface SafetyNumber {
  /** 60 digits, the same on both sides (the two halves are ordered, not assigned to a side). */
  digits: string;
  /** The digits in twelve groups of five, as apps show them. */
  display: string;
  /** First 32 bytes of each side's hash (what libsignal's scannable form carries). */
  localFingerprint: Uint8Array;
  remoteFingerprint: Uint8Array;
}

export interface SafetyNumberInput {
  /** A stable identifier of each party (an account id, a phone number), bytes or UTF-8 text. */
  localIdentifier: Uint8Array | string;
  localIdentityKey: Uint8Array;
  remoteIdentifier: Uint8Array | string;
  remoteIdentityKey: Uint8Array;
  iterations?: number;
}

export function safetyNumber(input: SafetyNumberInput): SafetyNumber {
  const iterations = input.iterations ?? FINGERPRINT_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations <= 1 || iterations > 1_000_000)
    throw new Error("invalid fingerprint iterations");
  if (!isEcPublicKey(input.localIdentityKey) || !isEcPublicKey(input.remoteIdentityKey)) {
    throw new Error("identity keys must be 33-byte 0x05 keys");
  }
  const id = (v: Uint8Array | string) => (typeof v === "string" ? utf8(v) : v);
  const local = partyFingerprint(input.localIdentityKey, id(input.localIdentifier), iterations);
  const remote = partyFingerprint(input.remoteIdentityKey, id(input.remoteIdentifier), iterations);
  const a = displayDigits(local);
  const b = displayDigits(remote);
  const digits = a < b ? a + b : b + a;
  return {
    digits,
    display: digits.match(/.{5}/g)!.join(" "),
    localFingerprint: local.slice(0, 32),
    remoteFingerprint: remote.slice(0, 32),
  };
}

/** Whether two safety numbers (digits, spaces ignored) are the same, compared in constant time. */
export function safetyNumbersMatch(a: string, b: string): boolean {
  const clean = (s: string) => utf8(s.replace(/\s+/g, ""));
  return equalBytes(clean(a), clean(b));
}

export type IdentityStatus = "new" | "unchanged" | "changed";

/**
 * What the application shows when it sees an identity key for a contact: "new" (trust on first use),
 * "unchanged", or "changed" — the clear signal that the safety number must be compared again.
 * initiateSession and sessionDecrypt refuse a changed key with CryptoError IDENTITY_CHANGED until the
 * application passes the new key as trusted.
 */
export function identityStatus(trusted: Uint8Array | undefined, received: Uint8Array): IdentityStatus {
  if (!trusted) return "new";
  return equalBytes(trusted, received) ? "unchanged" : "changed";
}
