// Checks the keys a device publishes before anything is stored: type bytes and lengths, and every signature
// (signed prekey, KEM last-resort key, each one-time KEM key) against the account's identity key.
import { xeddsaVerifyAsync } from "../crypto/xeddsa.ts";
import { fromBase64 } from "../crypto/bytes.ts";
import type { ECPreKey, ECSignedPreKey, KEMSignedPreKey } from "../protocol/directory.ts";
import { EC_PUBLIC_KEY_BYTES, KEM_PUBLIC_KEY_BYTES } from "../protocol/limits.ts";
import { ApiError } from "./errors.ts";

const EC_TYPE = 0x05;
const KEM_TYPES = new Set([0x08, 0x0a]);

export function ecKey(b64: string, field: string): Uint8Array {
  const k = fromBase64(b64);
  if (k.length !== EC_PUBLIC_KEY_BYTES || k[0] !== EC_TYPE)
    throw new ApiError("INVALID_KEY", `${field}: an EC public key is 33 bytes starting 0x05`);
  return k;
}

function kemKey(b64: string, field: string): Uint8Array {
  const k = fromBase64(b64);
  if (k.length !== KEM_PUBLIC_KEY_BYTES || !KEM_TYPES.has(k[0]!))
    throw new ApiError("INVALID_KEY", `${field}: a KEM public key is 1569 bytes starting 0x08 or 0x0A`);
  return k;
}

/** A pending check: the key's bytes, its signature and the field to name when it fails. */
type Check = [key: Uint8Array, signature: string, field: string];

/**
 * Checks type bytes and lengths first (cheap, synchronous), then every signature concurrently with the native
 * Ed25519 verify after the same strict XEdDSA checks (about 0.3 ms each in workerd against 4 ms in pure JS).
 */
export async function verifyDeviceKeys(
  identityKey: Uint8Array,
  keys: {
    signedPreKey?: ECSignedPreKey | undefined;
    pqLastResortPreKey?: KEMSignedPreKey | undefined;
    preKeys?: ECPreKey[] | undefined;
    pqPreKeys?: KEMSignedPreKey[] | undefined;
  },
): Promise<void> {
  const checks: Check[] = [];
  if (keys.signedPreKey)
    checks.push([
      ecKey(keys.signedPreKey.publicKey, "signedPreKey.publicKey"),
      keys.signedPreKey.signature,
      "signedPreKey",
    ]);
  if (keys.pqLastResortPreKey)
    checks.push([
      kemKey(keys.pqLastResortPreKey.publicKey, "pqLastResortPreKey.publicKey"),
      keys.pqLastResortPreKey.signature,
      "pqLastResortPreKey",
    ]);
  keys.preKeys?.forEach((k, i) => ecKey(k.publicKey, `preKeys.${i}.publicKey`));
  keys.pqPreKeys?.forEach((k, i) =>
    checks.push([kemKey(k.publicKey, `pqPreKeys.${i}.publicKey`), k.signature, `pqPreKeys.${i}`]),
  );
  const results = await Promise.all(checks.map(([key, sig]) => xeddsaVerifyAsync(identityKey, key, fromBase64(sig))));
  const bad = results.indexOf(false);
  if (bad >= 0)
    throw new ApiError(
      "INVALID_SIGNATURE",
      `${checks[bad]![2]}.signature does not verify with the account's identity key`,
    );
}
