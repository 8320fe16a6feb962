// Device passwords are high-entropy (16+ random bytes), so a salted HMAC-SHA-256 is as strong as a slow hash
// and costs one HMAC per request instead of burning CPU. Comparison is constant time, and an unknown device
// still computes one HMAC against a fixed dummy so timing does not reveal whether it exists.

const enc = new TextEncoder();
const DUMMY = { salt: new Uint8Array(16), hash: new Uint8Array(32) };

async function hmac(salt: Uint8Array, password: string): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", salt, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(password)));
}

export async function hashPassword(password: string): Promise<{ salt: Uint8Array; hash: Uint8Array }> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  return { salt, hash: await hmac(salt, password) };
}

export async function verifyPassword(
  password: string,
  stored: { salt: Uint8Array; hash: Uint8Array } | undefined,
): Promise<boolean> {
  const s = stored ?? DUMMY;
  const got = await hmac(s.salt, password);
  let diff = got.length ^ s.hash.length;
  for (let i = 0; i < got.length; i++) diff |= got[i]! ^ (s.hash[i] ?? 0);
  return diff === 0 && stored !== undefined;
}
