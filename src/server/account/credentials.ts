// Device passwords are high-entropy (16+ random bytes), so a salted HMAC-SHA-256 is as strong as a slow hash
// and costs one HMAC per request instead of burning CPU. Comparison is constant time, and an unknown device
// still computes one HMAC against a fixed dummy so timing does not reveal whether it exists.
import { equalBytes, randomBytes, toHex, utf8 } from "../../crypto/bytes.ts";

const DUMMY = { salt: new Uint8Array(16), hash: new Uint8Array(32) };

async function hmac(salt: Uint8Array, password: string): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", salt, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(password)));
}

export async function hashPassword(password: string): Promise<{ salt: Uint8Array; hash: Uint8Array }> {
  const salt = randomBytes(16);
  return { salt, hash: await hmac(salt, password) };
}

export async function verifyPassword(
  password: string,
  stored: { salt: Uint8Array; hash: Uint8Array } | undefined,
): Promise<boolean> {
  const s = stored ?? DUMMY;
  const same = equalBytes(await hmac(s.salt, password), s.hash);
  return same && stored !== undefined;
}

/**
 * SHA-256 in hex: how the object stores its single-use secrets (link tokens, connection tickets) and the
 * digest an idempotency key is bound to. A secret's hash is enough to recognise it and useless to a reader.
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}
