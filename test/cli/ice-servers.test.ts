// `cipherpost ice-servers`, as an operator checking a TURN setup runs it, against two locally started relays:
// one configured for a self-hosted TURN server (the credential checked against HMAC-SHA1 from node:crypto, the
// expiry against the time of the request) and one for Cloudflare's TURN service, whose credential API is stood
// in by an HTTP server on the loopback interface (CALLS_CLOUDFLARE_API_URL), first answering, then failing.
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRelay, type Relay } from "../support/relay.ts";
import { runCli } from "./run.ts";

const SECRET = "a-coturn-static-auth-secret-for-tests";
const TOKEN = "stand-in-api-token-0123456789";
const KEY_ID = "fedcba9876543210fedcba9876543210";
const TTL = 1200;

let coturnRelay: Relay;
let cloudflareRelay: Relay;
let standIn: Server;
let cwd: string;
/** What the stand-in answers next, and what it was asked. */
let answer: { status: number; body: string } = { status: 201, body: "{}" };
const asked: { url: string; authorization: string | undefined; body: string }[] = [];

const CF_SERVERS = [
  { urls: ["stun:stun.cloudflare.com:3478"] },
  {
    urls: ["turn:turn.cloudflare.com:3478?transport=udp", "turns:turn.cloudflare.com:443?transport=tcp"],
    username: "stand-in-username",
    credential: "stand-in-credential",
  },
];

const readBody = (req: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let text = "";
    req.on("data", (c: Buffer) => {
      text += c.toString();
    });
    req.on("end", () => resolve(text));
  });

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), "cipherpost-cli-ice-"));
  standIn = createServer(async (req, res) => {
    asked.push({ url: req.url ?? "", authorization: req.headers.authorization, body: await readBody(req) });
    res.writeHead(answer.status, { "content-type": "application/json" }).end(answer.body);
  });
  await new Promise<void>((r) => standIn.listen(0, "127.0.0.1", r));
  const port = (standIn.address() as AddressInfo).port;
  [coturnRelay, cloudflareRelay] = await Promise.all([
    startRelay({
      vars: {
        CALLS_TURN_PROVIDER: "coturn",
        CALLS_TURN_URLS: "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349?transport=tcp",
        CALLS_TURN_SECRET: SECRET,
        CALLS_CREDENTIAL_TTL_SECONDS: String(TTL),
      },
    }),
    startRelay({
      vars: {
        CALLS_TURN_PROVIDER: "cloudflare",
        CALLS_TURN_KEY_ID: KEY_ID,
        CALLS_TURN_API_TOKEN: TOKEN,
        CALLS_CLOUDFLARE_API_URL: `http://127.0.0.1:${port}`,
      },
    }),
  ]);
}, 180_000);

afterAll(async () => {
  await Promise.all([coturnRelay?.stop(), cloudflareRelay?.stop()]);
  await new Promise((r) => standIn?.close(r));
  rmSync(cwd, { recursive: true, force: true });
});

const cli = (args: string[]) => runCli(cwd, args);

async function ok(args: string[]): Promise<Record<string, unknown>> {
  const r = await cli(args);
  expect(r.code, `cipherpost ${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return r.json;
}

describe("cipherpost ice-servers", () => {
  it("prints a self-hosted TURN server's URLs with use-auth-secret credentials: HMAC-SHA1 and now + ttl", async () => {
    const { accountId } = (await ok(["--profile", "op", "register", "--server", coturnRelay.url])) as {
      accountId: string;
    };
    const before = Math.floor(Date.now() / 1000);
    const out = (await ok(["--profile", "op", "ice-servers"])) as {
      iceServers: { urls: string[]; username: string; credential: string }[];
      ttlSeconds: number;
    };
    const after = Math.ceil(Date.now() / 1000);
    expect(out.ttlSeconds).toBe(TTL);
    expect(out.iceServers).toHaveLength(1);
    const [server] = out.iceServers;
    expect(server!.urls).toEqual([
      "turn:turn.example.org:3478?transport=udp",
      "turns:turn.example.org:5349?transport=tcp",
    ]);
    const [expiry, id] = server!.username.split(":");
    // The relay's clock is the real one here: the expiry is the request's time plus the TTL.
    expect(Number(expiry)).toBeGreaterThanOrEqual(before + TTL);
    expect(Number(expiry)).toBeLessThanOrEqual(after + TTL);
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(server!.username).not.toContain(accountId);
    // What coturn computes from the username with its static-auth-secret.
    expect(server!.credential).toBe(createHmac("sha1", SECRET).update(server!.username).digest("base64"));
  });

  it("prints what Cloudflare's credential API answered, asked with the key id, token and TTL", async () => {
    await ok(["--profile", "cf", "register", "--server", cloudflareRelay.url]);
    answer = { status: 201, body: JSON.stringify({ iceServers: CF_SERVERS }) };
    asked.length = 0;
    const out = await ok(["--profile", "cf", "ice-servers"]);
    expect(out).toEqual({ iceServers: CF_SERVERS, ttlSeconds: 3600 });
    expect(asked).toEqual([
      {
        url: `/v1/turn/keys/${KEY_ID}/credentials/generate-ice-servers`,
        authorization: `Bearer ${TOKEN}`,
        body: JSON.stringify({ ttl: 3600 }),
      },
    ]);
  });

  it("says UNAVAILABLE (exit 1) when the credential API fails, without the token", async () => {
    answer = { status: 500, body: "upstream broke" };
    const r = await cli(["--profile", "cf", "ice-servers"]);
    expect(r.code, r.stderr).toBe(1);
    const error = r.json.error as { code: string; message: string };
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.message).toMatch(/HTTP 500/);
    expect(r.stdout).not.toContain(TOKEN);
  });

  it("is a command without arguments", async () => {
    const r = await cli(["--profile", "cf", "ice-servers", "extra"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/ice-servers takes no arguments/);
  });
});
