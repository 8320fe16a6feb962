// The link code a linking device shows the new one, as the ApproveLinkRequest schema specifies it: "cplink2." ‖
// base64url without padding of (account id as 16 bytes ‖ link token 32 ‖ the linking device's ephemeral X25519 key
// 32), no secret; and the hand-over sealed on approval: UTF-8 JSON {version:1, accountId, identityKey, identityPrivateKey}.
import { z } from "zod";
import { fromBase64Url, fromHex, toBase64Url, toHex } from "../crypto/bytes.ts";
import { ecPublicKeyU, encodeEcPublicKey, isEcPublicKey } from "../crypto/keys.ts";
import { base64Bytes } from "../protocol/base64.ts";
import { AccountId } from "../protocol/directory.ts";
import { LINK_TOKEN_BYTES } from "../protocol/limits.ts";
import { CipherpostError } from "./errors.ts";

export const LINK_CODE_PREFIX = "cplink2.";
/** The X25519 u-coordinate of the linking device's ephemeral key (its 0x05 type byte is implied). */
const EPHEMERAL_KEY_BYTES = 32;

export interface LinkCode {
  accountId: string;
  linkToken: Uint8Array;
  /** The linking device's ephemeral public key, 33 bytes (0x05 ‖ u). */
  existingKey: Uint8Array;
}

export const LinkHandOver = z.object({
  version: z.literal(1),
  accountId: AccountId,
  identityKey: base64Bytes(33, "account identity public key"),
  identityPrivateKey: base64Bytes(32, "account identity private key"),
});
export type LinkHandOver = z.infer<typeof LinkHandOver>;

/** The 16 bytes of a UUID (its 32 hex digits). */
export function uuidToBytes(uuid: string): Uint8Array {
  const digits = uuid.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(digits)) throw new CipherpostError("INVALID_ARGUMENT", `not a UUID: ${uuid}`);
  return fromHex(digits);
}

/** A UUID in its usual lowercase form, from its 16 bytes. */
function bytesToUuid(bytes: Uint8Array): string {
  const hex = toHex(bytes);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function encodeLinkCode(code: LinkCode): string {
  if (code.linkToken.length !== LINK_TOKEN_BYTES || !isEcPublicKey(code.existingKey))
    throw new CipherpostError("INVALID_ARGUMENT", "a link code holds a 32-byte token and a 33-byte EC public key");
  const bytes = new Uint8Array(16 + LINK_TOKEN_BYTES + EPHEMERAL_KEY_BYTES);
  bytes.set(uuidToBytes(code.accountId), 0);
  bytes.set(code.linkToken, 16);
  bytes.set(ecPublicKeyU(code.existingKey), 16 + LINK_TOKEN_BYTES);
  return LINK_CODE_PREFIX + toBase64Url(bytes);
}

export function decodeLinkCode(text: string): LinkCode {
  const trimmed = text.trim();
  const bad = () =>
    new CipherpostError("INVALID_LINK_CODE", `not a cipherpost link code (expected ${LINK_CODE_PREFIX}… of 80 bytes)`);
  if (trimmed.startsWith("cplink1."))
    throw new CipherpostError(
      "INVALID_LINK_CODE",
      "a link code of the old kind, which carried the identity key: make a new one on an up-to-date device",
    );
  if (!trimmed.startsWith(LINK_CODE_PREFIX)) throw bad();
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(trimmed.slice(LINK_CODE_PREFIX.length));
  } catch {
    throw bad();
  }
  if (bytes.length !== 16 + LINK_TOKEN_BYTES + EPHEMERAL_KEY_BYTES) throw bad();
  return {
    accountId: bytesToUuid(bytes.subarray(0, 16)),
    linkToken: bytes.slice(16, 16 + LINK_TOKEN_BYTES),
    existingKey: encodeEcPublicKey(bytes.slice(16 + LINK_TOKEN_BYTES)),
  };
}
