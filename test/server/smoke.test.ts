import { describe, expect, it } from "vitest";
import { call, callJson, registerAccount } from "./helpers.ts";

describe("smoke", () => {
  it("health answers ok with every shard", async () => {
    const h = await callJson<{ status: string; shards: Record<string, boolean> }>("GET", "/health");
    expect(h.status).toBe("ok");
    expect(Object.keys(h.shards).sort()).toEqual(["DB_0", "DB_1", "DB_2"]);
  });
  it("registers and authenticates", async () => {
    const a = await registerAccount();
    expect(a.deviceId).toBe(1);
    const who = await callJson("GET", "/v1/accounts/whoami", { auth: a.auth });
    expect(who).toEqual({ accountId: a.accountId, deviceId: 1 });
    expect((await call("GET", "/v1/openapi.json")).status).toBe(200);
  });
});
