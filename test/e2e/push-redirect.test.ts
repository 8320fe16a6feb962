// A push service that redirects, with the real runtime's fetch: a relay started locally (PUSH_ALLOW_LOOPBACK, so
// a push service on 127.0.0.1 is allowed), a recording push service whose endpoint answers 307 to another path,
// and a message that wakes a device. The relay asks the endpoint and never follows the redirect.
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRelay, type Relay } from "../support/relay.ts";
import { register, type Registered } from "./helpers.ts";

let relay: Relay;
let service: Server;
let serviceBase = "";
const hits: { path: string; authorization: string | undefined }[] = [];

beforeAll(async () => {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  service = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      hits.push({ path: req.url ?? "", authorization: req.headers.authorization });
      if (req.url?.startsWith("/redirect/")) res.writeHead(307, { location: `${serviceBase}/landed${req.url}` }).end();
      else res.writeHead(201).end();
    });
  });
  await new Promise<void>((r) => service.listen(0, "127.0.0.1", r));
  serviceBase = `http://127.0.0.1:${(service.address() as AddressInfo).port}`;
  relay = await startRelay({
    vars: {
      PUSH_ALLOW_LOOPBACK: "true",
      VAPID_PRIVATE_KEY_JWK: JSON.stringify(await crypto.subtle.exportKey("jwk", pair.privateKey)),
      VAPID_SUBJECT: "mailto:ops@cipherpost.example",
      PUSH_MIN_INTERVAL_SECONDS: "0",
    },
  });
}, 120_000);

afterAll(async () => {
  await relay?.stop();
  await new Promise((r) => service?.close(r));
}, 60_000);

async function setEndpoint(device: Registered, endpoint: string): Promise<void> {
  const res = await fetch(`${relay.url}/v1/devices/push`, {
    method: "PUT",
    headers: { authorization: device.auth, "content-type": "application/json" },
    body: JSON.stringify({ endpoint }),
  });
  expect(res.status, await res.text()).toBe(204);
}

async function sendTo(from: Registered, to: Registered): Promise<void> {
  const res = await fetch(`${relay.url}/v1/messages/${to.accountId}`, {
    method: "PUT",
    headers: { authorization: from.auth, "content-type": "application/json" },
    body: JSON.stringify({
      timestamp: Date.now(),
      messages: [
        {
          type: 2,
          destinationDeviceId: to.deviceId,
          destinationRegistrationId: to.registrationId,
          content: randomBytes(48).toString("base64"),
        },
      ],
    }),
  });
  expect(res.status, await res.text()).toBe(200);
}

describe("push wake-ups and redirects", () => {
  it("a push endpoint answering 307 is asked once; the redirect is never followed", async () => {
    const [alice, bob] = [await register(relay.url), await register(relay.url)];
    const redirecting = `/redirect/${bob.accountId}`;
    await setEndpoint(bob, `${serviceBase}${redirecting}`);
    await sendTo(alice, bob);
    await expect.poll(() => hits.filter((h) => h.path === redirecting).length, { timeout: 20_000 }).toBe(1);
    expect(hits.find((h) => h.path === redirecting)!.authorization).toMatch(/^vapid t=/);
    // A barrier instead of a pause: bob's next wake-up goes to a plain endpoint, by the same object, after the
    // redirect's answer has come back. A followed redirect would have reached /landed before it.
    const plain = `/plain/${bob.accountId}`;
    await setEndpoint(bob, `${serviceBase}${plain}`);
    await sendTo(alice, bob);
    await expect.poll(() => hits.filter((h) => h.path === plain).length, { timeout: 20_000 }).toBe(1);
    expect(hits.filter((h) => h.path.startsWith("/landed"))).toEqual([]);
  }, 60_000);
});
