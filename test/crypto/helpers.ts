// Test helpers: a device with identity, prekeys and a bundle as the relay would serve it, and a
// two-party harness for sessions.

import {
  type EcKeyPair,
  generateEcKeyPair,
  generateKemKeyPair,
  type KemKeyPair,
  type LocalIdentity,
  type PreKeyBundle,
  type PreKeyStore,
  toHex,
  type UsedPreKeys,
  xeddsaSign,
} from "../../src/crypto/index.ts";

export interface TestDevice {
  identity: LocalIdentity;
  signedPreKeys: Map<number, EcKeyPair>;
  preKeys: Map<number, EcKeyPair>;
  kemPreKeys: Map<number, KemKeyPair>;
  store: PreKeyStore;
  /** What the application does with a new session's prekeys: here, recording a last-resort use. */
  recordUse(used: UsedPreKeys | undefined): void;
  /** A bundle as the relay would serve it, consuming one-time keys like the relay does. */
  bundle(options?: { withPreKey?: boolean; lastResort?: boolean }): PreKeyBundle;
}

let nextRegistrationId = 1;

export function makeDevice(identityKeyPair: EcKeyPair = generateEcKeyPair()): TestDevice {
  const identity: LocalIdentity = { identityKeyPair, registrationId: (nextRegistrationId++ % 16383) + 1 };
  const signedPreKeys = new Map<number, EcKeyPair>([[1, generateEcKeyPair()]]);
  const preKeys = new Map<number, EcKeyPair>();
  const kemPreKeys = new Map<number, KemKeyPair>([[1000, generateKemKeyPair()]]); // 1000: last resort
  let nextPreKeyId = 1;
  let nextKemId = 1;
  const sign = (publicKey: Uint8Array) => xeddsaSign(identityKeyPair.privateKey, publicKey);
  const lastResortUses = new Set<string>();
  const use = (kemId: number, signedId: number, baseKey: Uint8Array) => `${kemId}/${signedId}/${toHex(baseKey)}`;
  return {
    identity,
    signedPreKeys,
    preKeys,
    kemPreKeys,
    store: {
      signedPreKey: (id) => signedPreKeys.get(id),
      preKey: async (id) => preKeys.get(id), // async on purpose: stores may be
      kemPreKey: (id) => {
        const k = kemPreKeys.get(id);
        return k && id === 1000 ? { ...k, lastResort: true } : k;
      },
      lastResortUsed: (kemId, signedId, baseKey) => lastResortUses.has(use(kemId, signedId, baseKey)),
    },
    recordUse(used) {
      if (used?.lastResort) lastResortUses.add(use(used.kemPreKeyId, used.signedPreKeyId, used.baseKey));
    },
    bundle({ withPreKey = true, lastResort = false } = {}) {
      const spk = signedPreKeys.get(1)!;
      const bundle: PreKeyBundle = {
        identityKey: identityKeyPair.publicKey,
        deviceId: 1,
        registrationId: identity.registrationId,
        signedPreKey: { keyId: 1, publicKey: spk.publicKey, signature: sign(spk.publicKey) },
        pqPreKey: {
          keyId: 1000,
          publicKey: kemPreKeys.get(1000)!.publicKey,
          signature: sign(kemPreKeys.get(1000)!.publicKey),
        },
      };
      if (!lastResort) {
        const id = nextKemId++;
        const kem = generateKemKeyPair();
        kemPreKeys.set(id, kem);
        bundle.pqPreKey = { keyId: id, publicKey: kem.publicKey, signature: sign(kem.publicKey) };
      }
      if (withPreKey) {
        const id = nextPreKeyId++;
        const pk = generateEcKeyPair();
        preKeys.set(id, pk);
        bundle.preKey = { keyId: id, publicKey: pk.publicKey };
      }
      return bundle;
    },
  };
}
