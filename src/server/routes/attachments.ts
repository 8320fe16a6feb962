// Finished attachments at /v1/attachments/{id}: unauthenticated ranged downloads by id (the 128-bit id is the
// capability; the content is ciphertext), and early deletion by the uploading account. Uploads are the tus
// sub-app (routes/tus.ts). Design notes: docs/attachments.md.
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ATTACHMENT_ID_PATTERN, DOWNLOAD_MAX_AGE_SECONDS } from "../../protocol/attachments.ts";
import { deviceAuth, errorResponses, newRouter, type AppEnv } from "../app.ts";
import { requireDevice } from "../auth.ts";
import type { Config } from "../config.ts";
import { attachmentKey, deleteEntry, getEntry } from "../db/attachments.ts";
import { shardFor } from "../db/shards.ts";
import { ApiError, errorResponse, storage } from "../errors.ts";
import { etagMatches, resolveRange } from "../uploads/http.ts";

export const attachments = newRouter();

/** The id in an attachment's or an upload's path; anything malformed answers the 404 of an unknown id. */
export const AttachmentIdParam = z.object({
  id: z.string().meta({ description: "The attachment/upload id: 32 lowercase hex digits (128 random bits)." }),
});

const notFound = () => new ApiError("NOT_FOUND", "no such attachment");

/** The id from the path, or the same 404 as for an unknown id. */
function attachmentId(c: Context<AppEnv>): string {
  const id = c.req.param("id") ?? "";
  if (!ATTACHMENT_ID_PATTERN.test(id)) throw notFound();
  return id;
}

// ---------- download ----------

// No cache may keep a download's error: a 404 today may be a blob tomorrow is impossible, but a 503 is not final.
attachments.use("/:id", async (c, next) => {
  await next();
  if (c.res.status >= 400) c.res.headers.set("Cache-Control", "no-store");
});

const hasBody = (o: R2Object | R2ObjectBody): o is R2ObjectBody => "body" in o;

const binary = (description: string) => ({
  description,
  content: { "application/octet-stream": { schema: z.string().meta({ format: "binary" }) } },
});

/** When a stored blob stops being served: its TTL after completion, never after its hard deadline. */
function expiresAt(obj: R2Object, cfg: Config): number {
  const ttlMs = Number(obj.customMetadata?.ttlMs ?? cfg.ATTACHMENT_TTL_SECONDS * 1000);
  const deadline = Number(obj.customMetadata?.deadline ?? Number.POSITIVE_INFINITY);
  return Math.min(obj.uploaded.getTime() + ttlMs, deadline);
}

attachments.openapi(
  createRoute({
    method: "get",
    path: "/{id}",
    tags: ["Attachments"],
    summary: "Download a finished attachment (no authentication: the id is the capability)",
    description: [
      "Streams the ciphertext with Content-Length, ETag and Accept-Ranges. A single `Range: bytes=a-b`, `bytes=a-` or suffix `bytes=-n` answers 206 with Content-Range; a range that misses the blob answers 416 with `Content-Range: bytes */size`; a multi-range or malformed Range is ignored (200). If-None-Match answers 304; If-Range with another ETag serves the whole blob.",
      `Cache-Control: \`private, max-age=N\` with N at most ${DOWNLOAD_MAX_AGE_SECONDS} s and never past expiry: the client may cache the immutable blob, shared caches may not keep it after expiry or deletion.`,
      "Unknown, unfinished, expired and deleted ids all answer the same 404.",
    ].join("\n\n"),
    request: { params: AttachmentIdParam },
    responses: {
      200: binary("The blob"),
      206: binary("The requested range"),
      304: { description: "Not modified (If-None-Match)" },
      ...errorResponses("NOT_FOUND", "RANGE_NOT_SATISFIABLE", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const cfg = c.get("config");
    const id = attachmentId(c);
    const bucket = c.env.ATTACHMENTS;
    const key = attachmentKey(id);
    const now = c.get("clock").now();
    const rangeHeader = c.req.header("range");
    const conditional = rangeHeader !== undefined || c.req.header("if-none-match") !== undefined;

    // A plain GET is one R2 read; a conditional or ranged one reads the metadata first to decide.
    const meta: R2Object | R2ObjectBody | null = conditional
      ? await storage("attachments", () => bucket.head(key))
      : await storage("attachments", () => bucket.get(key));
    if (!meta) throw notFound();
    const until = expiresAt(meta, cfg);
    if (now >= until) {
      if (hasBody(meta)) await meta.body.cancel();
      throw notFound();
    }
    const headers: Record<string, string> = {
      ETag: meta.httpEtag,
      "Accept-Ranges": "bytes",
      "Cache-Control": `private, max-age=${Math.max(0, Math.min(DOWNLOAD_MAX_AGE_SECONDS, Math.floor((until - now) / 1000)))}`,
      "Last-Modified": meta.uploaded.toUTCString(),
    };
    const blob = (length: number) => ({
      ...headers,
      "Content-Type": "application/octet-stream",
      "Content-Length": String(length),
    });
    if (hasBody(meta)) return c.body(meta.body, 200, blob(meta.size));
    if (etagMatches(c.req.header("if-none-match"), meta.httpEtag)) return c.body(null, 304, headers);
    const ifRange = c.req.header("if-range");
    const range =
      ifRange !== undefined && !etagMatches(ifRange, meta.httpEtag) ? null : resolveRange(rangeHeader, meta.size);
    if (range === "unsatisfiable") {
      const res = errorResponse(
        c,
        new ApiError("RANGE_NOT_SATISFIABLE", `the attachment is ${meta.size} bytes`, { size: meta.size }),
      );
      res.headers.set("Content-Range", `bytes */${meta.size}`);
      res.headers.set("Cache-Control", "no-store");
      return res;
    }
    const part = range ? { offset: range.start, length: range.end - range.start + 1 } : null;
    const obj = await storage("attachments", () => bucket.get(key, part ? { range: part } : {}));
    if (!obj || obj.etag !== meta.etag) {
      // Deleted (or, impossibly for a random id, replaced) between the two reads.
      if (obj) await obj.body.cancel();
      throw notFound();
    }
    if (!part) return c.body(obj.body, 200, blob(meta.size));
    return c.body(obj.body, 206, {
      ...blob(part.length),
      "Content-Range": `bytes ${range!.start}-${range!.end}/${meta.size}`,
    });
  },
);

// ---------- deletion ----------

attachments.openapi(
  createRoute({
    method: "delete",
    path: "/{id}",
    tags: ["Attachments"],
    summary: "Delete an attachment (or unfinished upload) early",
    description:
      "Any device of the account that uploaded it may delete it; for anyone else the id answers 404, as an unknown one does. The blob, any unfinished multipart upload and the quota it used go at once.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    request: { params: AttachmentIdParam },
    responses: {
      204: { description: "Deleted" },
      ...errorResponses("UNAUTHORIZED", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const cfg = c.get("config");
    const d = c.get("device");
    const id = attachmentId(c);
    const db = shardFor(c.env, cfg, d.accountId);
    const entry = await storage("attachments index", () => getEntry(db, id));
    if (!entry || entry.accountId !== d.accountId) throw notFound();
    await storage("upload", () => c.env.UPLOAD.getByName(id).discard());
    await storage("attachments", () => c.env.ATTACHMENTS.delete(attachmentKey(id)));
    await storage("attachments index", () => deleteEntry(db, id));
    return c.body(null, 204);
  },
);
