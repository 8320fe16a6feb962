// The Worker's HTTP application: request ids, structured logs, CORS and security headers, the configuration
// gate, one error model, and the resource routers (sub-apps mounted by index.ts). The OpenAPI document is
// generated from the same routes.
import { OpenAPIHono, type Hook } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import { systemClock, type Clock } from "../protocol/clock.ts";
import { ERRORS, ErrorBody, type ErrorCode } from "../protocol/errors.ts";
import type { AuthenticatedDevice } from "./account/directory.ts";
import { loadConfig, type Config } from "./config.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { log } from "./log.ts";

export interface AppEnv {
  Bindings: Cloudflare.Env;
  /** `clock` is where routes read the time they compare with stored times (tests hand in a ManualClock). */
  Variables: { requestId: string; config: Config; device: AuthenticatedDevice; clock: Clock };
}

/** Validation failures become BAD_REQUEST naming the first bad field; zod's raw output never reaches a client. */
const validationHook: Hook<unknown, AppEnv, string, unknown> = (result) => {
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? issue.path.join(".") : "body";
    throw new ApiError("BAD_REQUEST", `${where}: ${issue?.message ?? "invalid"}`);
  }
  return undefined;
};

export const newRouter = () => new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

/** The OpenAPI security requirement of the routes a device calls with its Basic credentials. */
export const deviceAuth = [{ basicAuth: [] }];

export const CORS_ALLOW_HEADERS = [
  "Authorization",
  "Content-Type",
  "Idempotency-Key",
  "Tus-Resumable",
  "Upload-Length",
  "Upload-Offset",
  "Upload-Metadata",
  "Upload-Checksum",
  "Upload-Defer-Length",
  "Upload-Concat",
  "X-HTTP-Method-Override",
];
export const CORS_EXPOSE_HEADERS = [
  "Location",
  "Retry-After",
  "X-Request-Id",
  "Idempotent-Replayed",
  "Tus-Resumable",
  "Tus-Version",
  "Tus-Extension",
  "Tus-Max-Size",
  "Tus-Checksum-Algorithm",
  "Upload-Offset",
  "Upload-Length",
  "Upload-Expires",
  "Upload-Metadata",
  "ETag",
  "Content-Range",
  "Accept-Ranges",
];

export function createApp(mount: (app: OpenAPIHono<AppEnv>) => void, clock: Clock = systemClock): OpenAPIHono<AppEnv> {
  const app = newRouter();

  app.use("*", async (c, next) => {
    const started = Date.now();
    loadConfig(c.env); // sets the log level for this isolate (cached verdict), even for requests the gate never sees
    const requestId = crypto.randomUUID();
    c.set("requestId", requestId);
    c.set("clock", clock);
    await next();
    c.header("X-Request-Id", requestId);
    // The log level is the isolate's: an object running in this isolate (always, in tests) may have set its own meanwhile.
    loadConfig(c.env);
    // Structured access log: never content, keys, passwords or client addresses. A 5xx is an error worth an
    // operator's attention whatever LOG_LEVEL says; everything else is "info" (LOG_LEVEL=warn drops it).
    log(c.res.status >= 500 ? "error" : "info", {
      requestId,
      method: c.req.method,
      route: c.req.routePath,
      status: c.res.status,
      durationMs: Date.now() - started,
    });
  });

  const corsHandler = cors({
    origin: "*",
    allowMethods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    allowHeaders: CORS_ALLOW_HEADERS,
    exposeHeaders: CORS_EXPOSE_HEADERS,
    maxAge: 86400,
  });
  // hono's cors answers every OPTIONS as a preflight. Only one carrying Access-Control-Request-Method is
  // (Fetch standard, CORS-preflight request); any other OPTIONS, such as tus discovery (tus 1.0.0, OPTIONS),
  // goes on to the routes and gets the ordinary CORS response headers.
  app.use("*", async (c, next) => {
    if (c.req.method !== "OPTIONS" || c.req.header("access-control-request-method")) return corsHandler(c, next);
    await next();
    c.res.headers.set("Access-Control-Allow-Origin", "*");
    c.res.headers.set("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS.join(","));
  });
  app.use("*", secureHeaders({ crossOriginResourcePolicy: "cross-origin" }));

  // The configuration gate: a relay whose vars do not parse answers nothing but 503 naming the problem.
  app.use("*", async (c, next) => {
    const loaded = loadConfig(c.env);
    if (!loaded.ok) {
      if (c.req.path === "/health") {
        c.set("config", undefined as unknown as Config);
        return next();
      }
      throw new ApiError("MISCONFIGURED", loaded.error.message, { problems: loaded.error.problems }, 30);
    }
    c.set("config", loaded.config);
    return next();
  });

  mount(app);

  app.notFound((c) => errorResponse(c, new ApiError("NOT_FOUND", `no route for ${c.req.method} ${c.req.path}`)));
  app.onError((err, c) => {
    if (err instanceof ApiError) return errorResponse(c, err);
    if (err instanceof HTTPException) {
      if (err.status === 400 && /json/i.test(err.message))
        return errorResponse(c, new ApiError("INVALID_JSON", "the body is not valid JSON"));
      if (err.status === 413) return errorResponse(c, new ApiError("PAYLOAD_TOO_LARGE", "the body is too large"));
      if (err.status === 400) return errorResponse(c, new ApiError("BAD_REQUEST", err.message || "bad request"));
    }
    log("error", {
      requestId: c.get("requestId"),
      route: c.req.routePath,
      error: String(err),
      stack: (err as Error)?.stack,
    });
    return errorResponse(c, new ApiError("INTERNAL", "internal error; it has been logged with the request id"));
  });
  return app;
}

/** Refuses a body over `max(config)` bytes before it is read whole (Content-Length first, then while streaming). */
export function limitBody(max: (config: Config) => number): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const limit = max(c.get("config"));
    return bodyLimit({
      maxSize: limit,
      onError: () => {
        throw new ApiError("PAYLOAD_TOO_LARGE", `the body is larger than ${limit} bytes`, { limitBytes: limit });
      },
    })(c, next);
  };
}

/** Requires a JSON body: any other Content-Type is refused before parsing. */
export const requireJson: MiddlewareHandler<AppEnv> = async (c, next) => {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/json\b/i.test(type))
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json");
  return next();
};

/** What every route with a JSON body can answer before its handler runs (requireJson, limitBody, zod). */
export const JSON_BODY_ERRORS = ["BAD_REQUEST", "INVALID_JSON", "UNSUPPORTED_MEDIA_TYPE", "PAYLOAD_TOO_LARGE"] as const;

/**
 * The OpenAPI responses for a set of error codes, grouped by status. MISCONFIGURED (the configuration gate) and
 * INTERNAL can come from any route, so every route documents them.
 */
export function errorResponses(...codes: ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set<ErrorCode>([...codes, "MISCONFIGURED", "INTERNAL"])) {
    const s = ERRORS[code].status;
    byStatus.set(s, [...(byStatus.get(s) ?? []), code]);
  }
  const out: Record<number, { description: string; content: { "application/json": { schema: typeof ErrorBody } } }> =
    {};
  for (const [status, cs] of byStatus) {
    out[status] = {
      description: cs.map((c) => `\`${c}\`: ${ERRORS[c].summary}`).join(" "),
      content: { "application/json": { schema: ErrorBody } },
    };
  }
  return out;
}

export const json = <T>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

export function clientIp(c: Context<AppEnv>): string {
  // Used only as a rate-limit key, hashed before use; never logged.
  return c.req.header("cf-connecting-ip") ?? "local";
}
