// The account object's username part on its own (a fresh object, a real SQLite, the test's D1 shards, and a D1
// that fails when the test says so): one name per account, clean-ups owed to D1 while it fails and done at the
// next call, and a name freed then taken back before its release reached D1 kept, not released late.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { normalizeUsername, usernameHash } from "../../src/protocol/usernames.ts";
import { configOf, type PartContext } from "../../src/server/account/context.ts";
import { RateWindow } from "../../src/server/account/rate-window.ts";
import { UsernameRecord } from "../../src/server/account/usernames.ts";
import type { Config } from "../../src/server/config.ts";
import { lookupUsername } from "../../src/server/db/usernames.ts";
import { ManualClock } from "../support/manual-clock.ts";

const brokenD1 = {
  prepare: () => {
    throw new Error("D1_ERROR: unavailable");
  },
  batch: () => Promise.reject(new Error("D1_ERROR: unavailable")),
} as unknown as D1Database;
const brokenEnv = { ...env, DB_0: brokenD1, DB_1: brokenD1, DB_2: brokenD1 } as Cloudflare.Env;

async function hashOf(name: string): Promise<string> {
  const n = normalizeUsername(name);
  if (!n.ok) throw new Error(n.message);
  return usernameHash(n.username);
}

let n = 0;
const unique = (nick: string) => `${nick}${Date.now().toString(36)}_${n++}.42`;

function inPart(fn: (part: UsernameRecord, accountId: string, cfg: Config, d1: { down: boolean }) => Promise<void>) {
  const accountId = crypto.randomUUID();
  const d1 = { down: false };
  return runInDurableObject(env.ACCOUNT.getByName(accountId), async (_o, state) => {
    const objectEnv = () => (d1.down ? brokenEnv : env);
    const ctx: PartContext = {
      sql: state.storage.sql,
      storage: state.storage,
      clock: new ManualClock(),
      env: objectEnv,
      config: () => configOf(objectEnv()),
      waitUntil: (p) => state.waitUntil(p),
    };
    const rates = new RateWindow(ctx.sql);
    rates.createTables();
    const part = new UsernameRecord(ctx, rates);
    part.createTables();
    const cfg = configOf(env) as Config;
    await fn(part, accountId, cfg, d1);
  });
}

describe("UsernameRecord", () => {
  it("confirming a second name frees the first; only one is ever the account's", async () => {
    await inPart(async (part, accountId, cfg) => {
      const [a, b] = await Promise.all([hashOf(unique("first")), hashOf(unique("second"))]);
      expect(await part.reserve(accountId, [a], cfg)).toMatchObject({ ok: true, usernameHash: a });
      expect(await part.confirm(accountId, a, cfg)).toEqual({ ok: true, usernameHash: a });
      expect(await lookupUsername(env, cfg, a)).toBe(accountId);
      expect(await part.reserve(accountId, [b], cfg)).toMatchObject({ ok: true, usernameHash: b });
      expect(await part.confirm(accountId, b, cfg)).toEqual({ ok: true, usernameHash: b });
      expect(await lookupUsername(env, cfg, a)).toBeNull();
      expect(await lookupUsername(env, cfg, b)).toBe(accountId);
    });
  });

  it("a release D1 missed is owed and done at the next call", async () => {
    await inPart(async (part, accountId, cfg, d1) => {
      const a = await hashOf(unique("owed"));
      await part.reserve(accountId, [a], cfg);
      await part.confirm(accountId, a, cfg);
      d1.down = true;
      expect(await part.delete(accountId, cfg)).toMatchObject({ ok: false, code: "UNAVAILABLE" });
      d1.down = false;
      expect(await lookupUsername(env, cfg, a)).toBe(accountId);
      const b = await hashOf(unique("next"));
      expect(await part.reserve(accountId, [b], cfg)).toMatchObject({ ok: true });
      expect(await lookupUsername(env, cfg, a)).toBeNull();
    });
  });

  it("a name freed and taken back before its release reached D1 stays the account's", async () => {
    await inPart(async (part, accountId, cfg, d1) => {
      const a = await hashOf(unique("back"));
      await part.reserve(accountId, [a], cfg);
      await part.confirm(accountId, a, cfg);
      d1.down = true;
      expect((await part.delete(accountId, cfg)).ok).toBe(false);
      d1.down = false;
      // The D1 row is still confirmed, so a reservation of it is refused: the owed release runs first
      // (at the start of reserve), turning it into this account's tombstone, which the account may take back.
      expect(await part.reserve(accountId, [a], cfg)).toMatchObject({ ok: true, usernameHash: a });
      expect(await part.confirm(accountId, a, cfg)).toEqual({ ok: true, usernameHash: a });
      // Later calls must not release it again.
      const other = await hashOf(unique("other"));
      await part.reserve(accountId, [other], cfg);
      expect(await lookupUsername(env, cfg, a)).toBe(accountId);
    });
  });

  it("a link needs a confirmed name", async () => {
    await inPart(async (part, accountId, cfg) => {
      expect(await part.setLink(accountId, "x".repeat(102), cfg)).toMatchObject({ ok: false, code: "NOT_FOUND" });
    });
  });
});
