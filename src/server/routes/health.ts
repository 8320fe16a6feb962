// /health: configuration validity and whether each D1 shard and the R2 bucket answer. Says nothing private:
// binding names and booleans only.
import { createRoute } from "@hono/zod-openapi";
import { HealthResponse } from "../../protocol/directory.ts";
import { json, newRouter } from "../app.ts";
import { loadConfig } from "../config.ts";
import { allShards } from "../db/shards.ts";

export const health = newRouter();

async function answers(probe: () => Promise<unknown>): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch {
    return false;
  }
}

health.openapi(
  createRoute({
    method: "get",
    path: "/",
    tags: ["Operations"],
    summary: "Configuration validity and storage reachability",
    responses: {
      200: json(HealthResponse, "All is well"),
      503: json(HealthResponse, "Misconfigured, or a storage service does not answer"),
    },
  }),
  async (c) => {
    const loaded = loadConfig(c.env);
    if (!loaded.ok) {
      return c.json(
        { status: "misconfigured" as const, config: { valid: false, problems: loaded.error.problems } },
        503,
      );
    }
    const shards: Record<string, boolean> = {};
    await Promise.all(
      allShards(c.env, loaded.config).map(async ({ binding, db }) => {
        shards[binding] = await answers(() => db.prepare("SELECT 1").first());
      }),
    );
    const [keyPages, attachments] = await Promise.all([
      answers(() => c.env.KEY_PAGES.head("health-probe")),
      answers(() => c.env.ATTACHMENTS.head("health-probe")),
    ]);
    const r2 = { KEY_PAGES: keyPages, ATTACHMENTS: attachments };
    const ok = Object.values(shards).every(Boolean) && Object.values(r2).every(Boolean);
    return c.json(
      { status: ok ? ("ok" as const) : ("degraded" as const), config: { valid: true, problems: [] }, shards, r2 },
      ok ? 200 : 503,
    );
  },
);
