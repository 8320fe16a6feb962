// The bound on what an incoming message may cost before it is authenticated: ratchet work counted in chain steps
// (one HMAC-SHA256 of KDF_CK), with a DH ratchet attempt and a PQXDH response priced in the same unit, reserved
// before it is done and refused past a limit. The SDK also keeps a per-sender budget per minute on top.

import { CryptoError } from "./errors.ts";

/** The furthest a message number may jump ahead in one chain (Double Ratchet §3.5 MAX_SKIP); libsignal allows 25,000. */
export const MAX_SKIP = 2000;
/** Inactive sessions kept per device (libsignal keeps 40 archived states): the candidates a message is tried on. */
export const MAX_ARCHIVED_SESSIONS = 40;

/** An X25519 agreement and KDF_RK, in chain steps (about 0.2 ms against 3–5 µs per step, measured in Node 20). */
export const DH_WORK = 64;
/** Responding to PQXDH: an ML-KEM-1024 decapsulation and four or five X25519 agreements. */
export const PQXDH_WORK = 512;

/**
 * What one incoming message may cost across all candidate sessions before one authenticates it: a DH ratchet
 * attempt on every session of the sender's device (the active one and the archived ones) at a small message
 * number, or the full MAX_SKIP walk on two of them. A forged message with a fresh ratchet key and
 * PN = N = MAX_SKIP therefore costs two walks, not 41 (docs/crypto.md "Bounded work").
 */
export const MAX_MESSAGE_WORK = MAX_SKIP + 1 + (MAX_ARCHIVED_SESSIONS + 1) * DH_WORK;

/** A budget of ratchet work for one message; `spent` is what the SDK adds to the sender's per-minute count. */
export class RatchetWork {
  readonly limit: number;
  spent = 0;

  /** `limit` is capped at MAX_MESSAGE_WORK: a caller can lower a message's budget, never raise it. */
  constructor(limit: number = MAX_MESSAGE_WORK) {
    this.limit = Math.max(0, Math.min(limit, MAX_MESSAGE_WORK));
  }

  /** Whether `units` more fit. */
  fits(units: number): boolean {
    return this.spent + units <= this.limit;
  }

  /** Takes `units` before doing unauthenticated work; throws WORK_LIMIT when they do not fit. */
  reserve(units: number): void {
    if (!this.fits(units))
      throw new CryptoError(
        "WORK_LIMIT",
        `decrypting would take ${units} more chain steps; this message or its sender has ${this.limit - this.spent} left`,
      );
    this.spent += units;
  }

  /** Counts work done after authentication (deriving the skipped keys to keep): never refused. */
  charge(units: number): void {
    this.spent += units;
  }
}
