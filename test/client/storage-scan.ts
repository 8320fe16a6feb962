// Reading an encrypted store's files as an attacker who took the disk (and the key file) would: the raw bytes of
// every file, and every file decrypted with its own construction re-implemented here (HKDF-SHA256 of the storage
// key, XChaCha20-Poly1305 bound to the file name), so a test can show a replaced secret is in neither.
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** Every file under `dir` (recursively) as latin1 text, so any byte string can be searched for. */
export function rawFiles(dir: string): string[] {
  const out: string[] = [];
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...rawFiles(p));
    else out.push(readFileSync(p).toString("latin1"));
  }
  return out;
}

/** Every file of a store directory decrypted with the storage key, as UTF-8 text (all files must decrypt). */
export function decryptedFiles(dir: string, storageKey: Uint8Array): string[] {
  const key = hkdf(sha256, storageKey, undefined, new TextEncoder().encode("cipherpost-storage-v1"), 32);
  return readdirSync(dir).map((name) => {
    const bytes = new Uint8Array(readFileSync(join(dir, name)));
    if (new TextDecoder().decode(bytes.subarray(0, 5)) !== "CPST1") throw new Error(`${name} is not a store file`);
    const ad = new TextEncoder().encode(`cipherpost-storage ${name === "manifest.tmp" ? "manifest" : name}`);
    return new TextDecoder().decode(xchacha20poly1305(key, bytes.subarray(5, 29), ad).decrypt(bytes.subarray(29)));
  });
}

/** Whether `secret` occurs in any of `texts` as raw bytes, base64 or hex (the forms the SDK stores values in). */
export function containsSecret(texts: string[], secret: Uint8Array): boolean {
  const forms = [
    Buffer.from(secret).toString("latin1"),
    Buffer.from(secret).toString("base64").slice(0, 40),
    Buffer.from(secret).toString("hex"),
  ];
  return texts.some((t) => forms.some((f) => t.includes(f)));
}
