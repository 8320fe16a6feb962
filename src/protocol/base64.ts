// Standard base64 with padding (RFC 4648 §4), the byte encoding of every JSON field on the wire, and the
// zod schemas that check a field decodes to an exact or bounded number of bytes before anything else runs.
import { z } from "zod";

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Characters of the padded base64 encoding of n bytes. */
export const base64Length = (n: number) => 4 * Math.ceil(n / 3);

/** Bytes a padded base64 text decodes to, without decoding it. */
export const decodedLength = (text: string) => (text.length / 4) * 3 - (text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0);

export function encodeBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Strict decoder: throws on anything that is not canonical padded base64. */
export function decodeBase64(text: string): Uint8Array {
  if (!B64.test(text)) throw new TypeError("not standard padded base64");
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function isBase64(text: string): boolean {
  return B64.test(text);
}

/** A base64 field that must decode to exactly `bytes` bytes. */
export const base64Bytes = (bytes: number, description: string) =>
  z
    .string()
    .length(base64Length(bytes))
    .regex(B64, "must be standard base64 with padding")
    .meta({ description: `${description} (${bytes} bytes, standard base64 with padding)`, format: "byte" });

/** A base64 field of min..max decoded bytes (length checked on the encoding, so nothing big is decoded). */
export const base64Range = (min: number, max: number, description: string) =>
  z
    .string()
    .min(base64Length(min))
    .max(base64Length(max))
    .regex(B64, "must be standard base64 with padding")
    .meta({ description: `${description} (${min} to ${max} bytes, standard base64 with padding)`, format: "byte" });
