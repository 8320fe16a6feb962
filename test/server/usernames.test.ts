// Usernames: the normalisation rules and their codes, reserve/confirm/change/delete with their TTLs (a ManualClock
// in the account objects), one winner among concurrent confirms, lookups' limits and their one 404, username links
// and their reset, rows on the shard their bucket names, and account deletion taking everything with it.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { randomBytes, toBase64Url } from "../../src/crypto/bytes.ts";
import type { Clock } from "../../src/protocol/clock.ts";
import {
  USERNAME_LINK_CIPHERTEXT_BYTES,
  normalizeNickname,
  normalizeUsername,
  usernameHash,
} from "../../src/protocol/usernames.ts";
import { bucketOf } from "../../src/server/db/shards.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { send } from "./attachments-helpers.ts";
import { BASE, call, callJson, expectError, randomIp, registerAccount, type TestAccount } from "./helpers.ts";

const SHARDS = ["DB_0", "DB_1", "DB_2"] as const;
/** The test shard map (vitest.workers.config.ts): 0-1364, 1365-2729, 2730-4095. */
const shardOf = (id: string) => {
  const b = bucketOf(id);
  return b <= 1364 ? "DB_0" : b <= 2729 ? "DB_1" : "DB_2";
};
const RESERVATION_MS = 300_000; // USERNAME_RESERVATION_TTL_SECONDS' default
const RELEASE_MS = 604_800_000; // USERNAME_RELEASE_TTL_SECONDS' default

let counter = 0;
/** A fresh, valid username's hash (each test its own names). */
async function freshHash(nick = "user"): Promise<{ name: string; hash: string }> {
  const name = `${nick}${Date.now().toString(36)}_${counter++}.${10 + Math.floor(Math.random() * 89)}`;
  const n = normalizeUsername(name);
  if (!n.ok) throw new Error(n.message);
  return { name: n.username, hash: await usernameHash(n.username) };
}

const reserve = (a: TestAccount, ...hashes: string[]) =>
  call("POST", "/v1/usernames/reserve", { auth: a.auth, body: { usernameHashes: hashes } });
const confirm = (a: TestAccount, hash: string) =>
  call("PUT", "/v1/usernames/confirm", { auth: a.auth, body: { usernameHash: hash } });
const lookup = (a: TestAccount, hash: string, ip = randomIp()) =>
  call("GET", `/v1/usernames/${hash}`, { auth: a.auth, headers: { "cf-connecting-ip": ip } });

async function take(a: TestAccount, hash: string): Promise<void> {
  expect((await reserve(a, hash)).status).toBe(200);
  expect((await confirm(a, hash)).status).toBe(200);
}

async function useClock(accounts: TestAccount[], clock: Clock): Promise<void> {
  for (const a of accounts)
    await runInDurableObject(env.ACCOUNT.getByName(a.accountId), (o) => {
      o.clock = clock;
    });
}

const ciphertext = () => toBase64Url(randomBytes(USERNAME_LINK_CIPHERTEXT_BYTES));

/** Every usernames / username_links row mentioning `value`, by shard. */
async function rowsOn(table: "usernames" | "username_links", column: string, value: string) {
  const out: Record<string, number> = {};
  for (const s of SHARDS) {
    const r = await env[s].prepare(`SELECT count(*) AS n FROM ${table} WHERE ${column} = ?1`).bind(value).first<{
      n: number;
    }>();
    if (r!.n) out[s] = r!.n;
  }
  return out;
}

describe("normalisation", () => {
  it("lowercases ASCII and accepts the shape nickname.digits", () => {
    expect(normalizeUsername("Alice.42")).toEqual({ ok: true, username: "alice.42" });
    expect(normalizeUsername("_b0b_.07")).toEqual({ ok: true, username: "_b0b_.07" });
    expect(normalizeUsername(`${"x".repeat(32)}.123456789`)).toEqual({
      ok: true,
      username: `${"x".repeat(32)}.123456789`,
    });
    expect(normalizeNickname("ALICE")).toEqual({ ok: true, nickname: "alice" });
  });

  it("refuses each broken rule with its code and reason", () => {
    const cases: [string, string, string][] = [
      ["al.42", "USERNAME_INVALID", "nickname_too_short"],
      [`${"a".repeat(33)}.42`, "USERNAME_INVALID", "nickname_too_long"],
      ["al-ice.42", "USERNAME_INVALID", "nickname_characters"],
      ["alïce.42", "USERNAME_INVALID", "nickname_characters"],
      ["İstanbul.42", "USERNAME_INVALID", "nickname_characters"],
      ["al ice.42", "USERNAME_INVALID", "nickname_characters"],
      ["1alice.42", "USERNAME_INVALID", "nickname_starts_with_digit"],
      ["alice", "DISCRIMINATOR_INVALID", "discriminator_missing"],
      ["alice.", "DISCRIMINATOR_INVALID", "discriminator_missing"],
      ["alice.4", "DISCRIMINATOR_INVALID", "discriminator_length"],
      ["alice.1234567890", "DISCRIMINATOR_INVALID", "discriminator_length"],
      ["alice.4a", "DISCRIMINATOR_INVALID", "discriminator_characters"],
      ["alice.42.1", "DISCRIMINATOR_INVALID", "discriminator_characters"],
      ["alice.00", "DISCRIMINATOR_INVALID", "discriminator_zero"],
      ["alice.007", "DISCRIMINATOR_INVALID", "discriminator_zero"],
    ];
    for (const [text, code, problem] of cases) {
      const r = normalizeUsername(text);
      expect(r.ok, text).toBe(false);
      if (!r.ok) expect([r.code, r.problem], text).toEqual([code, problem]);
    }
  });

  it("hashes the normalised name, so spellings of one name share a hash and the bucket is the hash's", async () => {
    const a = normalizeUsername("Alice.42");
    const b = normalizeUsername("aLiCe.42");
    if (!a.ok || !b.ok) throw new Error("valid names refused");
    const h = await usernameHash(a.username);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(await usernameHash(b.username)).toBe(h);
    expect(await usernameHash("alice.43")).not.toBe(h);
  });
});

describe("reserve and confirm", () => {
  it("a confirmed name is found by its hash; a reserved one is not, and another account cannot take it", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const { hash } = await freshHash("alice");
    const r = await callJson<{ usernameHash: string; expiresAt: number }>("POST", "/v1/usernames/reserve", {
      auth: alice.auth,
      body: { usernameHashes: [hash] },
    });
    expect(r.usernameHash).toBe(hash);
    await expectError(await lookup(bob, hash), 404, "NOT_FOUND");
    await expectError(await reserve(bob, hash), 409, "USERNAME_TAKEN");
    await expectError(await confirm(bob, hash), 409, "USERNAME_NOT_RESERVED");
    expect((await confirm(alice, hash)).status).toBe(200);
    expect(await callJson("GET", `/v1/usernames/${hash}`, { auth: bob.auth })).toEqual({
      accountId: alice.accountId,
    });
    await expectError(await reserve(bob, hash), 409, "USERNAME_TAKEN");
  });

  it("the first free candidate is reserved", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const first = await freshHash("cand");
    const second = await freshHash("cand");
    await take(alice, first.hash);
    const r = await callJson<{ usernameHash: string }>("POST", "/v1/usernames/reserve", {
      auth: bob.auth,
      body: { usernameHashes: [first.hash, second.hash] },
    });
    expect(r.usernameHash).toBe(second.hash);
  });

  it("20 concurrent reserve-and-confirms of one name give exactly one winner", async () => {
    const accounts = await Promise.all(Array.from({ length: 20 }, () => registerAccount()));
    const { hash } = await freshHash("race");
    const outcomes = await Promise.all(
      accounts.map(async (a) => {
        const r = await reserve(a, hash);
        if (r.status !== 200) return (await r.json<{ code: string }>()).code;
        const c = await confirm(a, hash);
        return c.status === 200 ? "WON" : (await c.json<{ code: string }>()).code;
      }),
    );
    expect(outcomes.filter((o) => o === "WON")).toHaveLength(1);
    expect(outcomes.filter((o) => o !== "WON").every((o) => o === "USERNAME_TAKEN")).toBe(true);
    const winner = accounts[outcomes.indexOf("WON")]!;
    expect(await callJson("GET", `/v1/usernames/${hash}`, { auth: accounts[0]!.auth })).toEqual({
      accountId: winner.accountId,
    });
    expect(await rowsOn("usernames", "username_hash", hash)).toEqual({ [shardOf(hash)]: 1 });
  }, 60_000);

  it("20 concurrent confirms by accounts that each believe they reserved it give one winner", async () => {
    // The reservation decides: only its holder's confirm can land, however many confirms race.
    const accounts = await Promise.all(Array.from({ length: 20 }, () => registerAccount()));
    const { hash } = await freshHash("confirmrace");
    expect((await reserve(accounts[7]!, hash)).status).toBe(200);
    const statuses = await Promise.all(accounts.map(async (a) => (await confirm(a, hash)).status));
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses[7]).toBe(200);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
  }, 60_000);

  it("a reservation lapses after its TTL: someone else can take the name and the first confirm fails", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock([alice, bob], clock);
    const { hash } = await freshHash("lapse");
    expect((await reserve(alice, hash)).status).toBe(200);
    clock.advance(RESERVATION_MS - 1000);
    await expectError(await reserve(bob, hash), 409, "USERNAME_TAKEN");
    clock.advance(1000);
    await take(bob, hash);
    await expectError(await confirm(alice, hash), 409, "USERNAME_NOT_RESERVED");
  });

  it("an account has one username: changing it frees the old one, which another can take after its TTL", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock([alice, bob], clock);
    const old = await freshHash("old");
    const next = await freshHash("next");
    await take(alice, old.hash);
    await take(alice, next.hash);
    await expectError(await lookup(bob, old.hash), 404, "NOT_FOUND");
    expect(await callJson("GET", `/v1/usernames/${next.hash}`, { auth: bob.auth })).toEqual({
      accountId: alice.accountId,
    });
    await expectError(await reserve(bob, old.hash), 409, "USERNAME_TAKEN");
    clock.advance(RELEASE_MS - 1000);
    await expectError(await reserve(bob, old.hash), 409, "USERNAME_TAKEN");
    clock.advance(1000);
    await take(bob, old.hash);
    expect(await callJson("GET", `/v1/usernames/${old.hash}`, { auth: alice.auth })).toEqual({
      accountId: bob.accountId,
    });
    // Exactly one confirmed row per account.
    for (const s of SHARDS) {
      const n = await env[s]
        .prepare("SELECT count(*) AS n FROM usernames WHERE account_id = ?1 AND state = 'confirmed'")
        .bind(alice.accountId)
        .first<{ n: number }>();
      if (s === shardOf(next.hash)) expect(n!.n).toBe(1);
      else expect(n!.n).toBe(0);
    }
  });

  it("a deleted name is held for its TTL (its owner may take it back), then anyone can take it", async () => {
    const [alice, bob, carol] = await Promise.all([registerAccount(), registerAccount(), registerAccount()]);
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock([alice, bob, carol], clock);
    const { hash } = await freshHash("freed");
    await take(alice, hash);
    expect((await call("DELETE", "/v1/usernames/me", { auth: alice.auth })).status).toBe(204);
    expect((await call("DELETE", "/v1/usernames/me", { auth: alice.auth })).status).toBe(204);
    await expectError(await lookup(bob, hash), 404, "NOT_FOUND");
    await expectError(await reserve(bob, hash), 409, "USERNAME_TAKEN");
    // The last owner may take it back while it is held.
    await take(alice, hash);
    expect((await call("DELETE", "/v1/usernames/me", { auth: alice.auth })).status).toBe(204);
    clock.advance(RELEASE_MS);
    await take(bob, hash);
    await expectError(await reserve(carol, hash), 409, "USERNAME_TAKEN");
    expect(await callJson("GET", `/v1/usernames/${hash}`, { auth: carol.auth })).toEqual({
      accountId: bob.accountId,
    });
  });

  it("reservations past the per-account limit get 429 and reserve nothing", async () => {
    const alice = await registerAccount();
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock([alice], clock);
    for (let i = 0; i < 20; i++) expect((await reserve(alice, (await freshHash("many")).hash)).status).toBe(200);
    const last = await freshHash("many");
    const res = await reserve(alice, last.hash);
    await expectError(res, 429, "RATE_LIMITED");
    expect(await rowsOn("usernames", "username_hash", last.hash)).toEqual({});
    clock.advance(3_600_000);
    expect((await reserve(alice, last.hash)).status).toBe(200);
  });
});

describe("lookups", () => {
  it("a deleted name answers the same 404 as one that never existed", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const deleted = await freshHash("gone");
    const never = await freshHash("never");
    await take(alice, deleted.hash);
    expect((await call("DELETE", "/v1/usernames/me", { auth: alice.auth })).status).toBe(204);
    const strip = async (res: Response) => {
      const { requestId: _r, ...rest } = await res.json<Record<string, unknown>>();
      return { status: res.status, headers: [...res.headers.keys()].filter((k) => k !== "x-request-id"), ...rest };
    };
    const a = await strip(await lookup(bob, deleted.hash));
    const b = await strip(await lookup(bob, never.hash));
    expect(a.status).toBe(404);
    expect(a).toEqual(b);
  });

  it("lookups past the per-account limit get 429 with Retry-After, from any address", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const clock = new ManualClock(Date.now() + 3_600_000);
    await useClock([bob], clock);
    const { hash } = await freshHash("limited");
    await take(alice, hash);
    for (let i = 0; i < 100; i++) expect((await lookup(bob, hash)).status).toBe(200);
    const res = await lookup(bob, hash);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    await expectError(res, 429, "RATE_LIMITED");
    // A never-used name is refused as well: the limit is on asking, not on finding.
    await expectError(await lookup(bob, (await freshHash("other")).hash), 429, "RATE_LIMITED");
    clock.advance(3_600_000);
    expect((await lookup(bob, hash)).status).toBe(200);
  }, 60_000);

  it("lookups past the per-IP limit get 429 whichever account asks", async () => {
    const accounts = await Promise.all([registerAccount(), registerAccount(), registerAccount()]);
    const { hash } = await freshHash("perip");
    await take(accounts[0]!, hash);
    const ip = randomIp();
    const vars = { USERNAME_LOOKUPS_PER_IP_LIMIT: "4" };
    const ask = (a: TestAccount, from = ip) =>
      send(
        new Request(`${BASE}/v1/usernames/${hash}`, {
          headers: { authorization: a.auth, "cf-connecting-ip": from },
        }),
        vars,
      );
    for (let i = 0; i < 4; i++) expect((await ask(accounts[i % 3]!)).status).toBe(200);
    await expectError(await ask(accounts[1]!), 429, "RATE_LIMITED");
    await expectError(await ask(accounts[2]!), 429, "RATE_LIMITED");
    expect((await ask(accounts[2]!, randomIp())).status).toBe(200);
  });

  it("a bad hash is 400 and no credentials 401", async () => {
    const alice = await registerAccount();
    await expectError(await call("GET", "/v1/usernames/ALICE.42", { auth: alice.auth }), 400, "BAD_REQUEST");
    const { hash } = await freshHash();
    await expectError(
      await call("GET", `/v1/usernames/${hash.toUpperCase()}`, { auth: alice.auth }),
      400,
      "BAD_REQUEST",
    );
    await expectError(await call("GET", `/v1/usernames/${hash}`), 401, "UNAUTHORIZED");
  });
});

describe("username links", () => {
  it("stores ciphertext under a handle on the owner's shard; a reset rotates the handle and the old one is 404", async () => {
    const alice = await registerAccount();
    const { hash } = await freshHash("linked");
    await expectError(
      await call("PUT", "/v1/usernames/link", { auth: alice.auth, body: { ciphertext: ciphertext() } }),
      404,
      "NOT_FOUND",
    );
    await take(alice, hash);
    const first = ciphertext();
    const { handle } = await callJson<{ handle: string }>("PUT", "/v1/usernames/link", {
      auth: alice.auth,
      body: { ciphertext: first },
    });
    expect(handle).toMatch(/^[0-9a-f]{32}$/);
    expect(bucketOf(handle)).toBe(bucketOf(alice.accountId));
    // No credentials needed to read a link: the handle is the capability.
    expect(await callJson("GET", `/v1/usernames/links/${handle}`)).toEqual({ ciphertext: first });
    expect(await rowsOn("username_links", "account_id", alice.accountId)).toEqual({ [shardOf(alice.accountId)]: 1 });

    const second = ciphertext();
    const reset = await callJson<{ handle: string }>("PUT", "/v1/usernames/link", {
      auth: alice.auth,
      body: { ciphertext: second },
    });
    expect(reset.handle).not.toBe(handle);
    const gone = await expectError(await call("GET", `/v1/usernames/links/${handle}`), 404, "NOT_FOUND");
    const never = await expectError(
      await call("GET", `/v1/usernames/links/${alice.accountId.slice(0, 3)}${"0".repeat(29)}`),
      404,
      "NOT_FOUND",
    );
    expect(gone.message).toBe(never.message);
    expect(await callJson("GET", `/v1/usernames/links/${reset.handle}`)).toEqual({ ciphertext: second });
    expect(await rowsOn("username_links", "account_id", alice.accountId)).toEqual({ [shardOf(alice.accountId)]: 1 });
  });

  it("changing or deleting the username removes the link", async () => {
    const alice = await registerAccount();
    await take(alice, (await freshHash("l1")).hash);
    const a = await callJson<{ handle: string }>("PUT", "/v1/usernames/link", {
      auth: alice.auth,
      body: { ciphertext: ciphertext() },
    });
    await take(alice, (await freshHash("l2")).hash);
    await expectError(await call("GET", `/v1/usernames/links/${a.handle}`), 404, "NOT_FOUND");
    const b = await callJson<{ handle: string }>("PUT", "/v1/usernames/link", {
      auth: alice.auth,
      body: { ciphertext: ciphertext() },
    });
    expect((await call("DELETE", "/v1/usernames/me", { auth: alice.auth })).status).toBe(204);
    await expectError(await call("GET", `/v1/usernames/links/${b.handle}`), 404, "NOT_FOUND");
    expect(await rowsOn("username_links", "account_id", alice.accountId)).toEqual({});
  });

  it("refuses ciphertext of the wrong size or alphabet", async () => {
    const alice = await registerAccount();
    await take(alice, (await freshHash("sized")).hash);
    for (const bad of [
      toBase64Url(randomBytes(USERNAME_LINK_CIPHERTEXT_BYTES + 3)),
      toBase64Url(randomBytes(USERNAME_LINK_CIPHERTEXT_BYTES - 3)),
      `${ciphertext().slice(0, -1)}+`,
    ])
      await expectError(
        await call("PUT", "/v1/usernames/link", { auth: alice.auth, body: { ciphertext: bad } }),
        400,
        "BAD_REQUEST",
      );
  });
});

describe("sharding and deletion", () => {
  it("every account's rows land on the shard its bucket names, and nowhere else", async () => {
    const accounts = await Promise.all(Array.from({ length: 8 }, () => registerAccount()));
    for (const a of accounts) {
      const { hash } = await freshHash("shard");
      await take(a, hash);
      const { handle } = await callJson<{ handle: string }>("PUT", "/v1/usernames/link", {
        auth: a.auth,
        body: { ciphertext: ciphertext() },
      });
      expect(await rowsOn("usernames", "username_hash", hash)).toEqual({ [shardOf(hash)]: 1 });
      expect(await rowsOn("usernames", "account_id", a.accountId)).toEqual({ [shardOf(hash)]: 1 });
      expect(await rowsOn("username_links", "handle", handle)).toEqual({ [shardOf(a.accountId)]: 1 });
    }
    // With 16 buckets' worth of random names, more than one shard is used.
    const used = new Set<string>();
    for (const s of SHARDS) {
      const n = await env[s].prepare("SELECT count(*) AS n FROM usernames").first<{ n: number }>();
      if (n!.n) used.add(s);
    }
    expect(used.size).toBeGreaterThan(1);
  }, 60_000);

  it("deleting the account removes its link and leaves its name a tombstone nobody else can take yet", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const { hash } = await freshHash("deleted");
    await take(alice, hash);
    const { handle } = await callJson<{ handle: string }>("PUT", "/v1/usernames/link", {
      auth: alice.auth,
      body: { ciphertext: ciphertext() },
    });
    expect((await call("DELETE", "/v1/accounts/me", { auth: alice.auth })).status).toBe(204);
    await expectError(await lookup(bob, hash), 404, "NOT_FOUND");
    await expectError(await call("GET", `/v1/usernames/links/${handle}`), 404, "NOT_FOUND");
    expect(await rowsOn("username_links", "account_id", alice.accountId)).toEqual({});
    const row = await env[shardOf(hash)]
      .prepare("SELECT state FROM usernames WHERE username_hash = ?1")
      .bind(hash)
      .first<{ state: string }>();
    expect(row?.state).toBe("released");
    await expectError(await reserve(bob, hash), 409, "USERNAME_TAKEN");
  });
});

describe("while D1 fails", () => {
  const down = () => {
    throw new Error("D1_ERROR: the database is unavailable");
  };
  const brokenD1 = {
    prepare: down,
    batch: () => Promise.reject(new Error("D1_ERROR: unavailable")),
    exec: down,
  } as unknown as D1Database;
  const brokenEnv = { ...env, DB_0: brokenD1, DB_1: brokenD1, DB_2: brokenD1 } as Cloudflare.Env;
  const objectEnv = async (a: TestAccount, e: Cloudflare.Env) =>
    runInDurableObject(env.ACCOUNT.getByName(a.accountId), (o) => {
      (o as unknown as { env: Cloudflare.Env }).env = e;
    });

  it("deleting the username answers 503 and leaves it found; the retry deletes it", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const { hash } = await freshHash("outage");
    await take(alice, hash);
    await objectEnv(alice, brokenEnv);
    await expectError(await call("DELETE", "/v1/usernames/me", { auth: alice.auth }), 503, "UNAVAILABLE");
    await expectError(await reserve(alice, (await freshHash("outage")).hash), 503, "UNAVAILABLE");
    await objectEnv(alice, env);
    expect(await callJson("GET", `/v1/usernames/${hash}`, { auth: bob.auth })).toEqual({ accountId: alice.accountId });
    expect((await call("DELETE", "/v1/usernames/me", { auth: alice.auth })).status).toBe(204);
    await expectError(await lookup(bob, hash), 404, "NOT_FOUND");
  });

  it("a change whose old name's shard fails still confirms; the alarm frees the old name once it answers", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const old = await freshHash("oldshard");
    let next = await freshHash("newshard");
    while (shardOf(next.hash) === shardOf(old.hash)) next = await freshHash("newshard");
    await take(alice, old.hash);
    const oldShardDown = { ...env, [shardOf(old.hash)]: brokenD1 } as Cloudflare.Env;
    await objectEnv(alice, oldShardDown);
    await take(alice, next.hash);
    // The release is owed: the old name still answers, and the alarm is set to retry.
    expect(await callJson("GET", `/v1/usernames/${old.hash}`, { auth: bob.auth })).toEqual({
      accountId: alice.accountId,
    });
    const stub = env.ACCOUNT.getByName(alice.accountId);
    expect(await runInDurableObject(stub, (_o, state) => state.storage.getAlarm())).not.toBeNull();
    await objectEnv(alice, env);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    await expectError(await lookup(bob, old.hash), 404, "NOT_FOUND");
    expect(await callJson("GET", `/v1/usernames/${next.hash}`, { auth: bob.auth })).toEqual({
      accountId: alice.accountId,
    });
  });

  it("deleting an account with a username answers 503 and deletes nothing; the retry deletes both", async () => {
    const [alice, bob] = await Promise.all([registerAccount(), registerAccount()]);
    const { hash } = await freshHash("outageacct");
    await take(alice, hash);
    await objectEnv(alice, brokenEnv);
    await expectError(await call("DELETE", "/v1/accounts/me", { auth: alice.auth }), 503, "UNAVAILABLE");
    await objectEnv(alice, env);
    expect((await call("GET", "/v1/accounts/whoami", { auth: alice.auth })).status).toBe(200);
    expect((await call("DELETE", "/v1/accounts/me", { auth: alice.auth })).status).toBe(204);
    await expectError(await lookup(bob, hash), 404, "NOT_FOUND");
    await expectError(await call("GET", "/v1/accounts/whoami", { auth: alice.auth }), 401, "UNAUTHORIZED");
  });
});
