// The Double Ratchet's session state and the bookkeeping of its receiving side, with libsignal's storage figures:
// up to MAX_RECEIVING_CHAINS chains per session, each keeping at most MAX_SKIPPED_KEYS_PER_CHAIN skipped message
// keys (the lowest dropped first and remembered as evicted), so a late message is told apart as a duplicate or not.

import { equalBytes } from "./bytes.ts";
import { messageKeyOf, nextChainKey } from "./kdf.ts";
import type { EcKeyPair } from "./keys.ts";

/** Skipped message keys kept per receiving chain (libsignal's MAX_MESSAGE_KEYS). */
export const MAX_SKIPPED_KEYS_PER_CHAIN = 2000;
/** Receiving chains kept per session, the newest included (libsignal's MAX_RECEIVER_CHAINS). */
export const MAX_RECEIVING_CHAINS = 5;
/** Ratchet keys of dropped chains remembered, so a message on one is named a duplicate or an eviction. */
export const MAX_FINISHED_CHAINS = 16;

export interface ChainState {
  key: Uint8Array;
  /** Number of the next message in this chain. */
  index: number;
}

/** What the initiator repeats in every message until the responder first answers (PQXDH §3.3). */
export interface PendingPreKey {
  registrationId: number;
  signedPreKeyId: number;
  preKeyId?: number;
  kemPreKeyId: number;
  baseKey: Uint8Array;
  kemCiphertext: Uint8Array;
}

/** One chain of the other side's messages, under one of its ratchet keys. */
export interface ReceivingChain {
  /** The sender's ratchet public key of this chain (33 bytes). */
  ratchetKey: Uint8Array;
  /**
   * The chain key at `index`, for the newest chain only. An older chain is closed when the next one starts: its
   * keys up to the sender's PN are derived into `skipped` and its chain key is dropped (forward secrecy).
   */
  key: Uint8Array | null;
  /** The next message number (for a closed chain: one past the last message the sender said it sent). */
  index: number;
  /** MKSKIPPED of this chain: message number → message key, in ascending order. */
  skipped: Map<number, Uint8Array>;
  /** The highest message number whose key was dropped to bound storage, −1 if none. At or below it a missing key proves nothing. */
  evictedMax: number;
}

/** A dropped receiving chain, remembered by its ratchet key. */
export interface FinishedChain {
  ratchetKey: Uint8Array;
  /** Keys went with it (skipped keys or earlier evictions): a late message on it is an eviction, not a duplicate. */
  lossy: boolean;
}

export interface SessionState {
  /** Whether we started the session (decides the order of identity keys in the associated data). */
  initiator: boolean;
  localIdentityKey: Uint8Array;
  remoteIdentityKey: Uint8Array;
  localRegistrationId: number;
  remoteRegistrationId: number;
  /** The initiator's PQXDH ephemeral key: names the session when prekey messages are repeated. */
  baseKey: Uint8Array;
  rootKey: Uint8Array;
  /** DHs */
  sendingRatchet: EcKeyPair;
  /** CKs and Ns; null for a responder until its first DH ratchet step. */
  sendingChain: ChainState | null;
  /** PN */
  previousCounter: number;
  /** DHr, CKr, Nr and MKSKIPPED, per chain: oldest first; the newest is the live one while it has a key. */
  receivingChains: ReceivingChain[];
  finishedChains: FinishedChain[];
  pendingPreKey: PendingPreKey | null;
}

export function findChain(s: SessionState, ratchetKey: Uint8Array): ReceivingChain | undefined {
  return s.receivingChains.find((c) => equalBytes(c.ratchetKey, ratchetKey));
}

export function findFinishedChain(s: SessionState, ratchetKey: Uint8Array): FinishedChain | undefined {
  return s.finishedChains.find((c) => equalBytes(c.ratchetKey, ratchetKey));
}

/** Whether a message under `ratchetKey` belongs to this session (a chain it holds or dropped). */
export function knowsRatchetKey(s: SessionState, ratchetKey: Uint8Array): boolean {
  return findChain(s, ratchetKey) !== undefined || findFinishedChain(s, ratchetKey) !== undefined;
}

/** The live receiving chain (the newest, while it has a chain key). */
export function liveChain(s: SessionState): ReceivingChain | undefined {
  const newest = s.receivingChains.at(-1);
  return newest?.key ? newest : undefined;
}

/** The chain keys at numbers from..until−1 and the chain key at `until`, walking KDF_CK's chain-key half only. */
export function walkChain(key: Uint8Array, from: number, until: number): { passed: Uint8Array[]; key: Uint8Array } {
  const passed: Uint8Array[] = [];
  let k = key;
  for (let i = from; i < until; i++) {
    passed.push(k);
    k = nextChainKey(k);
  }
  return { passed, key: k };
}

/** Drops the `n` lowest skipped keys of a chain, remembering the highest number dropped. */
export function evictSkipped(chain: ReceivingChain, n: number): void {
  let left = n;
  for (const counter of chain.skipped.keys()) {
    if (left-- <= 0) break;
    chain.skipped.delete(counter);
    chain.evictedMax = Math.max(chain.evictedMax, counter);
  }
}

/**
 * Keeps skipped keys for the numbers from, from+1, … whose chain keys are `passed`, within the chain's bound:
 * the lowest go first, and message keys are derived only for the numbers that stay. Answers how many were derived.
 */
export function keepSkipped(chain: ReceivingChain, from: number, passed: Uint8Array[]): number {
  const excess = Math.max(0, chain.skipped.size + passed.length - MAX_SKIPPED_KEYS_PER_CHAIN);
  const fromOld = Math.min(excess, chain.skipped.size);
  evictSkipped(chain, fromOld);
  const dropNew = excess - fromOld;
  if (dropNew > 0) chain.evictedMax = Math.max(chain.evictedMax, from + dropNew - 1);
  for (let i = dropNew; i < passed.length; i++) chain.skipped.set(from + i, messageKeyOf(passed[i]!));
  return passed.length - dropNew;
}

/**
 * Closes the live chain at the sender's PN (its remaining keys up to PN become skipped keys, its chain key is
 * dropped), opens `next`, and drops the oldest chain beyond MAX_RECEIVING_CHAINS. Answers the keys derived.
 */
export function startReceivingChain(s: SessionState, previousCounter: number, next: ReceivingChain): number {
  let derived = 0;
  const live = liveChain(s);
  if (live?.key) {
    const { passed } = walkChain(live.key, live.index, previousCounter);
    derived = passed.length + keepSkipped(live, live.index, passed);
    live.key = null;
    live.index = Math.max(live.index, previousCounter);
  }
  s.receivingChains.push(next);
  while (s.receivingChains.length > MAX_RECEIVING_CHAINS) {
    const dropped = s.receivingChains.shift()!;
    rememberFinished(s, { ratchetKey: dropped.ratchetKey, lossy: dropped.skipped.size > 0 || dropped.evictedMax >= 0 });
  }
  return derived;
}

export function rememberFinished(s: Pick<SessionState, "finishedChains">, finished: FinishedChain): void {
  s.finishedChains.push(finished);
  if (s.finishedChains.length > MAX_FINISHED_CHAINS) s.finishedChains.shift();
}

/** Skipped keys held by a session, over all its chains. */
export function skippedKeyCount(s: SessionState): number {
  return s.receivingChains.reduce((n, c) => n + c.skipped.size, 0);
}
