// All sessions with one remote device, as Sesame (signal.org/docs/specifications/sesame) keeps them: the newest
// active, older ones kept so messages in flight still decrypt, bounded, serialisable to bytes; and the per-record
// lock that keeps two decryptions of one record from losing each other's changes.

import { equalBytes } from "./bytes.ts";
import { ByteReader, ByteWriter } from "./encoding.ts";
import { CryptoError } from "./errors.ts";
import { readSessionState, writeSessionState } from "./ratchet-codec.ts";
import {
  evictSkipped,
  MAX_RECEIVING_CHAINS,
  MAX_SKIPPED_KEYS_PER_CHAIN,
  type SessionState,
  skippedKeyCount,
} from "./ratchet-state.ts";
import { MAX_ARCHIVED_SESSIONS } from "./work.ts";

/** Base keys of sessions already set up, so a replayed prekey message cannot set one up again. */
export const MAX_SEEN_BASE_KEYS = 100;
/**
 * Skipped keys kept over all the sessions of one remote device: twice what one session can hold. Past it the
 * archived sessions' oldest keys go first, so a contact cannot grow the record (rewritten on every message) to
 * 41 sessions' worth of keys; a message whose key went is reported as MESSAGE_KEY_EVICTED.
 */
export const MAX_SKIPPED_KEYS_PER_RECORD = 2 * MAX_RECEIVING_CHAINS * MAX_SKIPPED_KEYS_PER_CHAIN;

const RECORD_VERSION = 1;

/** All sessions with one remote device. */
export class SessionRecord {
  /** The active session: new messages are encrypted with it. */
  current: SessionState | null = null;
  /** Inactive sessions, most recently active first. */
  previous: SessionState[] = [];
  /** Base keys of prekey messages already accepted, most recent last. */
  seenBaseKeys: Uint8Array[] = [];

  /** The identity key of the remote device's sessions, if any. */
  remoteIdentityKey(): Uint8Array | undefined {
    return (this.current ?? this.previous[0])?.remoteIdentityKey;
  }

  remoteRegistrationId(): number | undefined {
    return (this.current ?? this.previous[0])?.remoteRegistrationId;
  }

  hasCurrentSession(): boolean {
    return this.current !== null;
  }

  /** True while our active session still announces itself with prekey messages (no answer yet). */
  isAwaitingFirstReply(): boolean {
    return this.current?.pendingPreKey != null;
  }

  /**
   * Sesame §3: mark the active session inactive (e.g. after a 410 stale-devices answer or an identity
   * change); the next send then needs a fresh bundle, while in-flight messages still decrypt.
   */
  archiveCurrentSession(): void {
    if (!this.current) return;
    this.previous.unshift(this.current);
    this.current = null;
    this.trim();
  }

  /** Makes `session` active, archiving the one it replaces. */
  promote(session: SessionState): void {
    const i = this.previous.indexOf(session);
    if (i >= 0) this.previous.splice(i, 1);
    if (this.current && this.current !== session) this.previous.unshift(this.current);
    this.current = session;
    this.trim();
  }

  /** Drops every session whose remote identity is not `identityKey` (after an accepted identity change). */
  dropSessionsNotWith(identityKey: Uint8Array): void {
    if (this.current && !equalBytes(this.current.remoteIdentityKey, identityKey)) this.current = null;
    this.previous = this.previous.filter((s) => equalBytes(s.remoteIdentityKey, identityKey));
  }

  private trim(): void {
    if (this.previous.length > MAX_ARCHIVED_SESSIONS) this.previous.length = MAX_ARCHIVED_SESSIONS;
  }

  /** Holds the record's skipped keys to MAX_SKIPPED_KEYS_PER_RECORD, dropping the oldest sessions' oldest keys first. */
  boundSkippedKeys(): void {
    const sessions = this.current ? [this.current, ...this.previous] : [...this.previous];
    let excess = sessions.reduce((n, s) => n + skippedKeyCount(s), 0) - MAX_SKIPPED_KEYS_PER_RECORD;
    for (const s of sessions.reverse()) {
      for (const chain of s.receivingChains) {
        if (excess <= 0) return;
        const n = Math.min(excess, chain.skipped.size);
        evictSkipped(chain, n);
        excess -= n;
      }
    }
  }

  rememberBaseKey(baseKey: Uint8Array): void {
    if (this.seenBaseKeys.some((k) => equalBytes(k, baseKey))) return;
    this.seenBaseKeys.push(baseKey);
    if (this.seenBaseKeys.length > MAX_SEEN_BASE_KEYS) this.seenBaseKeys.shift();
  }

  /** version u8 ‖ has-current u8 ‖ [current] ‖ u16 count ‖ previous… ‖ u16 count ‖ base keys (33 each). */
  serialize(): Uint8Array {
    const w = new ByteWriter(4096);
    w.u8(RECORD_VERSION).u8(this.current ? 1 : 0);
    if (this.current) writeSessionState(w, this.current);
    w.u16(this.previous.length);
    for (const s of this.previous) writeSessionState(w, s);
    w.u16(this.seenBaseKeys.length);
    for (const k of this.seenBaseKeys) w.raw(k);
    return w.finish();
  }

  static deserialize(bytes: Uint8Array): SessionRecord {
    const r = new ByteReader(bytes, "INVALID_STATE", "session record");
    const version = r.u8();
    if (version !== RECORD_VERSION) r.fail(`unknown version ${version}`);
    const record = new SessionRecord();
    const hasCurrent = r.u8();
    if (hasCurrent > 1) r.fail("bad flag");
    if (hasCurrent) record.current = readSessionState(r);
    const n = r.u16();
    if (n > MAX_ARCHIVED_SESSIONS) r.fail("too many sessions");
    for (let i = 0; i < n; i++) record.previous.push(readSessionState(r));
    const m = r.u16();
    if (m > MAX_SEEN_BASE_KEYS) r.fail("too many base keys");
    for (let i = 0; i < m; i++) record.seenBaseKeys.push(r.raw(33));
    r.end();
    return record;
  }
}

// Decryptions of one record run one at a time: each computes against the state it sees and
// commits after awaiting, so two at once could lose each other's changes.
const locks = new WeakMap<SessionRecord, Promise<unknown>>();

export function withLock<T>(record: SessionRecord, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(record) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  locks.set(
    record,
    run.catch(() => undefined),
  );
  return run;
}

export function identityChanged(trusted: Uint8Array, received: Uint8Array): CryptoError {
  return new CryptoError(
    "IDENTITY_CHANGED",
    "the contact's identity key has changed: confirm the new safety number first",
    {
      trustedIdentityKey: trusted,
      receivedIdentityKey: received,
    },
  );
}
