// cipherpost's versioned binary message formats (docs/crypto.md "Wire format"): the ratchet message
// (libsignal CiphertextMessageType 2) and the prekey message that opens a session (type 3).

import { ByteReader, ByteWriter } from "./encoding.ts";
import { CryptoError } from "./errors.ts";
import { EC_KEY_TYPE, encodeEcPublicKey, isEcPublicKey, KEM_CIPHERTEXT_BYTES } from "./keys.ts";

/** Version byte of both formats; a receiver refuses any other. */
export const MESSAGE_VERSION = 0x01;

/** libsignal's CiphertextMessageType numbers. */
export const CiphertextMessageType = { Whisper: 2, PreKey: 3 } as const;
export type CiphertextMessageType = (typeof CiphertextMessageType)[keyof typeof CiphertextMessageType];

/** version (1) ‖ ratchet key u (32) ‖ previous chain length (u32) ‖ message number (u32). */
export const WHISPER_HEADER_BYTES = 41;
/** Poly1305 tag. */
export const AEAD_TAG_BYTES = 16;

export interface MessageHeader {
  /** Sender's current ratchet public key, 33 bytes typed 0x05 (the type byte does not travel). */
  ratchetKey: Uint8Array;
  /** PN: number of messages in the sender's previous sending chain. */
  previousCounter: number;
  /** N: this message's number in the current sending chain. */
  counter: number;
}

export interface WhisperMessage {
  header: MessageHeader;
  /** The encoded header, authenticated as AEAD associated data. */
  headerBytes: Uint8Array;
  ciphertext: Uint8Array;
}

export function encodeWhisperHeader(h: MessageHeader): Uint8Array {
  return new ByteWriter(WHISPER_HEADER_BYTES)
    .u8(MESSAGE_VERSION)
    .raw(h.ratchetKey.subarray(1))
    .u32(h.previousCounter)
    .u32(h.counter)
    .finish();
}

export function parseWhisperMessage(body: Uint8Array): WhisperMessage {
  if (!(body instanceof Uint8Array) || body.length < WHISPER_HEADER_BYTES + AEAD_TAG_BYTES) {
    throw new CryptoError("INVALID_MESSAGE", "ratchet message: too short");
  }
  const r = new ByteReader(body, "INVALID_MESSAGE", "ratchet message");
  const version = r.u8();
  if (version !== MESSAGE_VERSION) r.fail(`unsupported version ${version}`);
  const ratchetKey = encodeEcPublicKey(r.raw(32));
  const previousCounter = r.u32();
  const counter = r.u32();
  return {
    header: { ratchetKey, previousCounter, counter },
    headerBytes: body.subarray(0, WHISPER_HEADER_BYTES),
    ciphertext: body.subarray(WHISPER_HEADER_BYTES),
  };
}

/** What the first message(s) of a session carry so the recipient can run PQXDH (PQXDH §3.3). */
export interface PreKeyMessageFields {
  /** The sender's registration id (1..16383), for the recipient's device bookkeeping. */
  registrationId: number;
  signedPreKeyId: number;
  /** Present when a one-time EC prekey was used (DH4). */
  preKeyId?: number;
  kemPreKeyId: number;
  /** The initiator's ephemeral key EK_A, 33 bytes. */
  baseKey: Uint8Array;
  /** The initiator's identity key IK_A, 33 bytes. */
  identityKey: Uint8Array;
  /** ML-KEM-1024 ciphertext, 1568 bytes. */
  kemCiphertext: Uint8Array;
}

export interface PreKeyMessage extends PreKeyMessageFields {
  /** The encoded fields above, authenticated as part of the inner message's associated data. */
  headerBytes: Uint8Array;
  /** The inner ratchet message (type 2 encoding). */
  message: Uint8Array;
}

const FLAG_HAS_PREKEY = 0x01;

/**
 * version ‖ flags ‖ registrationId u32 ‖ signedPreKeyId u32 ‖ kemPreKeyId u32 ‖ [preKeyId u32] ‖
 * baseKey (33) ‖ identityKey (33) ‖ kemCiphertext (1568). The inner ratchet message follows.
 */
export function encodePreKeyHeader(f: PreKeyMessageFields): Uint8Array {
  const w = new ByteWriter(1700)
    .u8(MESSAGE_VERSION)
    .u8(f.preKeyId === undefined ? 0 : FLAG_HAS_PREKEY)
    .u32(f.registrationId)
    .u32(f.signedPreKeyId)
    .u32(f.kemPreKeyId);
  if (f.preKeyId !== undefined) w.u32(f.preKeyId);
  return w.raw(f.baseKey).raw(f.identityKey).raw(f.kemCiphertext).finish();
}

export function parsePreKeyMessage(body: Uint8Array): PreKeyMessage {
  if (!(body instanceof Uint8Array)) throw new CryptoError("INVALID_MESSAGE", "prekey message: not bytes");
  const r = new ByteReader(body, "INVALID_MESSAGE", "prekey message");
  const version = r.u8();
  if (version !== MESSAGE_VERSION) r.fail(`unsupported version ${version}`);
  const flags = r.u8();
  if ((flags & ~FLAG_HAS_PREKEY) !== 0) r.fail("unknown flags");
  const registrationId = r.u32();
  const signedPreKeyId = r.u32();
  const kemPreKeyId = r.u32();
  const preKeyId = flags & FLAG_HAS_PREKEY ? r.u32() : undefined;
  const baseKey = r.raw(33);
  const identityKey = r.raw(33);
  if (!isEcPublicKey(baseKey) || !isEcPublicKey(identityKey) || baseKey[0] !== EC_KEY_TYPE) r.fail("bad key encoding");
  const kemCiphertext = r.raw(KEM_CIPHERTEXT_BYTES);
  const headerBytes = body.subarray(0, r.offset);
  const message = r.rest();
  const fields: PreKeyMessage = {
    registrationId,
    signedPreKeyId,
    kemPreKeyId,
    baseKey,
    identityKey,
    kemCiphertext,
    headerBytes,
    message,
  };
  if (preKeyId !== undefined) fields.preKeyId = preKeyId;
  return fields;
}

/**
 * The sender's ratchet key (33 bytes) in the header of a ratchet (2) or prekey (3) message, the inner message's
 * for a prekey message: what a retry receipt names. Undefined for anything that does not parse.
 */
export function messageRatchetKey(type: number, body: Uint8Array): Uint8Array | undefined {
  try {
    if (type === CiphertextMessageType.Whisper) return parseWhisperMessage(body).header.ratchetKey;
    if (type === CiphertextMessageType.PreKey)
      return parseWhisperMessage(parsePreKeyMessage(body).message).header.ratchetKey;
  } catch {
    // not a message we can read a header from
  }
  return undefined;
}
