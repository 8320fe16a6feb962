// Upload limits that bind however small the uploads: attachments held per account (count), upload creation per
// device per window, and the minimum byte reservation that makes empty uploads count against the quotas.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { utf8 } from "../../src/crypto/bytes.ts";
import { sha256Hex } from "../../src/server/account/credentials.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { createUpload, indexRow, tus, uploadPath } from "./attachments-helpers.ts";
import { expectError, registerAccount } from "./helpers.ts";
import { linkDevice, primary } from "./ws-helpers.ts";

const MiB = 1024 * 1024;
const create = (auth: string, length: number, vars: Record<string, string>) =>
  tus("POST", "/v1/attachments/tus/", { auth, vars, headers: { "Upload-Length": String(length) } });

describe("attachments per account", () => {
  it("empty uploads beyond MAX_ATTACHMENTS_PER_ACCOUNT are refused with 409 TOO_MANY_ATTACHMENTS", async () => {
    const a = await registerAccount();
    const vars = { MAX_ATTACHMENTS_PER_ACCOUNT: "5" };
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await createUpload(a.auth, 0, { vars })).id);
    const refused = await expectError(await create(a.auth, 0, vars), 409, "TOO_MANY_ATTACHMENTS");
    expect(refused).toMatchObject({ limit: 5, count: 5 });
    // A non-empty upload counts the same.
    await expectError(await create(a.auth, 1000, vars), 409, "TOO_MANY_ATTACHMENTS");
    // Another account has its own count; deleting an attachment makes room.
    const b = await registerAccount();
    await createUpload(b.auth, 0, { vars });
    expect((await tus("DELETE", uploadPath(made[0]!), { auth: a.auth, vars })).status).toBe(204);
    await createUpload(a.auth, 0, { vars });
    await expectError(await create(a.auth, 0, vars), 409, "TOO_MANY_ATTACHMENTS");
  });

  it("concurrent creations cannot together pass the count", async () => {
    const a = await registerAccount();
    const vars = { MAX_ATTACHMENTS_PER_ACCOUNT: "3" };
    const results = await Promise.all(Array.from({ length: 8 }, () => create(a.auth, 0, vars)));
    expect(results.map((r) => r.status).sort()).toEqual([201, 201, 201, 409, 409, 409, 409, 409]);
  });
});

describe("upload creation per device", () => {
  it("a device creates at most UPLOADS_PER_DEVICE_LIMIT uploads per window: then 429 with Retry-After", async () => {
    const a = await registerAccount();
    const vars = { UPLOADS_PER_DEVICE_LIMIT: "4", UPLOADS_PER_DEVICE_WINDOW_SECONDS: "3600" };
    const first = await createUpload(a.auth, 0, { vars });
    // The device's limiter object, named as the relay names it, reads a clock the test moves.
    const row = (await indexRow(a.accountId, first.id)) as { device_uid: number };
    const limiter = env.RATE_LIMITER.getByName(
      await sha256Hex(utf8(`cipherpost-device:${a.accountId}:${row.device_uid}`)),
    );
    const clock = new ManualClock(Date.now());
    await runInDurableObject(limiter, (o) => {
      o.clock = clock;
    });
    for (let i = 0; i < 3; i++) await createUpload(a.auth, 0, { vars });
    const res = await create(a.auth, 0, vars);
    await expectError(res, 429, "RATE_LIMITED");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(3000);
    // Another device of the same account has its own allowance.
    const other = await linkDevice(a, primary(a).registrationId === 16383 ? 1 : primary(a).registrationId + 1);
    await createUpload(other.auth, 0, { vars });
    // An hour later the device may create again.
    clock.advance(3600_000 + 1);
    await createUpload(a.auth, 0, { vars });
  });
});

describe("minimum reservation", () => {
  it("every upload counts at least MIN_UPLOAD_RESERVATION_BYTES against the storage quota, empty ones too", async () => {
    const a = await registerAccount();
    const vars = { MIN_UPLOAD_RESERVATION_BYTES: String(MiB), STORAGE_QUOTA_BYTES: String(4 * MiB) };
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await createUpload(a.auth, 0, { vars })).id);
    const refused = await expectError(await create(a.auth, 0, vars), 413, "QUOTA_EXCEEDED");
    expect(refused).toMatchObject({ quota: "storage", limitBytes: 4 * MiB, usedBytes: 4 * MiB });
    // An upload larger than the minimum counts its length.
    expect((await tus("DELETE", uploadPath(ids[0]!), { auth: a.auth, vars })).status).toBe(204);
    await expectError(await create(a.auth, MiB + 1, vars), 413, "QUOTA_EXCEEDED");
    await createUpload(a.auth, 10, { vars });
  });

  it("unfinished small uploads reserve the minimum against UPLOAD_QUOTA_BYTES", async () => {
    const a = await registerAccount();
    const vars = { MIN_UPLOAD_RESERVATION_BYTES: String(MiB), UPLOAD_QUOTA_BYTES: String(2 * MiB) };
    await createUpload(a.auth, 100, { vars });
    await createUpload(a.auth, 1, { vars });
    const refused = await expectError(await create(a.auth, 1, vars), 413, "QUOTA_EXCEEDED");
    expect(refused).toMatchObject({ quota: "upload", limitBytes: 2 * MiB, usedBytes: 2 * MiB });
    // Without a minimum the same three fit in a few hundred bytes.
    const b = await registerAccount();
    const free = { MIN_UPLOAD_RESERVATION_BYTES: "0", UPLOAD_QUOTA_BYTES: "300" };
    for (const n of [100, 1, 1]) await createUpload(b.auth, n, { vars: free });
  });
});
