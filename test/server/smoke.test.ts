// The relay answers: /health with every shard and bucket, a registration that authenticates, the API document.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { call, callJson, fetchWithEnv, registerAccount } from "./helpers.ts";

describe("smoke", () => {
  it("health answers ok with every shard and bucket, naming bindings only", async () => {
    const h = await callJson<{ status: string; shards: Record<string, boolean>; r2: Record<string, boolean> }>(
      "GET",
      "/health",
    );
    expect(h).toEqual({
      status: "ok",
      config: { valid: true, problems: [] },
      shards: { DB_0: true, DB_1: true, DB_2: true },
      r2: { KEY_PAGES: true, ATTACHMENTS: true },
    });
  });

  it("health says degraded (503) when a bucket does not answer", async () => {
    const broken = { head: () => Promise.reject(new Error("R2 unavailable")) } as unknown as R2Bucket;
    const res = await fetchWithEnv({ ...env, ATTACHMENTS: broken } as Cloudflare.Env, "/health");
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: "degraded", r2: { KEY_PAGES: true, ATTACHMENTS: false } });
  });

  it("registers and authenticates", async () => {
    const a = await registerAccount();
    expect(a.deviceId).toBe(1);
    const who = await callJson("GET", "/v1/accounts/whoami", { auth: a.auth });
    expect(who).toEqual({ accountId: a.accountId, deviceId: 1 });
    expect((await call("GET", "/v1/openapi.json")).status).toBe(200);
  });
});
