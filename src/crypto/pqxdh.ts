// PQXDH key agreement (signal.org/docs/specifications/pqxdh) with X25519 and ML-KEM-1024: prekey
// bundles as the relay returns them, signature checks before use, and both sides' shared secret.

import { fromBase64 } from "./bytes.ts";
import { CryptoError } from "./errors.ts";
import { pqxdhSecret } from "./kdf.ts";
import {
  agreeAsync,
  type EcKeyPair,
  generateEcKeyPairAsync,
  isEcPublicKey,
  isKemPublicKey,
  isMlKemPublicKey,
  kemDecapsulate,
  kemEncapsulate,
  type KemKeyPair,
  SIGNATURE_BYTES,
} from "./keys.ts";
import type { PreKeyMessageFields } from "./wire.ts";
import { xeddsaVerifyAsync } from "./xeddsa.ts";

export interface SignedPublicPreKey {
  keyId: number;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

export interface PublicPreKey {
  keyId: number;
  publicKey: Uint8Array;
}

/** One device's bundle, typed. */
export interface PreKeyBundle {
  identityKey: Uint8Array;
  deviceId: number;
  registrationId: number;
  signedPreKey: SignedPublicPreKey;
  /** One-time EC prekey; absent when the device has run out. */
  preKey?: PublicPreKey;
  /** Signed KEM prekey: one-time, or the last-resort key when those have run out. */
  pqPreKey: SignedPublicPreKey;
}

/** The relay's bundle response (Signal-Server field names, standard base64). */
export interface PreKeyBundleJson {
  identityKey: string;
  devices: {
    deviceId: number;
    registrationId: number;
    signedPreKey: { keyId: number; publicKey: string; signature: string };
    preKey?: { keyId: number; publicKey: string } | null;
    pqPreKey: { keyId: number; publicKey: string; signature: string };
  }[];
}

/** Our long-term identity as the session functions need it. */
export interface LocalIdentity {
  identityKeyPair: EcKeyPair;
  registrationId: number;
}

function bad(what: string): never {
  throw new CryptoError("INVALID_MESSAGE", `prekey bundle: ${what}`);
}

function keyId(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff) bad(`${what} is not a key id`);
  return v;
}

function b64(v: unknown, what: string): Uint8Array {
  if (typeof v !== "string") bad(`${what} is not a string`);
  try {
    return fromBase64(v);
  } catch {
    bad(`${what} is not standard base64`);
  }
}

/**
 * Converts the relay's JSON bundle into typed bundles, one per device, checking shapes and key
 * encodings (not signatures: initiateSession verifies those before using any key).
 */
export function bundlesFromJson(json: PreKeyBundleJson): PreKeyBundle[] {
  if (typeof json !== "object" || json === null || !Array.isArray(json.devices)) bad("not a bundle response");
  const identityKey = b64(json.identityKey, "identityKey");
  if (!isEcPublicKey(identityKey))
    throw new CryptoError("INVALID_KEY", "prekey bundle: identityKey is not a 33-byte 0x05 key");
  return json.devices.map((d, i) => {
    const where = `devices[${i}]`;
    if (typeof d !== "object" || d === null) bad(`${where} is not an object`);
    const deviceId = keyId(d.deviceId, `${where}.deviceId`);
    const registrationId = keyId(d.registrationId, `${where}.registrationId`);
    if (!d.signedPreKey || !d.pqPreKey) bad(`${where} lacks signedPreKey or pqPreKey`);
    const signedPreKey = {
      keyId: keyId(d.signedPreKey.keyId, `${where}.signedPreKey.keyId`),
      publicKey: b64(d.signedPreKey.publicKey, `${where}.signedPreKey.publicKey`),
      signature: b64(d.signedPreKey.signature, `${where}.signedPreKey.signature`),
    };
    const pqPreKey = {
      keyId: keyId(d.pqPreKey.keyId, `${where}.pqPreKey.keyId`),
      publicKey: b64(d.pqPreKey.publicKey, `${where}.pqPreKey.publicKey`),
      signature: b64(d.pqPreKey.signature, `${where}.pqPreKey.signature`),
    };
    if (!isEcPublicKey(signedPreKey.publicKey))
      throw new CryptoError("INVALID_KEY", `${where}.signedPreKey is not a 0x05 key`);
    if (!isKemPublicKey(pqPreKey.publicKey)) throw new CryptoError("INVALID_KEY", `${where}.pqPreKey is not a KEM key`);
    if (signedPreKey.signature.length !== SIGNATURE_BYTES || pqPreKey.signature.length !== SIGNATURE_BYTES) {
      bad(`${where}: signatures must be 64 bytes`);
    }
    const bundle: PreKeyBundle = { identityKey, deviceId, registrationId, signedPreKey, pqPreKey };
    if (d.preKey) {
      const preKey = {
        keyId: keyId(d.preKey.keyId, `${where}.preKey.keyId`),
        publicKey: b64(d.preKey.publicKey, `${where}.preKey.publicKey`),
      };
      if (!isEcPublicKey(preKey.publicKey)) throw new CryptoError("INVALID_KEY", `${where}.preKey is not a 0x05 key`);
      bundle.preKey = preKey;
    }
    return bundle;
  });
}

/**
 * PQXDH §3.3: "Alice verifies the signatures, and aborts the protocol if verification fails" — both
 * the signed EC prekey and the KEM prekey, each signed over its full serialisation with IK_B.
 */
export async function verifyBundle(bundle: PreKeyBundle): Promise<void> {
  if (!isEcPublicKey(bundle.identityKey)) throw new CryptoError("INVALID_KEY", "bundle identity key is not a 0x05 key");
  if (!isEcPublicKey(bundle.signedPreKey.publicKey))
    throw new CryptoError("INVALID_KEY", "signed prekey is not a 0x05 key");
  if (!isKemPublicKey(bundle.pqPreKey.publicKey)) throw new CryptoError("INVALID_KEY", "KEM prekey is not a KEM key");
  if (bundle.preKey && !isEcPublicKey(bundle.preKey.publicKey))
    throw new CryptoError("INVALID_KEY", "one-time prekey is not a 0x05 key");
  const [spkOk, pqOk] = [
    await xeddsaVerifyAsync(bundle.identityKey, bundle.signedPreKey.publicKey, bundle.signedPreKey.signature),
    await xeddsaVerifyAsync(bundle.identityKey, bundle.pqPreKey.publicKey, bundle.pqPreKey.signature),
  ];
  if (!spkOk)
    throw new CryptoError("INVALID_SIGNATURE", "signed prekey signature does not verify under the identity key");
  if (!pqOk) throw new CryptoError("INVALID_SIGNATURE", "KEM prekey signature does not verify under the identity key");
  if (!isMlKemPublicKey(bundle.pqPreKey.publicKey)) {
    throw new CryptoError(
      "UNSUPPORTED_KEM",
      "the device offers only Kyber1024 (0x08); this SDK speaks ML-KEM-1024 (0x0A)",
    );
  }
}

export interface InitiatorHandshake {
  sharedSecret: Uint8Array;
  /** What the prekey message must carry (the sender's identity key is added by the encoder). */
  fields: Omit<PreKeyMessageFields, "identityKey">;
}

/** PQXDH §3.3, the initiator (Alice): verify, then DH1..DH4 and the KEM encapsulation. */
export async function pqxdhInitiate(ours: LocalIdentity, bundle: PreKeyBundle): Promise<InitiatorHandshake> {
  await verifyBundle(bundle);
  const ephemeral = await generateEcKeyPairAsync();
  const ik = ours.identityKeyPair;
  const dhs = [
    await agreeAsync(ik, bundle.signedPreKey.publicKey), // DH1 = DH(IK_A, SPK_B)
    await agreeAsync(ephemeral, bundle.identityKey), // DH2 = DH(EK_A, IK_B)
    await agreeAsync(ephemeral, bundle.signedPreKey.publicKey), // DH3 = DH(EK_A, SPK_B)
  ];
  if (bundle.preKey) dhs.push(await agreeAsync(ephemeral, bundle.preKey.publicKey)); // DH4 = DH(EK_A, OPK_B)
  const { cipherText, sharedSecret: ss } = kemEncapsulate(bundle.pqPreKey.publicKey);
  const sharedSecret = pqxdhSecret(dhs, ss);
  const fields: InitiatorHandshake["fields"] = {
    registrationId: ours.registrationId,
    signedPreKeyId: bundle.signedPreKey.keyId,
    kemPreKeyId: bundle.pqPreKey.keyId,
    baseKey: ephemeral.publicKey,
    kemCiphertext: cipherText,
  };
  if (bundle.preKey) fields.preKeyId = bundle.preKey.keyId;
  return { sharedSecret, fields };
}

export interface ResponderKeys {
  signedPreKey: EcKeyPair;
  preKey?: EcKeyPair;
  kemPreKey: KemKeyPair;
}

/** PQXDH §3.4, the responder (Bob): the same DHs from the other side and the KEM decapsulation. */
export async function pqxdhRespond(
  ours: LocalIdentity,
  keys: ResponderKeys,
  msg: PreKeyMessageFields,
): Promise<Uint8Array> {
  const dhs = [
    await agreeAsync(keys.signedPreKey, msg.identityKey), // DH1 = DH(SPK_B, IK_A)
    await agreeAsync(ours.identityKeyPair, msg.baseKey), // DH2 = DH(IK_B, EK_A)
    await agreeAsync(keys.signedPreKey, msg.baseKey), // DH3 = DH(SPK_B, EK_A)
  ];
  if (msg.preKeyId !== undefined) {
    if (!keys.preKey)
      throw new CryptoError("MISSING_PREKEY", "the message used a one-time prekey that was not supplied");
    dhs.push(await agreeAsync(keys.preKey, msg.baseKey)); // DH4 = DH(OPK_B, EK_A)
  }
  const ss = kemDecapsulate(keys.kemPreKey.secretKey, msg.kemCiphertext);
  return pqxdhSecret(dhs, ss);
}
