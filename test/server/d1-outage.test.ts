// A D1 outage never stops a device from authenticating: the account's Durable Object answers that. Directory
// changes made meanwhile wait in the object's outbox and reach D1 from its alarm once D1 answers again.
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { fromBase64, fromUtf8, toBase64, utf8 } from "../../src/crypto/bytes.ts";
import { generateEcKeyPair } from "../../src/crypto/keys.ts";
import { basic, callJson, deviceKeys, fetchWithEnv, registerAccount } from "./helpers.ts";

const down = () => {
  throw new Error("D1_ERROR: the database is unavailable");
};
const brokenD1 = {
  prepare: down,
  batch: () => Promise.reject(new Error("D1_ERROR: unavailable")),
  exec: down,
} as unknown as D1Database;
const brokenEnv = { ...env, DB_0: brokenD1, DB_1: brokenD1, DB_2: brokenD1 } as Cloudflare.Env;
const fetchBroken = (path: string, init: RequestInit = {}) => fetchWithEnv(brokenEnv, path, init);

async function breakObject(accountId: string) {
  await runInDurableObject(env.ACCOUNT.getByName(accountId), (o) => {
    (o as unknown as { env: Cloudflare.Env }).env = brokenEnv;
  });
}
async function healObject(accountId: string) {
  await runInDurableObject(env.ACCOUNT.getByName(accountId), (o) => {
    (o as unknown as { env: Cloudflare.Env }).env = env;
  });
}

describe("while D1 is down", () => {
  it("devices still authenticate, list devices and start links; directory reads answer 503 UNAVAILABLE", async () => {
    const a = await registerAccount();
    await breakObject(a.accountId);
    const who = await fetchBroken("/v1/accounts/whoami", { headers: { authorization: a.auth } });
    expect(who.status).toBe(200);
    expect(await who.json()).toEqual({ accountId: a.accountId, deviceId: 1 });
    expect((await fetchBroken("/v1/devices", { headers: { authorization: a.auth } })).status).toBe(200);
    const wrong = await fetchBroken("/v1/devices", {
      headers: { authorization: basic(a.accountId, 1, "B".repeat(24)) },
    });
    expect(wrong.status).toBe(401);
    const counts = await fetchBroken("/v2/keys", { headers: { authorization: a.auth } });
    expect(counts.status).toBe(503);
    expect(((await counts.json()) as { code: string }).code).toBe("UNAVAILABLE");
    expect(counts.headers.get("retry-after")).toBe("1");
    const health = await fetchBroken("/health");
    expect(health.status).toBe(503);
    expect(((await health.json()) as { status: string; shards: Record<string, boolean> }).shards).toEqual({
      DB_0: false,
      DB_1: false,
      DB_2: false,
    });
    await healObject(a.accountId);
  });

  it("a device linked during the outage reaches D1 from the alarm once D1 answers", async () => {
    const a = await registerAccount();
    await breakObject(a.accountId);
    const start = await fetchBroken("/v1/devices/link", { method: "POST", headers: { authorization: a.auth } });
    expect(start.status).toBe(200);
    const { linkToken } = (await start.json()) as { linkToken: string };
    // The hand-shake (request, approval, envelope) lives in the account's object only: D1 is not asked.
    const publicKey = toBase64(generateEcKeyPair().publicKey);
    const send = (method: string, path: string, body: unknown, auth?: string) =>
      fetchBroken(path, {
        method,
        headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
        body: JSON.stringify(body),
      });
    expect(
      (await send("PUT", "/v1/devices/link/request", { accountId: a.accountId, linkToken, publicKey })).status,
    ).toBe(204);
    const sealed = toBase64(utf8("hand-over")); // opaque to the relay
    expect(
      (await send("POST", "/v1/devices/link/approve", { linkToken, publicKey, envelope: sealed }, a.auth)).status,
    ).toBe(204);
    const env2 = (await (
      await send("POST", "/v1/devices/link/envelope", { accountId: a.accountId, linkToken, publicKey })
    ).json()) as { envelope: string };
    expect(fromUtf8(fromBase64(env2.envelope))).toBe("hand-over");
    const keys = deviceKeys(a.identity, { preKeys: 2, pqPreKeys: 1 });
    const linked = await fetchBroken("/v1/devices/link", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ accountId: a.accountId, linkToken, ...keys }),
    });
    expect(linked.status).toBe(200);
    // The new device authenticates at once, D1 or not.
    expect(
      (await fetchBroken("/v1/accounts/whoami", { headers: { authorization: basic(a.accountId, 2, keys.password) } }))
        .status,
    ).toBe(200);
    const stub = env.ACCOUNT.getByName(a.accountId);
    expect(await stub.pendingOutbox()).toBe(1);
    // D1 comes back: the alarm drains the outbox and the new device's keys are served.
    await healObject(a.accountId);
    // Due now, and the alarm set well ahead, so the forced run below is the drain (the retry's own alarm could
    // otherwise fire first on a slow machine and leave nothing for it).
    await runInDurableObject(stub, async (_o, state) => {
      state.storage.sql.exec("UPDATE outbox SET not_before = 0");
      await state.storage.setAlarm(Date.now() + 60_000);
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.pendingOutbox()).toBe(0);
    const b = await registerAccount();
    const bundle = await callJson<{ devices: { deviceId: number; preKey?: { keyId: number } }[] }>(
      "GET",
      `/v2/keys/${a.accountId}/2`,
      { auth: b.auth },
    );
    expect(bundle.devices[0]!.preKey?.keyId).toBe(keys.preKeys[0]!.keyId);
  });
});
