// Downloads: unauthenticated, byte for byte, single ranges (206, suffix, open-ended, 416), ETag and
// If-None-Match, cache headers, and one identical 404 for unknown, unfinished, expired and deleted ids.
import { beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../support/manual-clock.ts";
import {
  bytesOf,
  createUpload,
  download,
  expectPatched,
  expectSameBytes,
  patch,
  randomBytes,
  tus,
  uploadFrom,
  type Vars,
} from "./attachments-helpers.ts";
import { registerAccount, type TestAccount } from "./helpers.ts";

let a: TestAccount;
let id: string;
const data = randomBytes(300_000);
beforeAll(async () => {
  a = await registerAccount();
  id = (await createUpload(a.auth, data.length)).id;
  await uploadFrom(a.auth, id, data, 100_000);
});

/** A 404 body without its request id, which differs per request by design. */
async function notFoundShape(res: Response) {
  const body = (await res.json()) as Record<string, unknown>;
  delete body.requestId;
  return {
    status: res.status,
    body,
    cacheControl: res.headers.get("cache-control"),
    contentType: res.headers.get("content-type"),
  };
}

describe("whole downloads", () => {
  it("streams the blob without authentication, with Content-Length, ETag, Accept-Ranges and private caching", async () => {
    const res = await download(id);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(data.length));
    expect(res.headers.get("content-type")).toBe("application/octet-stream");
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(res.headers.get("etag")).toMatch(/^"[^"]+"$/);
    const cc = res.headers.get("cache-control")!;
    expect(cc).toMatch(/^private, max-age=\d+$/);
    expect(Number(/max-age=(\d+)/.exec(cc)![1])).toBeLessThanOrEqual(300);
    expectSameBytes(await bytesOf(res), data);
  });

  it("If-None-Match with the ETag answers 304 without a body; another ETag gets the blob", async () => {
    const etag = (await download(id)).headers.get("etag")!;
    const same = await download(id, { "If-None-Match": etag });
    expect(same.status).toBe(304);
    expect((await bytesOf(same)).length).toBe(0);
    const other = await download(id, { "If-None-Match": '"something-else"' });
    expect(other.status).toBe(200);
    expectSameBytes(await bytesOf(other), data);
  });

  it("the max-age never runs past the attachment's expiry", async () => {
    const vars: Vars = { ATTACHMENT_TTL_SECONDS: "30" };
    const short = await createUpload(a.auth, 10, { vars });
    await expectPatched(await patch(a.auth, short.id, 0, randomBytes(10), { vars }), 10);
    const age = Number(/max-age=(\d+)/.exec((await download(short.id)).headers.get("cache-control")!)![1]);
    expect(age).toBeLessThanOrEqual(30);
    expect(age).toBeGreaterThanOrEqual(25);
  });
});

describe("ranged downloads", () => {
  const cases: [string, number, number][] = [
    ["bytes=0-0", 0, 0],
    ["bytes=10-99", 10, 99],
    ["bytes=299990-", 299_990, 299_999],
    ["bytes=-100", 299_900, 299_999],
    ["bytes=-1000000", 0, 299_999],
    ["bytes=299000-999999", 299_000, 299_999],
  ];
  for (const [range, start, end] of cases) {
    it(`${range} answers 206 with bytes ${start}-${end}`, async () => {
      const res = await download(id, { Range: range });
      expect(res.status).toBe(206);
      expect(res.headers.get("content-range")).toBe(`bytes ${start}-${end}/${data.length}`);
      expect(res.headers.get("content-length")).toBe(String(end - start + 1));
      expectSameBytes(await bytesOf(res), data.subarray(start, end + 1));
    });
  }

  it("a range starting at or past the end, or an empty suffix, answers 416 with the size", async () => {
    for (const range of [`bytes=${data.length}-`, "bytes=999999-1000000", "bytes=-0"]) {
      const res = await download(id, { Range: range });
      expect(res.status, range).toBe(416);
      expect(res.headers.get("content-range")).toBe(`bytes */${data.length}`);
      expect(((await res.json()) as { code: string }).code).toBe("RANGE_NOT_SATISFIABLE");
    }
  });

  it("multi-range and malformed Range headers are ignored: the whole blob, 200", async () => {
    for (const range of ["bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=abc"]) {
      const res = await download(id, { Range: range });
      expect(res.status, range).toBe(200);
      expect((await bytesOf(res)).length).toBe(data.length);
    }
  });

  it("If-Range with a stale ETag serves the whole blob; with the current one, the range", async () => {
    const etag = (await download(id)).headers.get("etag")!;
    expect((await download(id, { Range: "bytes=0-9", "If-Range": '"old"' })).status).toBe(200);
    expect((await download(id, { Range: "bytes=0-9", "If-Range": etag })).status).toBe(206);
  });
});

describe("not found", () => {
  it("unknown, malformed, unfinished, expired and deleted ids all answer the same 404", async () => {
    const unknown = await notFoundShape(await download("0123456789abcdef0123456789abcdef"));
    expect(unknown).toEqual({
      status: 404,
      body: { code: "NOT_FOUND", message: "no such attachment" },
      cacheControl: "no-store",
      contentType: "application/json",
    });

    expect(await notFoundShape(await download("not-an-id"))).toEqual(unknown);

    const unfinished = await createUpload(a.auth, 100);
    await expectPatched(await patch(a.auth, unfinished.id, 0, randomBytes(99)), 99);
    expect(await notFoundShape(await download(unfinished.id))).toEqual(unknown);
    expect(await notFoundShape(await download(unfinished.id, { Range: "bytes=0-1" }))).toEqual(unknown);

    const vars: Vars = { ATTACHMENT_TTL_SECONDS: "60" };
    const expiring = await createUpload(a.auth, 10, { vars });
    await expectPatched(await patch(a.auth, expiring.id, 0, randomBytes(10), { vars }), 10);
    expect((await download(expiring.id)).status).toBe(200);
    // Started after completion, the clock passes the attachment's expiry when moved by its TTL and a little.
    const clock = new ManualClock();
    clock.advance(60_100);
    // Expired but not yet swept: the blob is still in R2, and is not served.
    expect(await notFoundShape(await download(expiring.id, {}, { clock }))).toEqual(unknown);
    expect(await notFoundShape(await download(expiring.id, { Range: "bytes=0-1" }, { clock }))).toEqual(unknown);

    const deleted = await createUpload(a.auth, 10);
    await expectPatched(await patch(a.auth, deleted.id, 0, randomBytes(10)), 10);
    expect((await tus("DELETE", `/v1/attachments/${deleted.id}`, { auth: a.auth })).status).toBe(204);
    expect(await notFoundShape(await download(deleted.id))).toEqual(unknown);
  });
});
