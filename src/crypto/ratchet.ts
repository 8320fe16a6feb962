// The Double Ratchet (signal.org/docs/specifications/doubleratchet): DH ratchet, symmetric-key chains, bounded
// skipped message keys, ChaCha20-Poly1305 per message. Decryption authenticates before it commits anything: it
// derives only the keys the tag check needs, within a work budget, and stores skipped keys only after it passes.

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { concatBytes } from "./bytes.ts";
import { CryptoError } from "./errors.ts";
import { kdfChainKey, kdfRootKey, messageKeyMaterial, messageKeyOf, nextChainKey } from "./kdf.ts";
import { agreeAsync, type EcKeyPair, generateEcKeyPairAsync } from "./keys.ts";
import { padPlaintext, unpadPlaintext } from "./padding.ts";
import {
  findChain,
  findFinishedChain,
  keepSkipped,
  liveChain,
  type PendingPreKey,
  type ReceivingChain,
  type SessionState,
  startReceivingChain,
  walkChain,
} from "./ratchet-state.ts";
import { encodeWhisperHeader, type WhisperMessage } from "./wire.ts";
import { DH_WORK, MAX_SKIP, type RatchetWork } from "./work.ts";

/** PQXDH §3.3 AD = Encode(IK_A) ‖ Encode(IK_B): initiator's key first, in both directions. */
export function associatedData(s: SessionState): Uint8Array {
  return s.initiator
    ? concatBytes(s.localIdentityKey, s.remoteIdentityKey)
    : concatBytes(s.remoteIdentityKey, s.localIdentityKey);
}

function seal(messageKey: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const { key, nonce } = messageKeyMaterial(messageKey);
  return chacha20poly1305(key, nonce, ad).encrypt(plaintext);
}

/** Authenticates and decrypts, then unpads; DECRYPTION_FAILED when the tag does not verify. */
function open(messageKey: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  const { key, nonce } = messageKeyMaterial(messageKey);
  let padded: Uint8Array;
  try {
    padded = chacha20poly1305(key, nonce, ad).decrypt(ciphertext);
  } catch {
    throw new CryptoError(
      "DECRYPTION_FAILED",
      "message failed authentication (tampered, wrong session or wrong associated data)",
    );
  }
  return unpadPlaintext(padded);
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
    receivingChains: [],
    finishedChains: [],
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
    receivingChains: [],
    finishedChains: [],
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

const evicted = (counter: number) =>
  new CryptoError(
    "MESSAGE_KEY_EVICTED",
    `the key of message ${counter} may have been dropped to bound storage (skipped-key limits): ask for a resend`,
  );
const duplicate = (counter: number) => new CryptoError("DUPLICATE_MESSAGE", `message ${counter} was already received`);
const tooFar = (what: string) => new CryptoError("TOO_MANY_SKIPPED_MESSAGES", `${what} is more than ${MAX_SKIP} ahead`);

/**
 * Double Ratchet §3.5 RatchetDecrypt, as a plan: nothing in `s` changes until `commit()` is called, so a forged,
 * tampered or replayed message leaves the session exactly as it was. Before the tag is checked, only the chain
 * keys up to the message's own key are derived, and only after reserving that work in `work` (WORK_LIMIT when it
 * does not fit); message keys of skipped numbers, and the previous chain's keys up to PN, are derived in
 * `commit`. The caller serialises decryptions of one session; encryptions may interleave.
 */
export async function ratchetDecrypt(
  s: SessionState,
  msg: WhisperMessage,
  outerHeader: Uint8Array | undefined,
  work: RatchetWork,
): Promise<DecryptPlan> {
  const ad = concatBytes(associatedData(s), outerHeader ?? new Uint8Array(0), msg.headerBytes);
  const { ratchetKey, counter } = msg.header;
  const chain = findChain(s, ratchetKey);
  if (chain) return decryptInChain(s, chain, msg, ad, work);
  const finished = findFinishedChain(s, ratchetKey);
  if (finished) throw finished.lossy ? evicted(counter) : duplicate(counter);
  return decryptInNewChain(s, msg, ad, work);
}

/** A message on a chain the session holds: a stored skipped key, or a step forward on the live chain. */
function decryptInChain(
  s: SessionState,
  chain: ReceivingChain,
  msg: WhisperMessage,
  ad: Uint8Array,
  work: RatchetWork,
): DecryptPlan {
  const { counter } = msg.header;
  const stored = chain.skipped.get(counter);
  if (stored) {
    const plaintext = open(stored, ad, msg.ciphertext);
    return {
      plaintext,
      commit: () => {
        chain.skipped.delete(counter);
        s.pendingPreKey = null;
      },
    };
  }
  if (counter <= chain.evictedMax) throw evicted(counter);
  if (counter < chain.index) throw duplicate(counter);
  if (!chain.key) {
    // Past the PN the sender announced when it closed this chain: no key was ever made for it.
    throw new CryptoError("DECRYPTION_FAILED", `message ${counter} is beyond the end of a finished chain`);
  }
  if (counter - chain.index > MAX_SKIP) throw tooFar(`message ${counter}`);
  const from = chain.index;
  work.reserve(counter - from + 1);
  const { passed, key } = walkChain(chain.key, from, counter);
  const plaintext = open(messageKeyOf(key), ad, msg.ciphertext);
  const next = nextChainKey(key);
  return {
    plaintext,
    commit: () => {
      work.charge(keepSkipped(chain, from, passed));
      chain.key = next;
      chain.index = counter + 1;
      s.pendingPreKey = null;
    },
  };
}

/** §3.5 DHRatchet: a ratchet key the session has not seen; the new receiving chain is checked before the old one is closed. */
async function decryptInNewChain(
  s: SessionState,
  msg: WhisperMessage,
  ad: Uint8Array,
  work: RatchetWork,
): Promise<DecryptPlan> {
  const { ratchetKey, counter, previousCounter } = msg.header;
  if (counter > MAX_SKIP) throw tooFar(`message ${counter}`);
  const live = liveChain(s);
  if (live && previousCounter - live.index > MAX_SKIP) throw tooFar("the previous chain's length");
  work.reserve(DH_WORK + counter + 1);
  let dh: Uint8Array;
  try {
    dh = await agreeAsync(s.sendingRatchet, ratchetKey);
  } catch {
    throw new CryptoError("INVALID_KEY", "ratchet key is of small order");
  }
  const [rootKey1, receivingKey] = kdfRootKey(s.rootKey, dh);
  const { passed, key } = walkChain(receivingKey, 0, counter);
  const plaintext = open(messageKeyOf(key), ad, msg.ciphertext);
  // Only an authenticated message earns the cost of a new key pair.
  const sendingRatchet = await generateEcKeyPairAsync();
  const [rootKey2, sendingKey] = kdfRootKey(rootKey1, await agreeAsync(sendingRatchet, ratchetKey));
  return {
    plaintext,
    commit: () => {
      const chain: ReceivingChain = {
        ratchetKey,
        key: nextChainKey(key),
        index: counter + 1,
        skipped: new Map(),
        evictedMax: -1,
      };
      work.charge(keepSkipped(chain, 0, passed) + startReceivingChain(s, previousCounter, chain));
      s.previousCounter = s.sendingChain?.index ?? 0;
      s.sendingRatchet = sendingRatchet;
      s.sendingChain = { key: sendingKey, index: 0 };
      s.rootKey = rootKey2;
      s.pendingPreKey = null;
    },
  };
}
