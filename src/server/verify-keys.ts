// Checks the keys a device publishes before anything is stored: type bytes and lengths, and every signature
// (signed prekey, KEM last-resort key, each one-time KEM key) against the account's identity key.
import { xeddsaVerify } from "../crypto/xeddsa.ts";
import { decodeBase64 } from "../protocol/base64.ts";
import type { ECPreKey, ECSignedPreKey, KEMSignedPreKey } from "../protocol/directory.ts";
import { EC_PUBLIC_KEY_BYTES, KEM_PUBLIC_KEY_BYTES } from "../protocol/limits.ts";
import { ApiError } from "./errors.ts";

const EC_TYPE = 0x05;
const KEM_TYPES = new Set([0x08, 0x0a]);

export function ecKey(b64: string, field: string): Uint8Array {
  const k = decodeBase64(b64);
  if (k.length !== EC_PUBLIC_KEY_BYTES || k[0] !== EC_TYPE) throw new ApiError("INVALID_KEY", `${field}: an EC public key is 33 bytes starting 0x05`);
  return k;
}

function kemKey(b64: string, field: string): Uint8Array {
  const k = decodeBase64(b64);
  if (k.length !== KEM_PUBLIC_KEY_BYTES || !KEM_TYPES.has(k[0]!))
    throw new ApiError("INVALID_KEY", `${field}: a KEM public key is 1569 bytes starting 0x08 or 0x0A`);
  return k;
}

function signed(identityKey: Uint8Array, key: Uint8Array, signature: string, field: string) {
  if (!xeddsaVerify(identityKey, key, decodeBase64(signature)))
    throw new ApiError("INVALID_SIGNATURE", `${field}.signature does not verify with the account's identity key`);
}

export function verifyDeviceKeys(
  identityKey: Uint8Array,
  keys: { signedPreKey?: ECSignedPreKey | undefined; pqLastResortPreKey?: KEMSignedPreKey | undefined; preKeys?: ECPreKey[] | undefined; pqPreKeys?: KEMSignedPreKey[] | undefined },
): void {
  if (keys.signedPreKey) signed(identityKey, ecKey(keys.signedPreKey.publicKey, "signedPreKey.publicKey"), keys.signedPreKey.signature, "signedPreKey");
  if (keys.pqLastResortPreKey)
    signed(identityKey, kemKey(keys.pqLastResortPreKey.publicKey, "pqLastResortPreKey.publicKey"), keys.pqLastResortPreKey.signature, "pqLastResortPreKey");
  keys.preKeys?.forEach((k, i) => ecKey(k.publicKey, `preKeys.${i}.publicKey`));
  keys.pqPreKeys?.forEach((k, i) => signed(identityKey, kemKey(k.publicKey, `pqPreKeys.${i}.publicKey`), k.signature, `pqPreKeys.${i}`));
}
