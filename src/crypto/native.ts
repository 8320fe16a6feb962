// Native X25519 and Ed25519 through WebCrypto (crypto.subtle) where the runtime has them — Node 20+,
// workerd and current browsers — with noble as the fallback. Each backend is adopted only after it
// reproduces a published vector here, so a runtime that lacks or mis-implements one falls back quietly.

import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { fromBase64Url, fromHex, toBase64Url, toHex } from "./bytes.ts";

export type Backend = "webcrypto" | "noble";

let forced: Backend | undefined;
let x25519Probe: Promise<Backend> | undefined;
let ed25519Probe: Promise<Backend> | undefined;

/** Tests and the benchmark pin a backend to compare them; `undefined` restores detection. */
export function forceBackend(backend: Backend | undefined): void {
  forced = backend;
}

/** Which backends are in use (after detection). */
export async function nativeBackends(): Promise<{ x25519: Backend; ed25519: Backend }> {
  return { x25519: await x25519Backend(), ed25519: await ed25519Backend() };
}

function subtle(): SubtleCrypto | undefined {
  return typeof crypto !== "undefined" && crypto.subtle ? crypto.subtle : undefined;
}

// WebCrypto's types want ArrayBuffer-backed views (not SharedArrayBuffer); copy only if needed.
function ab(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

// Imported private keys, keyed by the identity of the caller's Uint8Array: a JWK import costs about
// as much as the agreement itself, and identity, signed-prekey and ratchet keys are used repeatedly.
const privateKeyCache = new WeakMap<Uint8Array, CryptoKey>();

async function importX25519Private(privateKey: Uint8Array, publicU: Uint8Array): Promise<CryptoKey> {
  const cached = privateKeyCache.get(privateKey);
  if (cached) return cached;
  // JWK rather than PKCS#8: Node recomputes the public key from a PKCS#8 import (~0.5 ms), while a
  // JWK carries it (`x`) and imports in ~0.08 ms.
  const key = await subtle()!.importKey(
    "jwk",
    { kty: "OKP", crv: "X25519", d: toBase64Url(privateKey), x: toBase64Url(publicU) },
    { name: "X25519" },
    false,
    ["deriveBits"],
  );
  privateKeyCache.set(privateKey, key);
  return key;
}

async function webcryptoAgree(privateKey: Uint8Array, publicU: Uint8Array, theirU: Uint8Array): Promise<Uint8Array> {
  const s = subtle()!;
  const [priv, pub] = await Promise.all([
    importX25519Private(privateKey, publicU),
    s.importKey("raw", ab(theirU), { name: "X25519" }, false, []),
  ]);
  // workers-types spell the parameter `$public`; every runtime reads `public` (WebCrypto §ECDH/X25519).
  const params = { name: "X25519", public: pub } as unknown as Parameters<SubtleCrypto["deriveBits"]>[0];
  return new Uint8Array(await s.deriveBits(params, priv, 256));
}

function x25519Backend(): Promise<Backend> {
  if (forced) return Promise.resolve(forced);
  x25519Probe ??= (async (): Promise<Backend> => {
    if (!subtle()) return "noble";
    try {
      // RFC 7748 §6.1: Alice's private key, her public key and Bob's public key give the shared secret.
      const a = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
      const aPub = fromHex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
      const bPub = fromHex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
      const k = await webcryptoAgree(a, aPub, bPub);
      const ok = toHex(k) === "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
      return ok ? "webcrypto" : "noble";
    } catch {
      return "noble";
    }
  })();
  return x25519Probe;
}

/**
 * X25519(privateKey, theirU) (RFC 7748 §5). `publicU` is our own public key, which the WebCrypto
 * JWK import needs. Throws when the result is all zeros (a small-order peer key): WebCrypto refuses
 * it itself, and the noble path checks explicitly.
 */
export async function x25519Agree(
  privateKey: Uint8Array,
  publicU: Uint8Array,
  theirU: Uint8Array,
): Promise<Uint8Array> {
  if ((await x25519Backend()) === "webcrypto") {
    try {
      return await webcryptoAgree(privateKey, publicU, theirU);
    } catch {
      throw new Error("X25519 agreement failed (small-order or invalid key)");
    }
  }
  const shared = x25519.getSharedSecret(privateKey, theirU);
  if (shared.every((b) => b === 0)) throw new Error("X25519 agreement with a small-order key");
  return shared;
}

/** A fresh X25519 key pair as (32-byte private scalar, 32-byte u), generated natively when possible. */
export async function x25519Generate(): Promise<{ privateKey: Uint8Array; publicU: Uint8Array }> {
  if ((await x25519Backend()) === "webcrypto") {
    const s = subtle()!;
    const pair = (await s.generateKey({ name: "X25519" }, true, ["deriveBits"])) as CryptoKeyPair;
    const jwk = (await s.exportKey("jwk", pair.privateKey)) as JsonWebKey;
    if (jwk.d && jwk.x) {
      // RFC 7748 §5 clamping, so stored keys look like libsignal's; X25519 clamps anyway.
      const privateKey = fromBase64Url(jwk.d);
      privateKey[0]! &= 248;
      privateKey[31]! &= 127;
      privateKey[31]! |= 64;
      const publicU = fromBase64Url(jwk.x);
      if (privateKey.length === 32 && publicU.length === 32) {
        privateKeyCache.set(privateKey, pair.privateKey);
        return { privateKey, publicU };
      }
    }
  }
  const privateKey = x25519.utils.randomSecretKey();
  privateKey[0]! &= 248;
  privateKey[31]! &= 127;
  privateKey[31]! |= 64;
  return { privateKey, publicU: x25519.getPublicKey(privateKey) };
}

function ed25519Backend(): Promise<Backend> {
  if (forced) return Promise.resolve(forced);
  ed25519Probe ??= (async (): Promise<Backend> => {
    if (!subtle()) return "noble";
    try {
      // RFC 8032 §7.1 TEST 2 must verify, and fail with one bit changed.
      const pub = fromHex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
      const sig = fromHex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
      );
      const good = await webcryptoEd25519Verify(pub, fromHex("72"), sig);
      const bad = await webcryptoEd25519Verify(pub, fromHex("73"), sig);
      return good && !bad ? "webcrypto" : "noble";
    } catch {
      return "noble";
    }
  })();
  return ed25519Probe;
}

async function webcryptoEd25519Verify(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const s = subtle()!;
  const key = await s.importKey("raw", ab(publicKey), { name: "Ed25519" }, false, ["verify"]);
  return s.verify({ name: "Ed25519" }, key, ab(signature), ab(message));
}

/**
 * RFC 8032 verification of an Edwards public key. The caller (xeddsaVerifyAsync) has already done the
 * strict checks WebCrypto implementations differ on (canonical R, S < L, small-order A); any failure
 * inside WebCrypto, such as an off-curve A, is a false.
 */
export async function ed25519VerifyRaw(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if ((await ed25519Backend()) === "webcrypto") {
    try {
      return await webcryptoEd25519Verify(publicKey, message, signature);
    } catch {
      return false;
    }
  }
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
