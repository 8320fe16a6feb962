// Usernames (/v1/usernames): reserve, confirm and delete the account's one username, look a username up, and
// username links. The relay only ever sees SHA-256 hashes of names and link ciphertexts (docs/api.md, "Usernames";
// docs/threat-model.md says what that still tells it). The account's own object runs its username operations
// one at a time; the name rows are on the shard of the hash's bucket (db/usernames.ts).
import { createRoute, z } from "@hono/zod-openapi";
import {
  ConfirmUsernameRequest,
  ConfirmUsernameResponse,
  ReserveUsernameRequest,
  ReserveUsernameResponse,
  SetUsernameLinkRequest,
  SetUsernameLinkResponse,
  UsernameHash,
  UsernameLinkHandle,
  UsernameLinkResponse,
  UsernameLookupResponse,
} from "../../protocol/usernames.ts";
import {
  clientIp,
  deviceAuth,
  errorResponses,
  JSON_BODY_ERRORS,
  json,
  limitBody,
  newRouter,
  requireJson,
} from "../app.ts";
import { requireDevice } from "../auth.ts";
import { getUsernameLink, lookupUsername } from "../db/usernames.ts";
import { ApiError, storage, unwrap } from "../errors.ts";
import { limitByIp } from "../rate-limiter.ts";

export const usernames = newRouter();

const BODY_LIMIT = limitBody(() => 4096);

usernames.openapi(
  createRoute({
    method: "post",
    path: "/reserve",
    tags: ["Usernames"],
    summary: "Reserve a username (by its hash) for a short time",
    description:
      "The client normalises the name (nickname.discriminator) and sends SHA-256 hashes of one or more candidates (usually one nickname with several discriminators it picked); the first one nobody holds is reserved for this account for USERNAME_RESERVATION_TTL_SECONDS. A name is held by someone else while it is confirmed, reserved, or freed less than USERNAME_RELEASE_TTL_SECONDS ago by another account. A new reservation drops this account's earlier one. Limited to USERNAME_RESERVATIONS_PER_ACCOUNT_LIMIT per USERNAME_RESERVATIONS_PER_ACCOUNT_WINDOW_SECONDS (each reservation answers whether names are taken, so it is limited like a lookup).",
    security: deviceAuth,
    middleware: [requireDevice, requireJson, BODY_LIMIT] as const,
    request: { body: { required: true, content: { "application/json": { schema: ReserveUsernameRequest } } } },
    responses: {
      200: json(ReserveUsernameResponse, "The hash reserved and when the reservation ends"),
      ...errorResponses(...JSON_BODY_ERRORS, "UNAUTHORIZED", "USERNAME_TAKEN", "RATE_LIMITED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { usernameHashes } = c.req.valid("json");
    const r = unwrap(
      await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).reserveUsername(usernameHashes)),
    );
    return c.json({ usernameHash: r.usernameHash, expiresAt: r.expiresAt }, 200);
  },
);

usernames.openapi(
  createRoute({
    method: "put",
    path: "/confirm",
    tags: ["Usernames"],
    summary: "Make a reserved username the account's username",
    description:
      "Needs this account's live reservation of the hash. An account has at most one username: the previous one is freed (others can take it USERNAME_RELEASE_TTL_SECONDS later) and the username link, which named it, is removed. Unlike Signal, no zero-knowledge proof accompanies the hash (docs/threat-model.md).",
    security: deviceAuth,
    middleware: [requireDevice, requireJson, BODY_LIMIT] as const,
    request: { body: { required: true, content: { "application/json": { schema: ConfirmUsernameRequest } } } },
    responses: {
      200: json(ConfirmUsernameResponse, "The account's username hash"),
      ...errorResponses(...JSON_BODY_ERRORS, "UNAUTHORIZED", "USERNAME_NOT_RESERVED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { usernameHash } = c.req.valid("json");
    const r = unwrap(
      await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).confirmUsername(usernameHash)),
    );
    return c.json({ usernameHash: r.usernameHash }, 200);
  },
);

usernames.openapi(
  createRoute({
    method: "delete",
    path: "/me",
    tags: ["Usernames"],
    summary: "Delete the account's username and its link",
    description:
      "Frees the name (others can take it USERNAME_RELEASE_TTL_SECONDS later), any reservation and the link. Idempotent.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: { 204: { description: "Deleted" }, ...errorResponses("UNAUTHORIZED", "UNAVAILABLE") },
  }),
  async (c) => {
    const d = c.get("device");
    unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).deleteUsername()));
    return c.body(null, 204);
  },
);

usernames.openapi(
  createRoute({
    method: "put",
    path: "/link",
    tags: ["Usernames"],
    summary: "Store the username link's ciphertext under a new handle",
    description:
      "The client encrypts its username under a random key and stores the ciphertext here; the link is https://<relay>/u#<handle>.<key>, and the fragment never reaches the relay. Every call gives a new handle and removes the previous one, so resetting the link makes old links answer 404. Needs a confirmed username (404 otherwise).",
    security: deviceAuth,
    middleware: [requireDevice, requireJson, BODY_LIMIT] as const,
    request: { body: { required: true, content: { "application/json": { schema: SetUsernameLinkRequest } } } },
    responses: {
      200: json(SetUsernameLinkResponse, "The link's new handle"),
      ...errorResponses(...JSON_BODY_ERRORS, "UNAUTHORIZED", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { ciphertext } = c.req.valid("json");
    const r = unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).setUsernameLink(ciphertext)));
    return c.json({ handle: r.handle }, 200);
  },
);

usernames.openapi(
  createRoute({
    method: "get",
    path: "/links/{handle}",
    tags: ["Usernames"],
    summary: "A username link's ciphertext",
    description:
      "No credentials: the handle (116 random bits) is the capability and the answer is ciphertext. 404 for a handle that never existed and one replaced by a reset alike.",
    request: { params: z.object({ handle: UsernameLinkHandle }) },
    responses: {
      200: json(UsernameLinkResponse, "The encrypted username"),
      ...errorResponses("BAD_REQUEST", "NOT_FOUND", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const { handle } = c.req.valid("param");
    const cfg = c.get("config");
    const ciphertext = await storage("directory", () => getUsernameLink(c.env, cfg, handle));
    if (ciphertext === null) throw new ApiError("NOT_FOUND", "no such username link");
    return c.json({ ciphertext }, 200);
  },
);

usernames.openapi(
  createRoute({
    method: "get",
    path: "/{usernameHash}",
    tags: ["Usernames"],
    summary: "Look a username up by its hash",
    description:
      "Answers the account holding the username. The same 404 for a name that never existed, one that is only reserved, and one deleted or changed away from. Limited per requesting account (USERNAME_LOOKUPS_PER_ACCOUNT_LIMIT per USERNAME_LOOKUPS_PER_ACCOUNT_WINDOW_SECONDS) and per client IP, an IPv6 client per /IPV6_RATE_LIMIT_PREFIX_BITS (USERNAME_LOOKUPS_PER_IP_LIMIT per USERNAME_LOOKUPS_PER_IP_WINDOW_SECONDS), so the namespace cannot be walked.",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    request: { params: z.object({ usernameHash: UsernameHash }) },
    responses: {
      200: json(UsernameLookupResponse, "The account"),
      ...errorResponses("BAD_REQUEST", "UNAUTHORIZED", "NOT_FOUND", "RATE_LIMITED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    const d = c.get("device");
    const { usernameHash } = c.req.valid("param");
    const cfg = c.get("config");
    const byIp = await storage("rate limiter", () =>
      limitByIp(
        c.env,
        clientIp(c),
        cfg.IPV6_RATE_LIMIT_PREFIX_BITS,
        "username_lookup",
        cfg.USERNAME_LOOKUPS_PER_IP_LIMIT,
        cfg.USERNAME_LOOKUPS_PER_IP_WINDOW_SECONDS,
      ),
    );
    if (!byIp.allowed)
      throw new ApiError("RATE_LIMITED", "too many username lookups from this address", {}, byIp.retryAfterSeconds);
    unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).takeUsernameLookup()));
    const accountId = await storage("directory", () => lookupUsername(c.env, cfg, usernameHash));
    if (accountId === null) throw new ApiError("NOT_FOUND", "no such username");
    return c.json({ accountId }, 200);
  },
);
