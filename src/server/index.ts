// The Worker's entry: the HTTP app (each resource a sub-app mounted at its path prefix), the cron sweep, and the
// Durable Object classes the runtime instantiates.
import type { OpenAPIHono } from "@hono/zod-openapi";
import { TUS_ENDPOINT } from "../protocol/attachments.ts";
import { systemClock, type Clock } from "../protocol/clock.ts";
import { createApp, type AppEnv } from "./app.ts";
import { loadConfig } from "./config.ts";
import { sweepAttachments } from "./db/attachments.ts";
import { sweepChallenges } from "./db/challenges.ts";
import { sweepUsernames } from "./db/usernames.ts";
import { log } from "./log.ts";
import { asyncapi } from "./routes/asyncapi.ts";
import { attachments } from "./routes/attachments.ts";
import { calls } from "./routes/calls.ts";
import { accounts, devices } from "./routes/devices.ts";
import { mountDocs } from "./routes/docs.ts";
import { health } from "./routes/health.ts";
import { keys } from "./routes/keys.ts";
import { messages } from "./routes/messages.ts";
import { pushEndpoint, vapidKey } from "./routes/push.ts";
import { challenges, registration } from "./routes/registration.ts";
import { tus } from "./routes/tus.ts";
import { usernames } from "./routes/usernames.ts";
import { websocket } from "./routes/websocket.ts";

export { Account } from "./account/account.ts";
export { RateLimiter } from "./rate-limiter.ts";
export { RegistrationRate } from "./registration-rate.ts";
export { Upload } from "./uploads/upload.ts";

/**
 * The relay's HTTP app; `clock` is the time routes compare with stored times (tests pass a ManualClock).
 *
 * Each sub-app's paths are relative to its prefix. Mount order is the order of paths in /v1/openapi.json, and
 * matters for routing only where two sub-apps' patterns overlap, as Hono tries them in registration order:
 * /v1/devices/push before /v1/devices/{deviceId}, and tus before attachments (GET /v1/attachments/tus, an
 * unknown attachment id, keeps the tus response headers).
 */
export function buildApp(clock: Clock = systemClock): OpenAPIHono<AppEnv> {
  return createApp((app) => {
    app.route("/health", health);
    app.route("/v1/challenges", challenges);
    app.route("/v1/registration", registration);
    app.route("/v1/push", vapidKey);
    app.route("/v1/devices/push", pushEndpoint);
    app.route("/v1/accounts", accounts);
    app.route("/v1/devices", devices);
    app.route("/v2/keys", keys);
    app.route("/v1/messages", messages);
    app.route("/v1/usernames", usernames);
    app.route("/v1/websocket", websocket);
    app.route("/v1/calls", calls);
    app.route("/v1/asyncapi.json", asyncapi);
    // With its trailing slash: tus creation is POST /v1/attachments/tus/ and an upload is /v1/attachments/tus/{id}.
    app.route(TUS_ENDPOINT, tus);
    app.route("/v1/attachments", attachments);
    // /v1/openapi.json documents the whole app, so the root app serves it from its own registry.
    mountDocs(app);
  }, clock);
}

export const app = buildApp();

/** The cron trigger: sweeps what expires by time and has no object of its own to expire it. */
export async function scheduled(
  env: Cloudflare.Env,
  now = Date.now(),
): Promise<{ challenges: number; attachments: number }> {
  const loaded = loadConfig(env);
  if (!loaded.ok) {
    log("error", { event: "sweep_skipped", error: loaded.error.message });
    return { challenges: 0, attachments: 0 };
  }
  const challengesSwept = await sweepChallenges(env, loaded.config, now);
  const attachmentsSwept = await sweepAttachments(env, loaded.config, now);
  const usernamesSwept = await sweepUsernames(env, loaded.config, now);
  log("info", {
    event: "sweep",
    challenges: challengesSwept,
    attachments: attachmentsSwept,
    usernames: usernamesSwept,
  });
  return { challenges: challengesSwept, attachments: attachmentsSwept };
}

export default {
  fetch: (request, env, ctx) => app.fetch(request, env, ctx),
  scheduled: async (_controller, env, ctx) => {
    ctx.waitUntil(scheduled(env));
  },
} satisfies ExportedHandler<Cloudflare.Env>;
