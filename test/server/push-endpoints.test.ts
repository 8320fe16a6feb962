// Which push endpoints the relay will call: https on port 443 to the configured push services only, never an IP
// literal in any notation, loopback only with PUSH_ALLOW_LOOPBACK; endpoints stored under a looser policy are
// dropped unused; a push service's redirect is never followed. (The real runtime's fetch: test/e2e/push-redirect.)
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { fetchWithEnv, registerAccount, type TestAccount } from "./helpers.ts";
import { accountStub, primary, sendOk, withObjectVars } from "./ws-helpers.ts";

let pushVars: Record<string, string>;
let withPush: Cloudflare.Env;

beforeAll(async () => {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  pushVars = {
    VAPID_PRIVATE_KEY_JWK: JSON.stringify(await crypto.subtle.exportKey("jwk", pair.privateKey)),
    VAPID_SUBJECT: "mailto:ops@example.org",
    PUSH_MIN_INTERVAL_SECONDS: "0",
  };
  withPush = { ...env, ...pushVars } as Cloudflare.Env;
});

afterEach(() => {
  vi.restoreAllMocks();
});

const envs = new Map<string, Cloudflare.Env>();
/** The relay with push configured and `vars` on top (one env object per set, as config is parsed per env). */
function relayWith(vars: Record<string, string> = {}): Cloudflare.Env {
  const key = JSON.stringify(vars);
  if (!envs.has(key)) envs.set(key, { ...withPush, ...vars } as Cloudflare.Env);
  return envs.get(key)!;
}

const register = (a: TestAccount, endpoint: string, vars?: Record<string, string>) =>
  fetchWithEnv(relayWith(vars), "/v1/devices/push", {
    method: "PUT",
    headers: { "content-type": "application/json", authorization: a.auth },
    body: JSON.stringify({ endpoint }),
  });

const storedEndpoint = (accountId: string) =>
  runInDurableObject(
    accountStub(accountId),
    (_o, state) =>
      state.storage.sql.exec<{ endpoint: string }>("SELECT endpoint FROM push_endpoints").toArray()[0]?.endpoint ??
      null,
  );

/** The endpoints the issue found accepted, each aimed inside the relay's network or at cloud metadata. */
const FROM_THE_ISSUE = [
  "http://127.1:8898/",
  "http://0x7f000001:8898/",
  "http://2130706433:8898/",
  "http://[::1]:8898/",
  "https://169.254.169.254/latest/meta-data/",
  "https://10.0.0.1:6379/",
  "https://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token",
];

const MORE_REFUSED = [
  "https://127.0.0.1/",
  "https://0177.0.0.1/",
  "https://0x7f.1/",
  "https://[::ffff:127.0.0.1]/",
  "https://[fd00::1]/",
  "https://localhost/",
  "http://fcm.googleapis.com/fcm/send/x",
  "https://fcm.googleapis.com:8443/fcm/send/x",
  "https://fcm.googleapis.com.evil.example/fcm/send/x",
  "https://evilfcm.googleapis.com/fcm/send/x",
  "https://notify.windows.com/w/",
  "https://push.example/x",
  "wss://fcm.googleapis.com/x",
];

const PUSH_SERVICES = [
  "https://fcm.googleapis.com/fcm/send/dGVzdA:APA91bH",
  "https://fcm.googleapis.com:443/fcm/send/explicit-default-port",
  "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
  "https://web.push.apple.com/QGjUr6wMmqp5Bn",
  "https://wns2-par02p.notify.windows.com/w/?token=BQYAAAB",
];

describe("registering a push endpoint", () => {
  it("refuses with 400 every endpoint the issue listed, and stores nothing", async () => {
    const a = await registerAccount();
    for (const endpoint of FROM_THE_ISSUE) {
      const res = await register(a, endpoint);
      const body = (await res.json()) as { code: string; message: string };
      expect(res.status, `${endpoint}: ${JSON.stringify(body)}`).toBe(400);
      expect(body.code).toBe("BAD_REQUEST");
    }
    expect(await storedEndpoint(a.accountId)).toBeNull();
  });

  it("refuses IP literals in any notation, other schemes and ports, and hosts off the list", async () => {
    const a = await registerAccount();
    for (const endpoint of MORE_REFUSED) expect((await register(a, endpoint)).status, endpoint).toBe(400);
    const messages = await Promise.all(
      ["https://10.0.0.1/", "https://fcm.googleapis.com:8443/", "https://push.example/"].map(
        async (e) => ((await (await register(a, e)).json()) as { message: string }).message,
      ),
    );
    expect(messages[0]).toMatch(/not by IP address/);
    expect(messages[1]).toMatch(/port, 443/);
    expect(messages[2]).toMatch(/PUSH_ALLOWED_HOSTS/);
    expect(await storedEndpoint(a.accountId)).toBeNull();
  });

  it("accepts the browsers' push services by default", async () => {
    const a = await registerAccount();
    for (const endpoint of PUSH_SERVICES) {
      expect((await register(a, endpoint)).status, endpoint).toBe(204);
      expect(await storedEndpoint(a.accountId)).toBe(endpoint);
    }
  });

  it("accepts loopback endpoints only when PUSH_ALLOW_LOOPBACK is true, and nothing else more", async () => {
    const a = await registerAccount();
    const loopback = ["http://127.0.0.1:9/p", "http://localhost:8787/p", "http://[::1]:9/p", "https://127.0.0.1:9/p"];
    for (const endpoint of loopback) expect((await register(a, endpoint)).status, endpoint).toBe(400);
    const dev = { PUSH_ALLOW_LOOPBACK: "true" };
    for (const endpoint of loopback) expect((await register(a, endpoint, dev)).status, endpoint).toBe(204);
    for (const endpoint of ["https://169.254.169.254/x", "https://10.0.0.1:6379/", "http://192.168.1.1/"])
      expect((await register(a, endpoint, dev)).status, endpoint).toBe(400);
  });

  it("follows PUSH_ALLOWED_HOSTS: exact names and *. suffixes", async () => {
    const a = await registerAccount();
    const vars = { PUSH_ALLOWED_HOSTS: "push.example.org, *.corp.example" };
    expect((await register(a, "https://push.example.org/x", vars)).status).toBe(204);
    expect((await register(a, "https://a.b.corp.example/x", vars)).status).toBe(204);
    for (const endpoint of ["https://corp.example/x", "https://fcm.googleapis.com/x", "https://x.push.example.org/"])
      expect((await register(a, endpoint, vars)).status, endpoint).toBe(400);
  });

  it("a bad PUSH_ALLOWED_HOSTS or PUSH_ALLOW_LOOPBACK makes the relay answer 503 MISCONFIGURED naming it", async () => {
    for (const [variable, value, problem] of [
      ["PUSH_ALLOWED_HOSTS", "10.0.0.1", /no IP addresses/],
      ["PUSH_ALLOWED_HOSTS", "*", /not a host name/],
      ["PUSH_ALLOWED_HOSTS", "*.com", /not a host name/],
      ["PUSH_ALLOWED_HOSTS", "fcm.googleapis.com,exa mple.org", /not a host name/],
      ["PUSH_ALLOW_LOOPBACK", "yes", /true or false/],
    ] as const) {
      const res = await fetchWithEnv({ ...env, [variable]: value } as Cloudflare.Env, "/v1/push/vapid-key");
      const body = (await res.json()) as { code: string; problems: { variable: string; problem: string }[] };
      expect(res.status).toBe(503);
      expect(body.code).toBe("MISCONFIGURED");
      expect(body.problems.find((p) => p.variable === variable)?.problem).toMatch(problem);
    }
  });
});

/**
 * A recipient with nothing open whose object has a VAPID key (as if deployed with one, without
 * PUSH_ALLOW_LOOPBACK), its endpoint registered through a relay that allows loopback.
 */
async function sleepingRecipient(endpoint: string): Promise<TestAccount> {
  const bob = await registerAccount();
  await withObjectVars(bob.accountId, pushVars);
  expect((await register(bob, endpoint, { PUSH_ALLOW_LOOPBACK: "true" })).status).toBe(204);
  expect(await storedEndpoint(bob.accountId)).toBe(endpoint);
  return bob;
}

describe("sending a push", () => {
  it("an endpoint stored under a looser policy is dropped at the next wake-up, never called", async () => {
    const calls: string[] = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input) => {
      calls.push(String(input instanceof Request ? input.url : input));
      return new Response(null, { status: 201 });
    });
    // Registered while PUSH_ALLOW_LOOPBACK was on (a development relay's data, say); the object runs without it.
    const bob = await sleepingRecipient("http://127.0.0.1:8898/");
    const alice = await registerAccount();
    await sendOk(primary(alice), [primary(bob)]);
    await expect.poll(() => storedEndpoint(bob.accountId)).toBeNull();
    expect(calls).toEqual([]);
  });

  it("a redirecting push service is asked once with redirect: manual, and its Location is never requested", async () => {
    const calls: { url: string; redirect: RequestInit["redirect"]; authorization: string | null }[] = [];
    const endpoint = "https://fcm.googleapis.com/fcm/send/redirects";
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      calls.push({ url, redirect: init?.redirect, authorization: new Headers(init?.headers).get("authorization") });
      return url === endpoint
        ? new Response(null, { status: 307, headers: { location: "http://127.0.0.2:8898/" } })
        : new Response(null, { status: 201 });
    });
    const bob = await sleepingRecipient(endpoint);
    const alice = await registerAccount();
    await sendOk(primary(alice), [primary(bob)]);
    await expect.poll(() => calls.length).toBe(1);
    expect(calls[0]).toMatchObject({ url: endpoint, redirect: "manual" });
    expect(calls[0]!.authorization).toMatch(/^vapid t=/);
    // A second message is a second wake-up (PUSH_MIN_INTERVAL_SECONDS is 0 here): still only the endpoint itself.
    await sendOk(primary(alice), [primary(bob)]);
    await expect.poll(() => calls.length).toBe(2);
    expect(calls.map((c) => c.url)).toEqual([endpoint, endpoint]);
  });
});
