// Helpers for the attachment tests: tus calls, the Worker with overridden vars (a fresh env object, so the
// config re-parses) or its own clock, random blobs and digests.
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import { randomBytes, toBase64 } from "../../src/crypto/bytes.ts";
import type { Clock } from "../../src/protocol/clock.ts";
import { app, buildApp } from "../../src/server/index.ts";
import { BASE } from "./helpers.ts";

export { randomBytes };

export type Vars = Record<string, string>;

/** Small, fast settings: R2's minimum part size, and a PATCH limit tests can pass cheaply. */
export const SMALL: Vars = { UPLOAD_PART_BYTES: String(5 * 1024 * 1024) };

const envs = new Map<string, Cloudflare.Env>();
function envWith(vars: Vars): Cloudflare.Env {
  const key = JSON.stringify(vars);
  let e = envs.get(key);
  if (!e) {
    e = { ...env, ...vars } as Cloudflare.Env;
    envs.set(key, e);
  }
  return e;
}

/** The Worker's app with routes reading `clock`, one per clock. */
const apps = new WeakMap<Clock, ReturnType<typeof buildApp>>();
function appAt(clock: Clock): ReturnType<typeof buildApp> {
  let timed = apps.get(clock);
  if (!timed) {
    timed = buildApp(clock);
    apps.set(clock, timed);
  }
  return timed;
}

/** Sends a request to the Worker, with vars overridden and routes reading `clock` when given. */
export async function send(req: Request, vars?: Vars, clock?: Clock): Promise<Response> {
  if (!vars && !clock) return exports.default.fetch(req);
  const ctx = createExecutionContext();
  const res = await (clock ? appAt(clock) : app).fetch(req, vars ? envWith(vars) : env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** Makes upload `id`'s object read its time from `clock` (until the object is reset). */
export async function useUploadClock(id: string, clock: Clock): Promise<void> {
  await runInDurableObject(env.UPLOAD.getByName(id), (upload) => {
    upload.clock = clock;
  });
}

export interface TusOptions {
  auth?: string;
  headers?: Record<string, string>;
  body?: BodyInit;
  vars?: Vars;
  /** Leave out Tus-Resumable. */
  noTus?: boolean;
  /** The clock the routes read (creation's deadlines). */
  clock?: Clock;
}

export function tus(method: string, path: string, o: TusOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...(o.noTus ? {} : { "Tus-Resumable": "1.0.0" }), ...(o.headers ?? {}) };
  if (o.auth) headers.authorization = o.auth;
  return send(
    new Request(`${BASE}${path}`, { method, headers, ...(o.body !== undefined ? { body: o.body } : {}) }),
    o.vars,
    o.clock,
  );
}

export const uploadPath = (id: string) => `/v1/attachments/tus/${id}`;

/** Creates an upload and returns its id (asserting 201 and a Location under the tus endpoint). */
export async function createUpload(
  auth: string,
  length: number,
  o: TusOptions = {},
): Promise<{ id: string; res: Response }> {
  const res = await tus("POST", "/v1/attachments/tus/", {
    ...o,
    auth,
    headers: { "Upload-Length": String(length), ...(o.headers ?? {}) },
  });
  const text = res.status === 201 ? "" : await res.text();
  expect(res.status, `create → ${res.status} ${text}`).toBe(201);
  const location = res.headers.get("location")!;
  const m = /\/v1\/attachments\/tus\/([0-9a-f]{32})$/.exec(location);
  expect(m, `Location ${location}`).not.toBeNull();
  return { id: m![1]!, res };
}

export function patch(
  auth: string,
  id: string,
  offset: number,
  bytes: Uint8Array | ReadableStream,
  o: TusOptions = {},
): Promise<Response> {
  return tus("PATCH", uploadPath(id), {
    ...o,
    auth,
    body: bytes,
    headers: {
      "Content-Type": "application/offset+octet-stream",
      "Upload-Offset": String(offset),
      ...(bytes instanceof Uint8Array ? { "Content-Length": String(bytes.byteLength) } : {}),
      ...(o.headers ?? {}),
    },
  });
}

export async function expectPatched(res: Response, offset: number): Promise<void> {
  const text = res.status === 204 ? "" : await res.text();
  expect(res.status, `PATCH → ${res.status} ${text}`).toBe(204);
  expect(res.headers.get("upload-offset")).toBe(String(offset));
}

/** Uploads `data` in PATCHes of `chunk` bytes from `from`, asserting each. */
export async function uploadFrom(
  auth: string,
  id: string,
  data: Uint8Array,
  chunk: number,
  from = 0,
  vars?: Vars,
): Promise<void> {
  for (let off = from; off < data.length; ) {
    const end = Math.min(data.length, off + chunk);
    await expectPatched(await patch(auth, id, off, data.subarray(off, end), { vars }), end);
    off = end;
  }
}

export async function headOffset(auth: string, id: string): Promise<number> {
  const res = await tus("HEAD", uploadPath(id), { auth });
  expect(res.status).toBe(200);
  return Number(res.headers.get("upload-offset"));
}

export async function sha256Base64(bytes: Uint8Array): Promise<string> {
  return toBase64(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

/** GET /v1/attachments/{id}; with `clock`, the route decides expiry by that clock's time. */
export async function download(
  id: string,
  headers: Record<string, string> = {},
  o: { vars?: Vars; clock?: Clock } = {},
): Promise<Response> {
  return send(new Request(`${BASE}/v1/attachments/${id}`, { headers }), o.vars, o.clock);
}

export async function bytesOf(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer());
}

export function expectSameBytes(got: Uint8Array, want: Uint8Array): void {
  expect(got.length).toBe(want.length);
  // Compare by digest-sized windows so a mismatch reports where, without dumping megabytes.
  for (let i = 0; i < want.length; i += 65536) {
    const a = got.subarray(i, i + 65536);
    const b = want.subarray(i, i + 65536);
    if (!a.every((v, j) => v === b[j])) expect.fail(`bytes differ in the window at ${i}`);
  }
}

/** A body that sends `bytes` and then fails, as a dropped connection does. */
export function brokenStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(bytes);
        return;
      }
      controller.error(new Error("connection dropped"));
    },
  });
}

/** A body without Content-Length (streamed), for limits enforced while reading. */
export function streamOf(bytes: Uint8Array, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

export function indexRow(accountId: string, id: string) {
  // The index lives on the account's shard; looking on every shard keeps the helper independent of SHARD_MAP.
  const e = env as unknown as Record<string, D1Database>;
  return Promise.all(
    (JSON.parse(env.TEST_SHARDS) as string[]).map((s) =>
      e[s]!.prepare("SELECT * FROM attachments WHERE id = ?1 AND account_id = ?2").bind(id, accountId).first(),
    ),
  ).then((rows) => rows.find((r) => r !== null) ?? null);
}
