// The tus 1.0.0 upload protocol at /v1/attachments/tus/ (core, creation, creation-with-upload, termination,
// expiration, checksum sha256), mounted at TUS_ENDPOINT. Each upload is one Upload object (uploads/upload.ts);
// creation is uploads/create.ts. Design notes: docs/attachments.md.
import { createRoute, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import {
  ATTACHMENT_ID_PATTERN,
  TUS_CHECKSUM_ALGORITHMS,
  TUS_CONTENT_TYPE,
  TUS_ENDPOINT,
  TUS_EXTENSIONS,
  TUS_VERSION,
  TusHeaders,
} from "../../protocol/attachments.ts";
import { deviceAuth, errorResponses, newRouter, type AppEnv } from "../app.ts";
import { authenticate, requireDevice } from "../auth.ts";
import type { Config } from "../config.ts";
import { ApiError, errorResponse, failureError, storage, unwrap } from "../errors.ts";
import { checkUploadLength, createUpload } from "../uploads/create.ts";
import { httpDate, isUploadBody, parseChecksum, parseCount, parseMetadata, patchTooLarge } from "../uploads/http.ts";
import type { Owner, Upload } from "../uploads/upload.ts";
import { AttachmentIdParam } from "./attachments.ts";

export const tus = newRouter();

const CHUNK_NOTE =
  "PATCH bodies are limited to MAX_PATCH_BYTES (default 50 MiB, below the Workers request-body limit): tus-client users must set `chunkSize` below MAX_PATCH_BYTES (tus-js-client sends the whole file in one PATCH by default). A multiple of UPLOAD_PART_BYTES (default 10 MiB) is most efficient.";

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
tus.use("*", async (c, next) => {
  await next();
  c.res.headers.set("Tus-Resumable", TUS_VERSION);
  c.res.headers.set("Cache-Control", "no-store");
});

/**
 * Every tus request but OPTIONS must carry `Tus-Resumable: 1.0.0`: 412 with Tus-Version otherwise. It runs after
 * authentication, so a request without credentials is a 401 like on every other route.
 */
const requireTus: MiddlewareHandler<AppEnv> = async (c, next) => tusVersionRefusal(c) ?? next();

function tusVersionRefusal(c: Context<AppEnv>): Response | null {
  if (c.req.header("tus-resumable") === TUS_VERSION) return null;
  const res = errorResponse(
    c,
    new ApiError("PRECONDITION_FAILED", `Tus-Resumable must be ${TUS_VERSION}`, { tusVersion: TUS_VERSION }),
  );
  res.headers.set("Tus-Version", TUS_VERSION);
  return res;
}

/** What requests on one upload share: the creating device's credentials, Tus-Resumable, the id in the path. */
const onUpload = () => ({
  security: deviceAuth,
  middleware: [requireDevice, requireTus],
  request: { params: AttachmentIdParam, headers: tusHeaders("tusResumable") },
});

/** The upload's object named by the path, or the same 404 as for an unknown id. */
function uploadOf(c: Context<AppEnv>): DurableObjectStub<Upload> {
  const id = c.req.param("id") ?? "";
  if (!ATTACHMENT_ID_PATTERN.test(id)) throw new ApiError("NOT_FOUND", "no such upload");
  return c.env.UPLOAD.getByName(id);
}

/** The authenticated device, as the Upload object knows its owner. */
function owner(c: Context<AppEnv>): Owner {
  const d = c.get("device");
  return { accountId: d.accountId, deviceUid: d.deviceUid };
}

/** Appends the request body at `offset`: a PATCH, or the first bytes of creation-with-upload. */
function append(
  c: Context<AppEnv>,
  upload: DurableObjectStub<Upload>,
  offset: number,
  contentLength: number | null,
  sha256: Uint8Array | null,
) {
  const maxPatchBytes = c.get("config").MAX_PATCH_BYTES;
  return storage("upload", () =>
    upload.patch({ ...owner(c), offset, contentLength, sha256, maxPatchBytes }, c.req.raw.body),
  );
}

// ---------- X-HTTP-Method-Override ----------

const OVERRIDE_NOTE =
  "A POST to the upload URL with `X-HTTP-Method-Override: PATCH`, `DELETE` or `HEAD` is handled as that method (tus 1.0.0 core), for clients and proxies that cannot send it (tus-js-client's `overridePatchMethod`).";

/** The methods a POST to an upload URL may stand in for, and what answers them. */
const OVERRIDES = new Map<string, (c: Context<AppEnv>) => Promise<Response>>([
  ["PATCH", (c) => appendTo(c)],
  ["DELETE", (c) => terminate(c)],
  ["HEAD", (c) => offsetOf(c)],
]);

/**
 * tus 1.0.0 core: a server MUST take X-HTTP-Method-Override as the request's method. Routing has already gone by
 * the real method (POST, which an upload URL does not serve), so the overridden request is answered here, with the
 * same checks its own route makes. A POST to an upload URL without the header stays the 404 of an unknown route.
 */
tus.use("/:id", async (c, next) => {
  const wanted = c.req.header("x-http-method-override");
  if (c.req.method !== "POST" || wanted === undefined) return next();
  const handler = OVERRIDES.get(wanted.trim().toUpperCase());
  if (!handler)
    throw new ApiError("BAD_REQUEST", "X-HTTP-Method-Override on an upload URL must be PATCH, DELETE or HEAD");
  c.set("device", await authenticate(c.env, c.req.header("authorization")));
  return tusVersionRefusal(c) ?? handler(c);
});

// ---------- discovery ----------

tus.openapi(
  createRoute({
    method: "options",
    path: "/",
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

// ---------- creation (and creation-with-upload) ----------

tus.openapi(
  createRoute({
    method: "post",
    path: "/",
    tags: ["Attachments"],
    summary: "tus creation: start an upload (optionally with its first bytes)",
    description: [
      "Creates a resumable upload of Upload-Length bytes (client-encrypted ciphertext) and answers its URL in Location, ending in a random 128-bit id that also names the finished attachment.",
      "Limits: Upload-Length at most MAX_ATTACHMENT_BYTES (413 UPLOAD_TOO_LARGE); per account, unfinished uploads' lengths at most UPLOAD_QUOTA_BYTES and stored plus unfinished bytes at most STORAGE_QUOTA_BYTES, each upload counting at least MIN_UPLOAD_RESERVATION_BYTES (413 QUOTA_EXCEEDED, `quota` says which); at most MAX_ATTACHMENTS_PER_ACCOUNT attachments and unfinished uploads (409 TOO_MANY_ATTACHMENTS); per device, UPLOADS_PER_DEVICE_LIMIT creations per UPLOADS_PER_DEVICE_WINDOW_SECONDS (429 RATE_LIMITED). An unfinished upload is aborted UPLOAD_TTL_SECONDS after creation (Upload-Expires).",
      `creation-with-upload: a body of type ${TUS_CONTENT_TYPE} is appended at offset 0 (Upload-Offset in the answer; 0 when the body was refused, e.g. on a checksum mismatch).`,
      CHUNK_NOTE,
      "Tus-Resumable: 1.0.0 is required on every tus request except OPTIONS.",
    ].join("\n\n"),
    security: deviceAuth,
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
        "TOO_MANY_ATTACHMENTS",
        "RATE_LIMITED",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "UPLOAD_OVERRUN",
        "UNAVAILABLE",
      ),
    },
  }),
  async (c) => {
    const cfg = c.get("config");
    if (c.req.header("upload-defer-length") !== undefined)
      throw new ApiError("BAD_REQUEST", "Upload-Defer-Length is not supported; send Upload-Length");
    if (c.req.header("upload-concat") !== undefined)
      throw new ApiError("BAD_REQUEST", "the concatenation extension is not supported");
    const length = parseCount("Upload-Length", c.req.header("upload-length"));
    if (length === null) throw new ApiError("BAD_REQUEST", "Upload-Length is required");
    checkUploadLength(cfg, length);
    const metadata = parseMetadata(c.req.header("upload-metadata"));
    const contentLength = parseCount("Content-Length", c.req.header("content-length"));
    const withUpload = isUploadBody(c.req.header("content-type"));
    if (!withUpload && (contentLength ?? 0) > 0)
      throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `an upload body must be ${TUS_CONTENT_TYPE}`);
    if (withUpload && contentLength !== null && contentLength > cfg.MAX_PATCH_BYTES)
      throw failureError(patchTooLarge(cfg.MAX_PATCH_BYTES));
    if (withUpload && contentLength !== null && contentLength > length) {
      throw new ApiError("UPLOAD_OVERRUN", `only ${length} bytes fit in Upload-Length`, { offset: 0, length });
    }
    const sha256 = withUpload ? parseChecksum(c.req.header("upload-checksum")) : null;

    const now = c.get("clock").now();
    const created = await createUpload(c.env, cfg, { ...owner(c), length, metadata, now });
    const headers: Record<string, string> = {
      Location: new URL(`${TUS_ENDPOINT}${created.id}`, c.req.url).toString(),
      "Upload-Expires": httpDate(created.expiresAt),
    };
    if (withUpload) {
      // The upload exists whatever happens to its first bytes: a refused body leaves Upload-Offset at 0.
      const r = await append(c, created.upload, 0, contentLength, sha256);
      headers["Upload-Offset"] = String(r.ok ? r.offset : 0);
      if (r.ok) headers["Upload-Expires"] = httpDate(r.expiresAt);
    }
    return c.body(null, 201, headers);
  },
);

// ---------- HEAD (offset) ----------

// Hono answers HEAD by running the GET handler without the body, so tus HEAD is served (and documented) as GET.
tus.openapi(
  createRoute({
    method: "get",
    path: "/{id}",
    tags: ["Attachments"],
    summary: "tus HEAD (or GET, same headers, empty body): the upload's offset, to resume from",
    description: `Send HEAD, as tus clients do; GET answers the same. Only the device that created the upload may ask (any other gets the 404 an unknown id gets). Answers Upload-Offset, Upload-Length, Upload-Expires (for a finished upload: when the attachment expires), Upload-Metadata when given at creation, and Cache-Control: no-store.\n\n${OVERRIDE_NOTE}`,
    ...onUpload(),
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
  (c) => offsetOf(c),
);

async function offsetOf(c: Context<AppEnv>): Promise<Response> {
  const upload = uploadOf(c);
  const s = unwrap(await storage("upload", () => upload.status(owner(c))));
  const headers: Record<string, string> = {
    "Upload-Offset": String(s.offset),
    "Upload-Length": String(s.length),
    "Upload-Expires": httpDate(s.expiresAt),
  };
  if (s.metadata) headers["Upload-Metadata"] = s.metadata;
  return c.body(null, 200, headers);
}

// ---------- PATCH (append) ----------

tus.openapi(
  createRoute({
    method: "patch",
    path: "/{id}",
    tags: ["Attachments"],
    summary: "tus PATCH: append bytes at Upload-Offset",
    description: [
      "Only the device that created the upload may append. Upload-Offset must equal the upload's offset (409 UPLOAD_OFFSET_MISMATCH with `offset` otherwise; HEAD tells it). Bytes past Upload-Length are refused (400 UPLOAD_OVERRUN) and the body's bytes discarded.",
      "With Upload-Checksum `sha256 <base64>`, a mismatch answers 460 CHECKSUM_MISMATCH and none of the body's bytes count. Without one, a body cut short keeps the bytes that arrived: HEAD, then resume.",
      "When the last byte arrives the attachment is complete and readable at GET /v1/attachments/{id} until ATTACHMENT_TTL_SECONDS later (Upload-Expires in the answer). An empty PATCH at a finished upload's end answers 204 with its offset.",
      "A refused PATCH's body is still read to its end (up to MAX_PATCH_BYTES), so the connection can carry the next request. Of two PATCHes at one offset the first wins and the second gets 409: HEAD, then resume.",
      CHUNK_NOTE,
      OVERRIDE_NOTE,
    ].join("\n\n"),
    security: deviceAuth,
    middleware: [requireDevice, requireTus] as const,
    request: {
      params: AttachmentIdParam,
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
  (c) => appendTo(c),
);

async function appendTo(c: Context<AppEnv>): Promise<Response> {
  const cfg = c.get("config");
  const upload = uploadOf(c);
  if (!isUploadBody(c.req.header("content-type")))
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `Content-Type must be ${TUS_CONTENT_TYPE}`);
  const offset = parseCount("Upload-Offset", c.req.header("upload-offset"));
  if (offset === null) throw new ApiError("BAD_REQUEST", "Upload-Offset is required");
  const contentLength = parseCount("Content-Length", c.req.header("content-length"));
  // Refused before a byte is read when the length is declared; counted while streaming when it is not.
  if (contentLength !== null && contentLength > cfg.MAX_PATCH_BYTES)
    throw failureError(patchTooLarge(cfg.MAX_PATCH_BYTES));
  const sha256 = parseChecksum(c.req.header("upload-checksum"));
  const r = unwrap(await append(c, upload, offset, contentLength, sha256));
  return c.body(null, 204, { "Upload-Offset": String(r.offset), "Upload-Expires": httpDate(r.expiresAt) });
}

// ---------- termination ----------

tus.openapi(
  createRoute({
    method: "delete",
    path: "/{id}",
    tags: ["Attachments"],
    summary: "tus termination: abandon an upload, or delete the attachment it became",
    description: `Only the device that created the upload may terminate it. Its bytes, its R2 data and its quota reservation go; the id then answers 404 everywhere.\n\n${OVERRIDE_NOTE}`,
    ...onUpload(),
    responses: {
      204: { description: "Terminated" },
      ...errorResponses("UNAUTHORIZED", "PRECONDITION_FAILED", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  (c) => terminate(c),
);

async function terminate(c: Context<AppEnv>): Promise<Response> {
  const upload = uploadOf(c);
  unwrap(await storage("upload", () => upload.terminate(owner(c))));
  return c.body(null, 204);
}
