// The session state's binary form (docs/crypto.md "Session record format"): version 2 keeps the skipped keys per
// receiving chain with what was evicted; version 1 (one flat list of skipped keys) is still read, and converted
// so that no missing key of a migrated chain is ever taken for proof of a duplicate.

import { toHex } from "./bytes.ts";
import type { ByteReader, ByteWriter } from "./encoding.ts";
import { KEM_CIPHERTEXT_BYTES } from "./keys.ts";
import {
  type ChainState,
  type FinishedChain,
  MAX_FINISHED_CHAINS,
  MAX_RECEIVING_CHAINS,
  MAX_SKIPPED_KEYS_PER_CHAIN,
  type PendingPreKey,
  type ReceivingChain,
  rememberFinished,
  type SessionState,
} from "./ratchet-state.ts";

const STATE_VERSION = 2;
const F_INITIATOR = 1;
const F_SENDING = 2;
const F_PENDING = 8;
const F_PENDING_PREKEY = 16;
/** Version 1 only: a receiving ratchet key follows, and (unless F_V1_KEY_ONLY) its chain key and index. */
const F_V1_RECEIVING = 4;
const F_V1_KEY_ONLY = 32;
/** Version 1's bounds: skipped keys per session, earlier ratchet keys remembered. */
const V1_MAX_SKIPPED = 2000;
const V1_MAX_PREVIOUS = 16;
/** The index given a closed chain read from version 1, whose real end is unknown: the largest u32. */
const MIGRATED_CHAIN_END = 0xffffffff;

type Common = Omit<SessionState, "receivingChains" | "finishedChains" | "pendingPreKey" | "initiator">;

export function writeSessionState(w: ByteWriter, s: SessionState): void {
  let flags = 0;
  if (s.initiator) flags |= F_INITIATOR;
  if (s.sendingChain) flags |= F_SENDING;
  if (s.pendingPreKey) flags |= F_PENDING;
  if (s.pendingPreKey?.preKeyId !== undefined) flags |= F_PENDING_PREKEY;
  w.u8(STATE_VERSION).u8(flags);
  w.raw(s.localIdentityKey).raw(s.remoteIdentityKey).u32(s.localRegistrationId).u32(s.remoteRegistrationId);
  w.raw(s.baseKey).raw(s.rootKey);
  w.raw(s.sendingRatchet.privateKey).raw(s.sendingRatchet.publicKey);
  if (s.sendingChain) w.raw(s.sendingChain.key).u32(s.sendingChain.index);
  w.u32(s.previousCounter);
  w.u8(s.receivingChains.length);
  for (const c of s.receivingChains) {
    w.raw(c.ratchetKey).u8(c.key ? 1 : 0);
    if (c.key) w.raw(c.key);
    w.u32(c.index)
      .u32(c.evictedMax + 1)
      .u16(c.skipped.size);
    for (const [counter, key] of c.skipped) w.u32(counter).raw(key);
  }
  w.u8(s.finishedChains.length);
  for (const f of s.finishedChains) w.raw(f.ratchetKey).u8(f.lossy ? 1 : 0);
  if (s.pendingPreKey) {
    const p = s.pendingPreKey;
    w.u32(p.registrationId).u32(p.signedPreKeyId).u32(p.kemPreKeyId);
    if (p.preKeyId !== undefined) w.u32(p.preKeyId);
    w.raw(p.baseKey).raw(p.kemCiphertext);
  }
}

export function readSessionState(r: ByteReader): SessionState {
  const version = r.u8();
  if (version !== STATE_VERSION && version !== 1) r.fail(`unknown session state version ${version}`);
  const flags = r.u8();
  const known = version === 1 ? 63 : F_INITIATOR | F_SENDING | F_PENDING | F_PENDING_PREKEY;
  if (flags & ~known) r.fail("unknown flags");
  const common: Common = {
    localIdentityKey: r.raw(33),
    remoteIdentityKey: r.raw(33),
    localRegistrationId: r.u32(),
    remoteRegistrationId: r.u32(),
    baseKey: r.raw(33),
    rootKey: r.raw(32),
    sendingRatchet: { privateKey: r.raw(32), publicKey: r.raw(33) },
    sendingChain: flags & F_SENDING ? { key: r.raw(32), index: r.u32() } : null,
    previousCounter: r.u32(),
  };
  const { receivingChains, finishedChains } = version === 1 ? readChainsV1(r, flags) : readChains(r);
  return {
    initiator: (flags & F_INITIATOR) !== 0,
    ...common,
    receivingChains,
    finishedChains,
    pendingPreKey: flags & F_PENDING ? readPending(r, flags) : null,
  };
}

function readChains(r: ByteReader): Pick<SessionState, "receivingChains" | "finishedChains"> {
  const count = r.u8();
  if (count > MAX_RECEIVING_CHAINS) r.fail("too many receiving chains");
  const receivingChains: ReceivingChain[] = [];
  for (let i = 0; i < count; i++) {
    const ratchetKey = r.raw(33);
    const hasKey = r.u8();
    if (hasKey > 1 || (hasKey && i !== count - 1)) r.fail("a chain key on a closed chain");
    const key = hasKey ? r.raw(32) : null;
    const index = r.u32();
    const evictedMax = r.u32() - 1;
    const n = r.u16();
    if (n > MAX_SKIPPED_KEYS_PER_CHAIN) r.fail("too many skipped keys");
    const skipped = new Map<number, Uint8Array>();
    let last = evictedMax;
    for (let j = 0; j < n; j++) {
      const counter = r.u32();
      // Ascending, above everything evicted and below the chain's index: what eviction and lookups rely on.
      if (counter <= last || counter >= index) r.fail("skipped keys out of order");
      last = counter;
      skipped.set(counter, r.raw(32));
    }
    receivingChains.push({ ratchetKey, key, index, skipped, evictedMax });
  }
  const finishedCount = r.u8();
  if (finishedCount > MAX_FINISHED_CHAINS) r.fail("too many finished chains");
  const finishedChains: FinishedChain[] = [];
  for (let i = 0; i < finishedCount; i++) {
    const ratchetKey = r.raw(33);
    const lossy = r.u8();
    if (lossy > 1) r.fail("bad flag");
    finishedChains.push({ ratchetKey, lossy: lossy === 1 });
  }
  return { receivingChains, finishedChains };
}

/**
 * Version 1 kept one flat list of skipped keys, evicting the oldest across chains, and did not record what it
 * evicted. Its keys are grouped into chains (oldest chain first, by its list of earlier ratchet keys), and every
 * migrated chain counts as evicted below its index, so a late message with no key is reported, never acked as a
 * duplicate. Chains beyond MAX_RECEIVING_CHAINS are dropped, remembered as lossy.
 */
function readChainsV1(r: ByteReader, flags: number): Pick<SessionState, "receivingChains" | "finishedChains"> {
  let live: { ratchetKey: Uint8Array; chain: ChainState | null } | null = null;
  if (flags & F_V1_RECEIVING) {
    const ratchetKey = r.raw(33);
    live = { ratchetKey, chain: flags & F_V1_KEY_ONLY ? null : { key: r.raw(32), index: r.u32() } };
  }
  const previousCount = r.u16();
  if (previousCount > V1_MAX_PREVIOUS) r.fail("too many previous ratchet keys");
  const previous: Uint8Array[] = [];
  for (let i = 0; i < previousCount; i++) previous.push(r.raw(33));
  const skippedCount = r.u32();
  if (skippedCount > V1_MAX_SKIPPED) r.fail("too many skipped keys");
  const groups = new Map<string, ReceivingChain>();
  const chainOf = (ratchetKey: Uint8Array): ReceivingChain => {
    const id = toHex(ratchetKey);
    let c = groups.get(id);
    if (!c) {
      c = { ratchetKey, key: null, index: 0, skipped: new Map(), evictedMax: -1 };
      groups.set(id, c);
    }
    return c;
  };
  for (let i = 0; i < skippedCount; i++) {
    const c = chainOf(r.raw(33));
    const counter = r.u32();
    c.skipped.set(counter, r.raw(32));
    c.index = Math.max(c.index, counter + 1);
  }
  // The live chain is the newest; earlier ones in the order their ratchet keys were retired.
  const order = [...previous];
  if (live?.chain) {
    const c = chainOf(live.ratchetKey);
    c.key = live.chain.key;
    c.index = Math.max(c.index, live.chain.index);
    order.push(live.ratchetKey);
  }
  const rank = (c: ReceivingChain) => order.findIndex((k) => toHex(k) === toHex(c.ratchetKey));
  const chains = [...groups.values()].sort((a, b) => rank(a) - rank(b));
  const s = { receivingChains: [] as ReceivingChain[], finishedChains: [] as FinishedChain[] };
  for (const c of chains) {
    c.skipped = new Map([...c.skipped].sort((a, b) => a[0] - b[0]));
    // A closed chain's end (the sender's PN) was not kept: every number without a key counts as evicted.
    if (!c.key) c.index = MIGRATED_CHAIN_END;
    c.evictedMax = c.index - 1;
  }
  const keep = chains.slice(-MAX_RECEIVING_CHAINS);
  const grouped = new Set(chains.map((c) => toHex(c.ratchetKey)));
  for (const k of previous) if (!grouped.has(toHex(k))) rememberFinished(s, { ratchetKey: k, lossy: true });
  for (const c of chains.slice(0, chains.length - keep.length))
    rememberFinished(s, { ratchetKey: c.ratchetKey, lossy: true });
  s.receivingChains = keep;
  return s;
}

function readPending(r: ByteReader, flags: number): PendingPreKey {
  const registrationId = r.u32();
  const signedPreKeyId = r.u32();
  const kemPreKeyId = r.u32();
  const preKeyId = flags & F_PENDING_PREKEY ? r.u32() : undefined;
  const baseKey = r.raw(33);
  const kemCiphertext = r.raw(KEM_CIPHERTEXT_BYTES);
  const pending: PendingPreKey = { registrationId, signedPreKeyId, kemPreKeyId, baseKey, kemCiphertext };
  if (preKeyId !== undefined) pending.preKeyId = preKeyId;
  return pending;
}
