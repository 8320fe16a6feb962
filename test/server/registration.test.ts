// Registration: proof-of-work challenges, accounts made from an identity key, libsignal's own keys, and
// every way a registration is refused without changing anything.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { fromBase64, toBase64 } from "../../src/crypto/bytes.ts";
import { generateEcKeyPair } from "../../src/crypto/keys.ts";
import { powBits } from "../../src/protocol/pow.ts";
import vectors from "../vectors/libsignal-registration.json";
import {
  basic,
  call,
  callJson,
  deviceKeys,
  expectError,
  fetchWithEnv,
  newIdentity,
  newPassword,
  registrationBody,
  registrationProof,
  solvedChallenge,
  type Identity,
} from "./helpers.ts";

async function countAccounts(): Promise<number> {
  let n = 0;
  for (const db of [env.DB_0, env.DB_1, env.DB_2])
    n += (await db.prepare("SELECT count(*) AS n FROM accounts").first<{ n: number }>())!.n;
  return n;
}

describe("proof-of-work challenges", () => {
  it("issues a 32-byte challenge with the configured difficulty and expiry", async () => {
    const before = Date.now();
    const ch = await callJson<{ challenge: string; difficulty: number; expiresAt: number }>("POST", "/v1/challenges");
    expect(fromBase64(ch.challenge)).toHaveLength(32);
    expect(ch.difficulty).toBe(4);
    expect(ch.expiresAt).toBeGreaterThanOrEqual(before + 300_000);
    expect(ch.expiresAt).toBeLessThanOrEqual(Date.now() + 300_000);
  });

  it("a solved nonce has the leading zero bits the difficulty asks", async () => {
    const pow = await solvedChallenge();
    expect(await powBits(fromBase64(pow.challenge), fromBase64(pow.nonce))).toBeGreaterThanOrEqual(4);
  });

  it("limits challenges per client IP with 429 and Retry-After", async () => {
    const ip = "198.18.0.77";
    for (let i = 0; i < 60; i++)
      expect((await call("POST", "/v1/challenges", { headers: { "cf-connecting-ip": ip } })).status).toBe(200);
    const res = await call("POST", "/v1/challenges", { headers: { "cf-connecting-ip": ip } });
    await expectError(res, 429, "RATE_LIMITED");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    // Another address is not affected.
    expect((await call("POST", "/v1/challenges", { headers: { "cf-connecting-ip": "198.18.0.78" } })).status).toBe(200);
  });
});

describe("registration", () => {
  it("creates an account from an identity key and authenticates its device 1", async () => {
    const identity = newIdentity();
    const keys = deviceKeys(identity, { preKeys: 5, pqPreKeys: 4 });
    const r = await callJson<{ accountId: string; deviceId: number }>("POST", "/v1/registration", {
      body: await registrationBody(identity, keys),
    });
    expect(r.accountId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(r.deviceId).toBe(1);
    const auth = basic(r.accountId, 1, keys.password);
    expect(await callJson("GET", "/v2/keys", { auth })).toEqual({ count: 5, pqCount: 4 });
    const devices = await callJson<{ devices: { deviceId: number; registrationId: number }[] }>("GET", "/v1/devices", {
      auth,
    });
    expect(devices.devices.map((d) => [d.deviceId, d.registrationId])).toEqual([[1, keys.registrationId]]);
  });

  it("accepts keys and signatures made by libsignal itself", async () => {
    for (const acct of vectors.accounts) {
      const identity: Identity = {
        privateKey: fromBase64(acct.identityPrivateKey),
        publicKey: fromBase64(acct.identityKey),
      };
      const pow = await solvedChallenge();
      const password = newPassword();
      const body = {
        identityKey: acct.identityKey,
        registrationId: acct.registrationId,
        password,
        signedPreKey: acct.signedPreKey,
        pqLastResortPreKey: acct.pqLastResortPreKey,
        preKeys: acct.preKeys,
        pqPreKeys: acct.pqPreKeys,
        pow,
        proof: registrationProof(identity, pow.challenge),
      };
      const r = await callJson<{ accountId: string }>("POST", "/v1/registration", { body });
      const auth = basic(r.accountId, 1, password);
      expect(await callJson("GET", "/v2/keys", { auth })).toEqual({
        count: acct.preKeys.length,
        pqCount: acct.pqPreKeys.length,
      });
      const bundle = await callJson<{
        identityKey: string;
        devices: { signedPreKey: unknown; preKey: unknown; pqPreKey: { publicKey: string } }[];
      }>("GET", `/v2/keys/${r.accountId}/1`, { auth });
      expect(bundle.identityKey).toBe(acct.identityKey);
      expect(bundle.devices[0]!.signedPreKey).toEqual(acct.signedPreKey);
      expect(bundle.devices[0]!.preKey).toEqual(acct.preKeys[0]);
      expect(bundle.devices[0]!.pqPreKey).toEqual(acct.pqPreKeys[0]);
      expect(fromBase64(bundle.devices[0]!.pqPreKey.publicKey)[0]).toBe(0x08); // libsignal's Kyber1024 type byte
    }
  });

  it("a challenge works once", async () => {
    const identity = newIdentity();
    const body = await registrationBody(identity);
    await callJson("POST", "/v1/registration", { body });
    const again = { ...body, ...deviceKeys(identity), pow: body.pow, proof: body.proof };
    await expectError(await call("POST", "/v1/registration", { body: again }), 403, "CHALLENGE_INVALID");
  });

  it("of concurrent registrations with one challenge exactly one succeeds", async () => {
    const identity = newIdentity();
    const body = await registrationBody(identity);
    const before = await countAccounts();
    const results = await Promise.all(Array.from({ length: 5 }, () => call("POST", "/v1/registration", { body })));
    expect(results.map((r) => r.status).sort()).toEqual([200, 403, 403, 403, 403]);
    expect(await countAccounts()).toBe(before + 1);
  });

  it("refuses an unknown challenge, an unsolved nonce and an expired challenge", async () => {
    const identity = newIdentity();
    const body = await registrationBody(identity);
    const before = await countAccounts();
    const unknown = toBase64(crypto.getRandomValues(new Uint8Array(32)));
    await expectError(
      await call("POST", "/v1/registration", {
        body: { ...body, pow: { ...body.pow, challenge: unknown }, proof: registrationProof(identity, unknown) },
      }),
      403,
      "CHALLENGE_INVALID",
    );
    // Find a nonce that does NOT solve it (difficulty 4: most nonces fail).
    const ch = fromBase64(body.pow.challenge);
    let bad = new Uint8Array(8);
    for (let i = 0; (await powBits(ch, bad)) >= 4; i++) bad = new Uint8Array([i, 1, 2, 3, 4, 5, 6, 7]);
    await expectError(
      await call("POST", "/v1/registration", { body: { ...body, pow: { ...body.pow, nonce: toBase64(bad) } } }),
      403,
      "CHALLENGE_INVALID",
    );
    // Expire the challenge in storage, then try it.
    for (const db of [env.DB_0, env.DB_1, env.DB_2])
      await db.prepare("UPDATE pow_challenges SET expires_at = 1 WHERE challenge = ?1").bind(body.pow.challenge).run();
    await expectError(await call("POST", "/v1/registration", { body }), 403, "CHALLENGE_INVALID");
    expect(await countAccounts()).toBe(before);
  });

  it("refuses a proof by another key, and a proof over another message", async () => {
    const identity = newIdentity();
    const body = await registrationBody(identity);
    const before = await countAccounts();
    const other = generateEcKeyPair();
    await expectError(
      await call("POST", "/v1/registration", {
        body: { ...body, proof: registrationProof(other, body.pow.challenge) },
      }),
      422,
      "PROOF_INVALID",
    );
    // A prekey signature (over the signed prekey) can never stand in for the proof: different message.
    await expectError(
      await call("POST", "/v1/registration", { body: { ...body, proof: body.signedPreKey.signature } }),
      422,
      "PROOF_INVALID",
    );
    expect(await countAccounts()).toBe(before);
    // The refused attempts did not use the challenge up.
    await callJson("POST", "/v1/registration", { body });
  });

  it("refuses bad prekey signatures with 422 and stores nothing", async () => {
    const identity = newIdentity();
    const other = newIdentity();
    const good = deviceKeys(identity);
    const forged = deviceKeys(other);
    const before = await countAccounts();
    for (const patch of [
      { signedPreKey: { ...good.signedPreKey, signature: forged.signedPreKey.signature } },
      { pqLastResortPreKey: { ...good.pqLastResortPreKey, signature: forged.pqLastResortPreKey.signature } },
      { pqPreKeys: [good.pqPreKeys[0]!, { ...good.pqPreKeys[1]!, signature: good.pqPreKeys[0]!.signature }] },
    ]) {
      const body = await registrationBody(identity, { ...good, ...patch });
      const err = await expectError(await call("POST", "/v1/registration", { body }), 422, "INVALID_SIGNATURE");
      expect(err.message).toMatch(/signature/);
    }
    expect(await countAccounts()).toBe(before);
  });

  it("refuses keys with the wrong type byte with 422 INVALID_KEY", async () => {
    const identity = newIdentity();
    const keys = deviceKeys(identity);
    const spk = fromBase64(keys.signedPreKey.publicKey);
    spk[0] = 0x06;
    const body = await registrationBody(identity, {
      ...keys,
      signedPreKey: { ...keys.signedPreKey, publicKey: toBase64(spk) },
    });
    await expectError(await call("POST", "/v1/registration", { body }), 422, "INVALID_KEY");
    const idk = identity.publicKey.slice();
    idk[0] = 0x07;
    const body2 = await registrationBody(identity, keys);
    await expectError(
      await call("POST", "/v1/registration", { body: { ...body2, identityKey: toBase64(idk) } }),
      422,
      "INVALID_KEY",
    );
  });

  it("limits registrations per client IP", async () => {
    const ip = "198.18.1.5";
    const identity = newIdentity();
    // 20 attempts count (here refused for a bad proof, cheaply); the 21st is rate-limited before anything else.
    for (let i = 0; i < 20; i++) {
      const body = await registrationBody(identity, deviceKeys(identity, { preKeys: 0, pqPreKeys: 0 }));
      const res = await call("POST", "/v1/registration", {
        body: { ...body, proof: body.signedPreKey.signature },
        headers: { "cf-connecting-ip": ip },
      });
      expect(res.status).toBe(422);
    }
    const body = await registrationBody(identity, deviceKeys(identity));
    const res = await call("POST", "/v1/registration", { body, headers: { "cf-connecting-ip": ip } });
    await expectError(res, 429, "RATE_LIMITED");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(3000);
  });

  it("refuses more than 100 one-time keys of a kind", async () => {
    const identity = newIdentity();
    const keys = deviceKeys(identity, { preKeys: 1, pqPreKeys: 0 });
    const many = Array.from({ length: 101 }, (_, i) => ({ keyId: i, publicKey: keys.preKeys[0]!.publicKey }));
    const body = await registrationBody(identity, { ...keys, preKeys: many });
    const err = await expectError(await call("POST", "/v1/registration", { body }), 400, "BAD_REQUEST");
    expect(err.message).toMatch(/^preKeys/);
  });

  it("accepts difficulty 0 when an operator turns proof of work off", async () => {
    const e = { ...env, POW_DIFFICULTY_BITS: "0" } as Cloudflare.Env;
    const ch = (await (await fetchWithEnv(e, "/v1/challenges", { method: "POST" })).json()) as {
      challenge: string;
      difficulty: number;
    };
    expect(ch.difficulty).toBe(0);
    const identity = newIdentity();
    const body = {
      identityKey: toBase64(identity.publicKey),
      ...deviceKeys(identity),
      pow: { challenge: ch.challenge, nonce: "" },
      proof: registrationProof(identity, ch.challenge),
    };
    const res = await fetchWithEnv(e, "/v1/registration", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
  });
});
