// Prekeys at /v2/keys, in Signal's formats and names: publish signed, last-resort and one-time keys (rate-limited
// and capped per device by the account's object); count what is left; claim a bundle for one device or all of an
// account's devices.
import { createRoute, z } from "@hono/zod-openapi";
import { fromBase64 } from "../../crypto/bytes.ts";
import { DeviceIdParam, PreKeyBundleResponse, PreKeyCountResponse, SetKeysRequest } from "../../protocol/directory.ts";
import { deviceAuth, JSON_BODY_ERRORS, errorResponses, json, limitBody, newRouter, requireJson } from "../app.ts";
import { requireCredentials, requireDevice } from "../auth.ts";
import { countPreKeys } from "../db/keys.ts";
import { shardFor } from "../db/shards.ts";
import { ApiError, storage, unwrap } from "../errors.ts";
import { KEY_ERRORS, verifyDeviceKeys } from "../verify-keys.ts";
import { requireCredentialsHeader } from "./messages.ts";

export const keys = newRouter();

keys.openapi(
  createRoute({
    method: "put",
    path: "/",
    tags: ["Keys"],
    summary: "Publish prekeys",
    description:
      "Replaces the signed EC prekey and/or the KEM last-resort prekey, and adds one-time keys (at most 100 of each kind per call). Every signature is checked against the account identity key (422 when bad). A key id already stored is accepted and not stored twice, even by concurrent calls. Body at most MAX_KEYS_REQUEST_BYTES. Limits: KEY_UPLOADS_PER_DEVICE_LIMIT uploads per KEY_UPLOADS_PER_DEVICE_WINDOW_SECONDS per device (429 RATE_LIMITED with Retry-After); a device holds at most MAX_ONE_TIME_PREKEYS_PER_DEVICE one-time keys of each kind, and an upload that would pass that stores nothing (409 TOO_MANY_KEYS with `limit`, and the `count` and `pqCount` it would have made).",
    security: deviceAuth,
    middleware: [requireCredentialsHeader, requireJson, limitBody((cfg) => cfg.MAX_KEYS_REQUEST_BYTES)] as const,
    request: { body: { required: true, content: { "application/json": { schema: SetKeysRequest } } } },
    responses: {
      204: { description: "Stored" },
      ...errorResponses(
        ...JSON_BODY_ERRORS,
        ...KEY_ERRORS,
        "UNAUTHORIZED",
        "TOO_MANY_KEYS",
        "RATE_LIMITED",
        "UNAVAILABLE",
      ),
    },
  }),
  async (c) => {
    const body = c.req.valid("json");
    const creds = requireCredentials(c.req.header("authorization"));
    const stub = c.env.ACCOUNT.getByName(creds.accountId);
    // The password is checked here with the device's upload window, so only well-formed uploads are counted, and
    // before the signatures, so the window also bounds the CPU uploads cost.
    const d = unwrap(await storage("account", () => stub.authorizeKeyUpload(creds.deviceId, creds.password)));
    await verifyDeviceKeys(fromBase64(d.identityKey), body);
    unwrap(await storage("directory", () => stub.publishKeys(d.deviceId, d.deviceUid, body)));
    return c.body(null, 204);
  },
);

keys.openapi(
  createRoute({
    method: "get",
    path: "/",
    tags: ["Keys"],
    summary: "Count the one-time prekeys this device has left",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: { 200: json(PreKeyCountResponse, "Counts"), ...errorResponses("UNAUTHORIZED", "UNAVAILABLE") },
  }),
  async (c) => {
    const d = c.get("device");
    const db = shardFor(c.env, c.get("config"), d.accountId);
    return c.json(await storage("directory", () => countPreKeys(db, d.accountId, d.deviceUid)), 200);
  },
);

keys.openapi(
  createRoute({
    method: "get",
    path: "/{accountId}/{deviceId}",
    tags: ["Keys"],
    summary: "Claim a prekey bundle for one device, or for every device with `*`",
    description:
      "Per device: the identity key, registration id, signed prekey, one one-time EC prekey (absent when none are left) and one one-time KEM prekey (the last-resort one when none are left), each claimed atomically and oldest first; a one-time key is never handed out twice. Limited per (requesting account, target account): PREKEY_CLAIMS_PER_PAIR_LIMIT per PREKEY_CLAIMS_PER_PAIR_WINDOW_SECONDS, counted exactly. Each device also has a claim budget across all requesters, PREKEY_CLAIMS_PER_DEVICE_LIMIT per PREKEY_CLAIMS_PER_DEVICE_WINDOW_SECONDS: past it the bundle still comes, with no one-time EC prekey and the last-resort KEM prekey, so sessions start but nobody can drain the device's one-time keys.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    request: {
      params: z.object({
        accountId: z.uuid(),
        deviceId: z.union([z.literal("*"), DeviceIdParam]).meta({ description: "A device id, or * for all" }),
      }),
    },
    responses: {
      200: json(PreKeyBundleResponse, "The bundle"),
      ...errorResponses("BAD_REQUEST", "UNAUTHORIZED", "NOT_FOUND", "RATE_LIMITED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { accountId, deviceId } = c.req.valid("param");
    const target = accountId.toLowerCase();
    const r = unwrap(
      await storage("account", () =>
        c.env.ACCOUNT.getByName(target).claimBundle(d.accountId, deviceId === "*" ? null : deviceId),
      ),
    );
    if (r.devices.length === 0) throw new ApiError("NOT_FOUND", "the device has not published its keys yet");
    return c.json({ identityKey: r.identityKey, devices: r.devices }, 200);
  },
);
