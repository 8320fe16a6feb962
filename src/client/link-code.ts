// The link code a linking device shows the new one, as the CreateLinkRequest schema specifies it:
// "cplink1." ‖ base64url without padding of (account id as 16 bytes ‖ link token 32 bytes ‖ secret 32 bytes),
// and the hand-over plaintext sealed in the envelope: UTF-8 JSON {version:1, accountId, identityKey, identityPrivateKey}.
import { z } from "zod";
import { base64Bytes } from "../protocol/base64.ts";
import { AccountId } from "../protocol/directory.ts";
import { LINK_TOKEN_BYTES } from "../protocol/limits.ts";
import { CipherpostError } from "./errors.ts";

export const LINK_CODE_PREFIX = "cplink1.";
export const LINK_SECRET_BYTES = 32;

export interface LinkCode {
  accountId: string;
  linkToken: Uint8Array;
  secret: Uint8Array;
}

export const LinkHandOver = z.object({
  version: z.literal(1),
  accountId: AccountId,
  identityKey: base64Bytes(33, "account identity public key"),
  identityPrivateKey: base64Bytes(32, "account identity private key"),
});
export type LinkHandOver = z.infer<typeof LinkHandOver>;

export function uuidToBytes(uuid: string): Uint8Array {
  const hex = uuid.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new CipherpostError("INVALID_ARGUMENT", `not a UUID: ${uuid}`);
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToUuid(bytes: Uint8Array): string {
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function toBase64Url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64Url(text: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) throw new TypeError("not base64url");
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function encodeLinkCode(code: LinkCode): string {
  if (code.linkToken.length !== LINK_TOKEN_BYTES || code.secret.length !== LINK_SECRET_BYTES)
    throw new CipherpostError("INVALID_ARGUMENT", "link token and secret must be 32 bytes each");
  const bytes = new Uint8Array(16 + LINK_TOKEN_BYTES + LINK_SECRET_BYTES);
  bytes.set(uuidToBytes(code.accountId), 0);
  bytes.set(code.linkToken, 16);
  bytes.set(code.secret, 16 + LINK_TOKEN_BYTES);
  return LINK_CODE_PREFIX + toBase64Url(bytes);
}

export function decodeLinkCode(text: string): LinkCode {
  const trimmed = text.trim();
  const bad = () =>
    new CipherpostError("INVALID_LINK_CODE", `not a cipherpost link code (expected ${LINK_CODE_PREFIX}… of 80 bytes)`);
  if (!trimmed.startsWith(LINK_CODE_PREFIX)) throw bad();
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(trimmed.slice(LINK_CODE_PREFIX.length));
  } catch {
    throw bad();
  }
  if (bytes.length !== 16 + LINK_TOKEN_BYTES + LINK_SECRET_BYTES) throw bad();
  return {
    accountId: bytesToUuid(bytes.subarray(0, 16)),
    linkToken: bytes.slice(16, 16 + LINK_TOKEN_BYTES),
    secret: bytes.slice(16 + LINK_TOKEN_BYTES),
  };
}
