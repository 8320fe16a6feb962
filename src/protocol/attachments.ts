// Wire facts of attachments: the tus 1.0.0 dialect the relay speaks at /v1/attachments/tus/, attachment ids,
// and the schemas the API document shows for tus headers. Sizes an operator tunes are in src/server/config.ts.
import { z } from "zod";

/** tus protocol version and the extensions implemented (tus 1.0.0, "Protocol Extensions"). */
export const TUS_VERSION = "1.0.0";
export const TUS_EXTENSIONS = ["creation", "creation-with-upload", "termination", "expiration", "checksum"] as const;
export const TUS_CHECKSUM_ALGORITHMS = ["sha256"] as const;
/** The only Content-Type a PATCH (or a creation-with-upload POST) body may have (tus 1.0.0, PATCH). */
export const TUS_CONTENT_TYPE = "application/offset+octet-stream";

/** Where uploads are created; an upload's URL is this plus its id. */
export const TUS_ENDPOINT = "/v1/attachments/tus/";

/** Attachment and upload ids: 128 random bits as 32 lowercase hex digits; the id is the download capability. */
export const ATTACHMENT_ID_BYTES = 16;
export const ATTACHMENT_ID_PATTERN = /^[0-9a-f]{32}$/;
export const AttachmentId = z.string().regex(ATTACHMENT_ID_PATTERN).meta({
  id: "AttachmentId",
  description:
    "128 random bits as 32 lowercase hex digits; the same id names the tus upload and the finished attachment.",
});
export type AttachmentId = z.infer<typeof AttachmentId>;

/** Upload-Metadata is kept and echoed by HEAD (tus 1.0.0, creation); it is visible to the relay, so keep it short and non-identifying. */
export const MAX_UPLOAD_METADATA_CHARS = 1024;

/** R2 multipart rules: parts of at least 5 MiB, all equal but the last, at most 10,000 of them. */
export const R2_MIN_PART_BYTES = 5 * 1024 * 1024;
export const R2_MAX_PARTS = 10_000;

/** A download's Cache-Control max-age never exceeds this (seconds), nor the attachment's remaining lifetime. */
export const DOWNLOAD_MAX_AGE_SECONDS = 300;

const header = (description: string) => z.string().optional().meta({ description });

/** The tus request headers, documented for the API document (each route checks its own). */
export const TusHeaders = {
  tusResumable: header("Must be `1.0.0` on every tus request except OPTIONS; otherwise 412 with `Tus-Version`."),
  uploadLength: header(
    "Creation: the total size in bytes, at most MAX_ATTACHMENT_BYTES (also Tus-Max-Size). Upload-Defer-Length is not supported.",
  ),
  uploadMetadata: header(
    `Creation: tus metadata (comma-separated \`key base64value\` pairs), at most ${MAX_UPLOAD_METADATA_CHARS} characters, echoed by HEAD. The relay can read it: put nothing identifying in it.`,
  ),
  uploadOffset: header("PATCH: the offset the body starts at; must equal the upload's current offset (409 otherwise)."),
  uploadChecksum: header(
    "Optional: `sha256 <base64 digest>` of this request's body. A mismatch answers 460 and discards the body's bytes.",
  ),
  contentType: header(`\`${TUS_CONTENT_TYPE}\` when the request has a body.`),
  contentLength: header(
    "The body's size: at most MAX_PATCH_BYTES (413 otherwise; also enforced while the body streams).",
  ),
};
