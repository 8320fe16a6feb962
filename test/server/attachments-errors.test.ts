// tus requests the relay refuses: wrong offset, overrun, the size cap, both quotas, oversized PATCHes (declared
// and streamed), checksum mismatches (bytes discarded), bad headers, and the tus version precondition.
import { describe, expect, it } from "vitest";
import {
  SMALL,
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
  streamOf,
  tus,
  uploadFrom,
  uploadPath,
} from "./attachments-helpers.ts";
import { registerAccount } from "./helpers.ts";

const MiB = 1024 * 1024;

async function errorOf(res: Response): Promise<{ status: number; code: string; body: Record<string, unknown> }> {
  const body = (await res.json()) as Record<string, unknown>;
  return { status: res.status, code: body.code as string, body };
}

describe("offsets", () => {
  it("a PATCH at the wrong offset gets 409 with the current offset, and changes nothing", async () => {
    const a = await registerAccount();
    const data = randomBytes(5000);
    const { id } = await createUpload(a.auth, data.length);
    await expectPatched(await patch(a.auth, id, 0, data.subarray(0, 1000)), 1000);
    for (const wrong of [0, 999, 1001, 4000]) {
      const e = await errorOf(await patch(a.auth, id, wrong, data.subarray(wrong, wrong + 10)));
      expect(e).toMatchObject({ status: 409, code: "UPLOAD_OFFSET_MISMATCH", body: { offset: 1000 } });
    }
    expect(await headOffset(a.auth, id)).toBe(1000);
    await uploadFrom(a.auth, id, data, 4000, 1000);
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("a PATCH past Upload-Length is refused, declared or streamed, and its bytes are discarded", async () => {
    const a = await registerAccount();
    const data = randomBytes(3000);
    const { id } = await createUpload(a.auth, data.length);
    await expectPatched(await patch(a.auth, id, 0, data.subarray(0, 2000)), 2000);
    const declared = await errorOf(await patch(a.auth, id, 2000, randomBytes(1001)));
    expect(declared).toMatchObject({ status: 400, code: "UPLOAD_OVERRUN", body: { offset: 2000, length: 3000 } });
    const streamed = await errorOf(await patch(a.auth, id, 2000, streamOf(randomBytes(1500), 500)));
    expect(streamed).toMatchObject({ status: 400, code: "UPLOAD_OVERRUN" });
    expect(await headOffset(a.auth, id)).toBe(2000);
    await expectPatched(await patch(a.auth, id, 2000, data.subarray(2000)), 3000);
    // Complete: nothing more fits, not even one byte.
    expect((await errorOf(await patch(a.auth, id, 3000, randomBytes(1)))).code).toBe("UPLOAD_OVERRUN");
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("a creation-with-upload body longer than Upload-Length is refused before the upload exists", async () => {
    const a = await registerAccount();
    const res = await tus("POST", "/v1/attachments/tus/", {
      auth: a.auth,
      body: randomBytes(20),
      headers: { "Upload-Length": "10", "Content-Type": "application/offset+octet-stream" },
    });
    expect((await errorOf(res)).code).toBe("UPLOAD_OVERRUN");
  });
});

describe("size limits", () => {
  it("Upload-Length above MAX_ATTACHMENT_BYTES is refused with 413 UPLOAD_TOO_LARGE", async () => {
    const a = await registerAccount();
    const res = await tus("POST", "/v1/attachments/tus/", {
      auth: a.auth,
      headers: { "Upload-Length": String(2 * 1024 * MiB + 1) },
    });
    expect(await errorOf(res)).toMatchObject({
      status: 413,
      code: "UPLOAD_TOO_LARGE",
      body: { limitBytes: 2147483648 },
    });
    // Exactly the limit is accepted.
    await createUpload(a.auth, 2 * 1024 * MiB, { vars: { UPLOAD_QUOTA_BYTES: String(4 * 1024 * MiB) } });
    const vars = { MAX_ATTACHMENT_BYTES: "1000" };
    expect(
      (await tus("POST", "/v1/attachments/tus/", { auth: a.auth, vars, headers: { "Upload-Length": "1001" } })).status,
    ).toBe(413);
    await createUpload(a.auth, 1000, { vars });
  });

  it("an upload needing more than R2's 10,000 parts is refused", async () => {
    const a = await registerAccount();
    const vars = {
      ...SMALL,
      MAX_ATTACHMENT_BYTES: String(100 * 1024 * MiB),
      UPLOAD_QUOTA_BYTES: String(200 * 1024 * MiB),
      STORAGE_QUOTA_BYTES: String(200 * 1024 * MiB),
    };
    const over = 10_000 * 5 * MiB + 1;
    const e = await errorOf(
      await tus("POST", "/v1/attachments/tus/", { auth: a.auth, vars, headers: { "Upload-Length": String(over) } }),
    );
    expect(e).toMatchObject({ status: 413, code: "UPLOAD_TOO_LARGE", body: { limitBytes: 10_000 * 5 * MiB } });
  });

  it("a PATCH declaring more than MAX_PATCH_BYTES gets 413 before any byte counts", async () => {
    const a = await registerAccount();
    const vars = { MAX_PATCH_BYTES: String(64 * 1024) };
    const { id } = await createUpload(a.auth, MiB, { vars });
    const e = await errorOf(await patch(a.auth, id, 0, randomBytes(64 * 1024 + 1), { vars }));
    expect(e).toMatchObject({ status: 413, code: "PAYLOAD_TOO_LARGE", body: { limitBytes: 65536 } });
    expect(e.body.message).toContain("chunkSize");
    expect(await headOffset(a.auth, id)).toBe(0);
    await expectPatched(await patch(a.auth, id, 0, randomBytes(64 * 1024), { vars }), 64 * 1024);
  });

  it("a streamed PATCH (no Content-Length) is cut off at MAX_PATCH_BYTES with 413 and none of it counts", async () => {
    const a = await registerAccount();
    const vars = { ...SMALL, MAX_PATCH_BYTES: String(MiB) };
    const { id } = await createUpload(a.auth, 20 * MiB, { vars });
    const res = await patch(a.auth, id, 0, streamOf(randomBytes(3 * MiB)), { vars });
    expect((await errorOf(res)).status).toBe(413);
    expect(await headOffset(a.auth, id)).toBe(0);
  });

  it("the default limit refuses a 50 MiB + 1 byte PATCH by its Content-Length", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 60 * MiB);
    const e = await errorOf(await patch(a.auth, id, 0, new Uint8Array(50 * MiB + 1)));
    expect(e).toMatchObject({ status: 413, code: "PAYLOAD_TOO_LARGE", body: { limitBytes: 52428800 } });
    expect(await headOffset(a.auth, id)).toBe(0);
  });
});

/** Uploads count their exact length (no minimum reservation, attachments-limits.test.ts has that). */
const EXACT_BYTES = { MIN_UPLOAD_RESERVATION_BYTES: "0" };

describe("quotas", () => {
  it("unfinished uploads are limited by UPLOAD_QUOTA_BYTES, and finishing or terminating one frees its share", async () => {
    const a = await registerAccount();
    const vars = { ...EXACT_BYTES, UPLOAD_QUOTA_BYTES: "10000" };
    const first = await createUpload(a.auth, 6000, { vars });
    const e = await errorOf(
      await tus("POST", "/v1/attachments/tus/", { auth: a.auth, vars, headers: { "Upload-Length": "4001" } }),
    );
    expect(e).toMatchObject({
      status: 413,
      code: "QUOTA_EXCEEDED",
      body: { quota: "upload", limitBytes: 10000, usedBytes: 6000 },
    });
    await createUpload(a.auth, 4000, { vars });
    // Another account has its own quota.
    const b = await registerAccount();
    await createUpload(b.auth, 10000, { vars });
    // Finishing the first upload moves its bytes from unfinished to stored.
    await uploadFrom(a.auth, first.id, randomBytes(6000), 6000, 0, vars);
    await createUpload(a.auth, 6000, { vars });
  });

  it("stored plus unfinished bytes are limited by STORAGE_QUOTA_BYTES; deleting an attachment frees them", async () => {
    const a = await registerAccount();
    const vars = { ...EXACT_BYTES, STORAGE_QUOTA_BYTES: "10000" };
    const stored = await createUpload(a.auth, 7000, { vars });
    await uploadFrom(a.auth, stored.id, randomBytes(7000), 7000, 0, vars);
    const e = await errorOf(
      await tus("POST", "/v1/attachments/tus/", { auth: a.auth, vars, headers: { "Upload-Length": "3001" } }),
    );
    expect(e).toMatchObject({
      status: 413,
      code: "QUOTA_EXCEEDED",
      body: { quota: "storage", limitBytes: 10000, usedBytes: 7000 },
    });
    const pending = await createUpload(a.auth, 3000, { vars });
    expect(
      (await tus("POST", "/v1/attachments/tus/", { auth: a.auth, vars, headers: { "Upload-Length": "1" } })).status,
    ).toBe(413);
    expect((await tus("DELETE", `/v1/attachments/${stored.id}`, { auth: a.auth, vars })).status).toBe(204);
    await createUpload(a.auth, 7000, { vars });
    expect(await indexRow(a.accountId, pending.id)).toMatchObject({ state: "uploading" });
  });

  it("concurrent creations cannot together pass the quota", async () => {
    const a = await registerAccount();
    const vars = { ...EXACT_BYTES, UPLOAD_QUOTA_BYTES: "10000" };
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        tus("POST", "/v1/attachments/tus/", { auth: a.auth, vars, headers: { "Upload-Length": "3000" } }),
      ),
    );
    expect(results.filter((r) => r.status === 201).length).toBe(3);
    expect(results.filter((r) => r.status === 413).length).toBe(5);
  });
});

describe("checksums", () => {
  it("a checksum mismatch answers 460 and discards that PATCH's bytes, even across a part boundary", async () => {
    const a = await registerAccount();
    const data = randomBytes(8 * MiB);
    const { id } = await createUpload(a.auth, data.length, { vars: SMALL });
    await uploadFrom(a.auth, id, data.subarray(0, 3 * MiB), 3 * MiB, 0, SMALL);
    const chunk = data.subarray(3 * MiB, 7 * MiB); // would complete the first 5 MiB part
    const wrong = await sha256Base64(randomBytes(16));
    const e = await errorOf(
      await patch(a.auth, id, 3 * MiB, chunk, { vars: SMALL, headers: { "Upload-Checksum": `sha256 ${wrong}` } }),
    );
    expect(e).toMatchObject({ status: 460, code: "CHECKSUM_MISMATCH" });
    expect(await headOffset(a.auth, id)).toBe(3 * MiB);
    // Different bytes with a matching checksum then take their place; the result has the right bytes only.
    const good = await patch(a.auth, id, 3 * MiB, chunk, {
      vars: SMALL,
      headers: { "Upload-Checksum": `sha256 ${await sha256Base64(chunk)}` },
    });
    await expectPatched(good, 7 * MiB);
    await uploadFrom(a.auth, id, data, MiB, 7 * MiB, SMALL);
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("a mismatch on the last PATCH does not complete the upload", async () => {
    const a = await registerAccount();
    const data = randomBytes(1000);
    const { id } = await createUpload(a.auth, data.length);
    const e = await errorOf(
      await patch(a.auth, id, 0, data, {
        headers: { "Upload-Checksum": `sha256 ${await sha256Base64(randomBytes(3))}` },
      }),
    );
    expect(e.status).toBe(460);
    expect((await download(id)).status).toBe(404);
    await expectPatched(
      await patch(a.auth, id, 0, data, { headers: { "Upload-Checksum": `sha256 ${await sha256Base64(data)}` } }),
      1000,
    );
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("an unsupported algorithm or a malformed digest is a 400", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 100);
    for (const header of [
      "md5 1B2M2Y8AsgTpgAmY7PhCfg==",
      "sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
      "sha256 notbase64!",
      "sha256 AAAA",
      "sha256",
    ]) {
      const e = await errorOf(await patch(a.auth, id, 0, randomBytes(10), { headers: { "Upload-Checksum": header } }));
      expect(e, header).toMatchObject({ status: 400, code: "BAD_REQUEST" });
    }
    expect(await headOffset(a.auth, id)).toBe(0);
  });
});

describe("protocol", () => {
  it("a tus request without Tus-Resumable 1.0.0 gets 412 with Tus-Version", async () => {
    const a = await registerAccount();
    for (const headers of [{}, { "Tus-Resumable": "0.2.2" }] as Record<string, string>[]) {
      const res = await tus("POST", "/v1/attachments/tus/", {
        auth: a.auth,
        noTus: true,
        headers: { "Upload-Length": "10", ...headers },
      });
      expect(res.status).toBe(412);
      expect(res.headers.get("tus-version")).toBe("1.0.0");
      expect(((await res.json()) as { code: string }).code).toBe("PRECONDITION_FAILED");
    }
  });

  it("creation needs Upload-Length and refuses deferred lengths, concatenation and malformed metadata", async () => {
    const a = await registerAccount();
    const post = (headers: Record<string, string>) => tus("POST", "/v1/attachments/tus/", { auth: a.auth, headers });
    expect((await errorOf(await post({}))).code).toBe("BAD_REQUEST");
    expect((await errorOf(await post({ "Upload-Length": "-1" }))).code).toBe("BAD_REQUEST");
    expect((await errorOf(await post({ "Upload-Length": "1e3" }))).code).toBe("BAD_REQUEST");
    expect((await errorOf(await post({ "Upload-Defer-Length": "1" }))).code).toBe("BAD_REQUEST");
    expect((await errorOf(await post({ "Upload-Length": "10", "Upload-Concat": "partial" }))).code).toBe("BAD_REQUEST");
    expect((await errorOf(await post({ "Upload-Length": "10", "Upload-Metadata": "a !!!" }))).code).toBe("BAD_REQUEST");
    expect((await errorOf(await post({ "Upload-Length": "10", "Upload-Metadata": "a,a" }))).code).toBe("BAD_REQUEST");
    expect(
      (await errorOf(await post({ "Upload-Length": "10", "Upload-Metadata": `k ${"QUFB".repeat(300)}` }))).code,
    ).toBe("BAD_REQUEST");
  });

  it("a PATCH needs Content-Type application/offset+octet-stream and Upload-Offset", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 100);
    const noType = await tus("PATCH", uploadPath(id), {
      auth: a.auth,
      body: randomBytes(10),
      headers: { "Upload-Offset": "0", "Content-Type": "application/json" },
    });
    expect(await errorOf(noType)).toMatchObject({ status: 415, code: "UNSUPPORTED_MEDIA_TYPE" });
    const noOffset = await tus("PATCH", uploadPath(id), {
      auth: a.auth,
      body: randomBytes(10),
      headers: { "Content-Type": "application/offset+octet-stream" },
    });
    expect((await errorOf(noOffset)).code).toBe("BAD_REQUEST");
    const badBody = await tus("POST", "/v1/attachments/tus/", {
      auth: a.auth,
      body: "{}",
      headers: { "Upload-Length": "10", "Content-Type": "application/json" },
    });
    expect((await errorOf(badBody)).status).toBe(415);
  });

  it("a creation-with-upload body whose checksum fails still creates the upload, at offset 0", async () => {
    const a = await registerAccount();
    const data = randomBytes(100);
    const { id, res } = await createUpload(a.auth, 100, {
      body: data,
      headers: {
        "Content-Type": "application/offset+octet-stream",
        "Upload-Checksum": `sha256 ${await sha256Base64(randomBytes(1))}`,
      },
    });
    expect(res.headers.get("upload-offset")).toBe("0");
    await expectPatched(await patch(a.auth, id, 0, data), 100);
  });
});
