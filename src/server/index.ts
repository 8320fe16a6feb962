// The Worker's entry: the HTTP app, the cron sweep, and the Durable Object classes the runtime instantiates.
import { createApp } from "./app.ts";
import { loadConfig } from "./config.ts";
import { sweepAttachments } from "./db/attachments.ts";
import { sweepChallenges } from "./db/challenges.ts";
import { asyncapi } from "./routes/asyncapi.ts";
import { attachments } from "./routes/attachments.ts";
import { mountDocs } from "./routes/docs.ts";
import { devices } from "./routes/devices.ts";
import { push } from "./routes/push.ts";
import { health } from "./routes/health.ts";
import { keys } from "./routes/keys.ts";
import { messages } from "./routes/messages.ts";
import { registration } from "./routes/registration.ts";
import { websocket } from "./routes/websocket.ts";
import { log } from "./log.ts";

export { Account } from "./account/account.ts";
export { RateLimiter } from "./rate-limiter.ts";
export { Upload } from "./uploads/upload.ts";

export const app = createApp((app) => {
  app.route("/", health);
  app.route("/", registration);
  // Before devices: /v1/devices/push must not be taken for /v1/devices/{deviceId}.
  app.route("/", push);
  app.route("/", devices);
  app.route("/", keys);
  // mailbox routes
  app.route("/", messages);
  app.route("/", websocket);
  app.route("/", asyncapi);
  // attachments routes
  app.route("/", attachments);
  mountDocs(app);
});

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
  const challenges = await sweepChallenges(env, loaded.config, now);
  // attachments sweep
  const attachmentsSwept = await sweepAttachments(env, loaded.config, now);
  log("info", { event: "sweep", challenges, attachments: attachmentsSwept });
  return { challenges, attachments: attachmentsSwept };
}

export default {
  fetch: (request, env, ctx) => app.fetch(request, env, ctx),
  scheduled: async (_controller, env, ctx) => {
    ctx.waitUntil(scheduled(env));
  },
} satisfies ExportedHandler<Cloudflare.Env>;
