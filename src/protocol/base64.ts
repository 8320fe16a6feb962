// The zod schemas for base64 fields (standard, padded: RFC 4648 §4, the byte encoding of every JSON field on the
// wire) that check a field decodes to an exact or bounded number of bytes before anything is decoded. The codec
// itself is src/crypto/bytes.ts.
import { z } from "zod";

/** Canonical-looking padded base64 (the codec still checks the trailing bits). */
export const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Characters of the padded base64 encoding of n bytes. */
export const base64Length = (n: number) => 4 * Math.ceil(n / 3);

/** Bytes a padded base64 text decodes to, without decoding it. */
export const decodedLength = (text: string) =>
  (text.length / 4) * 3 - (text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0);

export function isBase64(text: string): boolean {
  return BASE64_PATTERN.test(text);
}

/** A base64 field that must decode to exactly `bytes` bytes. */
export const base64Bytes = (bytes: number, description: string) =>
  z
    .string()
    .length(base64Length(bytes))
    .regex(BASE64_PATTERN, "must be standard base64 with padding")
    .meta({ description: `${description} (${bytes} bytes, standard base64 with padding)`, format: "byte" });

/** A base64 field of min..max decoded bytes (length checked on the encoding, so nothing big is decoded). */
export const base64Range = (min: number, max: number, description: string) =>
  z
    .string()
    .min(base64Length(min))
    .max(base64Length(max))
    .regex(BASE64_PATTERN, "must be standard base64 with padding")
    .meta({ description: `${description} (${min} to ${max} bytes, standard base64 with padding)`, format: "byte" });
