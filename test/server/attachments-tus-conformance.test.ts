// tus 1.0.0 conformance beyond the happy path: X-HTTP-Method-Override, empty PATCHes at a finished upload,
// zero-length uploads, refused PATCH bodies read to their end (not cancelled), and two PATCHes racing at one offset.
import { describe, expect, it } from "vitest";
import {
  bytesOf,
  createUpload,
  download,
  expectPatched,
  expectSameBytes,
  headOffset,
  indexRow,
  patch,
  randomBytes,
  tus,
  uploadFrom,
  uploadPath,
} from "./attachments-helpers.ts";
import { expectError, registerAccount } from "./helpers.ts";

const octets = { "Content-Type": "application/offset+octet-stream" };

describe("X-HTTP-Method-Override", () => {
  it("a POST standing in for PATCH appends, for HEAD reports the offset, for DELETE terminates", async () => {
    const a = await registerAccount();
    const data = randomBytes(3000);
    const { id } = await createUpload(a.auth, data.length);
    const post = (method: string, headers: Record<string, string> = {}, body?: Uint8Array) =>
      tus("POST", uploadPath(id), {
        auth: a.auth,
        headers: { "X-HTTP-Method-Override": method, ...headers },
        ...(body ? { body } : {}),
      });

    await expectPatched(await post("PATCH", { ...octets, "Upload-Offset": "0" }, data.subarray(0, 1000)), 1000);
    // The value is a method name: any case.
    await expectPatched(await post("patch", { ...octets, "Upload-Offset": "1000" }, data.subarray(1000, 2000)), 2000);
    const head = await post("HEAD");
    expect(head.status).toBe(200);
    expect(head.headers.get("upload-offset")).toBe("2000");
    expect(head.headers.get("upload-length")).toBe("3000");
    expect(head.headers.get("tus-resumable")).toBe("1.0.0");
    expect(await head.text()).toBe("");
    // An overridden PATCH is checked as a PATCH is.
    await expectError(
      await post("PATCH", { ...octets, "Upload-Offset": "0" }, data.subarray(0, 10)),
      409,
      "UPLOAD_OFFSET_MISMATCH",
    );
    await expectPatched(await post("PATCH", { ...octets, "Upload-Offset": "2000" }, data.subarray(2000)), 3000);
    expectSameBytes(await bytesOf(await download(id)), data);

    expect((await post("DELETE")).status).toBe(204);
    expect(await indexRow(a.accountId, id)).toBeNull();
    expect((await download(id)).status).toBe(404);
  });

  it("an overridden request needs credentials and Tus-Resumable; another account gets 404", async () => {
    const a = await registerAccount();
    const b = await registerAccount();
    const { id } = await createUpload(a.auth, 100);
    const headers = { "X-HTTP-Method-Override": "PATCH", ...octets, "Upload-Offset": "0" };
    const body = randomBytes(100);
    await expectError(await tus("POST", uploadPath(id), { headers, body }), 401, "UNAUTHORIZED");
    await expectError(
      await tus("POST", uploadPath(id), { auth: a.auth, headers, body, noTus: true }),
      412,
      "PRECONDITION_FAILED",
    );
    await expectError(await tus("POST", uploadPath(id), { auth: b.auth, headers, body }), 404, "NOT_FOUND");
    expect(await headOffset(a.auth, id)).toBe(0);
  });

  it("an override other than PATCH, DELETE or HEAD is a 400, and a plain POST to an upload URL is still a 404", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 100);
    for (const method of ["GET", "PUT", "POST", "OPTIONS", "", "__proto__"]) {
      await expectError(
        await tus("POST", uploadPath(id), { auth: a.auth, headers: { "X-HTTP-Method-Override": method } }),
        400,
        "BAD_REQUEST",
      );
    }
    await expectError(await tus("POST", uploadPath(id), { auth: a.auth }), 404, "NOT_FOUND");
    // Only POST stands in for another method: a PATCH saying HEAD is a PATCH.
    await expectPatched(
      await patch(a.auth, id, 0, randomBytes(10), { headers: { "X-HTTP-Method-Override": "HEAD" } }),
      10,
    );
  });
});

describe("empty PATCHes and empty uploads", () => {
  it("an empty PATCH at a finished upload answers 204 with its offset; a non-empty one overruns", async () => {
    const a = await registerAccount();
    const data = randomBytes(2500);
    const { id } = await createUpload(a.auth, data.length);
    await uploadFrom(a.auth, id, data, 1000);
    for (let i = 0; i < 2; i++) await expectPatched(await patch(a.auth, id, data.length, new Uint8Array(0)), 2500);
    await expectError(await patch(a.auth, id, data.length, randomBytes(1)), 400, "UPLOAD_OVERRUN");
    await expectError(await patch(a.auth, id, 0, new Uint8Array(0)), 409, "UPLOAD_OFFSET_MISMATCH");
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("an empty PATCH in the middle of an upload changes nothing", async () => {
    const a = await registerAccount();
    const data = randomBytes(2000);
    const { id } = await createUpload(a.auth, data.length);
    await expectPatched(await patch(a.auth, id, 0, data.subarray(0, 700)), 700);
    await expectPatched(await patch(a.auth, id, 700, new Uint8Array(0)), 700);
    await uploadFrom(a.auth, id, data, 5000, 700);
    expectSameBytes(await bytesOf(await download(id)), data);
  });

  it("a zero-length upload is complete at creation (201), takes an empty PATCH (204) and downloads as empty", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 0);
    await expectPatched(await patch(a.auth, id, 0, new Uint8Array(0)), 0);
    // With creation-with-upload's empty body too.
    const withBody = await createUpload(a.auth, 0, { headers: octets, body: new Uint8Array(0) });
    expect(withBody.res.headers.get("upload-offset")).toBe("0");
    for (const upload of [id, withBody.id]) {
      expect(await headOffset(a.auth, upload)).toBe(0);
      const res = await download(upload);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-length")).toBe("0");
      expect((await bytesOf(res)).length).toBe(0);
    }
  });
});

/** A body of `chunks` chunks that records how much of it was read and whether it was cancelled. */
function watchedBody(chunks: number, chunkBytes = 64 * 1024) {
  const seen = { pulled: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (seen.pulled === chunks) return controller.close();
      seen.pulled++;
      controller.enqueue(randomBytes(chunkBytes));
    },
    cancel() {
      seen.cancelled = true;
    },
  });
  return { body, seen };
}

describe("refused PATCHes and racing resumes", () => {
  it("a refused PATCH's body is read to its end, not cancelled, so the connection stays usable", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 10_000_000);
    await expectPatched(await patch(a.auth, id, 0, randomBytes(100)), 100);
    const wrongOffset = watchedBody(16);
    await expectError(await patch(a.auth, id, 0, wrongOffset.body), 409, "UPLOAD_OFFSET_MISMATCH");
    expect(wrongOffset.seen).toEqual({ pulled: 16, cancelled: false });
    const overrun = watchedBody(16);
    const small = await createUpload(a.auth, 1000);
    await expectError(await patch(a.auth, small.id, 0, overrun.body), 400, "UPLOAD_OVERRUN");
    expect(overrun.seen).toEqual({ pulled: 16, cancelled: false });
    // Past MAX_PATCH_BYTES the body is cancelled after all: nobody can keep the relay reading.
    const endless = watchedBody(1_000_000);
    const res = await patch(a.auth, id, 100, endless.body, { vars: { MAX_PATCH_BYTES: String(1024 * 1024) } });
    await expectError(res, 413, "PAYLOAD_TOO_LARGE");
    expect(endless.seen.pulled).toBeLessThan(100);
  });

  it("two PATCHes at one offset at once: one wins, the other gets 409 with the new offset, and resumes from HEAD", async () => {
    const a = await registerAccount();
    const data = randomBytes(300_000);
    const { id } = await createUpload(a.auth, data.length);
    await expectPatched(await patch(a.auth, id, 0, data.subarray(0, 100_000)), 100_000);
    const [first, second] = await Promise.all([
      patch(a.auth, id, 100_000, data.subarray(100_000, 200_000)),
      patch(a.auth, id, 100_000, data.subarray(100_000, 200_000)),
    ]);
    const statuses = [first.status, second.status].sort();
    expect(statuses).toEqual([204, 409]);
    const loser = first.status === 409 ? first : second;
    expect(await loser.json()).toMatchObject({ code: "UPLOAD_OFFSET_MISMATCH", offset: 200_000 });
    const offset = await headOffset(a.auth, id);
    expect(offset).toBe(200_000);
    await uploadFrom(a.auth, id, data, 100_000, offset);
    expectSameBytes(await bytesOf(await download(id)), data);
  });
});
