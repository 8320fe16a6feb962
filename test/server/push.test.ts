// Push wake-ups, the relay's side that runs here: the VAPID key's configuration, the public key route, and
// registering, reading and removing a device's endpoint. The pushes themselves (to a push service listening on
// localhost) are in test/client/push.test.ts.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { MAX_PUSH_ENDPOINT_CHARS } from "../../src/protocol/push.ts";
import { call, expectError, fetchWithEnv, registerAccount } from "./helpers.ts";
import { linkDevice, primary } from "./ws-helpers.ts";

let jwk: JsonWebKey;
let withPush: Cloudflare.Env;

beforeAll(async () => {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  jwk = (await crypto.subtle.exportKey("jwk", pair.privateKey)) as JsonWebKey;
  withPush = {
    ...env,
    VAPID_PRIVATE_KEY_JWK: JSON.stringify(jwk),
    VAPID_SUBJECT: "mailto:ops@example.org",
  } as Cloudflare.Env;
});

const json = (body: unknown, auth?: string) => ({
  method: "PUT",
  headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
  body: JSON.stringify(body),
});

const storedEndpoint = (accountId: string, deviceId: number) =>
  runInDurableObject(
    env.ACCOUNT.getByName(accountId),
    (_o, state) =>
      state.storage.sql
        .exec<{ endpoint: string }>("SELECT endpoint FROM push_endpoints WHERE device_id = ?", deviceId)
        .toArray()[0]?.endpoint ?? null,
  );

describe("push configuration", () => {
  it("without a VAPID key the relay sends no pushes and says so: 501 PUSH_NOT_CONFIGURED", async () => {
    const a = await registerAccount();
    await expectError(await call("GET", "/v1/push/vapid-key"), 501, "PUSH_NOT_CONFIGURED");
    await expectError(
      await call("PUT", "/v1/devices/push", { auth: a.auth, body: { endpoint: "https://fcm.googleapis.com/x" } }),
      501,
      "PUSH_NOT_CONFIGURED",
    );
    expect(await storedEndpoint(a.accountId, 1)).toBeNull();
  });

  it("publishes the public half of the configured key, as an uncompressed P-256 point in base64url", async () => {
    const res = await fetchWithEnv(withPush, "/v1/push/vapid-key");
    expect(res.status).toBe(200);
    const { publicKey } = (await res.json()) as { publicKey: string };
    const point = Uint8Array.from(atob(publicKey.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    expect(point.length).toBe(65);
    expect(point[0]).toBe(4);
    // The same key WebCrypto exports as x and y.
    const pub = (await crypto.subtle.exportKey(
      "raw",
      await crypto.subtle.importKey(
        "jwk",
        { kty: "EC", crv: "P-256", x: jwk.x!, y: jwk.y! },
        { name: "ECDSA", namedCurve: "P-256" },
        true,
        ["verify"],
      ),
    )) as ArrayBuffer;
    expect([...point]).toEqual([...new Uint8Array(pub)]);
  });

  it("a bad key or subject makes every route answer 503 MISCONFIGURED naming it, never echoing the key", async () => {
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ VAPID_PRIVATE_KEY_JWK: "not json", VAPID_SUBJECT: "mailto:a@b.c" }, "VAPID_PRIVATE_KEY_JWK", /not JSON/],
      [
        { VAPID_PRIVATE_KEY_JWK: JSON.stringify({ kty: "RSA" }), VAPID_SUBJECT: "mailto:a@b.c" },
        "VAPID_PRIVATE_KEY_JWK",
        /P-256 JWK/,
      ],
      [
        { VAPID_PRIVATE_KEY_JWK: JSON.stringify({ ...jwk, d: "short" }), VAPID_SUBJECT: "mailto:a@b.c" },
        "VAPID_PRIVATE_KEY_JWK",
        /"d" must be 32 bytes/,
      ],
      [{ VAPID_PRIVATE_KEY_JWK: JSON.stringify(jwk) }, "VAPID_SUBJECT", /must be set/],
      [{ VAPID_SUBJECT: "ops team" }, "VAPID_SUBJECT", /mailto: or https:/],
      [{ PUSH_MIN_INTERVAL_SECONDS: "-1" }, "PUSH_MIN_INTERVAL_SECONDS", /between 0 and 3600/],
      [{ PUSH_TTL_SECONDS: "2419201" }, "PUSH_TTL_SECONDS", /between 0 and 2419200/],
    ];
    for (const [vars, variable, problem] of cases) {
      const res = await fetchWithEnv({ ...env, ...vars } as Cloudflare.Env, "/v1/push/vapid-key");
      const text = await res.text();
      expect(res.status, text).toBe(503);
      const body = JSON.parse(text) as { code: string; problems: { variable: string; problem: string }[] };
      expect(body.code).toBe("MISCONFIGURED");
      expect(body.problems.find((p) => p.variable === variable)?.problem, text).toMatch(problem);
      expect(text).not.toContain(jwk.d!);
    }
  });
});

describe("a device's push endpoint", () => {
  it("is registered, read back, replaced and removed by the device itself", async () => {
    const a = await registerAccount();
    expect(
      (
        await fetchWithEnv(
          withPush,
          "/v1/devices/push",
          json({ endpoint: "https://fcm.googleapis.com/fcm/send/one" }, a.auth),
        )
      ).status,
    ).toBe(204);
    expect(await storedEndpoint(a.accountId, 1)).toBe("https://fcm.googleapis.com/fcm/send/one");
    const got = await call("GET", "/v1/devices/push", { auth: a.auth });
    expect(await got.json()).toEqual({ endpoint: "https://fcm.googleapis.com/fcm/send/one" });
    expect(
      (
        await fetchWithEnv(
          withPush,
          "/v1/devices/push",
          json({ endpoint: "https://fcm.googleapis.com/fcm/send/two" }, a.auth),
        )
      ).status,
    ).toBe(204);
    expect(await storedEndpoint(a.accountId, 1)).toBe("https://fcm.googleapis.com/fcm/send/two");
    expect((await call("DELETE", "/v1/devices/push", { auth: a.auth })).status).toBe(204);
    expect(await storedEndpoint(a.accountId, 1)).toBeNull();
    await expectError(await call("GET", "/v1/devices/push", { auth: a.auth }), 404, "NOT_FOUND");
    // Removing it again is fine.
    expect((await call("DELETE", "/v1/devices/push", { auth: a.auth })).status).toBe(204);
  });

  it("refuses endpoints the relay should not call, and asks for credentials; nothing is stored", async () => {
    const a = await registerAccount();
    for (const endpoint of [
      "http://fcm.googleapis.com/x",
      "ftp://fcm.googleapis.com/x",
      "not a url",
      "https://user:pw@fcm.googleapis.com/x",
      `https://fcm.googleapis.com/${"x".repeat(MAX_PUSH_ENDPOINT_CHARS)}`,
    ]) {
      await expectError(
        await fetchWithEnv(withPush, "/v1/devices/push", json({ endpoint }, a.auth)),
        400,
        "BAD_REQUEST",
      );
    }
    await expectError(await fetchWithEnv(withPush, "/v1/devices/push", json({ nope: 1 }, a.auth)), 400, "BAD_REQUEST");
    await expectError(
      await fetchWithEnv(withPush, "/v1/devices/push", json({ endpoint: "https://fcm.googleapis.com/x" })),
      401,
      "UNAUTHORIZED",
    );
    await expectError(await call("GET", "/v1/devices/push"), 401, "UNAUTHORIZED");
    expect(await storedEndpoint(a.accountId, 1)).toBeNull();
  });

  it("goes with its device when the device is removed", async () => {
    const acct = await registerAccount();
    const d1 = primary(acct);
    const d2 = await linkDevice(acct, d1.registrationId === 16383 ? 1 : d1.registrationId + 1);
    expect(
      (
        await fetchWithEnv(
          withPush,
          "/v1/devices/push",
          json({ endpoint: "https://fcm.googleapis.com/fcm/send/d2" }, d2.auth),
        )
      ).status,
    ).toBe(204);
    expect(await storedEndpoint(acct.accountId, d2.deviceId)).toBe("https://fcm.googleapis.com/fcm/send/d2");
    expect((await call("DELETE", `/v1/devices/${d2.deviceId}`, { auth: d1.auth })).status).toBe(204);
    expect(await storedEndpoint(acct.accountId, d2.deviceId)).toBeNull();
  });
});
