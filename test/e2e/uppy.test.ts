// Uppy (@uppy/core with @uppy/tus) in Node against a local relay, configured exactly as docs/attachments.md shows
// (examples/uppy-upload.ts): chunks under the PATCH limit, no Upload-Metadata, and what Uppy's defaults do instead.
import { randomBytes } from "node:crypto";
import Uppy from "@uppy/core";
import Tus from "@uppy/tus";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cipherpostUppy, uploadAttachment } from "../../examples/uppy-upload.ts";
import { type Relay, startRelay } from "../support/relay.ts";
import { register } from "./helpers.ts";

const MiB = 1024 * 1024;
let relay: Relay;
let auth: string;

beforeAll(async () => {
  relay = await startRelay();
  ({ auth } = await register(relay.url));
}, 120_000);
afterAll(async () => {
  await relay?.stop();
});

/** tus-js-client's Node build (which Uppy uses in Node) reads Buffers; in the browser the same call takes a Blob. */
const asUploadData = (bytes: Buffer) => bytes as unknown as Blob;

/** What the relay stored about an upload: HEAD as the creating device. */
async function head(id: string): Promise<Headers> {
  const res = await fetch(`${relay.url}/v1/attachments/tus/${id}`, {
    method: "HEAD",
    headers: { Authorization: auth, "Tus-Resumable": "1.0.0" },
  });
  expect(res.status).toBe(200);
  return res.headers;
}

describe("Uppy's tus plugin with the configuration in docs/attachments.md", () => {
  it("uploads 41 MiB in 20 MiB PATCHes, sends no Upload-Metadata, and the blob reads back identical", async () => {
    const uppy = cipherpostUppy(relay.url, auth);
    const chunks: number[] = [];
    // Observation only: tus-js-client calls this after each PATCH the relay accepted.
    uppy.getPlugin("Tus")!.setOptions({ onChunkComplete: (size: number) => void chunks.push(size) });
    const file = randomBytes(41 * MiB);
    const id = await uploadAttachment(uppy, asUploadData(file));
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(chunks).toEqual([20 * MiB, 20 * MiB, 1 * MiB]);
    const stored = await head(id);
    expect(stored.get("upload-offset")).toBe(String(file.length));
    expect(stored.get("upload-metadata")).toBeNull();

    const res = await fetch(`${relay.url}/v1/attachments/${id}`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(file)).toBe(true);

    // The same Uppy uploads the next attachment; removing the finished file from Uppy left the first one alone.
    const second = randomBytes(1000);
    const id2 = await uploadAttachment(uppy, asUploadData(second));
    expect(id2).not.toBe(id);
    expect((await fetch(`${relay.url}/v1/attachments/${id}`, { method: "HEAD" })).status).toBe(200);
    uppy.destroy();
  }, 120_000);

  it("with Uppy's defaults the file name reaches the relay in Upload-Metadata", async () => {
    const uppy = new Uppy().use(Tus, {
      endpoint: `${relay.url}/v1/attachments/tus/`,
      headers: { Authorization: auth },
    });
    uppy.addFile({ name: "holiday-photo.jpg", type: "image/jpeg", data: asUploadData(randomBytes(1000)) });
    const result = await uppy.upload();
    const id = result!.successful![0]!.uploadURL!.split("/").pop()!;
    const metadata = (await head(id)).get("upload-metadata") ?? "";
    const names = metadata.split(",").map((pair) => pair.trim().split(" "));
    const filename = names.find(([k]) => k === "filename")?.[1];
    expect(Buffer.from(filename ?? "", "base64").toString()).toBe("holiday-photo.jpg");
    uppy.destroy();
  }, 60_000);

  it("with Uppy's default chunkSize a file over MAX_PATCH_BYTES is refused with 413", async () => {
    const quiet = { debug() {}, warn() {}, error() {} }; // Uppy logs the 413 it is about to report
    const uppy = new Uppy({ logger: quiet }).use(Tus, {
      endpoint: `${relay.url}/v1/attachments/tus/`,
      headers: { Authorization: auth },
    });
    let status: number | undefined;
    uppy.on("upload-error", (_file, _error, response) => {
      status = response?.status;
    });
    uppy.addFile({ name: "big", type: "application/octet-stream", data: asUploadData(randomBytes(51 * MiB)) });
    const result = await uppy.upload();
    expect(result?.successful).toHaveLength(0);
    expect(status).toBe(413);
    expect(result?.failed?.[0]?.error).toContain("set the tus client's chunkSize below it");
    uppy.destroy();
  }, 120_000);
});
