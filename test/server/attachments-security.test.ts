// Who may do what with an upload: creation needs a device; HEAD, PATCH and termination belong to the device that
// created the upload (anyone else sees the 404 of an unknown id); downloads need only the id.
import { describe, expect, it } from "vitest";
import { createUpload, download, expectPatched, patch, randomBytes, tus, uploadPath } from "./attachments-helpers.ts";
import { basic, registerAccount } from "./helpers.ts";

describe("upload capabilities", () => {
  it("creation without device credentials, or with wrong ones, is 401", async () => {
    expect((await tus("POST", "/v1/attachments/tus/", { headers: { "Upload-Length": "10" } })).status).toBe(401);
    const a = await registerAccount();
    const wrong = basic(a.accountId, 1, "AAAAAAAAAAAAAAAAAAAAAAAA");
    expect(
      (await tus("POST", "/v1/attachments/tus/", { auth: wrong, headers: { "Upload-Length": "10" } })).status,
    ).toBe(401);
  });

  it("another account cannot HEAD, PATCH or terminate an upload, and learns nothing from trying", async () => {
    const a = await registerAccount();
    const b = await registerAccount();
    const { id } = await createUpload(a.auth, 100);
    await expectPatched(await patch(a.auth, id, 0, randomBytes(10)), 10);
    const unknown = "f".repeat(32);
    for (const target of [id, unknown]) {
      expect((await tus("HEAD", uploadPath(target), { auth: b.auth })).status).toBe(404);
      const p = await patch(b.auth, target, 10, randomBytes(10));
      expect(p.status).toBe(404);
      expect(((await p.json()) as { message: string }).message).toBe("no such upload");
      expect((await tus("DELETE", uploadPath(target), { auth: b.auth })).status).toBe(404);
    }
    // Nothing changed for the owner.
    const head = await tus("HEAD", uploadPath(id), { auth: a.auth });
    expect(head.headers.get("upload-offset")).toBe("10");
  });

  it("HEAD, PATCH and DELETE on an upload need credentials", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 100);
    expect((await tus("HEAD", uploadPath(id))).status).toBe(401);
    expect(
      (
        await tus("PATCH", uploadPath(id), {
          body: randomBytes(1),
          headers: { "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0" },
        })
      ).status,
    ).toBe(401);
    expect((await tus("DELETE", uploadPath(id))).status).toBe(401);
    // Credentials are checked before the tus version, as on every other route.
    expect((await tus("POST", "/v1/attachments/tus/", { noTus: true, headers: { "Upload-Length": "1" } })).status).toBe(
      401,
    );
  });

  it("a malformed upload id is the same 404", async () => {
    const a = await registerAccount();
    for (const bad of ["ABCDEF0123456789ABCDEF0123456789", "123", "../../etc"]) {
      expect((await tus("HEAD", uploadPath(bad), { auth: a.auth })).status).toBe(404);
    }
  });

  it("a finished attachment is readable by anyone holding the id, without credentials", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 5);
    await expectPatched(await patch(a.auth, id, 0, new Uint8Array([1, 2, 3, 4, 5])), 5);
    const res = await download(id);
    expect(res.status).toBe(200);
    expect([...new Uint8Array(await res.arrayBuffer())]).toEqual([1, 2, 3, 4, 5]);
  });

  it("the R2 key of an attachment does not name its account", async () => {
    const a = await registerAccount();
    const { id } = await createUpload(a.auth, 1);
    await expectPatched(await patch(a.auth, id, 0, new Uint8Array([7])), 1);
    const { env } = await import("cloudflare:workers");
    const listed = await env.ATTACHMENTS.list({ prefix: "att/" });
    expect(listed.objects.map((o) => o.key)).toContain(`att/${id}`);
    expect(listed.objects.some((o) => o.key.includes(a.accountId))).toBe(false);
  });
});
