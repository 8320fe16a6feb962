// The account (/v1/accounts: who am I, delete everything) and its devices (/v1/devices: list, remove, link a new
// one with a single-use token and an encrypted hand-over). The account's Durable Object is the authority for all.
import { createRoute, z } from "@hono/zod-openapi";
import { base64Length, decodedLength, isBase64 } from "../../protocol/base64.ts";
import { fromBase64 } from "../../crypto/bytes.ts";
import {
  AccountId,
  CreateLinkRequest,
  CreateLinkResponse,
  DeviceIdParam,
  DeviceListResponse,
  LinkDeviceRequest,
  LinkDeviceResponse,
  LinkEnvelopeRequest,
  LinkEnvelopeResponse,
} from "../../protocol/directory.ts";
import { deviceAuth, JSON_BODY_ERRORS, errorResponses, json, limitBody, newRouter, requireJson } from "../app.ts";
import { requireDevice } from "../auth.ts";
import { ApiError, storage, unwrap } from "../errors.ts";
import { KEY_ERRORS, verifiedNewDevice } from "../verify-keys.ts";

export const accounts = newRouter();
export const devices = newRouter();

accounts.openapi(
  createRoute({
    method: "get",
    path: "/whoami",
    tags: ["Devices"],
    summary: "Who the credentials belong to",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: {
      200: json(
        z.object({ accountId: AccountId, deviceId: z.number().int() }).meta({ id: "WhoAmIResponse" }),
        "The authenticated device",
      ),
      ...errorResponses("UNAUTHORIZED", "UNAVAILABLE"),
    },
  }),
  (c) => {
    const d = c.get("device");
    return c.json({ accountId: d.accountId, deviceId: d.deviceId }, 200);
  },
);

accounts.openapi(
  createRoute({
    method: "delete",
    path: "/me",
    tags: ["Devices"],
    summary: "Delete the account and everything it owns",
    description:
      "Credentials stop working at once; directory rows, key pages, queued messages and attachments are removed.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: { 204: { description: "Deleted" }, ...errorResponses("UNAUTHORIZED", "UNAVAILABLE") },
  }),
  async (c) => {
    const d = c.get("device");
    unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).deleteAccount()));
    return c.body(null, 204);
  },
);

devices.openapi(
  createRoute({
    method: "get",
    path: "/",
    tags: ["Devices"],
    summary: "List the account's devices",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: { 200: json(DeviceListResponse, "The devices"), ...errorResponses("UNAUTHORIZED", "UNAVAILABLE") },
  }),
  async (c) => {
    const d = c.get("device");
    const r = unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).listDevices()));
    return c.json({ devices: r.devices }, 200);
  },
);

devices.openapi(
  createRoute({
    method: "delete",
    path: "/{deviceId}",
    tags: ["Devices"],
    summary: "Remove a linked device",
    description:
      "The primary device removes any linked device; a linked device may remove itself. Its credentials and keys go at once. Device 1 cannot be removed.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    request: { params: z.object({ deviceId: DeviceIdParam }) },
    responses: {
      204: { description: "Removed" },
      ...errorResponses("BAD_REQUEST", "UNAUTHORIZED", "FORBIDDEN", "PRIMARY_DEVICE", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { deviceId } = c.req.valid("param");
    unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).removeDevice(d.deviceId, deviceId)));
    return c.body(null, 204);
  },
);

devices.openapi(
  createRoute({
    method: "post",
    path: "/link",
    tags: ["Devices"],
    summary: "Start linking a new device",
    description:
      "The linking device encrypts the hand-over (the account identity key pair and whatever else the new device needs) under a fresh secret that travels only in the link code it shows the new device, and leaves the ciphertext here. Answers a single-use token valid for LINK_TOKEN_TTL_SECONDS; limited to LINK_TOKENS_PER_ACCOUNT_LIMIT per LINK_TOKENS_PER_ACCOUNT_WINDOW_SECONDS.",
    security: deviceAuth,
    middleware: [
      requireDevice,
      requireJson,
      limitBody((cfg) => base64Length(cfg.MAX_LINK_ENVELOPE_BYTES) + 1024),
    ] as const,
    request: { body: { required: true, content: { "application/json": { schema: CreateLinkRequest } } } },
    responses: {
      200: json(CreateLinkResponse, "The link token"),
      ...errorResponses(...JSON_BODY_ERRORS, "UNAUTHORIZED", "RATE_LIMITED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { envelope } = c.req.valid("json");
    const max = c.get("config").MAX_LINK_ENVELOPE_BYTES;
    if (envelope.length > base64Length(max) || (isBase64(envelope) && decodedLength(envelope) > max))
      throw new ApiError("PAYLOAD_TOO_LARGE", `envelope: at most ${max} bytes`, { limitBytes: max });
    if (envelope.length === 0 || !isBase64(envelope))
      throw new ApiError("BAD_REQUEST", "envelope: must be standard base64 with padding");
    const r = unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).createLinkToken(envelope)));
    return c.json({ linkToken: r.linkToken, expiresAt: r.expiresAt }, 200);
  },
);

devices.openapi(
  createRoute({
    method: "post",
    path: "/link/envelope",
    tags: ["Devices"],
    summary: "Fetch the encrypted hand-over with a link token",
    description:
      "The new device, given the link code, fetches the ciphertext and decrypts it with the code's secret. Does not use the token up.",
    middleware: [requireJson, limitBody(() => 4096)] as const,
    request: { body: { required: true, content: { "application/json": { schema: LinkEnvelopeRequest } } } },
    responses: {
      200: json(LinkEnvelopeResponse, "The encrypted hand-over"),
      ...errorResponses(...JSON_BODY_ERRORS, "LINK_TOKEN_INVALID", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const { accountId, linkToken } = c.req.valid("json");
    const r = unwrap(
      await storage("account", () => c.env.ACCOUNT.getByName(accountId.toLowerCase()).linkEnvelope(linkToken)),
    );
    return c.json({ envelope: r.envelope }, 200);
  },
);

devices.openapi(
  createRoute({
    method: "put",
    path: "/link",
    tags: ["Devices"],
    summary: "Register a new device of an account with a link token",
    description:
      "Uses the token up. The new device brings its own registration id (different from every current device's), password and prekeys, signed with the account identity key it decrypted from the hand-over. It gets the lowest free device id; at most MAX_DEVICES devices.",
    middleware: [requireJson, limitBody((cfg) => cfg.MAX_KEYS_REQUEST_BYTES)] as const,
    request: { body: { required: true, content: { "application/json": { schema: LinkDeviceRequest } } } },
    responses: {
      200: json(LinkDeviceResponse, "The account and the new device's id"),
      ...errorResponses(
        ...JSON_BODY_ERRORS,
        ...KEY_ERRORS,
        "LINK_TOKEN_INVALID",
        "TOO_MANY_DEVICES",
        "REGISTRATION_ID_TAKEN",
        "UNAVAILABLE",
      ),
    },
  }),
  async (c) => {
    const body = c.req.valid("json");
    const accountId = body.accountId.toLowerCase();
    const stub = c.env.ACCOUNT.getByName(accountId);
    const link = unwrap(await storage("account", () => stub.linkEnvelope(body.linkToken)));
    const device = await verifiedNewDevice(fromBase64(link.identityKey), body);
    const r = unwrap(await storage("account", () => stub.linkDevice(body.linkToken, device)));
    return c.json({ accountId, deviceId: r.deviceId }, 200);
  },
);
