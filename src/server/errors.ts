// The server's one error type: a code from the closed set in protocol/errors, a one-line message and typed
// extras. Durable Object RPC loses error classes, so objects return `Failure` values and routes rethrow them.
import type { Context } from "hono";
import { ERRORS, type ErrorCode } from "../protocol/errors.ts";
import { log } from "./log.ts";

export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extras: Record<string, unknown> = {},
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
  get status(): number {
    return ERRORS[this.code].status;
  }
}

/** What a Durable Object method answers instead of throwing, so the code survives the RPC boundary. */
export interface Failure {
  ok: false;
  code: ErrorCode;
  message: string;
  extras?: Record<string, unknown>;
  retryAfterSeconds?: number;
}
export const fail = (
  code: ErrorCode,
  message: string,
  extras?: Record<string, unknown>,
  retryAfterSeconds?: number,
): Failure => ({
  ok: false,
  code,
  message,
  ...(extras ? { extras } : {}),
  ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
});

/** The ApiError a Failure stands for. */
export function failureError(f: Failure): ApiError {
  return new ApiError(f.code, f.message, f.extras ?? {}, f.retryAfterSeconds);
}

/** Unwraps a Durable Object answer: a Failure becomes the ApiError it stands for. */
export function unwrap<T extends { ok: true }>(result: T | Failure): T {
  if (result.ok) return result;
  throw failureError(result);
}

export function errorResponse(c: Context, err: ApiError): Response {
  const requestId = (c.get("requestId") as string | undefined) ?? "unknown";
  const headers: Record<string, string> = {};
  if (err.retryAfterSeconds !== undefined)
    headers["Retry-After"] = String(Math.max(1, Math.ceil(err.retryAfterSeconds)));
  return c.json({ code: err.code, message: err.message, requestId, ...err.extras }, err.status as 400, headers);
}

/** Runs a storage call; a throw from D1, R2 or a Durable Object becomes 503 UNAVAILABLE, never a 500. */
export async function storage<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError) throw e;
    log("error", { event: "storage_error", what, error: String(e) });
    throw new ApiError("UNAVAILABLE", `${what} did not answer; try again`, {}, 1);
  }
}
