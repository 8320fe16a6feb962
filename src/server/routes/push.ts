// Push wake-ups (Web Push with VAPID): the relay's public key for subscribing (/v1/push) and each device's
// endpoint (/v1/devices/push, a sub-resource of the device). The pushes themselves are sent by the account's
// object when a message waits for a device with nothing open.
import { createRoute } from "@hono/zod-openapi";
import { PushEndpointRequest, VapidKeyResponse } from "../../protocol/push.ts";
import { deviceAuth, JSON_BODY_ERRORS, errorResponses, json, limitBody, newRouter, requireJson } from "../app.ts";
import { requireDevice } from "../auth.ts";
import { ApiError, storage, unwrap } from "../errors.ts";
import { pushEndpointProblem } from "../push/endpoint-policy.ts";

export const vapidKey = newRouter();
export const pushEndpoint = newRouter();

vapidKey.openapi(
  createRoute({
    method: "get",
    path: "/vapid-key",
    tags: ["Push"],
    summary: "The relay's VAPID public key",
    description:
      "What a browser passes as applicationServerKey to PushManager.subscribe. 501 PUSH_NOT_CONFIGURED when the operator set no VAPID key.",
    responses: { 200: json(VapidKeyResponse, "The key"), ...errorResponses("PUSH_NOT_CONFIGURED") },
  }),
  (c) => {
    const key = c.get("config").VAPID_PRIVATE_KEY_JWK;
    if (!key) throw new ApiError("PUSH_NOT_CONFIGURED", "this relay sends no push wake-ups");
    return c.json({ publicKey: key.publicKey }, 200);
  },
);

pushEndpoint.openapi(
  createRoute({
    method: "put",
    path: "/",
    tags: ["Push"],
    summary: "Register this device's Web Push endpoint",
    description:
      "When a message is queued for this device and it has no open connection, the relay sends an empty push (VAPID-signed, `TTL` PUSH_TTL_SECONDS, `Urgency` high for urgent messages) to the endpoint, at most once per PUSH_MIN_INTERVAL_SECONDS; the woken client connects and fetches its queue. The push carries nothing but the wake-up. A push service answering 404 or 410 ends the registration. Replaces any earlier endpoint of the device.\n\nThe endpoint must be https on port 443 at a host on PUSH_ALLOWED_HOSTS (by default the browsers' push services: fcm.googleapis.com, updates.push.services.mozilla.com, web.push.apple.com, *.notify.windows.com), named by host name, never by IP address; anything else is 400 BAD_REQUEST. A push service's redirect is never followed.",
    security: deviceAuth,
    middleware: [requireDevice, requireJson, limitBody(() => 4096)] as const,
    request: { body: { required: true, content: { "application/json": { schema: PushEndpointRequest } } } },
    responses: {
      204: { description: "Registered" },
      ...errorResponses(...JSON_BODY_ERRORS, "UNAUTHORIZED", "PUSH_NOT_CONFIGURED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    // Bad input is refused as such (400) whether or not this relay sends pushes.
    const { endpoint } = c.req.valid("json");
    const problem = pushEndpointProblem(endpoint, c.get("config"));
    if (problem) throw new ApiError("BAD_REQUEST", `endpoint: ${problem}`);
    if (!c.get("config").VAPID_PRIVATE_KEY_JWK)
      throw new ApiError("PUSH_NOT_CONFIGURED", "this relay sends no push wake-ups");
    const d = c.get("device");
    unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).setPushEndpoint(d.deviceId, endpoint)));
    return c.body(null, 204);
  },
);

pushEndpoint.openapi(
  createRoute({
    method: "get",
    path: "/",
    tags: ["Push"],
    summary: "This device's Web Push endpoint",
    description:
      "404 when the device has none: never registered, removed, or ended by its push service (404/410), in which case subscribe again and register the new endpoint.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: {
      200: json(PushEndpointRequest, "The registered endpoint"),
      ...errorResponses("UNAUTHORIZED", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const r = unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).getPushEndpoint(d.deviceId)));
    if (r.endpoint === null) throw new ApiError("NOT_FOUND", "this device has no push endpoint");
    return c.json({ endpoint: r.endpoint }, 200);
  },
);

pushEndpoint.openapi(
  createRoute({
    method: "delete",
    path: "/",
    tags: ["Push"],
    summary: "Stop push wake-ups for this device",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: {
      204: { description: "Removed (or there was none)" },
      ...errorResponses("UNAUTHORIZED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).setPushEndpoint(d.deviceId, null)));
    return c.body(null, 204);
  },
);
