// tus conformance end to end through a relay started as `npm start` starts it (wrangler dev, whose proxy sits in
// front of workerd): the unmodified tus-js-client with overridePatchMethod, an empty file, a refused PATCH that
// leaves its kept-alive connection usable, and two tus-js-client resumes of one upload racing each other.
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import * as tus from "tus-js-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevRelay, register, startLikeNpmStart } from "./helpers.ts";

const MiB = 1024 * 1024;
let relay: DevRelay;
let auth: string;

beforeAll(async () => {
  relay = await startLikeNpmStart({ POW_DIFFICULTY_BITS: "4" });
  auth = (await register(relay.url)).auth;
}, 120_000);

afterAll(async () => {
  await relay?.stop();
}, 30_000);

const digest = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function downloaded(url: string): Promise<Buffer> {
  const id = /\/v1\/attachments\/tus\/([0-9a-f]{32})$/.exec(url)?.[1];
  expect(id, url).toBeDefined();
  const res = await fetch(`${relay.url}/v1/attachments/${id}`);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

type Outcome = { ok: true; url: string } | { ok: false; error: Error };

/** Runs one tus-js-client upload to its end, success or error. */
function runUpload(file: Buffer, options: tus.UploadOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const u = new tus.Upload(file, {
      endpoint: `${relay.url}/v1/attachments/tus/`,
      headers: { Authorization: auth },
      ...options,
      onError: (error) => resolve({ ok: false, error }),
      onSuccess: () => resolve({ ok: true, url: u.url! }),
    });
    u.start();
  });
}

/** One HTTP/1.1 request on `agent`, so that tests can reuse one kept-alive connection. */
function request(
  agent: http.Agent,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, relay.url);
    const req = http.request({ method, host: u.hostname, port: u.port, path: u.pathname, headers, agent }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, reused: req.reusedSocket }));
    });
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${path}: no answer within 15 s`)));
    req.on("error", reject);
    req.end(body);
  });
}

describe("tus-js-client through npm start", () => {
  it("uploads a file with overridePatchMethod: POST with X-HTTP-Method-Override: PATCH, never PATCH", async () => {
    const file = randomBytes(3 * MiB + 123);
    const methods: string[] = [];
    const outcome = await runUpload(file, {
      chunkSize: MiB,
      overridePatchMethod: true,
      retryDelays: [],
      onBeforeRequest: (req) =>
        void methods.push(`${req.getMethod()} ${req.getHeader("X-HTTP-Method-Override") ?? ""}`),
    });
    expect(outcome.ok, outcome.ok ? "" : String(outcome.error)).toBe(true);
    expect(methods.filter((m) => m === "POST PATCH")).toHaveLength(4);
    expect(methods.some((m) => m.startsWith("PATCH"))).toBe(false);
    const back = await downloaded((outcome as { url: string }).url);
    expect(digest(back)).toBe(digest(file));
  }, 60_000);

  it("an empty file uploads (201) and downloads as empty", async () => {
    const outcome = await runUpload(Buffer.alloc(0), { retryDelays: [] });
    expect(outcome.ok, outcome.ok ? "" : String(outcome.error)).toBe(true);
    expect((await downloaded((outcome as { url: string }).url)).length).toBe(0);
  }, 60_000);

  it("a refused PATCH leaves its kept-alive connection usable for the next request", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const tusHeaders = { "Tus-Resumable": "1.0.0", Authorization: auth };
      const created = await request(agent, "POST", "/v1/attachments/tus/", { ...tusHeaders, "Upload-Length": "100" });
      expect(created.status).toBe(201);
      const path = new URL(created.headers.location!).pathname;
      const body = randomBytes(8 * MiB);
      const patch = (offset: number, extra: Record<string, string> = {}) =>
        request(
          agent,
          "PATCH",
          path,
          {
            ...tusHeaders,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": String(offset),
            "Content-Length": String(body.length),
            ...extra,
          },
          body,
        );
      // Refused by the upload object (wrong offset), by the route before the object (no credentials), and past
      // Upload-Length streamed (no Content-Length declared would be the same): each time the next request on the
      // same connection is answered.
      for (const refused of [() => patch(5), () => patch(0, { Authorization: "Basic eA==" })]) {
        const r = await refused();
        expect([409, 401]).toContain(r.status);
        const head = await request(agent, "HEAD", path, tusHeaders);
        expect(head.status).toBe(200);
        expect(head.reused).toBe(true);
        expect(head.headers["upload-offset"]).toBe("0");
      }
    } finally {
      agent.destroy();
    }
  }, 60_000);

  it("two concurrent resumes of one upload both end within 30 s, one of them with the file complete", async () => {
    const file = randomBytes(12 * MiB);
    const created = await fetch(`${relay.url}/v1/attachments/tus/`, {
      method: "POST",
      headers: { "Tus-Resumable": "1.0.0", Authorization: auth, "Upload-Length": String(file.length) },
    });
    expect(created.status).toBe(201);
    const uploadUrl = created.headers.get("location")!;
    const started = Date.now();
    // Both resume the same upload URL: HEAD, then PATCHes from the offset it gives. At each offset one PATCH wins
    // and the other gets 409, which tus-js-client retries by asking HEAD again.
    const statuses: number[] = [];
    const resume = () =>
      runUpload(file, {
        uploadUrl,
        chunkSize: 2 * MiB,
        retryDelays: [0, 100, 200, 400, 800, 1600, 3200],
        onAfterResponse: (_req, res) => void statuses.push(res.getStatus()),
      });
    const outcomes = await Promise.all([resume(), resume()]);
    expect(Date.now() - started).toBeLessThan(30_000);
    const done = outcomes.filter((o) => o.ok);
    expect(done.length, outcomes.map((o) => (o.ok ? "ok" : String(o.error))).join("; ")).toBeGreaterThanOrEqual(1);
    // They did race: some PATCH lost with 409 and its client went on from HEAD.
    expect(statuses).toContain(409);
    const back = await downloaded(uploadUrl);
    expect(digest(back)).toBe(digest(file));
  }, 60_000);
});
