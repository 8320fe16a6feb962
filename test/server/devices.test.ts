// Devices: linking end to end (request, approval, the sealed hand-over), the device limit, registration id
// clashes, removal and account deletion. The hand-shake's own rules are in linking.test.ts.
import { env } from "cloudflare:workers";
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { fromBase64, toBase64 } from "../../src/crypto/bytes.ts";
import vectors from "../vectors/libsignal-registration.json";
import {
  basic,
  call,
  callJson,
  deviceKeys,
  expectError,
  newPassword,
  registerAccount,
  type Identity,
  type TestAccount,
} from "./helpers.ts";
import { approvedLink, completeLink, registerLinked, startLink } from "./link-helpers.ts";

describe("linking a device", () => {
  it("hands the identity key over sealed to the approved device and registers it with its own keys", async () => {
    const a = await registerAccount();
    const link = await startLink(a);
    expect(fromBase64(link.linkToken)).toHaveLength(32);
    expect(link.expiresAt - Date.now()).toBeGreaterThan(590_000);
    const { res, keys, identity } = await completeLink(link);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ accountId: a.accountId, deviceId: 2 });
    expect(identity.publicKey).toEqual(a.identity.publicKey);
    const auth2 = basic(a.accountId, 2, keys.password);
    expect(await callJson("GET", "/v1/accounts/whoami", { auth: auth2 })).toEqual({
      accountId: a.accountId,
      deviceId: 2,
    });
    const list = await callJson<{ devices: { deviceId: number; registrationId: number }[] }>("GET", "/v1/devices", {
      auth: a.auth,
    });
    expect(list.devices.map((d) => d.deviceId)).toEqual([1, 2]);
    // Someone else can now fetch both devices' bundles, the new one with its own keys.
    const b = await registerAccount();
    const bundle = await callJson<{
      identityKey: string;
      devices: { deviceId: number; registrationId: number; signedPreKey: unknown }[];
    }>("GET", `/v2/keys/${a.accountId}/*`, { auth: b.auth });
    expect(bundle.identityKey).toBe(toBase64(a.identity.publicKey));
    expect(bundle.devices.map((d) => d.deviceId)).toEqual([1, 2]);
    expect(bundle.devices[1]!.signedPreKey).toEqual(keys.signedPreKey);
    expect(bundle.devices[1]!.registrationId).toBe(keys.registrationId);
  });

  it("a token for one account does not link to another", async () => {
    const a = await registerAccount();
    const b = await registerAccount();
    const link = await startLink(a);
    await approvedLink(link);
    await expectError(
      await call("PUT", "/v1/devices/link", {
        body: { accountId: b.accountId, linkToken: link.linkToken, ...deviceKeys(b.identity) },
      }),
      403,
      "LINK_TOKEN_INVALID",
    );
  });

  it("refuses a new device whose keys are not signed by the account identity key, and keeps the token", async () => {
    const a = await registerAccount();
    const link = await startLink(a);
    const { identity } = await approvedLink(link);
    const stranger = (await registerAccount()).identity;
    await expectError(
      await call("PUT", "/v1/devices/link", {
        body: { accountId: a.accountId, linkToken: link.linkToken, ...deviceKeys(stranger) },
      }),
      422,
      "INVALID_SIGNATURE",
    );
    expect((await registerLinked(link, identity)).res.status).toBe(200);
  });

  it("refuses a registration id another device of the account uses", async () => {
    const a = await registerAccount();
    const link = await startLink(a);
    const { identity } = await approvedLink(link);
    const { res } = await registerLinked(link, identity, a.keys.registrationId);
    await expectError(res, 409, "REGISTRATION_ID_TAKEN");
    expect((await registerLinked(link, identity)).res.status).toBe(200);
  });

  it("allows at most MAX_DEVICES devices (6) and gives the lowest free id", async () => {
    const a = await registerAccount();
    const passwords: string[] = [];
    for (let i = 2; i <= 6; i++) {
      const { res, keys } = await completeLink(await startLink(a), 100 + i);
      expect(await res.json()).toEqual({ accountId: a.accountId, deviceId: i });
      passwords[i] = keys.password;
    }
    await expectError((await completeLink(await startLink(a), 200)).res, 409, "TOO_MANY_DEVICES");
    // Removing device 3 frees id 3, which the next link takes.
    expect((await call("DELETE", "/v1/devices/3", { auth: a.auth })).status).toBe(204);
    const { res } = await completeLink(await startLink(a), 201);
    expect(await res.json()).toEqual({ accountId: a.accountId, deviceId: 3 });
  });

  it("limits link tokens per account", async () => {
    const a = await registerAccount();
    for (let i = 0; i < 10; i++) await startLink(a);
    const res = await call("POST", "/v1/devices/link", { auth: a.auth });
    await expectError(res, 429, "RATE_LIMITED");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("links a device whose keys libsignal made", async () => {
    const acct = vectors.accounts[0]!;
    const identity: Identity = {
      privateKey: fromBase64(acct.identityPrivateKey),
      publicKey: fromBase64(acct.identityKey),
    };
    const a = await registerAccount();
    // Register the libsignal identity as its own account first (through the registration fixture test path).
    const { registrationBody } = await import("./helpers.ts");
    const password = newPassword();
    const body = await registrationBody(identity, { ...deviceKeys(identity), password });
    const r = await callJson<{ accountId: string }>("POST", "/v1/registration", { body });
    const owner: TestAccount = { ...a, accountId: r.accountId, identity, auth: basic(r.accountId, 1, password) };
    const link = await startLink(owner);
    await approvedLink(link);
    const ld = vectors.linkedDevice;
    const res = await call("PUT", "/v1/devices/link", {
      body: {
        accountId: r.accountId,
        linkToken: link.linkToken,
        registrationId: ld.registrationId,
        password: newPassword(),
        signedPreKey: ld.signedPreKey,
        pqLastResortPreKey: ld.pqLastResortPreKey,
        preKeys: ld.preKeys,
        pqPreKeys: ld.pqPreKeys,
      },
    });
    expect(res.status).toBe(200);
  });
});

describe("removing devices and accounts", () => {
  it("removing a linked device ends its credentials and its keys at once", async () => {
    const a = await registerAccount();
    const { keys } = await completeLink(await startLink(a));
    const auth2 = basic(a.accountId, 2, keys.password);
    expect((await call("DELETE", "/v1/devices/2", { auth: a.auth })).status).toBe(204);
    await expectError(await call("GET", "/v1/accounts/whoami", { auth: auth2 }), 401, "UNAUTHORIZED");
    const b = await registerAccount();
    const bundle = await callJson<{ devices: { deviceId: number }[] }>("GET", `/v2/keys/${a.accountId}/*`, {
      auth: b.auth,
    });
    expect(bundle.devices.map((d) => d.deviceId)).toEqual([1]);
    await expectError(await call("GET", `/v2/keys/${a.accountId}/2`, { auth: b.auth }), 404, "NOT_FOUND");
    // Its directory rows are gone from D1.
    const rows = await Promise.all(
      [env.DB_0, env.DB_1, env.DB_2].map((db) =>
        db
          .prepare("SELECT count(*) AS n FROM devices WHERE account_id = ?1 AND device_id = 2")
          .bind(a.accountId)
          .first<{ n: number }>(),
      ),
    );
    expect(rows.reduce((s, r) => s + r!.n, 0)).toBe(0);
  });

  it("device 1 cannot be removed, a linked device cannot remove another, and unknown devices are 404", async () => {
    const a = await registerAccount();
    const d2 = await completeLink(await startLink(a), 3001);
    const d3 = await completeLink(await startLink(a), 3002);
    await expectError(await call("DELETE", "/v1/devices/1", { auth: a.auth }), 403, "PRIMARY_DEVICE");
    await expectError(
      await call("DELETE", "/v1/devices/3", { auth: basic(a.accountId, 2, d2.keys.password) }),
      403,
      "FORBIDDEN",
    );
    await expectError(await call("DELETE", "/v1/devices/9", { auth: a.auth }), 404, "NOT_FOUND");
    // A linked device may remove itself.
    expect((await call("DELETE", "/v1/devices/3", { auth: basic(a.accountId, 3, d3.keys.password) })).status).toBe(204);
  });

  it("deleting the account removes its credentials, directory rows, key pages and object state", async () => {
    const a = await registerAccount({ preKeys: 4, pqPreKeys: 3 });
    await completeLink(await startLink(a));
    const pagesBefore = await env.KEY_PAGES.list({ prefix: `kem/${a.accountId}/` });
    expect(pagesBefore.objects.length).toBeGreaterThan(0);
    expect((await call("DELETE", "/v1/accounts/me", { auth: a.auth })).status).toBe(204);
    await expectError(await call("GET", "/v1/accounts/whoami", { auth: a.auth }), 401, "UNAUTHORIZED");
    const b = await registerAccount();
    await expectError(await call("GET", `/v2/keys/${a.accountId}/*`, { auth: b.auth }), 404, "NOT_FOUND");
    for (const table of [
      "accounts",
      "devices",
      "signed_prekeys",
      "kem_last_resort_keys",
      "ec_prekeys",
      "kem_prekey_pages",
      "kem_prekey_ids",
    ]) {
      for (const db of [env.DB_0, env.DB_1, env.DB_2]) {
        const r = await db
          .prepare(`SELECT count(*) AS n FROM ${table} WHERE account_id = ?1`)
          .bind(a.accountId)
          .first<{ n: number }>();
        expect(r!.n, table).toBe(0);
      }
    }
    expect((await env.KEY_PAGES.list({ prefix: `kem/${a.accountId}/` })).objects).toHaveLength(0);
    const { runInDurableObject } = await import("cloudflare:test");
    // The object is empty again: not even its tables remain.
    await runInDurableObject(env.ACCOUNT.getByName(a.accountId), (_o, state) => {
      expect(
        state.storage.sql
          .exec("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'")
          .one().n,
      ).toBe(0);
    });
    expect(await runDurableObjectAlarm(env.ACCOUNT.getByName(a.accountId))).toBe(false);
  });
});

/** Some 33-byte EC public key (0x05 ‖ 32 bytes): the relay checks only its form. */
const a33 = () => Uint8Array.of(5, ...crypto.getRandomValues(new Uint8Array(32)));

describe("objects for ids nobody registered", () => {
  it("stay empty: authenticating, sending to or claiming from a random id stores nothing", async () => {
    const { runInDurableObject } = await import("cloudflare:test");
    const b = await registerAccount();
    const ghost = crypto.randomUUID();
    await expectError(await call("GET", "/v1/devices", { auth: basic(ghost, 1, newPassword()) }), 401, "UNAUTHORIZED");
    await expectError(await call("GET", `/v2/keys/${ghost}/*`, { auth: b.auth }), 404, "NOT_FOUND");
    await expectError(
      await call("POST", "/v1/devices/link/envelope", {
        body: { accountId: ghost, linkToken: toBase64(new Uint8Array(32)), publicKey: toBase64(a33()) },
      }),
      403,
      "LINK_TOKEN_INVALID",
    );
    const send = await call("PUT", `/v1/messages/${ghost}`, {
      auth: b.auth,
      body: {
        messages: [
          { type: 2, destinationDeviceId: 1, destinationRegistrationId: 1, content: toBase64(new Uint8Array(8)) },
        ],
        timestamp: 1,
        online: false,
        urgent: true,
      },
    });
    expect(send.status).toBe(404);
    await runInDurableObject(env.ACCOUNT.getByName(ghost), (_o, state) => {
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").one().n).toBe(0);
    });
    expect(await runDurableObjectAlarm(env.ACCOUNT.getByName(ghost))).toBe(false);
  });
});
