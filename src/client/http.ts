// The relay's HTTP API as typed calls: fetch with Basic auth, answers validated with the protocol's zod
// schemas, every failure turned into a CipherpostError (the relay's code, or UNREACHABLE/TIMEOUT/INVALID_RESPONSE).
import type { z } from "zod";
import { toBase64, utf8 } from "../crypto/bytes.ts";
import { ErrorBody } from "../protocol/errors.ts";
import { CipherpostError, isRelayErrorCode } from "./errors.ts";

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface Credentials {
  accountId: string;
  deviceId: number;
  password: string;
}

export interface RequestOptions {
  body?: unknown;
  auth?: Credentials;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Statuses answered with a body that is not an error (e.g. 409 handled by the caller). Default: 2xx only. */
  timeoutMs?: number;
}

export function basicAuth(c: Credentials): string {
  return `Basic ${toBase64(utf8(`${c.accountId}.${c.deviceId}:${c.password}`))}`;
}

export class RelayHttp {
  readonly server: string;
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number;

  constructor(server: string, fetchImpl: FetchLike = (...a) => globalThis.fetch(...a), timeoutMs = 30_000) {
    this.server = normalizeServer(server);
    this.#fetch = fetchImpl;
    this.#timeoutMs = timeoutMs;
  }

  url(path: string): string {
    return `${this.server}${path}`;
  }

  /** Sends a request; answers the raw Response for any status (network failures throw). */
  async raw(method: string, path: string, options: RequestOptions & { rawBody?: BodyInit } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (options.auth) headers.authorization = basicAuth(options.auth);
    let body: BodyInit | undefined = options.rawBody;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["content-type"] = "application/json";
    }
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.#timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const url = path.startsWith("http") ? path : this.url(path);
    try {
      return await this.#fetch(url, { method, headers, signal, ...(body !== undefined ? { body } : {}) });
    } catch (e) {
      throw networkError(e, this.server, options.signal);
    }
  }

  /** A JSON call whose 2xx answer must match `schema`; anything else throws CipherpostError. */
  async json<S extends z.ZodType>(
    method: string,
    path: string,
    schema: S,
    options: RequestOptions = {},
  ): Promise<z.infer<S>> {
    const res = await this.raw(method, path, options);
    if (!res.ok) throw await errorFrom(res);
    const text = await res.text().catch((e: unknown) => {
      throw networkError(e, this.server, options.signal);
    });
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new CipherpostError(
        "INVALID_RESPONSE",
        `${method} ${path}: the relay answered ${res.status} with a body that is not JSON`,
      );
    }
    const parsed = schema.safeParse(data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new CipherpostError(
        "INVALID_RESPONSE",
        `${method} ${path}: ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`,
      );
    }
    return parsed.data;
  }

  /** A call whose success has no body (204). */
  async empty(method: string, path: string, options: RequestOptions = {}): Promise<void> {
    const res = await this.raw(method, path, options);
    if (!res.ok) throw await errorFrom(res);
    await res.body?.cancel();
  }
}

export function normalizeServer(server: string): string {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    throw new CipherpostError("INVALID_ARGUMENT", `not a URL: ${server}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new CipherpostError("INVALID_ARGUMENT", `the relay URL must be http(s): ${server}`);
  return u.toString().replace(/\/+$/, "");
}

/** The relay's error body as a CipherpostError; a body that is not one (a proxy's page) is INVALID_RESPONSE or UNAVAILABLE. */
export async function errorFrom(res: Response): Promise<CipherpostError> {
  const text = await res.text().catch(() => "");
  const retryAfter = Number(res.headers.get("retry-after"));
  const retryAfterSeconds = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const parsed = ErrorBody.safeParse(body);
  if (parsed.success) {
    const { code, message, requestId, ...extras } = parsed.data;
    return new CipherpostError(code, message, {
      status: res.status,
      requestId,
      extras,
      ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
    });
  }
  const code = res.status >= 500 ? "UNAVAILABLE" : "INVALID_RESPONSE";
  return new CipherpostError(code, `the relay answered ${res.status} ${res.statusText}: ${text.slice(0, 200)}`, {
    status: res.status,
    ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
  });
}

/** Turns a relay result entry (group send) into the error a single send would have thrown. */
export function errorFromResult(
  r: {
    status: number;
    code?: string | undefined;
    message?: string | undefined;
    retryAfterSeconds?: number | undefined;
  } & Record<string, unknown>,
): CipherpostError {
  const code = r.code && isRelayErrorCode(r.code) ? r.code : "INVALID_RESPONSE";
  const { status, code: _c, message, retryAfterSeconds, ...extras } = r;
  return new CipherpostError(code, message ?? `status ${status}`, {
    status,
    extras,
    ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
  });
}

export function networkError(e: unknown, server: string, signal?: AbortSignal): CipherpostError {
  if (CipherpostError.is(e)) return e;
  if (signal?.aborted) return new CipherpostError("ABORTED", "the operation was aborted", { cause: e });
  const name = (e as { name?: string } | null)?.name;
  if (name === "TimeoutError")
    return new CipherpostError("TIMEOUT", `the relay at ${server} did not answer in time`, { cause: e });
  const cause = (e as { cause?: { code?: string; message?: string } } | null)?.cause;
  const detail = cause?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
  return new CipherpostError("UNREACHABLE", `cannot reach the relay at ${server}: ${detail}`, { cause: e });
}
