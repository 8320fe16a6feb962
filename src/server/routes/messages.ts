// Sending at /v1/messages: one message to one account (Signal-Server's shape), and per-recipient ciphertexts for
// a group fanned out to every mailbox concurrently. Never touches D1: the sender's object authenticates and
// counts the device's deliveries, the recipient's object checks the device set, counts the pair and stores.
import { createRoute, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import {
  IDEMPOTENCY_KEY,
  MismatchedDevicesBody,
  MultiRecipientSendRequest,
  MultiRecipientSendResponse,
  SendMessageRequest,
  SendMessageResponse,
  StaleDevicesBody,
  type OutgoingMessage,
} from "../../protocol/messages.ts";
import type { SenderDevice } from "../account/account.ts";
import {
  deviceAuth,
  JSON_BODY_ERRORS,
  errorResponses,
  json,
  limitBody,
  newRouter,
  requireJson,
  type AppEnv,
} from "../app.ts";
import { requireCredentials, type Credentials } from "../auth.ts";
import type { Config } from "../config.ts";
import { ApiError, failureError, storage, unwrap } from "../errors.ts";
import { checkSizes as checkMessageSizes, requestDigest, type DeliverRequest } from "../mailbox/delivery.ts";
import { checkGroupSend, fanOut } from "../mailbox/fanout.ts";
import { log } from "../log.ts";

export const messages = newRouter();

/** Authenticates and takes the device's send allowance (`deliveries` of it) in one call to the sender's own object. */
async function authorizeSend(env: Cloudflare.Env, creds: Credentials, deliveries = 1): Promise<SenderDevice> {
  const stub = env.ACCOUNT.getByName(creds.accountId);
  return unwrap(await storage("account", () => stub.authorizeSend(creds.deviceId, creds.password, deliveries)));
}

const requireSender: MiddlewareHandler<AppEnv> = async (c, next) => {
  c.set("device", await authorizeSend(c.env, requireCredentials(c.req.header("authorization"))));
  return next();
};

/**
 * Refuses missing or malformed credentials before the body is read, as everywhere, for routes whose handler
 * checks the password itself once it has read the body: a group send (the device's send limit counts each
 * recipient) and a key upload (its window counts only well-formed uploads).
 */
export const requireCredentialsHeader: MiddlewareHandler<AppEnv> = async (c, next) => {
  requireCredentials(c.req.header("authorization"));
  return next();
};

function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header))
    throw new ApiError("BAD_REQUEST", "Idempotency-Key: 1 to 128 visible ASCII characters");
  return header;
}

function checkSizes(cfg: Config, list: OutgoingMessage[], where: string) {
  const f = checkMessageSizes(cfg.MAX_MESSAGE_BYTES, list, where);
  if (f) throw failureError(f);
}

const sendDescription = (extra: string) =>
  `${extra} Each ciphertext is at most MAX_MESSAGE_BYTES (default 98304) decoded bytes and the body at most MAX_SEND_REQUEST_BYTES (default 8 MiB). Queued copies are stored before the answer, stamped with a random id, the server timestamp and the authenticated sender, and expire after MESSAGE_TTL_SECONDS or the shorter \`ttlSeconds\`. An \`Idempotency-Key\` header makes a retry within IDEMPOTENCY_TTL_SECONDS answer the first accepted result without storing again (the answer then carries \`Idempotent-Replayed: true\`). Limits: SENDS_PER_DEVICE_LIMIT deliveries (recipient accounts) per SENDS_PER_DEVICE_WINDOW_SECONDS per sending device, SENDS_PER_PAIR_LIMIT per SENDS_PER_PAIR_WINDOW_SECONDS per (sending account, recipient account); each device queue holds at most QUEUE_MAX_MESSAGES and QUEUE_MAX_BYTES, of which one sending account (other than the recipient's own) may fill at most QUEUE_SENDER_MAX_MESSAGES and QUEUE_SENDER_MAX_BYTES (429 SENDER_QUEUE_SHARE_EXCEEDED with Retry-After; other senders still get through).`;

const idempotencyHeader = z.object({
  "idempotency-key": z.string().optional().meta({
    description: "Client-chosen, 1..128 visible ASCII characters; a retry with the same key and body is a no-op.",
  }),
});

// Registered before /{accountId} so "multi" is never taken for an account id (Hono tries overlapping
// patterns in registration order).
messages.openapi(
  createRoute({
    method: "put",
    path: "/multi",
    tags: ["Messages"],
    summary: "Send a message to many accounts (a group)",
    description: sendDescription(
      "Per-recipient, per-device ciphertexts for up to MAX_GROUP_RECIPIENTS accounts (default 1000; never more than SENDS_PER_DEVICE_LIMIT). The relay calls every recipient's mailbox concurrently and answers 200 with one result per recipient: 200, or the status and code a single send would have had (404, 409 with missingDevices/extraDevices, 410 with staleDevices, 429 RATE_LIMITED or SENDER_QUEUE_SHARE_EXCEEDED, 507, 503). One bad recipient never fails the others. The device limit and the pair limit both count each recipient; a group that does not fit the device's limit whole is refused with 429 and sent to no one.",
    ),
    security: deviceAuth,
    middleware: [requireCredentialsHeader, requireJson, limitBody((cfg) => cfg.MAX_SEND_REQUEST_BYTES)] as const,
    request: {
      headers: idempotencyHeader,
      body: { required: true, content: { "application/json": { schema: MultiRecipientSendRequest } } },
    },
    responses: {
      200: json(MultiRecipientSendResponse, "One result per recipient, in request order"),
      ...errorResponses(...JSON_BODY_ERRORS, "MESSAGE_TOO_LARGE", "UNAUTHORIZED", "RATE_LIMITED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const cfg = c.get("config");
    const body = c.req.valid("json");
    const key = idempotencyKey(c.req.header("idempotency-key"));
    const refused = checkGroupSend(cfg, body);
    if (refused) throw failureError(refused);
    const creds = requireCredentials(c.req.header("authorization"));
    const sender = await authorizeSend(c.env, creds, body.recipients.length);
    const results = await fanOut(
      c.env.ACCOUNT,
      { accountId: sender.accountId, deviceId: sender.deviceId },
      body,
      key,
      (e) => log("error", { event: "fan_out_failed", requestId: c.get("requestId"), error: String(e) }),
    );
    return c.json({ needsSync: sender.linkedDevices > 0, results }, 200);
  },
);

messages.openapi(
  createRoute({
    method: "put",
    path: "/{accountId}",
    tags: ["Messages"],
    summary: "Send a message to one account",
    description: sendDescription(
      "Exactly one ciphertext per current device of the recipient, with its registration id (409 `{missingDevices, extraDevices}` / 410 `{staleDevices}` otherwise). Sending to your own account covers your other devices and never the sending one. `online` messages go only to devices connected now and are never stored. A connected device can make the same send as a `send` frame over its mailbox WebSocket, answered by a `send_result` frame with this status and body (/v1/asyncapi.json); idempotency keys are shared between the two.",
    ),
    security: deviceAuth,
    middleware: [requireSender, requireJson, limitBody((cfg) => cfg.MAX_SEND_REQUEST_BYTES)] as const,
    request: {
      params: z.object({ accountId: z.uuid() }),
      headers: idempotencyHeader,
      body: { required: true, content: { "application/json": { schema: SendMessageRequest } } },
    },
    responses: {
      200: json(
        SendMessageResponse,
        "Stored, or acked by the connected device it was pushed to (for online messages: delivered to the devices connected now)",
      ),
      409: json(
        MismatchedDevicesBody,
        "`MISMATCHED_DEVICES`: the messages do not cover exactly the recipient's current devices.",
      ),
      410: json(
        StaleDevicesBody,
        "`STALE_DEVICES`: a registration id no longer matches; fetch new bundles for those devices.",
      ),
      ...errorResponses(
        ...JSON_BODY_ERRORS,
        "MESSAGE_TOO_LARGE",
        "UNAUTHORIZED",
        "NOT_FOUND",
        "IDEMPOTENCY_KEY_REUSED",
        "RATE_LIMITED",
        "SENDER_QUEUE_SHARE_EXCEEDED",
        "QUEUE_FULL",
        "UNAVAILABLE",
      ),
    },
  }),
  async (c) => {
    const sender = c.get("device") as SenderDevice;
    const cfg = c.get("config");
    const accountId = c.req.valid("param").accountId.toLowerCase();
    const body = c.req.valid("json");
    const key = idempotencyKey(c.req.header("idempotency-key"));
    checkSizes(cfg, body.messages, "");
    const fields = { timestamp: body.timestamp, online: body.online, urgent: body.urgent, ttlSeconds: body.ttlSeconds };
    const req: DeliverRequest = {
      sender: { accountId: sender.accountId, deviceId: sender.deviceId },
      messages: body.messages,
      ...fields,
      idempotency: key ? { key, digest: await requestDigest(accountId, body.messages, fields) } : undefined,
    };
    const r = unwrap(await storage("mailbox", () => c.env.ACCOUNT.getByName(accountId).deliver(req)));
    if (r.replayed) c.header("Idempotent-Replayed", "true");
    const self = accountId === sender.accountId;
    return c.json({ needsSync: !self && sender.linkedDevices > 0, serverTimestamp: r.serverTimestamp }, 200);
  },
);
