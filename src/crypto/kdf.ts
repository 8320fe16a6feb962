// Key derivation for PQXDH and the Double Ratchet: HKDF-SHA256 (RFC 5869), HMAC-SHA256 chain
// steps and the per-message AEAD key, each domain-separated by its own info string.

import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { _SHA256, sha256 } from "@noble/hashes/sha2.js";
import { utf8 } from "./bytes.ts";

export const INFO = {
  /** PQXDH §2.2 "an ASCII string identifying the application", naming curve, hash and KEM. */
  pqxdh: utf8("cipherpost_PQXDH_CURVE25519_SHA-256_ML-KEM-1024"),
  /** Double Ratchet §5.2 KDF_RK. */
  rootKey: utf8("cipherpost-ratchet-root-v1"),
  /** Double Ratchet §5.2 ENCRYPT: message key → AEAD key and nonce. */
  messageKeys: utf8("cipherpost-message-keys-v1"),
} as const;

/** RFC 5869 HKDF with SHA-256; an absent salt means HashLen zero bytes (§2.2). */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array | undefined,
  info: Uint8Array,
  length: number,
): Uint8Array {
  return hkdf(sha256, ikm, salt, info, length);
}

export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  return hmac(sha256, key, data);
}

/**
 * PQXDH §3.3: SK = KDF(F ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] ‖ SS) with F = 32 0xFF bytes (for X25519, so the
 * input never starts like a valid X25519 output), a zero salt and the protocol's info string.
 */
export function pqxdhSecret(dhs: Uint8Array[], kemSharedSecret: Uint8Array): Uint8Array {
  const total = 32 + dhs.length * 32 + kemSharedSecret.length;
  const km = new Uint8Array(total);
  km.fill(0xff, 0, 32);
  let off = 32;
  for (const dh of dhs) {
    km.set(dh, off);
    off += dh.length;
  }
  km.set(kemSharedSecret, off);
  const sk = hkdfSha256(km, new Uint8Array(32), INFO.pqxdh, 32);
  km.fill(0);
  return sk;
}

/** Double Ratchet §5.2 KDF_RK(rk, dh_out): HKDF with rk as salt, giving (new root key, chain key). */
export function kdfRootKey(rootKey: Uint8Array, dhOut: Uint8Array): [rootKey: Uint8Array, chainKey: Uint8Array] {
  const out = hkdfSha256(dhOut, rootKey, INFO.rootKey, 64);
  return [out.slice(0, 32), out.slice(32, 64)];
}

const MESSAGE_KEY_SEED = 0x01;
const CHAIN_KEY_SEED = 0x02;

/**
 * HMAC-SHA256(key, one byte) for a 32-byte key on noble's SHA-256 compression function, with no allocation:
 * exactly four compressions (RFC 2104: inner pad block, seed block, outer pad block, inner-digest block).
 * A chain step through noble's general hmac costs about four times as much, and a receiver must walk up to
 * MAX_SKIP steps before it can check a message's tag, so this is what bounds a forged message's cost.
 */
class ChainHmac extends _SHA256 {
  readonly #iv = this.get();
  readonly #block = new Uint8Array(64);
  readonly #view = new DataView(this.#block.buffer);

  compute(key: Uint8Array, seed: number): Uint8Array {
    if (key.length !== 32) throw new Error("a chain key is 32 bytes");
    const block = this.#block;
    const view = this.#view;
    this.set(...this.#iv);
    for (let i = 0; i < 32; i++) block[i] = key[i]! ^ 0x36;
    block.fill(0x36, 32);
    this.process(view, 0);
    block.fill(0);
    block[0] = seed;
    block[1] = 0x80; // SHA-256 padding after 65 bytes of input: 0x80, zeros, the bit length
    view.setUint32(60, 65 * 8);
    this.process(view, 0);
    const inner = this.get();
    this.set(...this.#iv);
    for (let i = 0; i < 32; i++) block[i] = key[i]! ^ 0x5c;
    block.fill(0x5c, 32);
    this.process(view, 0);
    block.fill(0);
    for (let i = 0; i < 8; i++) view.setUint32(4 * i, inner[i]!);
    block[32] = 0x80; // after 96 bytes of input
    view.setUint32(60, 96 * 8);
    this.process(view, 0);
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    const digest = this.get();
    for (let i = 0; i < 8; i++) outView.setUint32(4 * i, digest[i]!);
    block.fill(0);
    this.set(...this.#iv);
    return out;
  }
}

const chainHmac = new ChainHmac();

/** KDF_CK's next chain key alone: HMAC-SHA256(ck, 0x02). */
export function nextChainKey(chainKey: Uint8Array): Uint8Array {
  return chainHmac.compute(chainKey, CHAIN_KEY_SEED);
}

/** KDF_CK's message key alone: HMAC-SHA256(ck, 0x01). */
export function messageKeyOf(chainKey: Uint8Array): Uint8Array {
  return chainHmac.compute(chainKey, MESSAGE_KEY_SEED);
}

/** Double Ratchet §5.2 KDF_CK(ck): HMAC-SHA256 with constants 0x01 (message key) and 0x02 (next chain key), as Signal does. */
export function kdfChainKey(chainKey: Uint8Array): [chainKey: Uint8Array, messageKey: Uint8Array] {
  return [nextChainKey(chainKey), messageKeyOf(chainKey)];
}

/**
 * Double Ratchet §5.2 ENCRYPT recommends deriving the encryption key and IV from the message key with
 * HKDF: 32 bytes of ChaCha20-Poly1305 key and a 12-byte nonce. Each message key is used once, so the
 * derived nonce never repeats under its key.
 */
export function messageKeyMaterial(messageKey: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const out = hkdfSha256(messageKey, undefined, INFO.messageKeys, 44);
  return { key: out.subarray(0, 32), nonce: out.subarray(32, 44) };
}
