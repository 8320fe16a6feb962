// The account (/v1/accounts: who am I, delete everything) and its devices (/v1/devices: list, remove, link a new
// one: a single-use token, the new device's request, approval, then the hand-over sealed to it). The account's Durable Object is the authority for all.
import { createRoute, z } from "@hono/zod-openapi";
import { base64Length, decodedLength, isBase64 } from "../../protocol/base64.ts";
import { fromBase64 } from "../../crypto/bytes.ts";
import {
  AccountId,
  ApproveLinkRequest,
  CreateLinkResponse,
  DeviceIdParam,
  DeviceListResponse,
  LinkDeviceRequest,
  LinkDeviceResponse,
  LinkEnvelopeResponse,
  LinkPendingResponse,
  LinkRequestBody,
  LinkTokenBody,
} from "../../protocol/directory.ts";
import { deviceAuth, JSON_BODY_ERRORS, errorResponses, json, limitBody, newRouter, requireJson } from "../app.ts";
import { requireDevice } from "../auth.ts";
import { ApiError, storage, unwrap } from "../errors.ts";
import { ecKey, KEY_ERRORS, verifiedNewDevice } from "../verify-keys.ts";

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

// Linking (docs/crypto.md, "Linking a device"): the existing device starts with a token, the new device answers
// with its ephemeral key, the existing device approves after the person compared both screens' verification
// codes, and only then does the hand-over, sealed to the new device's key, reach it.
const LINK_BODY_LIMIT = limitBody(() => 4096);
const LINK_DONE = { 204: { description: "Done" } } as const;

devices.openapi(
  createRoute({
    method: "post",
    path: "/link",
    tags: ["Devices"],
    summary: "Start linking a new device",
    description:
      "Answers a single-use token valid for LINK_TOKEN_TTL_SECONDS, which the linking device shows the new device in a link code with its own ephemeral key. No secret goes with it: the hand-over is released only by approving the new device's request. Limited to LINK_TOKENS_PER_ACCOUNT_LIMIT per LINK_TOKENS_PER_ACCOUNT_WINDOW_SECONDS.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: {
      200: json(CreateLinkResponse, "The link token"),
      ...errorResponses("UNAUTHORIZED", "RATE_LIMITED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const r = unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).createLinkToken()));
    return c.json({ linkToken: r.linkToken, expiresAt: r.expiresAt }, 200);
  },
);

devices.openapi(
  createRoute({
    method: "put",
    path: "/link/request",
    tags: ["Devices"],
    summary: "Answer a link code with the new device's ephemeral key",
    description:
      "The new device, given the link code, leaves its ephemeral public key under the token. A token takes one request: a second is refused (LINK_TOKEN_INVALID), never put in the first one's place, so a device that finds its code already answered knows someone else read it.",
    middleware: [requireJson, LINK_BODY_LIMIT] as const,
    request: { body: { required: true, content: { "application/json": { schema: LinkRequestBody } } } },
    responses: {
      ...LINK_DONE,
      ...errorResponses(...JSON_BODY_ERRORS, "INVALID_KEY", "LINK_TOKEN_INVALID", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const { accountId, linkToken, publicKey } = c.req.valid("json");
    ecKey(publicKey, "publicKey");
    unwrap(
      await storage("account", () =>
        c.env.ACCOUNT.getByName(accountId.toLowerCase()).requestLink(linkToken, publicKey),
      ),
    );
    return c.body(null, 204);
  },
);

devices.openapi(
  createRoute({
    method: "post",
    path: "/link/pending",
    tags: ["Devices"],
    summary: "The request answering a link token",
    description: "The linking device asks (polls) for the new device's ephemeral key; null while none has answered.",
    security: deviceAuth,
    middleware: [requireDevice, requireJson, LINK_BODY_LIMIT] as const,
    request: { body: { required: true, content: { "application/json": { schema: LinkTokenBody } } } },
    responses: {
      200: json(LinkPendingResponse, "The request, if any"),
      ...errorResponses(...JSON_BODY_ERRORS, "UNAUTHORIZED", "LINK_TOKEN_INVALID", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { linkToken } = c.req.valid("json");
    const r = unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).pendingLink(linkToken)));
    return c.json({ publicKey: r.publicKey }, 200);
  },
);

devices.openapi(
  createRoute({
    method: "post",
    path: "/link/approve",
    tags: ["Devices"],
    summary: "Approve the request: leave the hand-over sealed to it",
    description:
      "After the person saw the same verification code on both devices, the linking device seals the hand-over to the request's key and leaves it here (publicKey names the request approved; it must be the one the token holds). Only then can the new device register.",
    security: deviceAuth,
    middleware: [
      requireDevice,
      requireJson,
      limitBody((cfg) => base64Length(cfg.MAX_LINK_ENVELOPE_BYTES) + 1024),
    ] as const,
    request: { body: { required: true, content: { "application/json": { schema: ApproveLinkRequest } } } },
    responses: {
      ...LINK_DONE,
      ...errorResponses(...JSON_BODY_ERRORS, "UNAUTHORIZED", "LINK_TOKEN_INVALID", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { linkToken, publicKey, envelope } = c.req.valid("json");
    const max = c.get("config").MAX_LINK_ENVELOPE_BYTES;
    if (envelope.length > base64Length(max) || (isBase64(envelope) && decodedLength(envelope) > max))
      throw new ApiError("PAYLOAD_TOO_LARGE", `envelope: at most ${max} bytes`, { limitBytes: max });
    if (envelope.length === 0 || !isBase64(envelope))
      throw new ApiError("BAD_REQUEST", "envelope: must be standard base64 with padding");
    unwrap(
      await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).approveLink(linkToken, publicKey, envelope)),
    );
    return c.body(null, 204);
  },
);

devices.openapi(
  createRoute({
    method: "post",
    path: "/link/reject",
    tags: ["Devices"],
    summary: "Refuse linking: the token and its request go",
    security: deviceAuth,
    middleware: [requireDevice, requireJson, LINK_BODY_LIMIT] as const,
    request: { body: { required: true, content: { "application/json": { schema: LinkTokenBody } } } },
    responses: {
      ...LINK_DONE,
      ...errorResponses(...JSON_BODY_ERRORS, "UNAUTHORIZED", "LINK_TOKEN_INVALID", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { linkToken } = c.req.valid("json");
    unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).rejectLink(linkToken)));
    return c.body(null, 204);
  },
);

devices.openapi(
  createRoute({
    method: "post",
    path: "/link/envelope",
    tags: ["Devices"],
    summary: "Fetch the sealed hand-over once approved",
    description:
      "The requesting device (named by its ephemeral key) asks (polls) for the hand-over; null until the linking device approved. Does not use the token up.",
    middleware: [requireJson, LINK_BODY_LIMIT] as const,
    request: { body: { required: true, content: { "application/json": { schema: LinkRequestBody } } } },
    responses: {
      200: json(LinkEnvelopeResponse, "The sealed hand-over, or null"),
      ...errorResponses(...JSON_BODY_ERRORS, "LINK_TOKEN_INVALID", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const { accountId, linkToken, publicKey } = c.req.valid("json");
    const r = unwrap(
      await storage("account", () =>
        c.env.ACCOUNT.getByName(accountId.toLowerCase()).linkEnvelope(linkToken, publicKey),
      ),
    );
    return c.json({ envelope: r.envelope }, 200);
  },
);

devices.openapi(
  createRoute({
    method: "put",
    path: "/link",
    tags: ["Devices"],
    summary: "Register a new device of an account with an approved link token",
    description:
      "Uses the token up; refused (LINK_TOKEN_INVALID) until the linking device approved the request. The new device brings its own registration id (different from every current device's), password and prekeys, signed with the account identity key it opened from the hand-over. It gets the lowest free device id; at most MAX_DEVICES devices.",
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
    const link = unwrap(await storage("account", () => stub.approvedLinkIdentity(body.linkToken)));
    const device = await verifiedNewDevice(fromBase64(link.identityKey), body);
    const r = unwrap(await storage("account", () => stub.linkDevice(body.linkToken, device)));
    return c.json({ accountId, deviceId: r.deviceId }, 200);
  },
);
