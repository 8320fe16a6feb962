// Web Push (RFC 8030) with VAPID (RFC 8292): an empty push (no payload, so no RFC 8291 encryption and nothing
// for the push service to read) that wakes a device, like Signal's; VAPID signs a JWT (ES256) for the push
// service's origin with the relay's P-256 key, whose public half browsers take as `applicationServerKey`.
import { concatBytes, fromBase64Url, toBase64Url, utf8 } from "../../crypto/bytes.ts";

export interface VapidKey {
  /** The private key as a JWK (kty EC, crv P-256, d, x, y), as the secret holds it. */
  jwk: JsonWebKey & { d: string; x: string; y: string };
  /** The uncompressed public point 0x04 ‖ x ‖ y, base64url: the `k` of the Authorization header. */
  publicKey: string;
}

const B64URL = /^[A-Za-z0-9_-]{43}$/;

/** Parses the VAPID_PRIVATE_KEY_JWK secret; a string naming the problem (never the key) when it is not one. */
export function parseVapidKey(text: string): VapidKey | string {
  let jwk: Record<string, unknown>;
  try {
    jwk = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return "must be a JSON Web Key (JSON), and is not JSON";
  }
  if (typeof jwk !== "object" || jwk === null || jwk.kty !== "EC" || jwk.crv !== "P-256")
    return 'must be a P-256 JWK ({"kty":"EC","crv":"P-256",…})';
  const bytes: Record<string, Uint8Array> = {};
  for (const k of ["d", "x", "y"] as const) {
    const decoded = typeof jwk[k] === "string" && B64URL.test(jwk[k]) ? decode32(jwk[k]) : undefined;
    if (!decoded) return `its "${k}" must be 32 bytes in base64url`;
    bytes[k] = decoded;
  }
  return {
    jwk: { kty: "EC", crv: "P-256", d: jwk.d as string, x: jwk.x as string, y: jwk.y as string },
    publicKey: toBase64Url(concatBytes(new Uint8Array([4]), bytes.x!, bytes.y!)),
  };
}

export interface PushOptions {
  /** Seconds the push service keeps the push for an unreachable device (the TTL header). */
  ttlSeconds: number;
  urgent: boolean;
  subject: string;
}

/** Signs VAPID tokens, one per push service origin, reused until an hour before they expire. */
export class VapidSigner {
  readonly #key: VapidKey;
  #signingKey: Promise<CryptoKey> | undefined;
  readonly #tokens = new Map<string, { token: string; until: number }>();

  constructor(key: VapidKey) {
    this.#key = key;
  }

  get publicKey(): string {
    return this.#key.publicKey;
  }

  async authorization(endpoint: string, subject: string, now: number): Promise<string> {
    const aud = new URL(endpoint).origin;
    const hit = this.#tokens.get(aud);
    if (hit && hit.until > now) return `vapid t=${hit.token}, k=${this.#key.publicKey}`;
    const exp = Math.floor(now / 1000) + 12 * 3600; // RFC 8292: at most 24 hours
    const enc = (o: unknown) => toBase64Url(utf8(JSON.stringify(o)));
    const input = `${enc({ typ: "JWT", alg: "ES256" })}.${enc({ aud, exp, sub: subject })}`;
    this.#signingKey ??= crypto.subtle.importKey("jwk", this.#key.jwk, { name: "ECDSA", namedCurve: "P-256" }, false, [
      "sign",
    ]);
    // WebCrypto's ECDSA signature is r ‖ s, 64 bytes: exactly the JWS ES256 form. (utf8 always returns a view
    // of a fresh ArrayBuffer, which the DOM typing of `sign` asks for by name.)
    const data = utf8(input) as Uint8Array<ArrayBuffer>;
    const sig = new Uint8Array(
      await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, await this.#signingKey, data),
    );
    const token = `${input}.${toBase64Url(sig)}`;
    this.#tokens.set(aud, { token, until: now + 11 * 3600_000 });
    return `vapid t=${token}, k=${this.#key.publicKey}`;
  }
}

/**
 * Sends one empty push at time `now` (the JWT's clock); answers the push service's status (201 accepted;
 * 404/410: the subscription is gone). A redirect is never followed (it could lead anywhere, carrying the
 * relay's VAPID Authorization): its 3xx is the answer, and the caller takes it as a failure.
 */
export async function sendPush(
  signer: VapidSigner,
  endpoint: string,
  o: PushOptions,
  now: number,
  fetcher: typeof fetch = fetch,
): Promise<number> {
  const res = await fetcher(endpoint, {
    method: "POST",
    redirect: "manual",
    headers: {
      authorization: await signer.authorization(endpoint, o.subject, now),
      ttl: String(o.ttlSeconds),
      urgency: o.urgent ? "high" : "normal",
      "content-length": "0",
    },
  });
  await res.body?.cancel();
  return res.status;
}

/** 32 bytes from base64url, or undefined when the text is not exactly that (strict: no stray trailing bits). */
function decode32(text: string): Uint8Array | undefined {
  try {
    const b = fromBase64Url(text);
    return b.length === 32 ? b : undefined;
  } catch {
    return undefined;
  }
}
