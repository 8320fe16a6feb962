// tus uploads that succeed: discovery, creation, many chunks into equal R2 parts, resumption after a dropped
// PATCH and after every object is reset, checksums, creation-with-upload, empty and single-part uploads.
import { abortAllDurableObjects } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import {
  SMALL,
  brokenStream,
  bytesOf,
  createUpload,
  download,
  expectPatched,
  expectSameBytes,
  headOffset,
  indexRow,
  patch,
  randomBytes,
  sha256Base64,
  tus,
  uploadFrom,
  uploadPath,
} from "./attachments-helpers.ts";
import { registerAccount, type TestAccount } from "./helpers.ts";

const MiB = 1024 * 1024;
let a: TestAccount;
beforeAll(async () => {
  a = await registerAccount();
});

describe("tus discovery", () => {
  it("OPTIONS advertises version, extensions, maximum size and checksum algorithm without authentication", async () => {
    {
      const res = await tus("OPTIONS", "/v1/attachments/tus/", { noTus: true });
      expect(res.status).toBe(204);
      expect(res.headers.get("tus-resumable")).toBe("1.0.0");
      expect(res.headers.get("tus-version")).toBe("1.0.0");
      expect(res.headers.get("tus-extension")!.split(",")).toEqual([
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
      ]);
      expect(res.headers.get("tus-max-size")).toBe("2147483648");
      expect(res.headers.get("tus-checksum-algorithm")).toBe("sha256");
    }
  });
  it("Tus-Max-Size follows MAX_ATTACHMENT_BYTES", async () => {
    const res = await tus("OPTIONS", "/v1/attachments/tus/", { vars: { MAX_ATTACHMENT_BYTES: "12345" } });
    expect(res.headers.get("tus-max-size")).toBe("12345");
  });
  it("a CORS preflight is still answered as one", async () => {
    const res = await tus("OPTIONS", "/v1/attachments/tus/", {
      noTus: true,
      headers: {
        Origin: "https://app.example",
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "upload-offset",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-methods")).toContain("PATCH");
    expect(res.headers.get("access-control-allow-headers")).toContain("Upload-Offset");
  });
});

describe("creation", () => {
  it("answers 201 with a Location holding a random 128-bit id, Upload-Expires and Tus-Resumable", async () => {
    const before = Date.now();
    const { id, res } = await createUpload(a.auth, 1000);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(res.headers.get("location")).toBe(`https://relay.test/v1/attachments/tus/${id}`);
    expect(res.headers.get("tus-resumable")).toBe("1.0.0");
    const expires = Date.parse(res.headers.get("upload-expires")!);
    expect(expires).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 86_400_000 - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 86_400_000);
    const other = await createUpload(a.auth, 1000);
    expect(other.id).not.toBe(id);
    expect(await indexRow(a.accountId, id)).toMatchObject({ state: "uploading", size: 1000 });
  });

  it("HEAD reports offset, length, expiry and metadata, and is not cacheable", async () => {
    const { id } = await createUpload(a.auth, 5000, { headers: { "Upload-Metadata": "kind dm9pY2U=,empty" } });
    await expectPatched(await patch(a.auth, id, 0, randomBytes(1234)), 1234);
    const res = await tus("HEAD", uploadPath(id), { auth: a.auth });
    expect(res.status).toBe(200);
    expect(res.headers.get("upload-offset")).toBe("1234");
    expect(res.headers.get("upload-length")).toBe("5000");
    expect(res.headers.get("upload-metadata")).toBe("kind dm9pY2U=,empty");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(Number.isNaN(Date.parse(res.headers.get("upload-expires")!))).toBe(false);
  });

  it("GET on the upload URL answers what HEAD answers, with an empty body", async () => {
    const { id } = await createUpload(a.auth, 10);
    const res = await tus("GET", uploadPath(id), { auth: a.auth });
    expect(res.status).toBe(200);
    expect(res.headers.get("upload-offset")).toBe("0");
    expect(res.headers.get("upload-length")).toBe("10");
    expect(await res.text()).toBe("");
  });
});

describe("uploading", () => {
  it("uploads in many chunks of odd sizes into equal 5 MiB parts and reads back byte for byte", async () => {
    const data = randomBytes(12 * MiB + 12345);
    const { id } = await createUpload(a.auth, data.length, { vars: SMALL });
    // 700,001-byte chunks straddle every part boundary at a different place.
    await uploadFrom(a.auth, id, data, 700_001, 0, SMALL);
    const res = await download(id);
    expect(res.status).toBe(200);
    // R2's multipart ETag ends in the part count: 5 MiB + 5 MiB + the rest.
    expect(res.headers.get("etag")).toMatch(/-3"$/);
    expectSameBytes(await bytesOf(res), data);
    expect(await indexRow(a.accountId, id)).toMatchObject({ state: "stored", size: data.length });
    const head = await tus("HEAD", uploadPath(id), { auth: a.auth });
    expect(head.headers.get("upload-offset")).toBe(String(data.length));
  });

  it("uploads with PATCHes larger than a part (several parts per PATCH) and with the default 10 MiB part", async () => {
    const data = randomBytes(23 * MiB + 1);
    const { id } = await createUpload(a.auth, data.length);
    await uploadFrom(a.auth, id, data, 11 * MiB + 7);
    const res = await download(id);
    expect(res.headers.get("etag")).toMatch(/-3"$/);
    expectSameBytes(await bytesOf(res), data);
  });

  it("a small attachment is one part, and an empty one is complete at creation", async () => {
    const data = randomBytes(1000);
    const { id } = await createUpload(a.auth, data.length);
    await uploadFrom(a.auth, id, data, 333);
    expectSameBytes(await bytesOf(await download(id)), data);

    const empty = await createUpload(a.auth, 0);
    const res = await download(empty.id);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe("0");
    expect((await bytesOf(res)).length).toBe(0);
    expect(await headOffset(a.auth, empty.id)).toBe(0);
  });

  it("creation-with-upload appends the POST body at offset 0", async () => {
    const data = randomBytes(3000);
    const { id, res } = await createUpload(a.auth, data.length, {
      body: data.subarray(0, 1000),
      headers: {
        "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": `sha256 ${await sha256Base64(data.subarray(0, 1000))}`,
      },
    });
    expect(res.headers.get("upload-offset")).toBe("1000");
    await uploadFrom(a.auth, id, data, 2000, 1000);
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("PATCHes with a correct sha256 Upload-Checksum are accepted", async () => {
    const data = randomBytes(6 * MiB);
    const { id } = await createUpload(a.auth, data.length, { vars: SMALL });
    for (const [from, to] of [
      [0, 4 * MiB],
      [4 * MiB, 6 * MiB],
    ] as const) {
      const chunk = data.subarray(from, to);
      const res = await patch(a.auth, id, from, chunk, {
        vars: SMALL,
        headers: { "Upload-Checksum": `sha256 ${await sha256Base64(chunk)}` },
      });
      await expectPatched(res, to);
    }
    expectSameBytes(await bytesOf(await download(id)), data);
  });
});

describe("resuming", () => {
  it("after a PATCH whose connection dropped, HEAD gives the stored offset and the upload resumes", async () => {
    const data = randomBytes(7 * MiB);
    const { id } = await createUpload(a.auth, data.length, { vars: SMALL });
    await uploadFrom(a.auth, id, data.subarray(0, 1 * MiB), MiB, 0, SMALL);
    // The second PATCH sends 5 MiB (crossing the part boundary at 5 MiB) and then the connection fails.
    const sent = 5 * MiB;
    try {
      const res = await patch(a.auth, id, MiB, brokenStream(data.slice(MiB, MiB + sent)), { vars: SMALL });
      await res.arrayBuffer();
    } catch {
      // The client sees a failed request; what matters is what the relay kept.
    }
    const offset = await headOffset(a.auth, id);
    expect(offset).toBeGreaterThanOrEqual(MiB);
    expect(offset).toBeLessThanOrEqual(MiB + sent);
    // A stale offset is refused; the stored one is accepted.
    expect((await patch(a.auth, id, MiB, data.subarray(MiB, MiB + 10), { vars: SMALL })).status).toBe(
      offset === MiB ? 204 : 409,
    );
    const resumeAt = await headOffset(a.auth, id);
    await uploadFrom(a.auth, id, data, 3 * MiB, resumeAt, SMALL);
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("keeps the bytes of a PATCH cut short (no checksum): they count in the offset", async () => {
    const data = randomBytes(2 * MiB);
    const { id } = await createUpload(a.auth, data.length, { vars: SMALL });
    try {
      const res = await patch(a.auth, id, 0, brokenStream(data.slice(0, 300_000)), { vars: SMALL });
      await res.arrayBuffer();
    } catch {
      // expected
    }
    expect(await headOffset(a.auth, id)).toBe(300_000);
    await uploadFrom(a.auth, id, data, MiB, 300_000, SMALL);
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("after every Durable Object is reset mid-upload, the upload resumes and the blob is byte-identical", async () => {
    const data = randomBytes(13 * MiB + 999);
    const { id } = await createUpload(a.auth, data.length, { vars: SMALL });
    // 3 MiB chunks: after two, one 5 MiB part is in R2 and 1 MiB is staged in the object's storage.
    await uploadFrom(a.auth, id, data.subarray(0, 6 * MiB), 3 * MiB, 0, SMALL);
    await abortAllDurableObjects();
    expect(await headOffset(a.auth, id)).toBe(6 * MiB);
    await uploadFrom(a.auth, id, data.subarray(0, 9 * MiB), 3 * MiB, 6 * MiB, SMALL);
    // Reset again with 4 MiB staged and no new part since.
    await abortAllDurableObjects();
    expect(await headOffset(a.auth, id)).toBe(9 * MiB);
    await uploadFrom(a.auth, id, data, 3 * MiB, 9 * MiB, SMALL);
    const res = await download(id);
    expect(res.headers.get("etag")).toMatch(/-3"$/);
    expectSameBytes(await bytesOf(res), data);
  });

  it("an unfinished upload is not readable until its last byte, then it is", async () => {
    const data = randomBytes(4000);
    const { id } = await createUpload(a.auth, data.length);
    await expectPatched(await patch(a.auth, id, 0, data.subarray(0, 3999)), 3999);
    expect((await download(id)).status).toBe(404);
    expect(await env.ATTACHMENTS.head(`att/${id}`)).toBeNull();
    await expectPatched(await patch(a.auth, id, 3999, data.subarray(3999)), 4000);
    expectSameBytes(await bytesOf(await download(id)), data);
  });
});

describe("API document and settings", () => {
  it("the OpenAPI document describes the tus routes, their octet-stream bodies and the chunkSize advice", async () => {
    const doc = (await (await tus("GET", "/v1/openapi.json", { noTus: true })).json()) as {
      paths: Record<
        string,
        Record<string, { description?: string; requestBody?: { content: Record<string, unknown> } }>
      >;
    };
    const upload = doc.paths["/v1/attachments/tus/{id}"]!;
    expect(Object.keys(upload).sort()).toEqual(["delete", "get", "patch"]);
    expect(Object.keys(doc.paths["/v1/attachments/tus/"]!).sort()).toEqual(["options", "post"]);
    expect(Object.keys(upload.patch!.requestBody!.content)).toEqual(["application/offset+octet-stream"]);
    expect(upload.patch!.description).toContain("chunkSize");
    expect(doc.paths["/v1/attachments/tus/"]!.post!.description).toContain("chunkSize` below MAX_PATCH_BYTES");
    expect(Object.keys(doc.paths["/v1/attachments/{id}"]!).sort()).toEqual(["delete", "get"]);
  });

  it("an attachment setting that does not parse makes the relay answer 503 MISCONFIGURED naming it", async () => {
    for (const [name, value] of [
      ["UPLOAD_PART_BYTES", "1048576"],
      ["MAX_PATCH_BYTES", "209715200"],
      ["UPLOAD_QUOTA_BYTES", "lots"],
    ]) {
      const res = await tus("OPTIONS", "/v1/attachments/tus/", { vars: { [name!]: value! } });
      expect(res.status, name).toBe(503);
      const body = (await res.json()) as { code: string; problems: { variable: string }[] };
      expect(body.code).toBe("MISCONFIGURED");
      expect(body.problems.map((p) => p.variable)).toEqual([name]);
    }
  });
});
