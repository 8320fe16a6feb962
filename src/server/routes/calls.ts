// Calls (/v1/calls): the ICE servers a device hands to RTCPeerConnection, with TURN credentials minted for this
// request by the configured provider (calls/cloudflare.ts, calls/coturn.ts). The call's own signalling travels
// as end-to-end-encrypted messages; the relay never sees it. docs/calls.md says what the relay sees.
import { createRoute } from "@hono/zod-openapi";
import { IceServersResponse } from "../../protocol/calls.ts";
import { deviceAuth, errorResponses, json, newRouter } from "../app.ts";
import { requireDevice } from "../auth.ts";
import { cloudflareIceServers } from "../calls/cloudflare.ts";
import { missingSecrets } from "../calls/config.ts";
import { coturnIceServers } from "../calls/coturn.ts";
import { ApiError, storage } from "../errors.ts";
import { limitByDevice } from "../rate-limiter.ts";

export const calls = newRouter();

calls.openapi(
  createRoute({
    method: "get",
    path: "/ice-servers",
    tags: ["Calls"],
    summary: "ICE servers with short-lived TURN credentials",
    description:
      "STUN and TURN servers for `new RTCPeerConnection({ iceServers })`, with credentials minted for this request and valid for `ttlSeconds` (CALLS_CREDENTIAL_TTL_SECONDS). Fetch them right before each call; never cache them past `ttlSeconds`. The TURN username carries no account or device id. At most CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT requests per device per CALLS_ICE_REQUESTS_PER_DEVICE_WINDOW_SECONDS (429 RATE_LIMITED). 501 CALLS_NOT_CONFIGURED when the operator set up no TURN provider: a client then offers no calls. 503 UNAVAILABLE when the provider (Cloudflare's API) fails or times out. The answer is `Cache-Control: no-store`.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: {
      200: json(IceServersResponse, "ICE servers and how long their credentials last"),
      ...errorResponses("UNAUTHORIZED", "CALLS_NOT_CONFIGURED", "RATE_LIMITED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const cfg = c.get("config");
    const provider = cfg.CALLS_TURN_PROVIDER;
    if (!provider) throw new ApiError("CALLS_NOT_CONFIGURED", "this relay has no TURN provider configured: no calls");
    // A provider whose secret was never put: the deploy check cannot see secrets, so this route says it instead.
    const problems = missingSecrets(cfg);
    if (problems.length)
      throw new ApiError(
        "MISCONFIGURED",
        problems.map((p) => `${p.variable} ${p.problem}`).join("; "),
        { problems },
        30,
      );
    const d = c.get("device");
    const rate = await storage("rate limiter", () =>
      limitByDevice(
        c.env,
        d,
        "ice-servers",
        cfg.CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT,
        cfg.CALLS_ICE_REQUESTS_PER_DEVICE_WINDOW_SECONDS,
      ),
    );
    if (!rate.allowed)
      throw new ApiError(
        "RATE_LIMITED",
        `this device asked for ICE servers CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT (${cfg.CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT}) times in the last ${cfg.CALLS_ICE_REQUESTS_PER_DEVICE_WINDOW_SECONDS} s`,
        {},
        rate.retryAfterSeconds,
      );
    const ttl = cfg.CALLS_CREDENTIAL_TTL_SECONDS;
    const answer =
      provider === "coturn"
        ? await coturnIceServers(
            { urls: cfg.CALLS_TURN_URLS, secret: cfg.CALLS_TURN_SECRET },
            ttl,
            c.get("clock").now(),
          )
        : await cloudflareIceServers(
            { apiUrl: cfg.CALLS_CLOUDFLARE_API_URL, keyId: cfg.CALLS_TURN_KEY_ID, apiToken: cfg.CALLS_TURN_API_TOKEN },
            ttl,
          );
    c.header("Cache-Control", "no-store");
    return c.json(answer, 200);
  },
);
