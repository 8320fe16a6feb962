// End to end in Node: the Worker started locally by wrangler, an account registered over HTTP, a 64 MiB file
// uploaded with tus-js-client (chunkSize set below MAX_PATCH_BYTES), then downloaded and compared byte for byte.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as tus from "tus-js-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unstable_startWorker } from "wrangler";
import { register as registerAt } from "./helpers.ts";

// Offline, wrangler would wait 3 s for Cloudflare's cf.json and print a stack; the relay needs none of it.
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";

const MiB = 1024 * 1024;
const root = new URL("../../", import.meta.url).pathname;
const persist = mkdtempSync(join(tmpdir(), "cipherpost-e2e-"));
let worker: Awaited<ReturnType<typeof unstable_startWorker>>;
let base: string;

beforeAll(async () => {
  // The D1 migrations go into the local D1 first, in the directory the Worker then persists to.
  await promisify(execFile)(
    "npx",
    ["wrangler", "d1", "migrations", "apply", "DB_0", "--local", "--persist-to", persist],
    {
      cwd: root,
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false" },
    },
  );
  worker = await unstable_startWorker({
    config: join(root, "wrangler.toml"),
    dev: { server: { hostname: "127.0.0.1", port: 0 }, inspector: false, watch: false, persist },
  });
  await worker.ready;
  base = (await worker.url).toString().replace(/\/$/, "");
}, 120_000);

afterAll(async () => {
  await worker?.dispose();
  rmSync(persist, { recursive: true, force: true });
});

function upload(file: Buffer, auth: string, chunkSize: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(file, {
      endpoint: `${base}/v1/attachments/tus/`,
      chunkSize,
      headers: { Authorization: auth },
      retryDelays: [0, 500, 1000],
      onError: reject,
      onSuccess: () => resolve(u.url!),
    });
    u.start();
  });
}

describe("tus-js-client against the locally running relay", () => {
  it("uploads a 64 MiB file in 20 MiB chunks and reads it back identical", async () => {
    const { auth } = await registerAt(base);
    const file = randomBytes(64 * MiB);
    const started = performance.now();
    const url = await upload(file, auth, 20 * MiB);
    const uploadSeconds = (performance.now() - started) / 1000;
    const id = /\/v1\/attachments\/tus\/([0-9a-f]{32})$/.exec(url)?.[1];
    expect(id, url).toBeDefined();

    const fetched = performance.now();
    const res = await fetch(`${base}/v1/attachments/${id}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(file.length));
    const back = Buffer.from(await res.arrayBuffer());
    const downloadSeconds = (performance.now() - fetched) / 1000;
    expect(back.length).toBe(file.length);
    expect(createHash("sha256").update(back).digest("hex")).toBe(createHash("sha256").update(file).digest("hex"));
    expect(back.equals(file)).toBe(true);

    const ranged = await fetch(`${base}/v1/attachments/${id}`, {
      headers: { Range: `bytes=${33 * MiB}-${33 * MiB + 99}` },
    });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(file.subarray(33 * MiB, 33 * MiB + 100))).toBe(true);

    console.log(
      JSON.stringify({
        event: "tus_e2e",
        bytes: file.length,
        uploadSeconds: +uploadSeconds.toFixed(2),
        uploadMiBps: +(64 / uploadSeconds).toFixed(1),
        downloadMiBps: +(64 / downloadSeconds).toFixed(1),
      }),
    );
  }, 180_000);

  it("a tus client whose chunk is too big is told so with 413", async () => {
    const { auth } = await registerAt(base);
    const err = await upload(randomBytes(51 * MiB), auth, 51 * MiB).then(
      () => null,
      (e: unknown) => e as tus.DetailedError,
    );
    expect(err).not.toBeNull();
    expect(err!.originalResponse?.getStatus()).toBe(413);
    expect(err!.originalResponse?.getBody()).toContain("chunkSize");
  }, 120_000);
});
