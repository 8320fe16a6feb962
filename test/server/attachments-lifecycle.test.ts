// Lifecycle: tus termination, early deletion by the uploading account, the upload object's expiry alarm, the
// cron sweep of expired attachments and uploads, and account deletion. Expiry moves a ManualClock (the routes',
// the upload object's, the sweep's `now`) and fires alarms with runDurableObjectAlarm: nothing waits for time.
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { scheduled } from "../../src/server/index.ts";
import { ManualClock } from "../support/manual-clock.ts";
import {
  SMALL,
  bytesOf,
  createUpload,
  download,
  expectPatched,
  expectSameBytes,
  indexRow,
  patch,
  randomBytes,
  tus,
  uploadFrom,
  uploadPath,
  useUploadClock,
} from "./attachments-helpers.ts";
import { call, registerAccount } from "./helpers.ts";

const MiB = 1024 * 1024;
const r2Has = async (id: string) => (await env.ATTACHMENTS.head(`att/${id}`)) !== null;

describe("termination", () => {
  it("DELETE on an unfinished upload frees it: HEAD and PATCH answer 404, the index entry goes", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 7 * MiB, { vars: SMALL });
    await uploadFrom(a.auth, id, randomBytes(6 * MiB), 3 * MiB, 0, SMALL);
    const res = await tus("DELETE", uploadPath(id), { auth: a.auth });
    expect(res.status).toBe(204);
    expect(res.headers.get("tus-resumable")).toBe("1.0.0");
    expect((await tus("HEAD", uploadPath(id), { auth: a.auth })).status).toBe(404);
    expect((await patch(a.auth, id, 6 * MiB, randomBytes(10))).status).toBe(404);
    expect((await tus("DELETE", uploadPath(id), { auth: a.auth })).status).toBe(404);
    expect(await indexRow(a.accountId, id)).toBeNull();
    expect((await download(id)).status).toBe(404);
  });

  it("DELETE on a finished upload deletes the attachment", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 100);
    await expectPatched(await patch(a.auth, id, 0, randomBytes(100)), 100);
    expect(await r2Has(id)).toBe(true);
    expect((await tus("DELETE", uploadPath(id), { auth: a.auth })).status).toBe(204);
    expect(await r2Has(id)).toBe(false);
    expect((await download(id)).status).toBe(404);
    expect(await indexRow(a.accountId, id)).toBeNull();
  });
});

describe("early deletion", () => {
  it("any device of the uploading account may delete an attachment; another account gets 404 and deletes nothing", async () => {
    const a = await registerAccount();
    const b = await registerAccount();
    const data = randomBytes(500);
    const { id } = await createUpload(a.auth, data.length);
    await expectPatched(await patch(a.auth, id, 0, data), 500);
    const theirs = await tus("DELETE", `/v1/attachments/${id}`, { auth: b.auth });
    expect(theirs.status).toBe(404);
    expectSameBytes(await bytesOf(await download(id)), data);
    expect((await tus("DELETE", `/v1/attachments/${id}`)).status).toBe(401);
    expect((await tus("DELETE", `/v1/attachments/${id}`, { auth: a.auth })).status).toBe(204);
    expect((await download(id)).status).toBe(404);
    expect((await tus("DELETE", `/v1/attachments/${id}`, { auth: a.auth })).status).toBe(404);
  });

  it("deleting an unfinished upload by its attachment id aborts it", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 1000);
    await expectPatched(await patch(a.auth, id, 0, randomBytes(10)), 10);
    expect((await tus("DELETE", `/v1/attachments/${id}`, { auth: a.auth })).status).toBe(204);
    expect((await tus("HEAD", uploadPath(id), { auth: a.auth })).status).toBe(404);
    expect(await indexRow(a.accountId, id)).toBeNull();
  });
});

describe("expiry", () => {
  it("an unfinished upload's alarm aborts it after UPLOAD_TTL_SECONDS and frees its quota", async () => {
    const a = await registerAccount();
    // The deadline is a minute of the clock's time, so the runtime's own alarm never fires while the test runs.
    const clock = new ManualClock();
    const vars = { ...SMALL, UPLOAD_TTL_SECONDS: "60", UPLOAD_QUOTA_BYTES: String(8 * MiB) };
    const bytes = randomBytes(6 * MiB);
    const { id, res } = await createUpload(a.auth, 8 * MiB, { vars, clock });
    expect(Date.parse(res.headers.get("upload-expires")!)).toBeLessThanOrEqual(clock.now() + 60_000);
    await useUploadClock(id, clock);
    await expectPatched(await patch(a.auth, id, 0, bytes, { vars }), 6 * MiB);
    expect(
      (await tus("POST", "/v1/attachments/tus/", { auth: a.auth, vars, headers: { "Upload-Length": "1" } })).status,
    ).toBe(413);
    clock.advance(60_100);
    // Past its deadline it is gone to the client at once, before the alarm has run.
    expect((await tus("HEAD", uploadPath(id), { auth: a.auth })).status).toBe(404);
    expect((await patch(a.auth, id, 6 * MiB, randomBytes(10), { vars })).status).toBe(404);
    // The alarm is due by the object's clock: run it now.
    expect(await runDurableObjectAlarm(env.UPLOAD.getByName(id))).toBe(true);
    expect(await indexRow(a.accountId, id)).toBeNull();
    await createUpload(a.auth, 8 * MiB, { vars });
    // The alarm left nothing to wake up for.
    expect(await runDurableObjectAlarm(env.UPLOAD.getByName(id))).toBe(false);
  });

  it("an attachment expires ATTACHMENT_TTL_SECONDS after completion; the cron sweep deletes its blob and entry", async () => {
    const a = await registerAccount();
    const vars = { ATTACHMENT_TTL_SECONDS: "60" };
    const { id } = await createUpload(a.auth, 100, { vars });
    await expectPatched(await patch(a.auth, id, 0, randomBytes(100), { vars }), 100);
    expect(await indexRow(a.accountId, id)).toMatchObject({ state: "stored" });
    const keep = await createUpload(a.auth, 100);
    await expectPatched(await patch(a.auth, keep.id, 0, randomBytes(100)), 100);
    // Started after both completed, the clock is at or past every time stored for them.
    const clock = new ManualClock();
    clock.advance(60_100);
    expect((await download(id, {}, { clock })).status).toBe(404);
    expect(await r2Has(id)).toBe(true);
    const swept = await scheduled(env, clock.now());
    expect(swept.attachments).toBeGreaterThanOrEqual(1);
    expect(await r2Has(id)).toBe(false);
    expect(await indexRow(a.accountId, id)).toBeNull();
    // The unexpired one stays, and a second sweep finds nothing of it.
    expect(await r2Has(keep.id)).toBe(true);
    await scheduled(env, clock.now());
    expect((await download(keep.id, {}, { clock })).status).toBe(200);
  });

  it("the sweep also removes an unfinished upload past its deadline whose alarm has not run", async () => {
    const a = await registerAccount();
    const vars = { UPLOAD_TTL_SECONDS: "60" };
    const { id } = await createUpload(a.auth, 100, { vars });
    await expectPatched(await patch(a.auth, id, 0, randomBytes(10), { vars }), 10);
    // A sweep a minute and more from now, as if the object's alarm had failed to run.
    // (The sweep's count covers every account's uploads, other tests' too; this upload is the one that matters.)
    await scheduled(env, Date.now() + 30_000);
    expect(await indexRow(a.accountId, id)).not.toBeNull();
    expect((await scheduled(env, Date.now() + 61_000)).attachments).toBeGreaterThanOrEqual(1);
    expect(await indexRow(a.accountId, id)).toBeNull();
    // The object was told to drop its state: no alarm is left.
    expect(await runDurableObjectAlarm(env.UPLOAD.getByName(id))).toBe(false);
  });

  it("the completed upload's object drops its own state once the attachment expires", async () => {
    const a = await registerAccount();
    const vars = { ATTACHMENT_TTL_SECONDS: "60" };
    const clock = new ManualClock();
    const { id } = await createUpload(a.auth, 10, { vars, clock });
    await useUploadClock(id, clock);
    await expectPatched(await patch(a.auth, id, 0, randomBytes(10), { vars }), 10);
    expect((await tus("HEAD", uploadPath(id), { auth: a.auth })).status).toBe(200);
    clock.advance(60_100);
    expect(await runDurableObjectAlarm(env.UPLOAD.getByName(id))).toBe(true);
    expect((await tus("HEAD", uploadPath(id), { auth: a.auth })).status).toBe(404);
    expect(await runDurableObjectAlarm(env.UPLOAD.getByName(id))).toBe(false);
    // Its own state is gone; the blob and the index entry are the sweep's to delete.
    expect(await indexRow(a.accountId, id)).toMatchObject({ state: "stored" });
    await scheduled(env, clock.now());
    expect(await indexRow(a.accountId, id)).toBeNull();
  });
});

describe("account deletion", () => {
  it("deletes the account's attachments and unfinished uploads, and nobody else's", async () => {
    const a = await registerAccount();
    const other = await registerAccount();
    const done = await createUpload(a.auth, 100);
    await expectPatched(await patch(a.auth, done.id, 0, randomBytes(100)), 100);
    const pending = await createUpload(a.auth, 8 * MiB, { vars: SMALL });
    await expectPatched(await patch(a.auth, pending.id, 0, randomBytes(6 * MiB), { vars: SMALL }), 6 * MiB);
    const theirs = await createUpload(other.auth, 100);
    await expectPatched(await patch(other.auth, theirs.id, 0, randomBytes(100)), 100);

    const res = await call("DELETE", "/v1/accounts/me", { auth: a.auth });
    expect(res.status).toBeLessThan(300);

    expect((await download(done.id)).status).toBe(404);
    expect(await r2Has(done.id)).toBe(false);
    expect(await indexRow(a.accountId, done.id)).toBeNull();
    expect(await indexRow(a.accountId, pending.id)).toBeNull();
    // The unfinished upload's object holds nothing any more (no alarm left to abort it).
    expect(await runDurableObjectAlarm(env.UPLOAD.getByName(pending.id))).toBe(false);
    expect(await runDurableObjectAlarm(env.UPLOAD.getByName(done.id))).toBe(false);
    expect((await download(theirs.id)).status).toBe(200);
  });
});
