// Accounts without phone numbers: a proof-of-work challenge (/v1/challenges), then registration (/v1/registration)
// with an identity key, the first device's keys and password, the solved challenge and a proof of possession of
// the identity private key. Two resources with no common prefix below /v1, so two sub-apps.
import { createRoute } from "@hono/zod-openapi";
import { fromBase64 } from "../../crypto/bytes.ts";
import { ChallengeResponse, RegistrationRequest, RegistrationResponse } from "../../protocol/directory.ts";
import { registrationProofMessage } from "../../protocol/limits.ts";
import { powBits } from "../../protocol/pow.ts";
import { xeddsaVerifyAsync } from "../../crypto/xeddsa.ts";
import type { Context } from "hono";
import {
  type AppEnv,
  JSON_BODY_ERRORS,
  clientIp,
  errorResponses,
  json,
  limitBody,
  newRouter,
  requireJson,
} from "../app.ts";
import { consumeChallenge, issueChallenge, peekChallenge } from "../db/challenges.ts";
import { ApiError, storage, unwrap } from "../errors.ts";
import { limitByIp } from "../rate-limiter.ts";
import { currentDifficulty, recordRegistration } from "../registration-rate.ts";
import { KEY_ERRORS, ecKey, verifiedNewDevice } from "../verify-keys.ts";

export const challenges = newRouter();
export const registration = newRouter();

challenges.openapi(
  createRoute({
    method: "post",
    path: "/",
    tags: ["Registration"],
    summary: "Get a proof-of-work challenge for registering",
    description:
      'Find a nonce (0 to 16 bytes) such that SHA-256(UTF-8 "cipherpost-pow-v1" ‖ challenge ‖ nonce) has at least `difficulty` leading zero bits. Single use; expires at `expiresAt`. The difficulty adapts to the relay-wide registration rate: POW_DIFFICULTY_BITS while at most POW_NORMAL_REGISTRATIONS_LIMIT accounts are created per POW_RATE_WINDOW_SECONDS, one bit more per doubling above that, at most POW_MAX_DIFFICULTY_BITS; the answer states the challenge\'s own. Limited per client IP, an IPv6 client per /IPV6_RATE_LIMIT_PREFIX_BITS (CHALLENGES_PER_IP_LIMIT per CHALLENGES_PER_IP_WINDOW_SECONDS).',
    responses: { 200: json(ChallengeResponse, "A fresh challenge"), ...errorResponses("RATE_LIMITED", "UNAVAILABLE") },
  }),
  async (c) => {
    const cfg = c.get("config");
    await limitClient(c, "challenge", cfg.CHALLENGES_PER_IP_LIMIT, cfg.CHALLENGES_PER_IP_WINDOW_SECONDS);
    const now = c.get("clock").now();
    const difficulty = await currentDifficulty(c.env, cfg, now);
    return c.json(await storage("directory", () => issueChallenge(c.env, cfg, now, difficulty)), 200);
  },
);

registration.openapi(
  createRoute({
    method: "post",
    path: "/",
    tags: ["Registration"],
    summary: "Create an account and its primary device",
    description:
      "No phone number or e-mail: the account is its identity key. Every signature is XEdDSA (libsignal's variant) by the identity key: prekey signatures over each key's full serialisation (type byte included), `proof` over UTF-8 \"cipherpost-register-v1\" ‖ challenge ‖ identityKey. Limited per client IP, an IPv6 client per /IPV6_RATE_LIMIT_PREFIX_BITS (REGISTRATIONS_PER_IP_LIMIT per REGISTRATIONS_PER_IP_WINDOW_SECONDS). Body at most MAX_KEYS_REQUEST_BYTES.",
    middleware: [requireJson, limitBody((cfg) => cfg.MAX_KEYS_REQUEST_BYTES)] as const,
    request: { body: { required: true, content: { "application/json": { schema: RegistrationRequest } } } },
    responses: {
      200: json(RegistrationResponse, "The new account and its device id (1)"),
      ...errorResponses(
        ...JSON_BODY_ERRORS,
        ...KEY_ERRORS,
        "PROOF_INVALID",
        "CHALLENGE_INVALID",
        "RATE_LIMITED",
        "UNAVAILABLE",
      ),
    },
  }),
  async (c) => {
    const body = c.req.valid("json");
    const cfg = c.get("config");
    await limitClient(c, "register", cfg.REGISTRATIONS_PER_IP_LIMIT, cfg.REGISTRATIONS_PER_IP_WINDOW_SECONDS);

    const identityKey = ecKey(body.identityKey, "identityKey");
    const device = await verifiedNewDevice(identityKey, body);

    const challenge = fromBase64(body.pow.challenge);
    const now = c.get("clock").now();
    const difficulty = await storage("directory", () => peekChallenge(c.env, cfg, challenge, body.pow.challenge, now));
    if (difficulty === null) throw new ApiError("CHALLENGE_INVALID", "the challenge is unknown, used or expired");
    if ((await powBits(challenge, fromBase64(body.pow.nonce))) < difficulty)
      throw new ApiError("CHALLENGE_INVALID", `the nonce does not give ${difficulty} leading zero bits`);

    if (
      !(await xeddsaVerifyAsync(identityKey, registrationProofMessage(challenge, identityKey), fromBase64(body.proof)))
    )
      throw new ApiError(
        "PROOF_INVALID",
        'proof does not verify: sign "cipherpost-register-v1" ‖ challenge ‖ identityKey with the identity key',
      );

    // Single use: of concurrent registrations with one challenge, only the one whose delete took it goes on.
    if (!(await storage("directory", () => consumeChallenge(c.env, cfg, challenge, body.pow.challenge, now))))
      throw new ApiError("CHALLENGE_INVALID", "the challenge was used meanwhile");

    const accountId = crypto.randomUUID();
    const created = unwrap(
      await storage("account", () => c.env.ACCOUNT.getByName(accountId).register(accountId, body.identityKey, device)),
    );
    await recordRegistration(c.env, cfg);
    return c.json({ accountId, deviceId: created.deviceId }, 200);
  },
);

/** The per-address limit (per /64 for IPv6) of challenges or registrations: 429 with Retry-After past it. */
async function limitClient(
  c: Context<AppEnv>,
  kind: "challenge" | "register",
  limit: number,
  windowSeconds: number,
): Promise<void> {
  const cfg = c.get("config");
  const rate = await storage("rate limiter", () =>
    limitByIp(c.env, clientIp(c), cfg.IPV6_RATE_LIMIT_PREFIX_BITS, kind, limit, windowSeconds),
  );
  const what = kind === "challenge" ? "challenges" : "registrations";
  if (!rate.allowed)
    throw new ApiError("RATE_LIMITED", `too many ${what} from this address`, {}, rate.retryAfterSeconds);
}
