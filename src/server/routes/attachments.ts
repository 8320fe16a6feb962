// Attachments: tus 1.0.0 uploads at /v1/attachments/tus/ (core, creation, creation-with-upload, termination,
// expiration, checksum sha256) into R2 through one Upload object per upload; unauthenticated ranged downloads
// of finished blobs by id; early deletion by the uploading account. Design notes: docs/attachments.md.
import { createRoute, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import {
  ATTACHMENT_ID_BYTES,
  ATTACHMENT_ID_PATTERN,
  DOWNLOAD_MAX_AGE_SECONDS,
  R2_MAX_PARTS,
  TUS_CHECKSUM_ALGORITHMS,
  TUS_CONTENT_TYPE,
  TUS_ENDPOINT,
  TUS_EXTENSIONS,
  TUS_VERSION,
  TusHeaders,
} from "../../protocol/attachments.ts";
import { errorResponses, newRouter, type AppEnv } from "../app.ts";
import { requireDevice } from "../auth.ts";
import type { Config } from "../config.ts";
import { attachmentKey, deleteEntry, getEntry, reserveUpload } from "../db/attachments.ts";
import { shardFor } from "../db/shards.ts";
import { ApiError, errorResponse, storage, unwrap } from "../errors.ts";
import { etagMatches, httpDate, parseChecksum, parseCount, parseMetadata, resolveRange } from "../uploads/http.ts";

export const attachments = newRouter();
const security = [{ basicAuth: [] }];

const CHUNK_NOTE =
  "PATCH bodies are limited to MAX_PATCH_BYTES (default 50 MiB, below the Workers request-body limit): tus-client users must set `chunkSize` below MAX_PATCH_BYTES (tus-js-client sends the whole file in one PATCH by default). A multiple of UPLOAD_PART_BYTES (default 10 MiB) is most efficient.";

const IdParam = z.object({
  id: z.string().meta({ description: "The attachment/upload id: 32 lowercase hex digits (128 random bits)." }),
});

const tusHeaders = (...names: (keyof typeof TusHeaders)[]) => {
  const wire: Record<keyof typeof TusHeaders, string> = {
    tusResumable: "Tus-Resumable",
    uploadLength: "Upload-Length",
    uploadMetadata: "Upload-Metadata",
    uploadOffset: "Upload-Offset",
    uploadChecksum: "Upload-Checksum",
    contentType: "Content-Type",
    contentLength: "Content-Length",
  };
  return z.object(Object.fromEntries(names.map((n) => [wire[n], TusHeaders[n]])));
};

const responseHeader = (description: string) => z.string().meta({ description });
const octetBody = { content: { [TUS_CONTENT_TYPE]: { schema: z.string().meta({ format: "binary" }) } } };

function discoveryHeaders(cfg: Config): Record<string, string> {
  return {
    "Tus-Resumable": TUS_VERSION,
    "Tus-Version": TUS_VERSION,
    "Tus-Extension": TUS_EXTENSIONS.join(","),
    "Tus-Max-Size": String(cfg.MAX_ATTACHMENT_BYTES),
    "Tus-Checksum-Algorithm": TUS_CHECKSUM_ALGORITHMS.join(","),
  };
}

/** Every tus response carries Tus-Resumable and `Cache-Control: no-store` (HEAD must not be cached, tus 1.0.0 HEAD). */
const tusHeadersOut: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  c.res.headers.set("Tus-Resumable", TUS_VERSION);
  c.res.headers.set("Cache-Control", "no-store");
};
attachments.use("/v1/attachments/tus/*", tusHeadersOut);

/**
 * Every tus request but OPTIONS must carry `Tus-Resumable: 1.0.0`: 412 with Tus-Version otherwise. It runs after
 * authentication, so a request without credentials is a 401 like on every other route.
 */
const requireTus: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.req.header("tus-resumable") !== TUS_VERSION) {
    const res = errorResponse(
      c,
      new ApiError("PRECONDITION_FAILED", `Tus-Resumable must be ${TUS_VERSION}`, { tusVersion: TUS_VERSION }),
    );
    res.headers.set("Tus-Version", TUS_VERSION);
    return res;
  }
  return next();
};

/** The id from the path, or the same 404 as for an unknown id. */
function uploadId(c: Context<AppEnv>): string {
  const id = c.req.param("id") ?? "";
  if (!ATTACHMENT_ID_PATTERN.test(id)) throw new ApiError("NOT_FOUND", "no such upload");
  return id;
}

const newId = () =>
  [...crypto.getRandomValues(new Uint8Array(ATTACHMENT_ID_BYTES))].map((b) => b.toString(16).padStart(2, "0")).join("");

// ---------- tus: discovery ----------

{
  attachments.openapi(
    createRoute({
      method: "options",
      path: TUS_ENDPOINT,
      tags: ["Attachments"],
      summary: "tus discovery: version, extensions, maximum size",
      description:
        "Needs no authentication and no Tus-Resumable. A request carrying Access-Control-Request-Method is a CORS preflight and is answered as one instead.",
      responses: {
        204: {
          description: "What the relay supports",
          headers: z.object({
            "Tus-Version": responseHeader(TUS_VERSION),
            "Tus-Extension": responseHeader(TUS_EXTENSIONS.join(",")),
            "Tus-Max-Size": responseHeader("MAX_ATTACHMENT_BYTES"),
            "Tus-Checksum-Algorithm": responseHeader(TUS_CHECKSUM_ALGORITHMS.join(",")),
          }),
        },
        ...errorResponses(),
      },
    }),
    (c) => c.body(null, 204, discoveryHeaders(c.get("config"))),
  );
}

// ---------- tus: creation (and creation-with-upload) ----------

const createHandler = async (c: Context<AppEnv>) => {
  const cfg = c.get("config");
  const d = c.get("device");
  if (c.req.header("upload-defer-length") !== undefined)
    throw new ApiError("BAD_REQUEST", "Upload-Defer-Length is not supported; send Upload-Length");
  if (c.req.header("upload-concat") !== undefined)
    throw new ApiError("BAD_REQUEST", "the concatenation extension is not supported");
  const length = parseCount("Upload-Length", c.req.header("upload-length"));
  if (length === null) throw new ApiError("BAD_REQUEST", "Upload-Length is required");
  if (length > cfg.MAX_ATTACHMENT_BYTES) {
    throw new ApiError("UPLOAD_TOO_LARGE", `an attachment may be at most ${cfg.MAX_ATTACHMENT_BYTES} bytes`, {
      limitBytes: cfg.MAX_ATTACHMENT_BYTES,
    });
  }
  if (Math.ceil(length / cfg.UPLOAD_PART_BYTES) > R2_MAX_PARTS) {
    const limit = R2_MAX_PARTS * cfg.UPLOAD_PART_BYTES;
    throw new ApiError("UPLOAD_TOO_LARGE", `an attachment may be at most ${limit} bytes (${R2_MAX_PARTS} parts)`, {
      limitBytes: limit,
    });
  }
  const metadata = parseMetadata(c.req.header("upload-metadata"));
  const contentType = c.req.header("content-type");
  const contentLength = parseCount("Content-Length", c.req.header("content-length"));
  const withUpload = contentType !== undefined && contentType.split(";")[0]!.trim().toLowerCase() === TUS_CONTENT_TYPE;
  if (!withUpload && (contentLength ?? 0) > 0)
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `an upload body must be ${TUS_CONTENT_TYPE}`);
  if (withUpload && contentLength !== null && contentLength > cfg.MAX_PATCH_BYTES) throw patchTooLarge(cfg);
  if (withUpload && contentLength !== null && contentLength > length) {
    throw new ApiError("UPLOAD_OVERRUN", `only ${length} bytes fit in Upload-Length`, { offset: 0, length });
  }
  const sha256 = withUpload ? parseChecksum(c.req.header("upload-checksum")) : null;

  const id = newId();
  const now = Date.now();
  const uploadExpiresAt = now + cfg.UPLOAD_TTL_SECONDS * 1000;
  const db = shardFor(c.env, cfg, d.accountId);
  const reserved = await storage("attachments index", () =>
    reserveUpload(db, {
      id,
      accountId: d.accountId,
      deviceUid: d.deviceUid,
      size: length,
      now,
      expiresAt: uploadExpiresAt,
      uploadQuotaBytes: cfg.UPLOAD_QUOTA_BYTES,
      storageQuotaBytes: cfg.STORAGE_QUOTA_BYTES,
    }),
  );
  if (!reserved.ok) {
    const which =
      reserved.quota === "upload"
        ? "UPLOAD_QUOTA_BYTES (unfinished uploads)"
        : "STORAGE_QUOTA_BYTES (stored and unfinished)";
    throw new ApiError("QUOTA_EXCEEDED", `this upload would pass the account's ${which} quota`, {
      quota: reserved.quota,
      limitBytes: reserved.limitBytes,
      usedBytes: reserved.usedBytes,
    });
  }
  const stub = c.env.UPLOAD.getByName(id);
  let created: { completed: boolean };
  try {
    created = unwrap(
      await storage("upload", () =>
        stub.create({
          id,
          accountId: d.accountId,
          deviceUid: d.deviceUid,
          length,
          partBytes: cfg.UPLOAD_PART_BYTES,
          now,
          uploadExpiresAt,
          attachmentTtlMs: cfg.ATTACHMENT_TTL_SECONDS * 1000,
          metadata,
        }),
      ),
    );
  } catch (e) {
    // Give the reservation back; the sweep would do it at expiry otherwise.
    await deleteEntry(db, id).catch(() => undefined);
    throw e;
  }
  const headers: Record<string, string> = {
    Location: new URL(`${TUS_ENDPOINT}${id}`, c.req.url).toString(),
    "Upload-Expires": httpDate(created.completed ? now + cfg.ATTACHMENT_TTL_SECONDS * 1000 : uploadExpiresAt),
  };
  if (withUpload) {
    // The upload exists whatever happens to its first bytes: a refused body leaves Upload-Offset at 0.
    const r = await storage("upload", () =>
      stub.patch(
        {
          accountId: d.accountId,
          deviceUid: d.deviceUid,
          offset: 0,
          contentLength,
          sha256,
          maxPatchBytes: cfg.MAX_PATCH_BYTES,
        },
        c.req.raw.body,
      ),
    );
    headers["Upload-Offset"] = String(r.ok ? r.offset : 0);
    if (r.ok) headers["Upload-Expires"] = httpDate(r.expiresAt);
  }
  return c.body(null, 201, headers);
};

function patchTooLarge(cfg: Config): ApiError {
  return new ApiError(
    "PAYLOAD_TOO_LARGE",
    `a PATCH body may be at most ${cfg.MAX_PATCH_BYTES} bytes; set the tus client's chunkSize below it`,
    {
      limitBytes: cfg.MAX_PATCH_BYTES,
    },
  );
}

attachments.openapi(
  createRoute({
    method: "post",
    path: TUS_ENDPOINT,
    tags: ["Attachments"],
    summary: "tus creation: start an upload (optionally with its first bytes)",
    description: [
      "Creates a resumable upload of Upload-Length bytes (client-encrypted ciphertext) and answers its URL in Location, ending in a random 128-bit id that also names the finished attachment.",
      "Limits: Upload-Length at most MAX_ATTACHMENT_BYTES (413 UPLOAD_TOO_LARGE); per account, unfinished uploads' lengths at most UPLOAD_QUOTA_BYTES and stored plus unfinished bytes at most STORAGE_QUOTA_BYTES (413 QUOTA_EXCEEDED, `quota` says which). An unfinished upload is aborted UPLOAD_TTL_SECONDS after creation (Upload-Expires).",
      `creation-with-upload: a body of type ${TUS_CONTENT_TYPE} is appended at offset 0 (Upload-Offset in the answer; 0 when the body was refused, e.g. on a checksum mismatch).`,
      CHUNK_NOTE,
      "Tus-Resumable: 1.0.0 is required on every tus request except OPTIONS.",
    ].join("\n\n"),
    security,
    middleware: [requireDevice, requireTus] as const,
    request: {
      headers: tusHeaders(
        "tusResumable",
        "uploadLength",
        "uploadMetadata",
        "uploadChecksum",
        "contentType",
        "contentLength",
      ),
      body: { required: false, ...octetBody },
    },
    responses: {
      201: {
        description: "Created",
        headers: z.object({
          Location: responseHeader("The upload URL: /v1/attachments/tus/{id}"),
          "Upload-Expires": responseHeader("When the unfinished upload will be aborted (HTTP-date)"),
          "Upload-Offset": responseHeader("creation-with-upload only: bytes accepted"),
        }),
      },
      ...errorResponses(
        "BAD_REQUEST",
        "UNAUTHORIZED",
        "PRECONDITION_FAILED",
        "UPLOAD_TOO_LARGE",
        "QUOTA_EXCEEDED",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "UPLOAD_OVERRUN",
        "UNAVAILABLE",
      ),
    },
  }),
  createHandler,
);

// ---------- tus: HEAD (offset) ----------

// Hono answers HEAD by running the GET handler without the body, so tus HEAD is served (and documented) as GET.
attachments.openapi(
  createRoute({
    method: "get",
    path: `${TUS_ENDPOINT}{id}`,
    tags: ["Attachments"],
    summary: "tus HEAD (or GET, same headers, empty body): the upload's offset, to resume from",
    description:
      "Send HEAD, as tus clients do; GET answers the same. Only the device that created the upload may ask (any other gets the 404 an unknown id gets). Answers Upload-Offset, Upload-Length, Upload-Expires (for a finished upload: when the attachment expires), Upload-Metadata when given at creation, and Cache-Control: no-store.",
    security,
    middleware: [requireDevice, requireTus] as const,
    request: { params: IdParam, headers: tusHeaders("tusResumable") },
    responses: {
      200: {
        description: "The upload's state (no body)",
        headers: z.object({
          "Upload-Offset": responseHeader("Bytes received and stored"),
          "Upload-Length": responseHeader("The upload's total size"),
          "Upload-Expires": responseHeader("HTTP-date"),
          "Upload-Metadata": responseHeader("As given at creation"),
        }),
      },
      ...errorResponses("UNAUTHORIZED", "PRECONDITION_FAILED", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const id = uploadId(c);
    const s = unwrap(
      await storage("upload", () =>
        c.env.UPLOAD.getByName(id).status({ accountId: d.accountId, deviceUid: d.deviceUid }),
      ),
    );
    const headers: Record<string, string> = {
      "Upload-Offset": String(s.offset),
      "Upload-Length": String(s.length),
      "Upload-Expires": httpDate(s.expiresAt),
    };
    if (s.metadata) headers["Upload-Metadata"] = s.metadata;
    return c.body(null, 200, headers);
  },
);

// ---------- tus: PATCH (append) ----------

attachments.openapi(
  createRoute({
    method: "patch",
    path: `${TUS_ENDPOINT}{id}`,
    tags: ["Attachments"],
    summary: "tus PATCH: append bytes at Upload-Offset",
    description: [
      "Only the device that created the upload may append. Upload-Offset must equal the upload's offset (409 UPLOAD_OFFSET_MISMATCH with `offset` otherwise; HEAD tells it). Bytes past Upload-Length are refused (400 UPLOAD_OVERRUN) and the body's bytes discarded.",
      "With Upload-Checksum `sha256 <base64>`, a mismatch answers 460 CHECKSUM_MISMATCH and none of the body's bytes count. Without one, a body cut short keeps the bytes that arrived: HEAD, then resume.",
      "When the last byte arrives the attachment is complete and readable at GET /v1/attachments/{id} until ATTACHMENT_TTL_SECONDS later (Upload-Expires in the answer).",
      CHUNK_NOTE,
    ].join("\n\n"),
    security,
    middleware: [requireDevice, requireTus] as const,
    request: {
      params: IdParam,
      headers: tusHeaders("tusResumable", "uploadOffset", "uploadChecksum", "contentType", "contentLength"),
      body: { required: true, ...octetBody },
    },
    responses: {
      204: {
        description: "Appended",
        headers: z.object({
          "Upload-Offset": responseHeader("The new offset"),
          "Upload-Expires": responseHeader(
            "HTTP-date: when the unfinished upload is aborted, or when the finished attachment expires",
          ),
        }),
      },
      ...errorResponses(
        "BAD_REQUEST",
        "UNAUTHORIZED",
        "PRECONDITION_FAILED",
        "NOT_FOUND",
        "UPLOAD_OFFSET_MISMATCH",
        "UPLOAD_OVERRUN",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "CHECKSUM_MISMATCH",
        "UNAVAILABLE",
      ),
    },
  }),
  async (c) => {
    const cfg = c.get("config");
    const d = c.get("device");
    const id = uploadId(c);
    const contentType = c.req.header("content-type") ?? "";
    if (contentType.split(";")[0]!.trim().toLowerCase() !== TUS_CONTENT_TYPE) {
      throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `Content-Type must be ${TUS_CONTENT_TYPE}`);
    }
    const offset = parseCount("Upload-Offset", c.req.header("upload-offset"));
    if (offset === null) throw new ApiError("BAD_REQUEST", "Upload-Offset is required");
    const contentLength = parseCount("Content-Length", c.req.header("content-length"));
    // Refused before a byte is read when the length is declared; counted while streaming when it is not.
    if (contentLength !== null && contentLength > cfg.MAX_PATCH_BYTES) throw patchTooLarge(cfg);
    const sha256 = parseChecksum(c.req.header("upload-checksum"));
    const r = unwrap(
      await storage("upload", () =>
        c.env.UPLOAD.getByName(id).patch(
          {
            accountId: d.accountId,
            deviceUid: d.deviceUid,
            offset,
            contentLength,
            sha256,
            maxPatchBytes: cfg.MAX_PATCH_BYTES,
          },
          c.req.raw.body,
        ),
      ),
    );
    return c.body(null, 204, { "Upload-Offset": String(r.offset), "Upload-Expires": httpDate(r.expiresAt) });
  },
);

// ---------- tus: termination ----------

attachments.openapi(
  createRoute({
    method: "delete",
    path: `${TUS_ENDPOINT}{id}`,
    tags: ["Attachments"],
    summary: "tus termination: abandon an upload, or delete the attachment it became",
    description:
      "Only the device that created the upload may terminate it. Its bytes, its R2 data and its quota reservation go; the id then answers 404 everywhere.",
    security,
    middleware: [requireDevice, requireTus] as const,
    request: { params: IdParam, headers: tusHeaders("tusResumable") },
    responses: {
      204: { description: "Terminated" },
      ...errorResponses("UNAUTHORIZED", "PRECONDITION_FAILED", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const id = uploadId(c);
    unwrap(
      await storage("upload", () =>
        c.env.UPLOAD.getByName(id).terminate({ accountId: d.accountId, deviceUid: d.deviceUid }),
      ),
    );
    return c.body(null, 204);
  },
);

// ---------- download ----------

const notFound = () => new ApiError("NOT_FOUND", "no such attachment");

// No cache may keep a download's error: a 404 today may be a blob tomorrow is impossible, but a 503 is not final.
attachments.use("/v1/attachments/:id", async (c, next) => {
  await next();
  if (c.res.status >= 400) c.res.headers.set("Cache-Control", "no-store");
});

const hasBody = (o: R2Object | R2ObjectBody): o is R2ObjectBody => "body" in o;

/** When a stored blob stops being served: its TTL after completion, never after its hard deadline. */
function expiresAt(obj: R2Object, cfg: Config): number {
  const ttlMs = Number(obj.customMetadata?.ttlMs ?? cfg.ATTACHMENT_TTL_SECONDS * 1000);
  const deadline = Number(obj.customMetadata?.deadline ?? Number.POSITIVE_INFINITY);
  return Math.min(obj.uploaded.getTime() + ttlMs, deadline);
}

attachments.openapi(
  createRoute({
    method: "get",
    path: "/v1/attachments/{id}",
    tags: ["Attachments"],
    summary: "Download a finished attachment (no authentication: the id is the capability)",
    description: [
      "Streams the ciphertext with Content-Length, ETag and Accept-Ranges. A single `Range: bytes=a-b`, `bytes=a-` or suffix `bytes=-n` answers 206 with Content-Range; a range that misses the blob answers 416 with `Content-Range: bytes */size`; a multi-range or malformed Range is ignored (200). If-None-Match answers 304; If-Range with another ETag serves the whole blob.",
      `Cache-Control: \`private, max-age=N\` with N at most ${DOWNLOAD_MAX_AGE_SECONDS} s and never past expiry: the client may cache the immutable blob, shared caches may not keep it after expiry or deletion.`,
      "Unknown, unfinished, expired and deleted ids all answer the same 404.",
    ].join("\n\n"),
    request: { params: IdParam },
    responses: {
      200: {
        description: "The blob",
        content: { "application/octet-stream": { schema: z.string().meta({ format: "binary" }) } },
      },
      206: {
        description: "The requested range",
        content: { "application/octet-stream": { schema: z.string().meta({ format: "binary" }) } },
      },
      304: { description: "Not modified (If-None-Match)" },
      ...errorResponses("NOT_FOUND", "RANGE_NOT_SATISFIABLE", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const cfg = c.get("config");
    const id = c.req.param("id");
    if (!ATTACHMENT_ID_PATTERN.test(id)) throw notFound();
    const bucket = c.env.ATTACHMENTS;
    const key = attachmentKey(id);
    const now = Date.now();
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
    if (hasBody(meta)) {
      return c.body(meta.body, 200, {
        ...headers,
        "Content-Type": "application/octet-stream",
        "Content-Length": String(meta.size),
      });
    }
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
    if (!part)
      return c.body(obj.body, 200, {
        ...headers,
        "Content-Type": "application/octet-stream",
        "Content-Length": String(meta.size),
      });
    return c.body(obj.body, 206, {
      ...headers,
      "Content-Type": "application/octet-stream",
      "Content-Length": String(part.length),
      "Content-Range": `bytes ${range!.start}-${range!.end}/${meta.size}`,
    });
  },
);

// ---------- deletion ----------

attachments.openapi(
  createRoute({
    method: "delete",
    path: "/v1/attachments/{id}",
    tags: ["Attachments"],
    summary: "Delete an attachment (or unfinished upload) early",
    description:
      "Any device of the account that uploaded it may delete it; for anyone else the id answers 404, as an unknown one does. The blob, any unfinished multipart upload and the quota it used go at once.",
    security,
    middleware: [requireDevice] as const,
    request: { params: IdParam },
    responses: {
      204: { description: "Deleted" },
      ...errorResponses("UNAUTHORIZED", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const cfg = c.get("config");
    const d = c.get("device");
    const id = c.req.param("id");
    if (!ATTACHMENT_ID_PATTERN.test(id)) throw notFound();
    const db = shardFor(c.env, cfg, d.accountId);
    const entry = await storage("attachments index", () => getEntry(db, id));
    if (!entry || entry.accountId !== d.accountId) throw notFound();
    await storage("upload", () => c.env.UPLOAD.getByName(id).discard());
    await storage("attachments", () => c.env.ATTACHMENTS.delete(attachmentKey(id)));
    await storage("attachments index", () => deleteEntry(db, id));
    return c.body(null, 204);
  },
);
