// Sessions with one remote device, as Sesame (signal.org/docs/specifications/sesame) keeps them: the
// newest active, older ones kept so messages in flight still decrypt, the record serialisable to
// bytes. Also the API the SDK calls: initiateSession, sessionEncrypt, sessionDecrypt.

import { concatBytes, equalBytes } from "./bytes.ts";
import { ByteReader, ByteWriter } from "./encoding.ts";
import { CryptoError, type CryptoErrorCode } from "./errors.ts";
import type { EcKeyPair, KemKeyPair } from "./keys.ts";
import { type LocalIdentity, type PreKeyBundle, pqxdhInitiate, pqxdhRespond, type ResponderKeys } from "./pqxdh.ts";
import {
  type DecryptPlan,
  initiatorSession,
  ratchetDecrypt,
  ratchetEncrypt,
  readSessionState,
  responderSession,
  type SessionState,
  writeSessionState,
} from "./ratchet.ts";
import { CiphertextMessageType, encodePreKeyHeader, parsePreKeyMessage, parseWhisperMessage } from "./wire.ts";

/** Inactive sessions kept per device (libsignal keeps 40 archived states). */
export const MAX_ARCHIVED_SESSIONS = 40;
/** Base keys of sessions already set up, so a replayed prekey message cannot set one up again. */
export const MAX_SEEN_BASE_KEYS = 100;

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

function withLock<T>(record: SessionRecord, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(record) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  locks.set(
    record,
    run.catch(() => undefined),
  );
  return run;
}

function identityChanged(trusted: Uint8Array, received: Uint8Array): CryptoError {
  return new CryptoError(
    "IDENTITY_CHANGED",
    "the contact's identity key has changed: confirm the new safety number first",
    {
      trustedIdentityKey: trusted,
      receivedIdentityKey: received,
    },
  );
}

export interface InitiateOptions {
  /** An existing record for this device: the new session becomes active, older ones stay. */
  record?: SessionRecord;
  /**
   * The identity key the application trusts for this contact. Defaults to the record's; if neither
   * exists the bundle's key is trusted on first use. A different bundle key throws IDENTITY_CHANGED.
   * Passing the new key (after the user accepted it) drops sessions made with the old one.
   */
  trustedIdentityKey?: Uint8Array;
}

/**
 * Starts a session with one device of a contact from its bundle (PQXDH as initiator, then the
 * Double Ratchet). Messages sent before the first answer are prekey messages (type 3).
 */
export async function initiateSession(
  ours: LocalIdentity,
  bundle: PreKeyBundle,
  options: InitiateOptions = {},
): Promise<SessionRecord> {
  const record = options.record ?? new SessionRecord();
  const trusted = options.trustedIdentityKey ?? record.remoteIdentityKey();
  if (trusted && !equalBytes(trusted, bundle.identityKey)) throw identityChanged(trusted, bundle.identityKey);
  const { sharedSecret, fields } = await pqxdhInitiate(ours, bundle);
  const session = await initiatorSession({
    sharedSecret,
    localIdentityKey: ours.identityKeyPair.publicKey,
    remoteIdentityKey: bundle.identityKey,
    localRegistrationId: ours.registrationId,
    remoteRegistrationId: bundle.registrationId,
    theirSignedPreKey: bundle.signedPreKey.publicKey,
    pendingPreKey: fields,
  });
  return withLock(record, async () => {
    record.dropSessionsNotWith(bundle.identityKey);
    record.promote(session);
    return record;
  });
}

export interface EncryptedMessage {
  /** libsignal CiphertextMessageType: 3 prekey message, 2 ratchet ("whisper") message. */
  type: CiphertextMessageType;
  body: Uint8Array;
}

/** Encrypts with the active session. Synchronous: no public-key operation happens when sending. */
export function sessionEncrypt(record: SessionRecord, plaintext: Uint8Array): EncryptedMessage {
  const s = record.current;
  if (!s) throw new CryptoError("NO_SESSION", "no active session with this device: fetch a bundle and initiate one");
  if (s.pendingPreKey) {
    const header = encodePreKeyHeader({ ...s.pendingPreKey, identityKey: s.localIdentityKey });
    const inner = ratchetEncrypt(s, plaintext, header);
    return { type: CiphertextMessageType.PreKey, body: concatBytes(header, inner) };
  }
  return { type: CiphertextMessageType.Whisper, body: ratchetEncrypt(s, plaintext) };
}

/** One device's copy of a message, in the shape the relay's send request takes (Signal-Server names). */
export interface DeviceMessage {
  destinationDeviceId: number;
  /** The registration id our session has for that device; the relay answers 410 when it is stale. */
  destinationRegistrationId: number;
  type: CiphertextMessageType;
  body: Uint8Array;
}

/**
 * Sesame §2: a message goes to every device of the recipient (and, with our own account's records,
 * to our other devices), each through its own active session. Devices without an active session are
 * skipped; the relay's 409 `missingDevices` answer then says which bundles to fetch.
 */
export function encryptForDevices(records: ReadonlyMap<number, SessionRecord>, plaintext: Uint8Array): DeviceMessage[] {
  const out: DeviceMessage[] = [];
  for (const [deviceId, record] of records) {
    if (!record.current) continue;
    const { type, body } = sessionEncrypt(record, plaintext);
    out.push({
      destinationDeviceId: deviceId,
      destinationRegistrationId: record.current.remoteRegistrationId,
      type,
      body,
    });
  }
  return out;
}

type MaybePromise<T> = T | Promise<T>;

/** Our private prekeys, looked up by id when a prekey message arrives. */
export interface PreKeyStore {
  signedPreKey(keyId: number): MaybePromise<EcKeyPair | undefined>;
  preKey(keyId: number): MaybePromise<EcKeyPair | undefined>;
  kemPreKey(keyId: number): MaybePromise<KemKeyPair | undefined>;
}

export interface DecryptOptions {
  /** As for initiateSession: the identity the application trusts for the sender, if it knows one. */
  trustedIdentityKey?: Uint8Array;
}

export interface DecryptResult {
  plaintext: Uint8Array;
  /** The sender's identity key (33 bytes). */
  remoteIdentityKey: Uint8Array;
  remoteRegistrationId: number;
  /** True when this message set up a new session. */
  newSession: boolean;
  /**
   * For a new session: the prekeys it used. The application deletes the one-time EC prekey and a
   * one-time KEM prekey (never its last-resort key) and may replenish them.
   */
  usedPreKeys?: { signedPreKeyId: number; preKeyId?: number; kemPreKeyId: number };
}

const ERROR_PRIORITY: CryptoErrorCode[] = [
  "DUPLICATE_MESSAGE",
  "TOO_MANY_SKIPPED_MESSAGES",
  "INVALID_KEY",
  "INVALID_MESSAGE",
  "DECRYPTION_FAILED",
];

function mostTelling(errors: unknown[]): unknown {
  for (const code of ERROR_PRIORITY) {
    const e = errors.find((x) => CryptoError.is(x, code));
    if (e) return e;
  }
  return errors[0];
}

async function tryDecrypt(s: SessionState, body: Uint8Array, outerHeader?: Uint8Array): Promise<DecryptPlan> {
  return ratchetDecrypt(s, parseWhisperMessage(body), outerHeader);
}

/**
 * Decrypts a message from one device. Sesame §3: a ratchet message is tried against the active
 * session, then each inactive one; one that succeeds becomes active. A prekey message either
 * belongs to a session we already have (same base key: the sender has not heard from us yet) or sets
 * up a new one with PQXDH as responder. Failed messages leave the record unchanged.
 */
export function sessionDecrypt(
  record: SessionRecord,
  ours: LocalIdentity,
  preKeys: PreKeyStore,
  type: number,
  body: Uint8Array,
  options: DecryptOptions = {},
): Promise<DecryptResult> {
  return withLock(record, async () => {
    if (type === CiphertextMessageType.Whisper) return decryptWhisper(record, body);
    if (type === CiphertextMessageType.PreKey) return decryptPreKey(record, ours, preKeys, body, options);
    throw new CryptoError("INVALID_MESSAGE", `unknown message type ${type}`);
  });
}

async function decryptWhisper(record: SessionRecord, body: Uint8Array): Promise<DecryptResult> {
  const parsed = parseWhisperMessage(body);
  const candidates = record.current ? [record.current, ...record.previous] : [...record.previous];
  if (candidates.length === 0)
    throw new CryptoError("NO_SESSION", "no session with this device to decrypt a ratchet message");
  const errors: unknown[] = [];
  for (const s of candidates) {
    try {
      const plan = await ratchetDecrypt(s, parsed);
      plan.commit();
      record.promote(s);
      return {
        plaintext: plan.plaintext,
        remoteIdentityKey: s.remoteIdentityKey,
        remoteRegistrationId: s.remoteRegistrationId,
        newSession: false,
      };
    } catch (e) {
      if (!CryptoError.is(e)) throw e;
      errors.push(e);
    }
  }
  throw mostTelling(errors);
}

async function decryptPreKey(
  record: SessionRecord,
  ours: LocalIdentity,
  preKeys: PreKeyStore,
  body: Uint8Array,
  options: DecryptOptions,
): Promise<DecryptResult> {
  const msg = parsePreKeyMessage(body);
  const trusted = options.trustedIdentityKey ?? record.remoteIdentityKey();
  if (trusted && !equalBytes(trusted, msg.identityKey)) throw identityChanged(trusted, msg.identityKey);

  // The sender repeats its prekey header until we answer: decrypt with the session it set up.
  const existing = [record.current, ...record.previous].find(
    (s): s is SessionState => s !== null && !s.initiator && equalBytes(s.baseKey, msg.baseKey),
  );
  if (existing) {
    const plan = await tryDecrypt(existing, msg.message, msg.headerBytes);
    plan.commit();
    record.promote(existing);
    return {
      plaintext: plan.plaintext,
      remoteIdentityKey: existing.remoteIdentityKey,
      remoteRegistrationId: existing.remoteRegistrationId,
      newSession: false,
    };
  }
  if (record.seenBaseKeys.some((k) => equalBytes(k, msg.baseKey))) {
    throw new CryptoError(
      "DUPLICATE_MESSAGE",
      "this prekey message's session was already set up and has since been dropped",
    );
  }

  const signedPreKey = await preKeys.signedPreKey(msg.signedPreKeyId);
  if (!signedPreKey) {
    throw new CryptoError("MISSING_PREKEY", `no signed prekey ${msg.signedPreKeyId}`, {
      missingKey: { kind: "signedPreKey", keyId: msg.signedPreKeyId },
    });
  }
  const kemPreKey = await preKeys.kemPreKey(msg.kemPreKeyId);
  if (!kemPreKey) {
    throw new CryptoError("MISSING_PREKEY", `no KEM prekey ${msg.kemPreKeyId}`, {
      missingKey: { kind: "kemPreKey", keyId: msg.kemPreKeyId },
    });
  }
  const keys: ResponderKeys = { signedPreKey, kemPreKey };
  if (msg.preKeyId !== undefined) {
    const preKey = await preKeys.preKey(msg.preKeyId);
    if (!preKey) {
      throw new CryptoError("MISSING_PREKEY", `no one-time prekey ${msg.preKeyId}`, {
        missingKey: { kind: "preKey", keyId: msg.preKeyId },
      });
    }
    keys.preKey = preKey;
  }
  const sharedSecret = await pqxdhRespond(ours, keys, msg);
  const session = responderSession({
    sharedSecret,
    localIdentityKey: ours.identityKeyPair.publicKey,
    remoteIdentityKey: msg.identityKey,
    localRegistrationId: ours.registrationId,
    remoteRegistrationId: msg.registrationId,
    ourSignedPreKey: signedPreKey,
    baseKey: msg.baseKey,
  });
  const plan = await tryDecrypt(session, msg.message, msg.headerBytes);
  plan.commit();
  record.dropSessionsNotWith(msg.identityKey);
  record.promote(session);
  record.rememberBaseKey(msg.baseKey);
  const usedPreKeys: NonNullable<DecryptResult["usedPreKeys"]> = {
    signedPreKeyId: msg.signedPreKeyId,
    kemPreKeyId: msg.kemPreKeyId,
  };
  if (msg.preKeyId !== undefined) usedPreKeys.preKeyId = msg.preKeyId;
  return {
    plaintext: plan.plaintext,
    remoteIdentityKey: msg.identityKey,
    remoteRegistrationId: msg.registrationId,
    newSession: true,
    usedPreKeys,
  };
}
