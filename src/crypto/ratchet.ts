// The Double Ratchet (signal.org/docs/specifications/doubleratchet): DH ratchet, symmetric-key
// chains, bounded skipped message keys, ChaCha20-Poly1305 per message, and the session state's
// binary serialisation. Decryption computes first and commits only after authentication succeeds.

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { concatBytes, equalBytes, toHex } from "./bytes.ts";
import type { ByteReader, ByteWriter } from "./encoding.ts";
import { CryptoError } from "./errors.ts";
import { kdfChainKey, kdfRootKey, messageKeyMaterial } from "./kdf.ts";
import { agreeAsync, type EcKeyPair, generateEcKeyPairAsync, KEM_CIPHERTEXT_BYTES } from "./keys.ts";
import { padPlaintext, unpadPlaintext } from "./padding.ts";
import { encodeWhisperHeader, type WhisperMessage } from "./wire.ts";

/** Double Ratchet §3.5 MAX_SKIP: the furthest a message number may jump ahead within one chain. */
export const MAX_SKIP = 2000;
/** Skipped message keys kept per session; the oldest go first (§3.5 suggests deleting them eventually). */
export const MAX_STORED_SKIPPED_KEYS = 2000;
/** Earlier receiving ratchet keys remembered so a replay from a finished chain is named a duplicate. */
const MAX_PREVIOUS_RATCHET_KEYS = 16;

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

interface SkippedKey {
  ratchetKey: Uint8Array;
  counter: number;
  messageKey: Uint8Array;
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
  /** DHr */
  receivingRatchetKey: Uint8Array | null;
  /** CKr and Nr */
  receivingChain: ChainState | null;
  previousRatchetKeys: Uint8Array[];
  /** MKSKIPPED, insertion-ordered so the oldest are evicted first. */
  skipped: Map<string, SkippedKey>;
  pendingPreKey: PendingPreKey | null;
}

/** PQXDH §3.3 AD = Encode(IK_A) ‖ Encode(IK_B): initiator's key first, in both directions. */
export function associatedData(s: SessionState): Uint8Array {
  return s.initiator
    ? concatBytes(s.localIdentityKey, s.remoteIdentityKey)
    : concatBytes(s.remoteIdentityKey, s.localIdentityKey);
}

function skippedId(ratchetKey: Uint8Array, counter: number): string {
  return `${toHex(ratchetKey)}:${counter}`;
}

function seal(messageKey: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const { key, nonce } = messageKeyMaterial(messageKey);
  return chacha20poly1305(key, nonce, ad).encrypt(plaintext);
}

function open(messageKey: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null {
  const { key, nonce } = messageKeyMaterial(messageKey);
  try {
    return chacha20poly1305(key, nonce, ad).decrypt(ciphertext);
  } catch {
    return null;
  }
}

/** Message keys for numbers chain.index .. until-1, and the chain positioned at `until`. */
function skipTo(chain: ChainState, until: number): { skipped: [number, Uint8Array][]; chain: ChainState } {
  const skipped: [number, Uint8Array][] = [];
  let key = chain.key;
  for (let i = chain.index; i < until; i++) {
    const [next, mk] = kdfChainKey(key);
    skipped.push([i, mk]);
    key = next;
  }
  return { skipped, chain: { key, index: Math.max(until, chain.index) } };
}

function storeSkipped(s: SessionState, ratchetKey: Uint8Array, keys: [number, Uint8Array][]): void {
  for (const [counter, messageKey] of keys) {
    s.skipped.set(skippedId(ratchetKey, counter), { ratchetKey, counter, messageKey });
  }
  // Evict the oldest beyond the bound (Map keeps insertion order).
  const excess = s.skipped.size - MAX_STORED_SKIPPED_KEYS;
  if (excess > 0) {
    let n = 0;
    for (const id of s.skipped.keys()) {
      if (n++ >= excess) break;
      s.skipped.delete(id);
    }
  }
}

export interface InitiatorParams {
  sharedSecret: Uint8Array;
  localIdentityKey: Uint8Array;
  remoteIdentityKey: Uint8Array;
  localRegistrationId: number;
  remoteRegistrationId: number;
  theirSignedPreKey: Uint8Array;
  pendingPreKey: PendingPreKey;
}

/**
 * Double Ratchet §3.3 RatchetInitAlice with §7.1/PQXDH integration: SK is the first root key and
 * the responder's signed prekey is its first ratchet key; we take a fresh ratchet key pair at once.
 */
export async function initiatorSession(p: InitiatorParams): Promise<SessionState> {
  const sendingRatchet = await generateEcKeyPairAsync();
  const [rootKey, chainKey] = kdfRootKey(p.sharedSecret, await agreeAsync(sendingRatchet, p.theirSignedPreKey));
  return {
    initiator: true,
    localIdentityKey: p.localIdentityKey,
    remoteIdentityKey: p.remoteIdentityKey,
    localRegistrationId: p.localRegistrationId,
    remoteRegistrationId: p.remoteRegistrationId,
    baseKey: p.pendingPreKey.baseKey,
    rootKey,
    sendingRatchet,
    sendingChain: { key: chainKey, index: 0 },
    previousCounter: 0,
    receivingRatchetKey: p.theirSignedPreKey,
    receivingChain: null,
    previousRatchetKeys: [],
    skipped: new Map(),
    pendingPreKey: p.pendingPreKey,
  };
}

export interface ResponderParams {
  sharedSecret: Uint8Array;
  localIdentityKey: Uint8Array;
  remoteIdentityKey: Uint8Array;
  localRegistrationId: number;
  remoteRegistrationId: number;
  ourSignedPreKey: EcKeyPair;
  baseKey: Uint8Array;
}

/** Double Ratchet §3.3 RatchetInitBob: our signed prekey pair is the first DHs, SK the root key. */
export function responderSession(p: ResponderParams): SessionState {
  return {
    initiator: false,
    localIdentityKey: p.localIdentityKey,
    remoteIdentityKey: p.remoteIdentityKey,
    localRegistrationId: p.localRegistrationId,
    remoteRegistrationId: p.remoteRegistrationId,
    baseKey: p.baseKey,
    rootKey: p.sharedSecret,
    sendingRatchet: p.ourSignedPreKey,
    sendingChain: null,
    previousCounter: 0,
    receivingRatchetKey: null,
    receivingChain: null,
    previousRatchetKeys: [],
    skipped: new Map(),
    pendingPreKey: null,
  };
}

/**
 * Double Ratchet §3.4 RatchetEncrypt. `outerHeader` is the prekey header when the message travels
 * inside a prekey message, so that header is authenticated too. Returns the encoded ratchet message.
 */
export function ratchetEncrypt(s: SessionState, plaintext: Uint8Array, outerHeader?: Uint8Array): Uint8Array {
  const chain = s.sendingChain;
  if (!chain) throw new CryptoError("NO_SESSION", "this session has not received a message yet and cannot send");
  if (chain.index >= 0xffffffff) throw new CryptoError("INVALID_STATE", "sending chain exhausted");
  const [nextKey, messageKey] = kdfChainKey(chain.key);
  const headerBytes = encodeWhisperHeader({
    ratchetKey: s.sendingRatchet.publicKey,
    previousCounter: s.previousCounter,
    counter: chain.index,
  });
  const ad = concatBytes(associatedData(s), outerHeader ?? new Uint8Array(0), headerBytes);
  const body = seal(messageKey, ad, padPlaintext(plaintext));
  s.sendingChain = { key: nextKey, index: chain.index + 1 };
  return concatBytes(headerBytes, body);
}

export interface DecryptPlan {
  plaintext: Uint8Array;
  /** Applies the state changes; call once, only if the caller keeps this result. */
  commit: () => void;
}

function decryptionFailed(): CryptoError {
  return new CryptoError(
    "DECRYPTION_FAILED",
    "message failed authentication (tampered, wrong session or wrong associated data)",
  );
}

/**
 * Double Ratchet §3.5 RatchetDecrypt, as a plan: nothing in `s` changes until `commit()` is called,
 * so a forged, tampered or replayed message leaves the session exactly as it was. The caller must
 * serialise decryptions of one session (session-store does); encryptions may interleave, since the
 * commit reads the sending counter when it runs.
 */
export async function ratchetDecrypt(
  s: SessionState,
  msg: WhisperMessage,
  outerHeader?: Uint8Array,
): Promise<DecryptPlan> {
  const ad = concatBytes(associatedData(s), outerHeader ?? new Uint8Array(0), msg.headerBytes);
  const { ratchetKey, counter, previousCounter } = msg.header;

  // §3.5 TrySkippedMessageKeys.
  const id = skippedId(ratchetKey, counter);
  const stored = s.skipped.get(id);
  if (stored) {
    const padded = open(stored.messageKey, ad, msg.ciphertext);
    if (!padded) throw decryptionFailed();
    const plaintext = unpadPlaintext(padded);
    return {
      plaintext,
      commit: () => {
        s.skipped.delete(id);
        s.pendingPreKey = null;
      },
    };
  }

  // Same receiving chain: step the symmetric ratchet forward.
  if (s.receivingRatchetKey && s.receivingChain && equalBytes(ratchetKey, s.receivingRatchetKey)) {
    const chain = s.receivingChain;
    if (counter < chain.index) throw new CryptoError("DUPLICATE_MESSAGE", `message ${counter} was already received`);
    if (counter - chain.index > MAX_SKIP) {
      throw new CryptoError("TOO_MANY_SKIPPED_MESSAGES", `message ${counter} is more than ${MAX_SKIP} ahead`);
    }
    const { skipped, chain: at } = skipTo(chain, counter);
    const [nextKey, messageKey] = kdfChainKey(at.key);
    const padded = open(messageKey, ad, msg.ciphertext);
    if (!padded) throw decryptionFailed();
    const plaintext = unpadPlaintext(padded);
    return {
      plaintext,
      commit: () => {
        storeSkipped(s, ratchetKey, skipped);
        s.receivingChain = { key: nextKey, index: counter + 1 };
        s.pendingPreKey = null;
      },
    };
  }

  if (s.previousRatchetKeys.some((k) => equalBytes(k, ratchetKey))) {
    throw new CryptoError("DUPLICATE_MESSAGE", "message from a finished chain whose key was already used or dropped");
  }

  // §3.5 DHRatchet: a new ratchet key from the other side.
  if (counter > MAX_SKIP)
    throw new CryptoError("TOO_MANY_SKIPPED_MESSAGES", `message ${counter} is more than ${MAX_SKIP} ahead`);
  let oldSkipped: [number, Uint8Array][] = [];
  const oldRatchetKey = s.receivingRatchetKey;
  if (s.receivingChain && oldRatchetKey) {
    if (previousCounter - s.receivingChain.index > MAX_SKIP) {
      throw new CryptoError("TOO_MANY_SKIPPED_MESSAGES", "previous chain length is more than MAX_SKIP ahead");
    }
    oldSkipped = skipTo(s.receivingChain, previousCounter).skipped;
  }
  let dh1: Uint8Array;
  try {
    dh1 = await agreeAsync(s.sendingRatchet, ratchetKey);
  } catch {
    throw new CryptoError("INVALID_KEY", "ratchet key is of small order");
  }
  const [rootKey1, receivingKey] = kdfRootKey(s.rootKey, dh1);
  const { skipped: newSkipped, chain: at } = skipTo({ key: receivingKey, index: 0 }, counter);
  const [nextKey, messageKey] = kdfChainKey(at.key);
  const padded = open(messageKey, ad, msg.ciphertext);
  if (!padded) throw decryptionFailed();
  const plaintext = unpadPlaintext(padded);
  // Only an authenticated message earns the cost of a new key pair.
  const sendingRatchet = await generateEcKeyPairAsync();
  const [rootKey2, sendingKey] = kdfRootKey(rootKey1, await agreeAsync(sendingRatchet, ratchetKey));
  return {
    plaintext,
    commit: () => {
      if (oldRatchetKey) {
        storeSkipped(s, oldRatchetKey, oldSkipped);
        s.previousRatchetKeys.push(oldRatchetKey);
        if (s.previousRatchetKeys.length > MAX_PREVIOUS_RATCHET_KEYS) s.previousRatchetKeys.shift();
      }
      storeSkipped(s, ratchetKey, newSkipped);
      s.previousCounter = s.sendingChain?.index ?? 0;
      s.sendingRatchet = sendingRatchet;
      s.sendingChain = { key: sendingKey, index: 0 };
      s.rootKey = rootKey2;
      s.receivingRatchetKey = ratchetKey;
      s.receivingChain = { key: nextKey, index: counter + 1 };
      s.pendingPreKey = null;
    },
  };
}

// ---- serialisation -------------------------------------------------------------------------

const STATE_VERSION = 1;
const F_INITIATOR = 1;
const F_SENDING = 2;
const F_RECEIVING = 4;
const F_PENDING = 8;
const F_PENDING_PREKEY = 16;
/** An initiator knows the responder's first ratchet key (its signed prekey) before any chain. */
const F_RECEIVING_KEY_ONLY = 32;

export function writeSessionState(w: ByteWriter, s: SessionState): void {
  let flags = 0;
  if (s.initiator) flags |= F_INITIATOR;
  if (s.sendingChain) flags |= F_SENDING;
  if (s.receivingChain && s.receivingRatchetKey) flags |= F_RECEIVING;
  else if (s.receivingRatchetKey) flags |= F_RECEIVING | F_RECEIVING_KEY_ONLY;
  if (s.pendingPreKey) flags |= F_PENDING;
  if (s.pendingPreKey?.preKeyId !== undefined) flags |= F_PENDING_PREKEY;
  w.u8(STATE_VERSION).u8(flags);
  w.raw(s.localIdentityKey).raw(s.remoteIdentityKey).u32(s.localRegistrationId).u32(s.remoteRegistrationId);
  w.raw(s.baseKey).raw(s.rootKey);
  w.raw(s.sendingRatchet.privateKey).raw(s.sendingRatchet.publicKey);
  if (s.sendingChain) w.raw(s.sendingChain.key).u32(s.sendingChain.index);
  w.u32(s.previousCounter);
  if (s.receivingRatchetKey) {
    w.raw(s.receivingRatchetKey);
    if (s.receivingChain) w.raw(s.receivingChain.key).u32(s.receivingChain.index);
  }
  w.u16(s.previousRatchetKeys.length);
  for (const k of s.previousRatchetKeys) w.raw(k);
  w.u32(s.skipped.size);
  for (const k of s.skipped.values()) w.raw(k.ratchetKey).u32(k.counter).raw(k.messageKey);
  if (s.pendingPreKey) {
    const p = s.pendingPreKey;
    w.u32(p.registrationId).u32(p.signedPreKeyId).u32(p.kemPreKeyId);
    if (p.preKeyId !== undefined) w.u32(p.preKeyId);
    w.raw(p.baseKey).raw(p.kemCiphertext);
  }
}

export function readSessionState(r: ByteReader): SessionState {
  const version = r.u8();
  if (version !== STATE_VERSION) r.fail(`unknown session state version ${version}`);
  const flags = r.u8();
  if (flags & ~63) r.fail("unknown flags");
  const localIdentityKey = r.raw(33);
  const remoteIdentityKey = r.raw(33);
  const localRegistrationId = r.u32();
  const remoteRegistrationId = r.u32();
  const baseKey = r.raw(33);
  const rootKey = r.raw(32);
  const sendingRatchet = { privateKey: r.raw(32), publicKey: r.raw(33) };
  const sendingChain = flags & F_SENDING ? { key: r.raw(32), index: r.u32() } : null;
  const previousCounter = r.u32();
  let receivingRatchetKey: Uint8Array | null = null;
  let receivingChain: ChainState | null = null;
  if (flags & F_RECEIVING) {
    receivingRatchetKey = r.raw(33);
    if (!(flags & F_RECEIVING_KEY_ONLY)) receivingChain = { key: r.raw(32), index: r.u32() };
  }
  const previousCount = r.u16();
  if (previousCount > MAX_PREVIOUS_RATCHET_KEYS) r.fail("too many previous ratchet keys");
  const previousRatchetKeys: Uint8Array[] = [];
  for (let i = 0; i < previousCount; i++) previousRatchetKeys.push(r.raw(33));
  const skippedCount = r.u32();
  if (skippedCount > MAX_STORED_SKIPPED_KEYS) r.fail("too many skipped keys");
  const skipped = new Map<string, SkippedKey>();
  for (let i = 0; i < skippedCount; i++) {
    const ratchetKey = r.raw(33);
    const counter = r.u32();
    const messageKey = r.raw(32);
    skipped.set(skippedId(ratchetKey, counter), { ratchetKey, counter, messageKey });
  }
  let pendingPreKey: PendingPreKey | null = null;
  if (flags & F_PENDING) {
    const registrationId = r.u32();
    const signedPreKeyId = r.u32();
    const kemPreKeyId = r.u32();
    const preKeyId = flags & F_PENDING_PREKEY ? r.u32() : undefined;
    const pendingBaseKey = r.raw(33);
    const kemCiphertext = r.raw(KEM_CIPHERTEXT_BYTES);
    pendingPreKey = { registrationId, signedPreKeyId, kemPreKeyId, baseKey: pendingBaseKey, kemCiphertext };
    if (preKeyId !== undefined) pendingPreKey.preKeyId = preKeyId;
  }
  return {
    initiator: (flags & F_INITIATOR) !== 0,
    localIdentityKey,
    remoteIdentityKey,
    localRegistrationId,
    remoteRegistrationId,
    baseKey,
    rootKey,
    sendingRatchet,
    sendingChain,
    previousCounter,
    receivingRatchetKey,
    receivingChain,
    previousRatchetKeys,
    skipped,
    pendingPreKey,
  };
}
