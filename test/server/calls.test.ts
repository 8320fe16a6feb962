// GET /v1/calls/ice-servers: no provider (501 CALLS_NOT_CONFIGURED), a self-hosted TURN server's shared-secret
// credentials (checked against an HMAC-SHA1 computed here, with the expiry read from a ManualClock), Cloudflare's
// credential API (a stand-in answering its documented shapes, and failing every way: 503, never 500), the
// per-device limit, and the settings' validation (503 MISCONFIGURED naming the variable, never echoing a secret).
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { IceServersResponse } from "../../src/protocol/calls.ts";
import { buildApp } from "../../src/server/index.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { BASE, call, expectError, randomIp, registerAccount, type TestAccount } from "./helpers.ts";

type Vars = Record<string, string>;

const SECRET = "coturn-static-auth-secret-0123456789";
const TOKEN = "cf-api-token-abcdefghijklmnopqrstuvwxyz";
const KEY_ID = "0123456789abcdef0123456789abcdef";
const STAND_IN = "https://turn-api.test";
const COTURN: Vars = {
  CALLS_TURN_PROVIDER: "coturn",
  CALLS_TURN_URLS: "stun:turn.example.org:3478, turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349",
  CALLS_TURN_SECRET: SECRET,
};
const CLOUDFLARE: Vars = {
  CALLS_TURN_PROVIDER: "cloudflare",
  CALLS_TURN_KEY_ID: KEY_ID,
  CALLS_TURN_API_TOKEN: TOKEN,
  CALLS_CLOUDFLARE_API_URL: STAND_IN,
};

/** One env object per set of vars: the configuration is parsed once per env object. */
const envs = new Map<string, Cloudflare.Env>();
function envWith(vars: Vars): Cloudflare.Env {
  const key = JSON.stringify(vars);
  let e = envs.get(key);
  if (!e) {
    e = { ...env, ...vars } as Cloudflare.Env;
    envs.set(key, e);
  }
  return e;
}

const clock = new ManualClock(1_900_000_000_250);
const timedApp = buildApp(clock);

/** GET /v1/calls/ice-servers through a relay with `vars`, its routes reading the ManualClock. */
async function iceServers(vars: Vars, auth?: string, path = "/v1/calls/ice-servers"): Promise<Response> {
  const ctx = createExecutionContext();
  const headers: Record<string, string> = { "cf-connecting-ip": randomIp() };
  if (auth) headers.authorization = auth;
  const res = await timedApp.fetch(new Request(`${BASE}${path}`, { headers }), envWith(vars), ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** base64(HMAC-SHA1(secret, username)), computed here with WebCrypto, apart from the relay's code. */
async function expectedPassword(secret: string, username: string): Promise<string> {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-1" }, false, [
    "sign",
  ]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(username)));
  return btoa(String.fromCharCode(...mac));
}

let alice: TestAccount;
beforeAll(async () => {
  alice = await registerAccount();
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe("no TURN provider", () => {
  it("answers 501 CALLS_NOT_CONFIGURED to an authenticated device, and 401 to anyone else", async () => {
    await expectError(await call("GET", "/v1/calls/ice-servers", { auth: alice.auth }), 501, "CALLS_NOT_CONFIGURED");
    await expectError(await call("GET", "/v1/calls/ice-servers"), 401, "UNAUTHORIZED");
    // Credentials of a provider that is not chosen change nothing.
    await expectError(
      await iceServers({ CALLS_TURN_SECRET: SECRET, CALLS_TURN_URLS: COTURN.CALLS_TURN_URLS! }, alice.auth),
      501,
      "CALLS_NOT_CONFIGURED",
    );
  });

  it("the API document describes the route, its answer and its errors", async () => {
    const res = await call("GET", "/v1/openapi.json");
    const doc = (await res.json()) as {
      paths: Record<string, { get?: { responses: Record<string, unknown>; security?: unknown[] } }>;
    };
    const op = doc.paths["/v1/calls/ice-servers"]?.get;
    expect(op).toBeDefined();
    expect(Object.keys(op!.responses).sort()).toEqual(["200", "401", "429", "500", "501", "503"]);
    expect(op!.security).toEqual([{ basicAuth: [] }]);
  });
});

describe("a self-hosted TURN server (coturn's use-auth-secret)", () => {
  it("answers its URLs with username <now + ttl>:<random id> and base64(HMAC-SHA1(secret, username))", async () => {
    const res = await iceServers(COTURN, alice.auth);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = IceServersResponse.parse(await res.json());
    expect(body.ttlSeconds).toBe(3600);
    expect(body.iceServers).toHaveLength(1);
    const [server] = body.iceServers;
    expect(server!.urls).toEqual([
      "stun:turn.example.org:3478",
      "turn:turn.example.org:3478?transport=udp",
      "turns:turn.example.org:5349",
    ]);
    const [expiry, id] = server!.username!.split(":");
    // The ManualClock's time in whole seconds, plus CALLS_CREDENTIAL_TTL_SECONDS.
    expect(Number(expiry)).toBe(Math.floor(clock.now() / 1000) + 3600);
    expect(Number(expiry)).toBe(1_900_003_600);
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(server!.credential).toBe(await expectedPassword(SECRET, server!.username!));
  });

  it("follows the clock and CALLS_CREDENTIAL_TTL_SECONDS, and never names the account or device", async () => {
    const vars = { ...COTURN, CALLS_CREDENTIAL_TTL_SECONDS: "600" };
    const first = IceServersResponse.parse(await (await iceServers(vars, alice.auth)).json());
    clock.advance(90_000);
    const second = IceServersResponse.parse(await (await iceServers(vars, alice.auth)).json());
    const [e1, id1] = first.iceServers[0]!.username!.split(":");
    const [e2, id2] = second.iceServers[0]!.username!.split(":");
    expect(first.ttlSeconds).toBe(600);
    expect(Number(e2) - Number(e1)).toBe(90);
    expect(Number(e2)).toBe(Math.floor(clock.now() / 1000) + 600);
    // A fresh random id per request: nothing links two calls of one device.
    expect(id1).not.toBe(id2);
    for (const a of [first, second]) {
      const text = JSON.stringify(a);
      expect(text).not.toContain(alice.accountId);
      expect(text).not.toContain(alice.accountId.replace(/-/g, ""));
      expect(text).not.toContain(SECRET);
      expect(a.iceServers[0]!.credential).toBe(await expectedPassword(SECRET, a.iceServers[0]!.username!));
    }
  });
});

/** Cloudflare's API stood in by `answer`; every request to it is recorded. */
function standIn(answer: (req: Request) => Response | Promise<Response>) {
  const requests: { url: string; method: string; authorization: string | null; redirect?: string; body: unknown }[] =
    [];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    if (!req.url.startsWith(`${STAND_IN}/`)) throw new Error(`unexpected request to ${req.url}`);
    requests.push({
      url: req.url,
      method: req.method,
      authorization: req.headers.get("authorization"),
      ...(init?.redirect ? { redirect: init.redirect } : {}),
      body: await req.json().catch(() => null),
    });
    return answer(req);
  });
  return requests;
}

const CF_SERVERS = [
  { urls: ["stun:stun.cloudflare.com:3478", "stun:stun.cloudflare.com:53"] },
  {
    urls: [
      "turn:turn.cloudflare.com:3478?transport=udp",
      "turn:turn.cloudflare.com:3478?transport=tcp",
      "turns:turn.cloudflare.com:5349?transport=tcp",
      "turns:turn.cloudflare.com:443?transport=tcp",
    ],
    username: "g0a1b2c3d4e5f6",
    credential: "e7f8a9b0c1d2e3f4",
  },
];

describe("Cloudflare's TURN service", () => {
  it("asks the credential API with the key id, the Bearer token and the TTL, and passes its array on", async () => {
    const requests = standIn(() => Response.json({ iceServers: CF_SERVERS }, { status: 201 }));
    const res = await iceServers({ ...CLOUDFLARE, CALLS_CREDENTIAL_TTL_SECONDS: "900" }, alice.auth);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await res.json()).toEqual({ iceServers: CF_SERVERS, ttlSeconds: 900 });
    expect(requests).toEqual([
      {
        url: `${STAND_IN}/v1/turn/keys/${KEY_ID}/credentials/generate-ice-servers`,
        method: "POST",
        authorization: `Bearer ${TOKEN}`,
        redirect: "manual",
        body: { ttl: 900 },
      },
    ]);
  });

  it("accepts the older single-object answer and a single URL string, answering the array shape", async () => {
    standIn(() =>
      Response.json({
        iceServers: { urls: "turn:turn.cloudflare.com:3478?transport=udp", username: "u", credential: "c" },
      }),
    );
    const body = await (await iceServers(CLOUDFLARE, alice.auth)).json();
    expect(body).toEqual({
      iceServers: [{ urls: ["turn:turn.cloudflare.com:3478?transport=udp"], username: "u", credential: "c" }],
      ttlSeconds: 3600,
    });
  });

  it("passes on URLs of a shape the relay's own settings would not take, as long as they are ICE URLs", async () => {
    const servers = [{ urls: ["turn:198.51.100.7:3478?transport=udp&region=eu"], username: "u", credential: "c" }];
    standIn(() => Response.json({ iceServers: servers }, { status: 201 }));
    expect(await (await iceServers(CLOUDFLARE, alice.auth)).json()).toEqual({ iceServers: servers, ttlSeconds: 3600 });
  });

  it("the API failing in any way is 503 UNAVAILABLE with Retry-After, never a 500 and never the token", async () => {
    const failures: [string, () => Response | Promise<Response>, RegExp][] = [
      ["a 500", () => new Response("upstream broke", { status: 500 }), /HTTP 500/],
      ["a 502", () => new Response(null, { status: 502 }), /HTTP 502/],
      ["a refused token", () => Response.json({ error: "bad token" }, { status: 401 }), /CALLS_TURN_API_TOKEN/],
      ["an unknown key", () => new Response(null, { status: 404 }), /CALLS_TURN_KEY_ID/],
      ["a redirect", () => new Response(null, { status: 302, headers: { location: "https://evil.test/" } }), /302/],
      ["not JSON", () => new Response("<html>maintenance</html>", { status: 201 }), /unusable/],
      ["JSON of another shape", () => Response.json({ servers: [] }), /unusable/],
      ["an empty list", () => Response.json({ iceServers: [] }), /unusable/],
      [
        "a TURN entry without credentials",
        () => Response.json({ iceServers: [{ urls: ["turn:t.test"] }] }),
        /unusable/,
      ],
      ["a URL that is not ICE", () => Response.json({ iceServers: [{ urls: ["https://t.test/"] }] }), /unusable/],
      [
        "a timeout",
        () => {
          throw new DOMException("The operation was aborted due to timeout", "TimeoutError");
        },
        /did not answer within 5000 ms/,
      ],
      [
        "a network failure",
        () => {
          throw new TypeError("Network connection lost.");
        },
        /could not be reached/,
      ],
    ];
    for (const [what, answer, message] of failures) {
      vi.restoreAllMocks();
      standIn(answer);
      const res = await iceServers(CLOUDFLARE, alice.auth);
      const text = await res.text();
      expect(res.status, `${what}: ${text}`).toBe(503);
      const body = JSON.parse(text) as { code: string; message: string };
      expect(body.code, what).toBe("UNAVAILABLE");
      expect(body.message, what).toMatch(message);
      expect(res.headers.get("retry-after"), what).toBe("5");
      expect(text, what).not.toContain(TOKEN);
      expect(text, what).not.toContain("upstream broke");
    }
  });
});

describe("the per-device limit", () => {
  it("answers 429 RATE_LIMITED with Retry-After past CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT, per device", async () => {
    const vars = {
      ...COTURN,
      CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT: "3",
      CALLS_ICE_REQUESTS_PER_DEVICE_WINDOW_SECONDS: "600",
    };
    const bob = await registerAccount();
    for (let i = 0; i < 3; i++) expect((await iceServers(vars, bob.auth)).status).toBe(200);
    const refused = await iceServers(vars, bob.auth);
    const body = await expectError(refused, 429, "RATE_LIMITED");
    expect(body.message).toMatch(/CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT \(3\)/);
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(600);
    // Another device is counted on its own.
    const carol = await registerAccount();
    expect((await iceServers(vars, carol.auth)).status).toBe(200);
  });

  it("the Cloudflare API is not asked once the device is past its limit", async () => {
    const requests = standIn(() => Response.json({ iceServers: CF_SERVERS }, { status: 201 }));
    const vars = { ...CLOUDFLARE, CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT: "1" };
    const dave = await registerAccount();
    expect((await iceServers(vars, dave.auth)).status).toBe(200);
    await expectError(await iceServers(vars, dave.auth), 429, "RATE_LIMITED");
    expect(requests).toHaveLength(1);
  });
});

describe("the call settings", () => {
  const BAD: [Vars, string, RegExp][] = [
    [{ CALLS_TURN_PROVIDER: "twilio" }, "CALLS_TURN_PROVIDER", /one of cloudflare, coturn/],
    [{ CALLS_TURN_PROVIDER: "cloudflare", CALLS_TURN_API_TOKEN: TOKEN }, "CALLS_TURN_KEY_ID", /must be set/],
    [{ ...CLOUDFLARE, CALLS_TURN_KEY_ID: "../../admin" }, "CALLS_TURN_KEY_ID", /TURN key id/],
    [
      { ...CLOUDFLARE, CALLS_CLOUDFLARE_API_URL: "http://rtc.live.cloudflare.com" },
      "CALLS_CLOUDFLARE_API_URL",
      /https/,
    ],
    [{ ...CLOUDFLARE, CALLS_CLOUDFLARE_API_URL: "not a url" }, "CALLS_CLOUDFLARE_API_URL", /https/],
    [{ ...CLOUDFLARE, CALLS_TURN_API_TOKEN: "two words" }, "CALLS_TURN_API_TOKEN", /not shown/],
    [{ CALLS_TURN_PROVIDER: "coturn", CALLS_TURN_SECRET: SECRET }, "CALLS_TURN_URLS", /must be set/],
    [
      { ...COTURN, CALLS_TURN_URLS: "https://turn.example.org" },
      "CALLS_TURN_URLS",
      /not a stun:, stuns:, turn: or turns:/,
    ],
    [{ ...COTURN, CALLS_TURN_URLS: "turn:turn.example.org:70000" }, "CALLS_TURN_URLS", /not a stun:/],
    [{ ...COTURN, CALLS_TURN_URLS: "stun:stun.example.org" }, "CALLS_TURN_URLS", /at least one turn: or turns:/],
    [{ ...COTURN, CALLS_TURN_SECRET: "short-secret" }, "CALLS_TURN_SECRET", /at least 16 characters/],
    [{ ...COTURN, CALLS_CREDENTIAL_TTL_SECONDS: "30" }, "CALLS_CREDENTIAL_TTL_SECONDS", /between 60 and 86400/],
    [{ ...COTURN, CALLS_CREDENTIAL_TTL_SECONDS: "172801" }, "CALLS_CREDENTIAL_TTL_SECONDS", /between 60 and 86400/],
    [{ CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT: "0" }, "CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT", /between 1/],
    [
      { CALLS_ICE_REQUESTS_PER_DEVICE_WINDOW_SECONDS: "1h" },
      "CALLS_ICE_REQUESTS_PER_DEVICE_WINDOW_SECONDS",
      /whole number/,
    ],
  ];

  for (const [vars, variable, problem] of BAD) {
    it(`${JSON.stringify(vars).slice(0, 90)} makes every route answer 503 MISCONFIGURED naming ${variable}`, async () => {
      for (const path of ["/v1/calls/ice-servers", "/v1/push/vapid-key"]) {
        const res = await iceServers(vars, alice.auth, path);
        const text = await res.text();
        expect(res.status, text).toBe(503);
        const body = JSON.parse(text) as { code: string; problems: { variable: string; problem: string }[] };
        expect(body.code).toBe("MISCONFIGURED");
        expect(body.problems.find((p) => p.variable === variable)?.problem, text).toMatch(problem);
        expect(text).not.toContain(TOKEN);
        expect(text).not.toContain("short-secret");
        expect(text).not.toContain("two words");
      }
    });
  }

  it("a chosen provider whose secret was never put: the calls route answers 503 MISCONFIGURED naming it, the rest works", async () => {
    for (const [vars, secret] of [
      [{ CALLS_TURN_PROVIDER: "coturn", CALLS_TURN_URLS: "turn:turn.example.org" }, "CALLS_TURN_SECRET"],
      [{ CALLS_TURN_PROVIDER: "cloudflare", CALLS_TURN_KEY_ID: KEY_ID }, "CALLS_TURN_API_TOKEN"],
    ] as const) {
      const res = await iceServers(vars, alice.auth);
      const body = await expectError(res, 503, "MISCONFIGURED");
      expect((body.problems as { variable: string }[]).map((p) => p.variable)).toEqual([secret]);
      expect(body.message).toContain(`wrangler secret put ${secret}`);
      // Only calls are affected: messaging and the rest of the API answer as usual.
      await expectError(await iceServers(vars, alice.auth, "/v1/push/vapid-key"), 501, "PUSH_NOT_CONFIGURED");
    }
  });

  it("defaults: no provider, Cloudflare's API, 3600 s credentials, 60 requests per device per 3600 s", async () => {
    const { ConfigSchema } = await import("../../src/server/config.ts");
    const c = ConfigSchema.parse({});
    expect(c.CALLS_TURN_PROVIDER).toBe("");
    expect(c.CALLS_CLOUDFLARE_API_URL).toBe("https://rtc.live.cloudflare.com");
    expect(c.CALLS_TURN_URLS).toEqual([]);
    expect(c.CALLS_CREDENTIAL_TTL_SECONDS).toBe(3600);
    expect(c.CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT).toBe(60);
    expect(c.CALLS_ICE_REQUESTS_PER_DEVICE_WINDOW_SECONDS).toBe(3600);
    // A loopback stand-in over http is accepted (tests, npm start); a trailing slash is dropped.
    expect(ConfigSchema.parse({ CALLS_CLOUDFLARE_API_URL: "http://127.0.0.1:8787/" }).CALLS_CLOUDFLARE_API_URL).toBe(
      "http://127.0.0.1:8787",
    );
    // IPv6 hosts and ports parse; secrets are trimmed (wrangler secret put from a pipe may keep a newline).
    const coturn = ConfigSchema.parse({
      CALLS_TURN_URLS: "turn:[2001:db8::1]:3478?transport=tcp,turns:turn.example.org:443?transport=tcp",
      CALLS_TURN_SECRET: `${SECRET}\n`,
    });
    expect(coturn.CALLS_TURN_URLS).toEqual([
      "turn:[2001:db8::1]:3478?transport=tcp",
      "turns:turn.example.org:443?transport=tcp",
    ]);
    expect(coturn.CALLS_TURN_SECRET).toBe(SECRET);
  });
});
