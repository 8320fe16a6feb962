// Push wake-ups end to end: the relay with a VAPID key, a recording push service on localhost and SDK clients. A
// message for a device with nothing open makes one empty, VAPID-signed push; a connected device gets none; a push
// service answering 410 ends the registration.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CipherpostError, type CipherpostClient } from "../../src/client/index.ts";
import { startRelay, type Relay } from "../support/relay.ts";
import { nextEvent, register, waitFor } from "./helpers.ts";

interface Received {
  path: string;
  method: string;
  headers: IncomingMessage["headers"];
  bodyBytes: number;
}

let relay: Relay;
let pushService: Server;
let pushBase = "";
let publicJwk: JsonWebKey;
const received: Received[] = [];
const open: CipherpostClient[] = [];

beforeAll(async () => {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  publicJwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
  pushService = createServer((req, res) => {
    let bodyBytes = 0;
    req.on("data", (d: Buffer) => (bodyBytes += d.length));
    req.on("end", () => {
      received.push({ path: req.url ?? "", method: req.method ?? "", headers: req.headers, bodyBytes });
      // A push service says 201 Created for an accepted push; 410 Gone for an expired subscription.
      res.writeHead(req.url?.startsWith("/gone/") ? 410 : 201).end();
    });
  });
  await new Promise<void>((r) => pushService.listen(0, "127.0.0.1", r));
  pushBase = `http://127.0.0.1:${(pushService.address() as AddressInfo).port}`;
  relay = await startRelay({
    vars: {
      VAPID_PRIVATE_KEY_JWK: JSON.stringify(jwk),
      VAPID_SUBJECT: "mailto:ops@cipherpost.example",
      PUSH_MIN_INTERVAL_SECONDS: "60",
      PUSH_TTL_SECONDS: "3600",
    },
  });
}, 120_000);

afterAll(async () => {
  const bounded = (p: Promise<unknown>, ms: number) => Promise.race([p, new Promise((r) => setTimeout(r, ms))]);
  await Promise.allSettled(open.map((c) => bounded(c.close(), 20_000)));
  await bounded(relay?.stop() ?? Promise.resolve(), 30_000);
  await new Promise((r) => pushService?.close(r));
}, 120_000);

async function client(): Promise<CipherpostClient> {
  const c = await register(relay.url);
  open.push(c);
  return c;
}

const pushesTo = (path: string) => received.filter((r) => r.path === path);

function b64urlBytes(s: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(s, "base64url"));
}

describe("push wake-ups", () => {
  it("a message for a device with nothing open sends one empty push, signed with the relay's VAPID key", async () => {
    const [alice, bob] = await Promise.all([client(), client()]);
    const publicKey = await bob.vapidPublicKey();
    const endpoint = `${pushBase}/push/${bob.accountId}`;
    await bob.setPushEndpoint(endpoint);
    expect(await bob.pushEndpoint()).toBe(endpoint);

    await alice.send(bob.accountId, "wake up");
    const [push] = await waitFor("the push", () =>
      pushesTo(`/push/${bob.accountId}`).length ? pushesTo(`/push/${bob.accountId}`) : null,
    );
    expect(push).toMatchObject({ method: "POST", bodyBytes: 0 });
    expect(push!.headers.ttl).toBe("3600");
    expect(push!.headers.urgency).toBe("high");
    // Authorization: vapid t=<JWT>, k=<public key> (RFC 8292), the JWT ES256-signed for the push service's origin.
    const m = /^vapid t=([\w-]+\.[\w-]+\.[\w-]+), k=([\w-]+)$/.exec(String(push!.headers.authorization));
    expect(m).not.toBeNull();
    const [token, k] = [m![1]!, m![2]!];
    expect(k).toBe(publicKey);
    const [h, p, sig] = token.split(".") as [string, string, string];
    expect(JSON.parse(Buffer.from(h, "base64url").toString())).toEqual({ typ: "JWT", alg: "ES256" });
    const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as { aud: string; exp: number; sub: string };
    expect(claims.aud).toBe(pushBase);
    expect(claims.sub).toBe("mailto:ops@cipherpost.example");
    expect(claims.exp).toBeGreaterThan(Date.now() / 1000);
    expect(claims.exp).toBeLessThanOrEqual(Date.now() / 1000 + 24 * 3600);
    const verifier = await crypto.subtle.importKey(
      "raw",
      b64urlBytes(k),
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
    expect(
      await crypto.subtle.verify(
        { name: "ECDSA", hash: "SHA-256" },
        verifier,
        b64urlBytes(sig),
        new TextEncoder().encode(`${h}.${p}`),
      ),
    ).toBe(true);
    // And it is the key the operator configured.
    expect(Buffer.from(b64urlBytes(k).subarray(1, 33)).toString("base64url")).toBe(publicJwk.x);

    // Within PUSH_MIN_INTERVAL_SECONDS a second message wakes the device no more.
    await alice.send(bob.accountId, "still asleep?");
    // Woken, the device connects and finds both messages waiting.
    const got: string[] = [];
    bob.on("message", (msg) => void (msg.text && got.push(msg.text)));
    await bob.connect();
    await waitFor("both messages", () => got.length === 2);
    expect(got).toEqual(["wake up", "still asleep?"]);
    expect(pushesTo(`/push/${bob.accountId}`)).toHaveLength(1);
  });

  it("a connected device gets the message and no push", async () => {
    const [alice, carol] = await Promise.all([client(), client()]);
    const whileOnline = `/push/${carol.accountId}`;
    await carol.setPushEndpoint(`${pushBase}${whileOnline}`);
    await carol.connect();
    const arrived = nextEvent(carol, "message", (msg) => msg.text === "you are online");
    await alice.send(carol.accountId, "you are online");
    await arrived;
    // A barrier rather than a pause: carol goes offline with another endpoint and is written to again. A push
    // decided for the first message would hold back any other within PUSH_MIN_INTERVAL_SECONDS, so a push to the
    // new endpoint shows that none was decided while carol was connected (and none can still be on its way).
    const whileOffline = `/push/${carol.accountId}/offline`;
    await carol.setPushEndpoint(`${pushBase}${whileOffline}`);
    await carol.close();
    await alice.send(carol.accountId, "you are offline");
    await waitFor("the push for the message sent while offline", () => pushesTo(whileOffline).length === 1);
    expect(pushesTo(whileOnline)).toHaveLength(0);
  });

  it("a push service answering 410 ends the registration; the device learns it must subscribe again", async () => {
    const [alice, dave] = await Promise.all([client(), client()]);
    await dave.setPushEndpoint(`${pushBase}/gone/${dave.accountId}`);
    await alice.send(dave.accountId, "anyone there?");
    await waitFor("the push attempt", () => pushesTo(`/gone/${dave.accountId}`).length === 1);
    await waitFor("the registration to end", async () => (await dave.pushEndpoint()) === null);
    await dave.removePushEndpoint(); // removing what is gone is fine
  });

  it("the SDK's push calls carry the relay's codes", async () => {
    const eve = await client();
    const e = await eve.setPushEndpoint("http://push.example/not-https").catch((x: unknown) => x);
    expect(CipherpostError.is(e, "BAD_REQUEST")).toBe(true);
    expect(await eve.pushEndpoint()).toBeNull();
  });
});
