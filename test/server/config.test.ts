// Configuration that cannot be silently wrong: every kind of bad value makes every request answer 503 naming
// the variable, /health says the same, and valid edge settings (difficulty 0, generous limits) are accepted.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ConfigSchema, loadConfig } from "../../src/server/config.ts";

import { fetchWithEnv } from "./helpers.ts";

const fetchWith = (vars: Record<string, unknown>, path: string, init: RequestInit = {}) =>
  fetchWithEnv({ ...env, ...vars } as Cloudflare.Env, path, init);

const BAD: [string, unknown, RegExp][] = [
  ["MAX_DEVICES", "six", /whole number/],
  ["MAX_DEVICES", "0", /between 1 and 127/],
  ["MAX_DEVICES", "200", /between 1 and 127/],
  ["MAX_DEVICES", "2.5", /whole number/],
  ["POW_DIFFICULTY_BITS", "-1", /between 0 and 32/],
  ["POW_DIFFICULTY_BITS", "33", /between 0 and 32/],
  ["POW_CHALLENGE_TTL_SECONDS", "5", /between 10 and 86400/],
  ["LINK_TOKEN_TTL_SECONDS", "1e3", /whole number/],
  ["MAX_KEYS_REQUEST_BYTES", "1kb", /whole number/],
  ["PREKEY_CLAIMS_PER_PAIR_LIMIT", "0", /between 1/],
  ["PREKEY_CLAIMS_PER_PAIR_WINDOW_SECONDS", "999999", /between 1 and 86400/],
  ["REGISTRATIONS_PER_IP_LIMIT", " ", /whole number/],
  ["LOG_LEVEL", "verbose", /one of debug, info, warn, error/],
  ["LOG_LEVEL", "INFO", /one of debug, info, warn, error/],
  ["SHARD_MAP", "0-4095", /not FROM-TO:BINDING/],
  ["SHARD_MAP", "0-2000:DB_0", /stop at 2000/],
  ["SHARD_MAP", "0-2000:DB_0,2000-4095:DB_1", /gap or overlap at 2001/],
  ["SHARD_MAP", "0-1000:DB_0,1002-4095:DB_1", /gap or overlap at 1001/],
  ["SHARD_MAP", "0-4095:DB_9", /DB_9, which is not a D1 database/],
  ["SHARD_MAP", "0-4095:KEY_PAGES", /KEY_PAGES, which is not a D1 database/],
  // The abuse-resistance limits parse like every other count and switch.
  ["QUEUE_SENDER_MAX_MESSAGES", "0", /between 1/],
  ["PREKEY_CLAIMS_PER_DEVICE_LIMIT", "many", /whole number/],
  ["POW_MAX_DIFFICULTY_BITS", "40", /between 0 and 32/],
  ["PUSH_ALLOW_LOOPBACK", "yes", /must be true or false/],
];

describe("configuration", () => {
  it("the test Worker's configuration parses, with three shards", () => {
    const c = loadConfig(env);
    expect(c.ok).toBe(true);
    if (c.ok) expect(c.config.SHARD_MAP.map((r) => r.binding)).toEqual(["DB_0", "DB_1", "DB_2"]);
  });

  it("every variable has a default that parses when unset", () => {
    const parsed = ConfigSchema.safeParse({});
    expect(parsed.success).toBe(true);
    if (parsed.success) {
      expect(parsed.data.MAX_DEVICES).toBe(6);
      expect(parsed.data.POW_DIFFICULTY_BITS).toBe(16);
      expect(parsed.data.LINK_TOKEN_TTL_SECONDS).toBe(600);
      expect(parsed.data.SHARD_MAP).toEqual([{ from: 0, to: 4095, binding: "DB_0" }]);
    }
  });

  for (const [variable, value, problem] of BAD) {
    it(`${variable}=${JSON.stringify(value)} makes every route answer 503 MISCONFIGURED naming it`, async () => {
      for (const [method, path] of [
        ["POST", "/v1/challenges"],
        ["GET", "/v1/devices"],
        ["GET", "/v1/openapi.json"],
      ] as const) {
        const res = await fetchWith({ [variable]: value }, path, { method });
        expect(res.status).toBe(503);
        const body = (await res.json()) as {
          code: string;
          message: string;
          problems: { variable: string; problem: string }[];
        };
        expect(body.code).toBe("MISCONFIGURED");
        expect(body.message).toContain(variable);
        expect(body.problems.find((p) => p.variable === variable)?.problem).toMatch(problem);
      }
      const health = await fetchWith({ [variable]: value }, "/health");
      expect(health.status).toBe(503);
      const h = (await health.json()) as {
        status: string;
        config: { valid: boolean; problems: { variable: string; problem: string }[] };
      };
      expect(h.status).toBe("misconfigured");
      expect(h.config.valid).toBe(false);
      expect(h.config.problems.find((p) => p.variable === variable)?.problem).toMatch(problem);
    });
  }

  it("names every bad variable at once", async () => {
    const res = await fetchWith({ MAX_DEVICES: "x", LINK_TOKEN_TTL_SECONDS: "1" }, "/v1/challenges", {
      method: "POST",
    });
    const body = (await res.json()) as { problems: { variable: string }[] };
    expect(body.problems.map((p) => p.variable).sort()).toEqual(["LINK_TOKEN_TTL_SECONDS", "MAX_DEVICES"]);
  });

  it("accepts proof-of-work difficulty 0 and generous limits, so benchmarks can turn the brakes off", async () => {
    const vars = {
      POW_DIFFICULTY_BITS: "0",
      REGISTRATIONS_PER_IP_LIMIT: "1000000000",
      PREKEY_CLAIMS_PER_PAIR_LIMIT: "1000000000",
      MAX_DEVICES: "127",
    };
    expect(loadConfig({ ...env, ...vars }).ok).toBe(true);
    const res = await fetchWith(vars, "/v1/challenges", { method: "POST" });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { difficulty: number }).difficulty).toBe(0);
  });

  it("the cron sweep refuses to run on a bad configuration and removes expired challenges on a good one", async () => {
    const { scheduled } = await import("../../src/server/index.ts");
    expect(await scheduled({ ...env, SHARD_MAP: "bad" } as Cloudflare.Env)).toMatchObject({ challenges: 0 });
    await env.DB_1.prepare(
      "INSERT INTO pow_challenges (challenge, difficulty, expires_at) VALUES ('expired', 4, 5), ('live', 4, ?1)",
    )
      .bind(Date.now() + 60_000)
      .run();
    const r = await scheduled(env);
    expect(r.challenges).toBeGreaterThanOrEqual(1);
    const left = await env.DB_1.prepare(
      "SELECT challenge FROM pow_challenges WHERE challenge IN ('expired', 'live')",
    ).all<{ challenge: string }>();
    expect(left.results.map((x) => x.challenge)).toEqual(["live"]);
  });
});
