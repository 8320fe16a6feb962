// Registration under attack: per-IP limits that key an IPv6 client on its /64 (rotating addresses inside it gains
// nothing), and the proof of work whose difficulty follows the relay-wide registration rate: today's bits under
// normal load, one more per doubling under a flood, back to normal one window after it.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { fromBase64, toBase64 } from "../../src/crypto/bytes.ts";
import { powBits, solvePow } from "../../src/protocol/pow.ts";
import { loadConfig, type Config } from "../../src/server/config.ts";
import { ipLimitKey } from "../../src/server/rate-limiter.ts";
import { difficultyFor } from "../../src/server/registration-rate.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { send } from "./attachments-helpers.ts";
import { BASE, deviceKeys, expectError, fetchWithEnv, newIdentity, registrationProof } from "./helpers.ts";

const postChallenge = (e: Cloudflare.Env, ip: string) =>
  fetchWithEnv(e, "/v1/challenges", { method: "POST", headers: { "cf-connecting-ip": ip } });

/** A registration through `e`: its own challenge, solved, and a valid body. */
async function registerWith(e: Cloudflare.Env, ip = "198.51.100.7"): Promise<Response> {
  const ch = (await (await postChallenge(e, ip)).json()) as { challenge: string; difficulty: number };
  const identity = newIdentity();
  const nonce = await solvePow(fromBase64(ch.challenge), ch.difficulty);
  return fetchWithEnv(e, "/v1/registration", {
    method: "POST",
    headers: { "content-type": "application/json", "cf-connecting-ip": ip },
    body: JSON.stringify({
      identityKey: toBase64(identity.publicKey),
      ...deviceKeys(identity, { preKeys: 0, pqPreKeys: 0 }),
      pow: { challenge: ch.challenge, nonce: toBase64(nonce) },
      proof: registrationProof(identity, ch.challenge),
    }),
  });
}

describe("per-IP limits and IPv6", () => {
  it("keys an IPv6 address on its /64 in any notation, an IPv4 one on itself", () => {
    const key = "2001:db8:aa:bb:0:0:0:0/64";
    for (const ip of [
      "2001:db8:aa:bb::1",
      "2001:0db8:00aa:00bb:ffff:ffff:ffff:ffff",
      "2001:DB8:AA:BB:1234:5678:9abc:def0",
      "2001:db8:aa:bb::192.0.2.1",
      "2001:db8:aa:bb::",
    ])
      expect(ipLimitKey(ip, 64), ip).toBe(key);
    expect(ipLimitKey("2001:db8:aa:bc::1", 64)).not.toBe(key);
    expect(ipLimitKey("2001:db8:aa:bb::1", 48)).toBe("2001:db8:aa:0:0:0:0:0/48");
    expect(ipLimitKey("2001:db8:aa:bb::1", 56)).toBe("2001:db8:aa:0:0:0:0:0/56");
    expect(ipLimitKey("2001:db8:aa:12ff::1", 56)).toBe("2001:db8:aa:1200:0:0:0:0/56");
    expect(ipLimitKey("2001:db8::1", 128)).toBe("2001:db8:0:0:0:0:0:1/128");
    expect(ipLimitKey("::ffff:192.0.2.1", 64)).toBe("192.0.2.1");
    expect(ipLimitKey("192.0.2.1", 64)).toBe("192.0.2.1");
    expect(ipLimitKey("local", 64)).toBe("local");
  });

  it("a client rotating addresses inside one /64 hits the challenge limit; another /64 does not", async () => {
    const e = { ...env, CHALLENGES_PER_IP_LIMIT: "5" } as Cloudflare.Env;
    for (let i = 1; i <= 5; i++) expect((await postChallenge(e, `2001:db8:64:1::${i.toString(16)}`)).status).toBe(200);
    const res = await postChallenge(e, "2001:db8:64:1:dead:beef:0:1");
    await expectError(res, 429, "RATE_LIMITED");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await postChallenge(e, "2001:db8:64:2::1")).status).toBe(200);
    // With IPV6_RATE_LIMIT_PREFIX_BITS=128 every address is its own client (the setting is honoured).
    const exact = { ...e, IPV6_RATE_LIMIT_PREFIX_BITS: "128" } as Cloudflare.Env;
    expect((await postChallenge(exact, "2001:db8:64:1::77")).status).toBe(200);
  });

  it("a client rotating addresses inside one /64 hits the registration limit", async () => {
    const e = { ...env, REGISTRATIONS_PER_IP_LIMIT: "2" } as Cloudflare.Env;
    expect((await registerWith(e, "2001:db8:65:1::a")).status).toBe(200);
    expect((await registerWith(e, "2001:db8:65:1::b")).status).toBe(200);
    await expectError(await registerWith(e, "2001:db8:65:1:1:2:3:4"), 429, "RATE_LIMITED");
    expect((await registerWith(e, "2001:db8:65:2::a")).status).toBe(200);
  });
});

describe("the adaptive proof of work", () => {
  const cfg = (vars: Record<string, string>): Config => {
    const c = loadConfig({ ...env, ...vars });
    if (!c.ok) throw c.error;
    return c.config;
  };

  it("follows the documented curve: base up to the normal rate, +1 bit per doubling, capped", () => {
    const c = cfg({ POW_DIFFICULTY_BITS: "16", POW_NORMAL_REGISTRATIONS_LIMIT: "60", POW_MAX_DIFFICULTY_BITS: "22" });
    const at = (rate: number) => difficultyFor(rate, c);
    expect([0, 1, 60].map(at)).toEqual([16, 16, 16]);
    expect([61, 120].map(at)).toEqual([17, 17]);
    expect([121, 240, 241, 480, 481].map(at)).toEqual([18, 18, 19, 19, 20]);
    expect([3840, 3841, 1_000_000_000].map(at)).toEqual([22, 22, 22]);
    // A cap below the base never lowers the base: a fixed difficulty.
    const fixed = cfg({ POW_DIFFICULTY_BITS: "16", POW_MAX_DIFFICULTY_BITS: "0" });
    expect(difficultyFor(1_000_000, fixed)).toBe(16);
  });

  it("rises under a simulated flood and falls back one window after it", async () => {
    const vars = {
      POW_DIFFICULTY_BITS: "4",
      POW_NORMAL_REGISTRATIONS_LIMIT: "10",
      POW_MAX_DIFFICULTY_BITS: "8",
      POW_RATE_SHARD_COUNT: "3",
      POW_RATE_WINDOW_SECONDS: "60",
    };
    const clock = new ManualClock(Date.now());
    const shards = [0, 1, 2].map((i) => env.REGISTRATION_RATE.getByName(`registrations:${i}`));
    for (const s of shards)
      await runInDurableObject(s, (o, state) => {
        o.clock = clock;
        state.storage.sql.exec("DELETE FROM buckets");
      });
    const difficulty = async () => {
      const res = await send(new Request(`${BASE}/v1/challenges`, { method: "POST" }), vars, clock);
      expect(res.status).toBe(200);
      return ((await res.json()) as { difficulty: number }).difficulty;
    };
    const flood = async (n: number) => {
      await Promise.all(Array.from({ length: n }, (_, i) => shards[i % 3]!.record(60)));
    };

    expect(await difficulty()).toBe(4);
    await flood(10);
    clock.advance(5000); // the isolate rereads the rate at most every 5 s
    expect(await difficulty()).toBe(4);
    await flood(10); // 20 in the window: one doubling
    clock.advance(5000);
    expect(await difficulty()).toBe(5);
    await flood(60); // 80: three doublings
    clock.advance(5000);
    expect(await difficulty()).toBe(7);
    await flood(200); // 280: past the cap
    clock.advance(5000);
    expect(await difficulty()).toBe(8);
    // The flood stops: a window later the rate has drained and new challenges cost today's 4 bits again.
    clock.advance(60_000);
    expect(await difficulty()).toBe(4);
  });

  it("solvePow reports its progress to a callback while it works, for the SDK and CLI to show", async () => {
    // A fixed challenge whose 10-bit solution is the 2690th nonce tried, so the calls are known in advance.
    const calls: { attempts: number; expectedAttempts: number }[] = [];
    const nonce = await solvePow(new Uint8Array(32).fill(2), 10, {
      progressEvery: 256,
      onProgress: (p) => calls.push(p),
    });
    expect(new DataView(nonce.buffer).getUint32(4)).toBe(2690);
    expect(calls).toEqual(Array.from({ length: 10 }, (_, i) => ({ attempts: 256 * (i + 1), expectedAttempts: 1024 })));
    expect(await solvePow(new Uint8Array(32).fill(2), 10)).toEqual(nonce);
  });

  it("every registration counts, and a challenge keeps the difficulty it was issued with", async () => {
    const vars = { POW_DIFFICULTY_BITS: "4", POW_NORMAL_REGISTRATIONS_LIMIT: "1", POW_RATE_SHARD_COUNT: "1" };
    await runInDurableObject(env.REGISTRATION_RATE.getByName("registrations:0"), (_o, state) => {
      state.storage.sql.exec("DELETE FROM buckets");
    });
    const e = { ...env, ...vars } as Cloudflare.Env;
    for (let i = 0; i < 3; i++) expect((await registerWith(e, `198.51.100.${20 + i}`)).status).toBe(200);
    // A fresh isolate (env object) reads the rate: 3 registrations against a normal 1 is ceil(log2 3) = 2 bits more.
    const fresh = { ...env, ...vars } as Cloudflare.Env;
    const ch = (await (await postChallenge(fresh, "198.51.100.30")).json()) as {
      challenge: string;
      difficulty: number;
    };
    expect(ch.difficulty).toBe(6);
    // A nonce good for the old 4 bits but not for this challenge's 6 is refused.
    const bytes = fromBase64(ch.challenge);
    let nonce = new Uint8Array(8);
    for (let i = 0; ; i++) {
      new DataView(nonce.buffer).setUint32(4, i);
      const bits = await powBits(bytes, nonce);
      if (bits >= 4 && bits < 6) break;
      nonce = new Uint8Array(nonce);
    }
    const identity = newIdentity();
    const res = await fetchWithEnv(fresh, "/v1/registration", {
      method: "POST",
      headers: { "content-type": "application/json", "cf-connecting-ip": "198.51.100.30" },
      body: JSON.stringify({
        identityKey: toBase64(identity.publicKey),
        ...deviceKeys(identity, { preKeys: 0, pqPreKeys: 0 }),
        pow: { challenge: ch.challenge, nonce: toBase64(nonce) },
        proof: registrationProof(identity, ch.challenge),
      }),
    });
    const err = await expectError(res, 403, "CHALLENGE_INVALID");
    expect(err.message).toMatch(/6 leading zero bits/);
  });
});
