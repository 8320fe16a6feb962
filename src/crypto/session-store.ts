// The session API the SDK calls, over SessionRecord (session-record.ts): initiateSession, sessionEncrypt,
// encryptForDevices and sessionDecrypt, which tries a message on the record's sessions as Sesame says, within a
// bound on the ratchet work a message may cost before it authenticates.

import { concatBytes, equalBytes } from "./bytes.ts";
import { CryptoError, type CryptoErrorCode } from "./errors.ts";
import type { EcKeyPair, KemKeyPair } from "./keys.ts";
import { type LocalIdentity, type PreKeyBundle, pqxdhInitiate, pqxdhRespond, type ResponderKeys } from "./pqxdh.ts";
import { initiatorSession, ratchetDecrypt, ratchetEncrypt, responderSession } from "./ratchet.ts";
import { knowsRatchetKey, type SessionState } from "./ratchet-state.ts";
import { identityChanged, SessionRecord, withLock } from "./session-record.ts";
import { CiphertextMessageType, encodePreKeyHeader, parsePreKeyMessage, parseWhisperMessage } from "./wire.ts";
import { PQXDH_WORK, RatchetWork } from "./work.ts";

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
  /** A one-time KEM key, or a last-resort one (`lastResort: true`: it is never deleted, so replays are tracked). */
  kemPreKey(keyId: number): MaybePromise<(KemKeyPair & { lastResort?: boolean }) | undefined>;
  /**
   * Whether a prekey message with this last-resort KEM key, signed prekey and base key was accepted before:
   * libsignal's replay check for last-resort keys, kept by the application apart from session records so it
   * survives their deletion. The application records the triple when it stores the session the message set up
   * (`DecryptResult.usedPreKeys` with `lastResort: true`).
   */
  lastResortUsed(kemPreKeyId: number, signedPreKeyId: number, baseKey: Uint8Array): MaybePromise<boolean>;
}

export interface DecryptOptions {
  /** As for initiateSession: the identity the application trusts for the sender, if it knows one. */
  trustedIdentityKey?: Uint8Array;
  /**
   * The ratchet work this message may cost before it authenticates (work.ts); at most, and by default,
   * MAX_MESSAGE_WORK. The SDK passes what is left of the sender's budget for the minute and reads `spent`.
   */
  work?: RatchetWork;
}

/** The prekeys a new session used: the application deletes one-time keys, or records a last-resort use. */
export interface UsedPreKeys {
  signedPreKeyId: number;
  preKeyId?: number;
  kemPreKeyId: number;
  /** The KEM key was the last-resort one: not deleted; (kemPreKeyId, signedPreKeyId, baseKey) is recorded instead. */
  lastResort: boolean;
  /** The initiator's base key (EK_A). */
  baseKey: Uint8Array;
}

export interface DecryptResult {
  plaintext: Uint8Array;
  /** The sender's identity key (33 bytes). */
  remoteIdentityKey: Uint8Array;
  remoteRegistrationId: number;
  /** True when this message set up a new session. */
  newSession: boolean;
  /** For a new session: the prekeys it used (see UsedPreKeys). */
  usedPreKeys?: UsedPreKeys;
}

const ERROR_PRIORITY: CryptoErrorCode[] = [
  "DUPLICATE_MESSAGE",
  "MESSAGE_KEY_EVICTED",
  "TOO_MANY_SKIPPED_MESSAGES",
  "WORK_LIMIT",
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

/**
 * Decrypts a message from one device. Sesame §3: a ratchet message is tried against the active
 * session, then each inactive one; one that succeeds becomes active. A prekey message either
 * belongs to a session we already have (same base key: the sender has not heard from us yet) or sets
 * up a new one with PQXDH as responder. Failed messages leave the record unchanged, and the work
 * spent on them is bounded by `options.work`.
 */
export function sessionDecrypt(
  record: SessionRecord,
  ours: LocalIdentity,
  preKeys: PreKeyStore,
  type: number,
  body: Uint8Array,
  options: DecryptOptions = {},
): Promise<DecryptResult> {
  const work = options.work ?? new RatchetWork();
  return withLock(record, async () => {
    let result: DecryptResult;
    if (type === CiphertextMessageType.Whisper) result = await decryptWhisper(record, body, work);
    else if (type === CiphertextMessageType.PreKey)
      result = await decryptPreKey(record, ours, preKeys, body, options, work);
    else throw new CryptoError("INVALID_MESSAGE", `unknown message type ${type}`);
    record.boundSkippedKeys();
    return result;
  });
}

/**
 * A ratchet key names its session: when one of the record's sessions holds or held the chain, only that one is
 * tried. Otherwise each session is a candidate for a DH ratchet step, tried in order (active first) while the
 * work budget lasts; every such attempt costs the same, so the first that does not fit ends the search.
 */
async function decryptWhisper(record: SessionRecord, body: Uint8Array, work: RatchetWork): Promise<DecryptResult> {
  const parsed = parseWhisperMessage(body);
  const all = record.current ? [record.current, ...record.previous] : [...record.previous];
  if (all.length === 0) throw new CryptoError("NO_SESSION", "no session with this device to decrypt a ratchet message");
  const owners = all.filter((s) => knowsRatchetKey(s, parsed.header.ratchetKey));
  const errors: unknown[] = [];
  for (const s of owners.length ? owners : all) {
    try {
      const plan = await ratchetDecrypt(s, parsed, undefined, work);
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
      if (e.code === "WORK_LIMIT") break;
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
  work: RatchetWork,
): Promise<DecryptResult> {
  const msg = parsePreKeyMessage(body);
  const trusted = options.trustedIdentityKey ?? record.remoteIdentityKey();
  if (trusted && !equalBytes(trusted, msg.identityKey)) throw identityChanged(trusted, msg.identityKey);
  const inner = parseWhisperMessage(msg.message);

  // The sender repeats its prekey header until we answer: decrypt with the session it set up.
  const existing = [record.current, ...record.previous].find(
    (s): s is SessionState => s !== null && !s.initiator && equalBytes(s.baseKey, msg.baseKey),
  );
  if (existing) {
    const plan = await ratchetDecrypt(existing, inner, msg.headerBytes, work);
    plan.commit();
    record.promote(existing);
    return {
      plaintext: plan.plaintext,
      remoteIdentityKey: existing.remoteIdentityKey,
      remoteRegistrationId: existing.remoteRegistrationId,
      newSession: false,
    };
  }
  const replayed = () =>
    new CryptoError("DUPLICATE_MESSAGE", "this prekey message's session was already set up and has since been dropped");
  if (record.seenBaseKeys.some((k) => equalBytes(k, msg.baseKey))) throw replayed();

  const keys = await responderKeys(preKeys, msg);
  const lastResort = keys.kemPreKey.lastResort === true;
  if (lastResort && (await preKeys.lastResortUsed(msg.kemPreKeyId, msg.signedPreKeyId, msg.baseKey))) throw replayed();
  work.reserve(PQXDH_WORK);
  const sharedSecret = await pqxdhRespond(ours, keys, msg);
  const session = responderSession({
    sharedSecret,
    localIdentityKey: ours.identityKeyPair.publicKey,
    remoteIdentityKey: msg.identityKey,
    localRegistrationId: ours.registrationId,
    remoteRegistrationId: msg.registrationId,
    ourSignedPreKey: keys.signedPreKey,
    baseKey: msg.baseKey,
  });
  const plan = await ratchetDecrypt(session, inner, msg.headerBytes, work);
  plan.commit();
  record.dropSessionsNotWith(msg.identityKey);
  record.promote(session);
  record.rememberBaseKey(msg.baseKey);
  const usedPreKeys: UsedPreKeys = {
    signedPreKeyId: msg.signedPreKeyId,
    kemPreKeyId: msg.kemPreKeyId,
    lastResort,
    baseKey: msg.baseKey,
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

const missing = (kind: "signedPreKey" | "kemPreKey" | "preKey", keyId: number, what: string) =>
  new CryptoError("MISSING_PREKEY", `no ${what} ${keyId}`, { missingKey: { kind, keyId } });

/** The private prekeys a prekey message names; MISSING_PREKEY for the first one we no longer have. */
async function responderKeys(
  preKeys: PreKeyStore,
  msg: { signedPreKeyId: number; kemPreKeyId: number; preKeyId?: number },
): Promise<ResponderKeys & { kemPreKey: KemKeyPair & { lastResort?: boolean } }> {
  const signedPreKey = await preKeys.signedPreKey(msg.signedPreKeyId);
  if (!signedPreKey) throw missing("signedPreKey", msg.signedPreKeyId, "signed prekey");
  const kemPreKey = await preKeys.kemPreKey(msg.kemPreKeyId);
  if (!kemPreKey) throw missing("kemPreKey", msg.kemPreKeyId, "KEM prekey");
  if (msg.preKeyId === undefined) return { signedPreKey, kemPreKey };
  const preKey = await preKeys.preKey(msg.preKeyId);
  if (!preKey) throw missing("preKey", msg.preKeyId, "one-time prekey");
  return { signedPreKey, kemPreKey, preKey };
}
