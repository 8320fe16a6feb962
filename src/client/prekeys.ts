// A device's prekeys: generation (signed by the account identity key, as the relay verifies them), their private
// halves in Storage behind the crypto layer's PreKeyStore, and the policy: refill one-time keys below a threshold,
// rotate the signed and last-resort keys on a schedule, forget replaced ones after a grace period.
import { fromBase64, toBase64, toHex } from "../crypto/bytes.ts";
import { generateEcKeyPair, generateKemKeyPair, type EcKeyPair, type KemKeyPair } from "../crypto/keys.ts";
import type { PreKeyStore, UsedPreKeys } from "../crypto/session-store.ts";
import { xeddsaSign } from "../crypto/xeddsa.ts";
import type { ECPreKey, ECSignedPreKey, KEMSignedPreKey } from "../protocol/directory.ts";
import { MAX_KEY_ID, MAX_PREKEYS_PER_UPLOAD } from "../protocol/limits.ts";
import type { Storage, StorageBatch, WriteBatch } from "./storage.ts";
import { keyIdOfPreKeyKey, lastResortUseKey, lastResortUsePrefix, PREKEY_PREFIXES, preKeyKey } from "./storage-keys.ts";

export interface PreKeyPolicy {
  /** One-time keys of each kind kept on the relay after a refill (at most 100 per upload). Default 100. */
  batch: number;
  /** Refill when the relay holds fewer than this many of either kind. Default 20. */
  threshold: number;
  /** Replace the signed EC prekey and the last-resort KEM key this often. Default 2 days. */
  rotationMs: number;
  /** Keep a replaced signed or last-resort key this long for messages still in flight. Default 30 days. */
  graceMs: number;
}

export const DEFAULT_PREKEY_POLICY: PreKeyPolicy = {
  batch: 100,
  threshold: 20,
  rotationMs: 2 * 86_400_000,
  graceMs: 30 * 86_400_000,
};

/** The default policy with an application's overrides. */
export function preKeyPolicy(overrides: Partial<PreKeyPolicy> = {}): PreKeyPolicy {
  return { ...DEFAULT_PREKEY_POLICY, ...overrides };
}

interface StoredEc {
  pub: string;
  priv: string;
  created?: number;
}
interface StoredKem {
  pub: string;
  sk: string;
  created?: number;
}

const ecOut = (k: EcKeyPair, created?: number): string =>
  JSON.stringify({
    pub: toBase64(k.publicKey),
    priv: toBase64(k.privateKey),
    ...(created ? { created } : {}),
  } satisfies StoredEc);
const kemOut = (k: KemKeyPair, created?: number): string =>
  JSON.stringify({
    pub: toBase64(k.publicKey),
    sk: toBase64(k.secretKey),
    ...(created ? { created } : {}),
  } satisfies StoredKem);
const ecIn = (s: string): EcKeyPair & { created?: number } => {
  const j = JSON.parse(s) as StoredEc;
  return { publicKey: fromBase64(j.pub), privateKey: fromBase64(j.priv), ...(j.created ? { created: j.created } : {}) };
};
const kemIn = (s: string): KemKeyPair & { created?: number } => {
  const j = JSON.parse(s) as StoredKem;
  return { publicKey: fromBase64(j.pub), secretKey: fromBase64(j.sk), ...(j.created ? { created: j.created } : {}) };
};

/** The keys a device publishes, with their private halves as a storage batch to write before publishing. */
export interface GeneratedKeys {
  signedPreKey?: ECSignedPreKey;
  pqLastResortPreKey?: KEMSignedPreKey;
  preKeys: ECPreKey[];
  pqPreKeys: KEMSignedPreKey[];
  batch: StorageBatch & { set: Record<string, string> };
  nextKeyId: number;
}

/**
 * Generates keys with ids from `nextKeyId` on (wrapping within 1..2^32-1). Signatures are XEdDSA by the
 * identity key over each key's full serialisation, as the relay checks.
 */
export function generateKeys(
  identityPrivateKey: Uint8Array,
  nextKeyId: number,
  want: { signed?: boolean; lastResort?: boolean; ec?: number; kem?: number },
  now: number,
): GeneratedKeys {
  let id = nextKeyId;
  const take = () => {
    const v = id;
    id = id >= MAX_KEY_ID ? 1 : id + 1;
    return v;
  };
  const sign = (bytes: Uint8Array) => toBase64(xeddsaSign(identityPrivateKey, bytes));
  const out: GeneratedKeys = { preKeys: [], pqPreKeys: [], batch: { set: {} }, nextKeyId: id };
  if (want.signed) {
    const keyId = take();
    const k = generateEcKeyPair();
    out.signedPreKey = { keyId, publicKey: toBase64(k.publicKey), signature: sign(k.publicKey) };
    out.batch.set[preKeyKey(PREKEY_PREFIXES.signed, keyId)] = ecOut(k, now);
  }
  if (want.lastResort) {
    const keyId = take();
    const k = generateKemKeyPair();
    out.pqLastResortPreKey = { keyId, publicKey: toBase64(k.publicKey), signature: sign(k.publicKey) };
    out.batch.set[preKeyKey(PREKEY_PREFIXES.lastResort, keyId)] = kemOut(k, now);
  }
  for (let i = 0; i < Math.min(want.ec ?? 0, MAX_PREKEYS_PER_UPLOAD); i++) {
    const keyId = take();
    const k = generateEcKeyPair();
    out.preKeys.push({ keyId, publicKey: toBase64(k.publicKey) });
    out.batch.set[preKeyKey(PREKEY_PREFIXES.ec, keyId)] = ecOut(k);
  }
  for (let i = 0; i < Math.min(want.kem ?? 0, MAX_PREKEYS_PER_UPLOAD); i++) {
    const keyId = take();
    const k = generateKemKeyPair();
    out.pqPreKeys.push({ keyId, publicKey: toBase64(k.publicKey), signature: sign(k.publicKey) });
    out.batch.set[preKeyKey(PREKEY_PREFIXES.kem, keyId)] = kemOut(k);
  }
  out.nextKeyId = id;
  return out;
}

/** The crypto layer's PreKeyStore over Storage. A KEM key id may name a one-time key or a last-resort one. */
export class StoragePreKeyStore implements PreKeyStore {
  constructor(private readonly storage: Storage) {}

  async signedPreKey(keyId: number): Promise<EcKeyPair | undefined> {
    const s = await this.storage.get(preKeyKey(PREKEY_PREFIXES.signed, keyId));
    return s ? ecIn(s) : undefined;
  }

  async preKey(keyId: number): Promise<EcKeyPair | undefined> {
    const s = await this.storage.get(preKeyKey(PREKEY_PREFIXES.ec, keyId));
    return s ? ecIn(s) : undefined;
  }

  async kemPreKey(keyId: number): Promise<(KemKeyPair & { lastResort?: boolean }) | undefined> {
    const oneTime = await this.storage.get(preKeyKey(PREKEY_PREFIXES.kem, keyId));
    if (oneTime) return kemIn(oneTime);
    const lastResort = await this.storage.get(preKeyKey(PREKEY_PREFIXES.lastResort, keyId));
    return lastResort ? { ...kemIn(lastResort), lastResort: true } : undefined;
  }

  async lastResortUsed(kemPreKeyId: number, signedPreKeyId: number, baseKey: Uint8Array): Promise<boolean> {
    return (await this.storage.get(lastResortUseKey(kemPreKeyId, signedPreKeyId, toHex(baseKey)))) !== undefined;
  }
}

/**
 * What a prekey message that set up a session changes, staged into its batch: the one-time EC key and a one-time
 * KEM key are deleted; a last-resort KEM key stays, and the use is recorded against replays.
 */
export function stageUsedPreKeys(batch: WriteBatch, used: UsedPreKeys): void {
  if (used.preKeyId !== undefined) batch.delete.push(preKeyKey(PREKEY_PREFIXES.ec, used.preKeyId));
  if (!used.lastResort) batch.delete.push(preKeyKey(PREKEY_PREFIXES.kem, used.kemPreKeyId));
  else batch.set[lastResortUseKey(used.kemPreKeyId, used.signedPreKeyId, toHex(used.baseKey))] = "1";
}

/**
 * Which signed / last-resort keys are due: `rotate` when the newest is older than rotationMs (or none exists);
 * `expired` lists older replaced keys past the grace period, to delete.
 */
export async function rotationPlan(
  storage: Storage,
  policy: PreKeyPolicy,
  now: number,
): Promise<{ signed: boolean; lastResort: boolean; expired: string[] }> {
  const expired: string[] = [];
  const check = async (prefix: string): Promise<boolean> => {
    const entries = (await storage.list(prefix)).map(([k, v]) => ({
      k,
      created: (JSON.parse(v) as { created?: number }).created ?? 0,
    }));
    entries.sort((a, b) => b.created - a.created);
    const newest = entries[0];
    // A key replaced at time t (when its successor was created) is kept until t + graceMs.
    for (let i = 1; i < entries.length; i++)
      if (entries[i - 1]!.created + policy.graceMs < now) expired.push(entries[i]!.k);
    return !newest || now - newest.created >= policy.rotationMs;
  };
  const signed = await check(PREKEY_PREFIXES.signed);
  const lastResort = await check(PREKEY_PREFIXES.lastResort);
  // A last-resort key's recorded uses go with it: messages naming it fail as MISSING_PREKEY from then on.
  for (const k of [...expired]) {
    if (!k.startsWith(PREKEY_PREFIXES.lastResort)) continue;
    for (const [use] of await storage.list(lastResortUsePrefix(keyIdOfPreKeyKey(k)))) expired.push(use);
  }
  return { signed, lastResort, expired };
}
