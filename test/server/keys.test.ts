// Prekeys: publishing and replacing, de-duplication of re-sent ids, counts, bundles claimed oldest first,
// the last-resort fallback, 50 concurrent claims, and the exact per-pair claim limit.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { toBase64 } from "../../src/crypto/bytes.ts";
import { generateEcKeyPair, generateKemKeyPair } from "../../src/crypto/keys.ts";
import { xeddsaSign } from "../../src/crypto/xeddsa.ts";
import { call, callJson, expectError, registerAccount, type Identity } from "./helpers.ts";

interface Bundle {
  identityKey: string;
  devices: {
    deviceId: number;
    registrationId: number;
    signedPreKey: { keyId: number; publicKey: string; signature: string };
    preKey?: { keyId: number; publicKey: string };
    pqPreKey: { keyId: number; publicKey: string; signature: string };
  }[];
}

const sign = (id: Identity, b: Uint8Array) => toBase64(xeddsaSign(id.privateKey, b));
const ecPreKeys = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ keyId: from + i, publicKey: toBase64(generateEcKeyPair().publicKey) }));
const kemPreKeys = (id: Identity, from: number, n: number) =>
  Array.from({ length: n }, (_, i) => {
    const k = generateKemKeyPair().publicKey;
    return { keyId: from + i, publicKey: toBase64(k), signature: sign(id, k) };
  });

describe("publishing prekeys", () => {
  it("adds one-time keys, counts them, and ignores re-sent ids", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 0, pqCount: 0 });
    const ec = ecPreKeys(1, 10);
    const kem = kemPreKeys(a.identity, 1, 4);
    expect((await call("PUT", "/v2/keys", { auth: a.auth, body: { preKeys: ec, pqPreKeys: kem } })).status).toBe(204);
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 10, pqCount: 4 });
    // Re-sent, overlapping with new ones: only the new ids count.
    expect(
      (
        await call("PUT", "/v2/keys", {
          auth: a.auth,
          body: {
            preKeys: [...ec.slice(5), ...ecPreKeys(11, 2)],
            pqPreKeys: [...kem, ...kemPreKeys(a.identity, 5, 1)],
          },
        })
      ).status,
    ).toBe(204);
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 12, pqCount: 5 });
  });

  it("concurrent uploads of the same ids store each key once", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    const ec = ecPreKeys(500, 20);
    const kem = kemPreKeys(a.identity, 500, 5);
    const res = await Promise.all(
      Array.from({ length: 8 }, () => call("PUT", "/v2/keys", { auth: a.auth, body: { preKeys: ec, pqPreKeys: kem } })),
    );
    expect(res.map((r) => r.status)).toEqual(Array(8).fill(204));
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 20, pqCount: 5 });
    // And claims hand out 5 distinct KEM keys, then the last-resort key.
    const seen = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const b = await registerAccount();
      const bundle = await callJson<Bundle>("GET", `/v2/keys/${a.accountId}/1`, { auth: b.auth });
      seen.add(bundle.devices[0]!.pqPreKey.keyId);
    }
    expect([...seen].sort((x, y) => x - y)).toEqual([500, 501, 502, 503, 504]);
  });

  it("replaces the signed prekey and the last-resort key", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    const spk = generateEcKeyPair().publicKey;
    const lr = generateKemKeyPair().publicKey;
    const signedPreKey = { keyId: 77, publicKey: toBase64(spk), signature: sign(a.identity, spk) };
    const pqLastResortPreKey = { keyId: 78, publicKey: toBase64(lr), signature: sign(a.identity, lr) };
    expect((await call("PUT", "/v2/keys", { auth: a.auth, body: { signedPreKey, pqLastResortPreKey } })).status).toBe(
      204,
    );
    const b = await registerAccount();
    const bundle = await callJson<Bundle>("GET", `/v2/keys/${a.accountId}/1`, { auth: b.auth });
    expect(bundle.devices[0]!.signedPreKey).toEqual(signedPreKey);
    expect(bundle.devices[0]!.pqPreKey).toEqual(pqLastResortPreKey);
    expect(bundle.devices[0]!.preKey).toBeUndefined();
  });

  it("refuses a bad signature on any signed key with 422 and stores none of the upload", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    const other = generateEcKeyPair();
    const spk = generateEcKeyPair().publicKey;
    const lr = generateKemKeyPair().publicKey;
    const cases = [
      { signedPreKey: { keyId: 1, publicKey: toBase64(spk), signature: sign(other, spk) } },
      { pqLastResortPreKey: { keyId: 2, publicKey: toBase64(lr), signature: sign(other, lr) } },
      { preKeys: ecPreKeys(1, 3), pqPreKeys: [...kemPreKeys(a.identity, 1, 2), ...kemPreKeys(other, 3, 1)] },
    ];
    for (const body of cases)
      await expectError(await call("PUT", "/v2/keys", { auth: a.auth, body }), 422, "INVALID_SIGNATURE");
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 0, pqCount: 0 });
    const b = await registerAccount();
    const bundle = await callJson<Bundle>("GET", `/v2/keys/${a.accountId}/1`, { auth: b.auth });
    expect(bundle.devices[0]!.signedPreKey).toEqual(a.keys.signedPreKey);
  });

  it("refuses a one-time EC key without the 0x05 type byte, and a KEM key with an unknown type byte", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    const bad = generateEcKeyPair().publicKey;
    bad[0] = 0x08;
    await expectError(
      await call("PUT", "/v2/keys", { auth: a.auth, body: { preKeys: [{ keyId: 1, publicKey: toBase64(bad) }] } }),
      422,
      "INVALID_KEY",
    );
    const kem = generateKemKeyPair().publicKey;
    kem[0] = 0x09;
    await expectError(
      await call("PUT", "/v2/keys", {
        auth: a.auth,
        body: { pqPreKeys: [{ keyId: 1, publicKey: toBase64(kem), signature: sign(a.identity, kem) }] },
      }),
      422,
      "INVALID_KEY",
    );
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 0, pqCount: 0 });
  });

  it("refuses a body over MAX_KEYS_REQUEST_BYTES before reading it whole", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    const big = JSON.stringify({ preKeys: [], padding: "x".repeat(393_217) });
    await expectError(
      await call("PUT", "/v2/keys", { auth: a.auth, raw: big, headers: { "content-type": "application/json" } }),
      413,
      "PAYLOAD_TOO_LARGE",
    );
    // Streamed without a Content-Length, it is still cut off.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    await expectError(
      await call("PUT", "/v2/keys", { auth: a.auth, raw: stream, headers: { "content-type": "application/json" } }),
      413,
      "PAYLOAD_TOO_LARGE",
    );
  });
});

describe("claiming bundles", () => {
  it("claims one-time keys oldest first, then serves no EC key and the last-resort KEM key", async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    await call("PUT", "/v2/keys", {
      auth: a.auth,
      body: { preKeys: ecPreKeys(30, 2), pqPreKeys: kemPreKeys(a.identity, 40, 2) },
    });
    await call("PUT", "/v2/keys", {
      auth: a.auth,
      body: { preKeys: ecPreKeys(10, 1), pqPreKeys: kemPreKeys(a.identity, 20, 1) },
    });
    const b = await registerAccount();
    const got: [number | undefined, number][] = [];
    for (let i = 0; i < 4; i++) {
      const bundle = await callJson<Bundle>("GET", `/v2/keys/${a.accountId}/1`, { auth: b.auth });
      got.push([bundle.devices[0]!.preKey?.keyId, bundle.devices[0]!.pqPreKey.keyId]);
    }
    // Upload order, not key id order; then none, and the last-resort key (which is never used up).
    expect(got).toEqual([
      [30, 40],
      [31, 41],
      [10, 20],
      [undefined, a.keys.pqLastResortPreKey.keyId],
    ]);
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 0, pqCount: 0 });
  });

  it("never hands a one-time key out twice to 50 concurrent claims", { tags: ["slow"] }, async () => {
    const a = await registerAccount({ preKeys: 0, pqPreKeys: 0 });
    // 30 EC and 20 KEM keys: the device's claim budget (PREKEY_CLAIMS_PER_DEVICE_LIMIT, 30; abuse-account.test.ts)
    // lets 30 of the 50 claims take one-time keys, and those race for them in D1.
    await call("PUT", "/v2/keys", {
      auth: a.auth,
      body: { preKeys: ecPreKeys(1, 30), pqPreKeys: kemPreKeys(a.identity, 1, 20) },
    });
    const requesters = await Promise.all(
      Array.from({ length: 50 }, () => registerAccount({ preKeys: 0, pqPreKeys: 0 })),
    );
    const bundles = await Promise.all(
      requesters.map((r) => callJson<Bundle>("GET", `/v2/keys/${a.accountId}/1`, { auth: r.auth })),
    );
    const ec = bundles.map((b) => b.devices[0]!.preKey?.keyId).filter((k): k is number => k !== undefined);
    const kem = bundles.map((b) => b.devices[0]!.pqPreKey.keyId);
    expect(ec).toHaveLength(30);
    expect(new Set(ec).size).toBe(30);
    const oneTimeKem = kem.filter((k) => k !== a.keys.pqLastResortPreKey.keyId);
    expect(oneTimeKem).toHaveLength(20);
    expect(new Set(oneTimeKem).size).toBe(20);
    expect(kem.filter((k) => k === a.keys.pqLastResortPreKey.keyId)).toHaveLength(30);
    expect(await callJson("GET", "/v2/keys", { auth: a.auth })).toEqual({ count: 0, pqCount: 0 });
    // A fully claimed KEM page is deleted from R2 (after the claim answered, in the background).
    await expect
      .poll(async () => (await env.KEY_PAGES.list({ prefix: `kem/${a.accountId}/` })).objects.length, {
        timeout: 10_000,
      })
      .toBe(0);
  });

  it("limits claims exactly per (requesting account, target account)", async () => {
    const a = await registerAccount({ preKeys: 10, pqPreKeys: 0 });
    const b = await registerAccount();
    const t0 = Date.now();
    for (let i = 0; i < 6; i++)
      expect((await call("GET", `/v2/keys/${a.accountId}/*`, { auth: b.auth })).status).toBe(200);
    const res = await call("GET", `/v2/keys/${a.accountId}/1`, { auth: b.auth });
    await expectError(res, 429, "RATE_LIMITED");
    const retry = Number(res.headers.get("retry-after"));
    // The window (600 s) counted from the first claim, less the time the claims took.
    expect(retry).toBeGreaterThanOrEqual(600 - Math.ceil((Date.now() - t0) / 1000));
    expect(retry).toBeLessThanOrEqual(600);
    // The refused claim took nothing; another requester still gets the next key.
    const c = await registerAccount();
    const bundle = await callJson<Bundle>("GET", `/v2/keys/${a.accountId}/1`, { auth: c.auth });
    expect(bundle.devices[0]!.preKey?.keyId).toBe(a.keys.preKeys[6]!.keyId);
    // b can still claim from other accounts.
    expect((await call("GET", `/v2/keys/${c.accountId}/1`, { auth: b.auth })).status).toBe(200);
  });

  it("answers 404 for an unknown account or device and 401 without credentials", async () => {
    const b = await registerAccount();
    await expectError(await call("GET", `/v2/keys/${crypto.randomUUID()}/*`, { auth: b.auth }), 404, "NOT_FOUND");
    await expectError(await call("GET", `/v2/keys/${b.accountId}/5`, { auth: b.auth }), 404, "NOT_FOUND");
    await expectError(await call("GET", `/v2/keys/${b.accountId}/1`), 401, "UNAUTHORIZED");
    await expectError(await call("GET", `/v2/keys/${b.accountId}/0`, { auth: b.auth }), 400, "BAD_REQUEST");
    await expectError(await call("GET", `/v2/keys/not-a-uuid/1`, { auth: b.auth }), 400, "BAD_REQUEST");
  });

  it("keeps every account's rows on its own shard", async () => {
    const accounts = await Promise.all(Array.from({ length: 12 }, () => registerAccount({ preKeys: 1, pqPreKeys: 1 })));
    const { bucketOf } = await import("../../src/server/db/shards.ts");
    const shards = [env.DB_0, env.DB_1, env.DB_2];
    for (const a of accounts) {
      const expected = bucketOf(a.accountId) <= 1364 ? 0 : bucketOf(a.accountId) <= 2729 ? 1 : 2;
      for (let i = 0; i < 3; i++) {
        const n = (await shards[i]!.prepare("SELECT count(*) AS n FROM ec_prekeys WHERE account_id = ?1")
          .bind(a.accountId)
          .first<{ n: number }>())!.n;
        expect(n, `account ${a.accountId} on DB_${i}`).toBe(i === expected ? 1 : 0);
      }
    }
  });
});

describe("authentication", () => {
  it("an unknown account and a wrong password give the same 401", async () => {
    const a = await registerAccount();
    const { basic } = await import("./helpers.ts");
    const wrong = await call("GET", "/v2/keys", { auth: basic(a.accountId, 1, "A".repeat(24)) });
    const unknown = await call("GET", "/v2/keys", { auth: basic(crypto.randomUUID(), 1, a.password) });
    const otherDevice = await call("GET", "/v2/keys", { auth: basic(a.accountId, 2, a.password) });
    const bodies = await Promise.all(
      [wrong, unknown, otherDevice].map(async (r) => {
        const j = (await r.json()) as { code: string; message: string };
        return [r.status, j.code, j.message];
      }),
    );
    expect(bodies[0]).toEqual([401, "UNAUTHORIZED", "wrong credentials"]);
    expect(bodies[1]).toEqual(bodies[0]);
    expect(bodies[2]).toEqual(bodies[0]);
    for (const header of [
      "Bearer x",
      "Basic !!!",
      `Basic ${btoa("nocolon")}`,
      `Basic ${btoa(`${a.accountId}.200:${a.password}`)}`,
      `Basic ${btoa(`x.1:${a.password}`)}`,
    ])
      await expectError(await call("GET", "/v2/keys", { headers: { authorization: header } }), 401, "UNAUTHORIZED");
  });

  it("stores no password, only a salted HMAC", async () => {
    const a = await registerAccount();
    const { runInDurableObject } = await import("cloudflare:test");
    await runInDurableObject(env.ACCOUNT.getByName(a.accountId), (_o, state) => {
      const row = state.storage.sql
        .exec<{ salt: ArrayBuffer; cred_hash: ArrayBuffer }>("SELECT salt, cred_hash FROM devices")
        .one();
      expect(new Uint8Array(row.salt)).toHaveLength(16);
      expect(new Uint8Array(row.cred_hash)).toHaveLength(32);
      const dump = JSON.stringify(state.storage.sql.exec("SELECT * FROM devices").toArray());
      expect(dump).not.toContain(a.password);
    });
  });
});
