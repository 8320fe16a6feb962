// Applies the D1 migrations (migrations/, read by vitest.workers.config.ts) to every D1 shard of the test Worker,
// as `wrangler d1 migrations apply` does to a real shard. Storage is isolated per test file, so this runs once
// per file; migrations already recorded in a shard's d1_migrations table are skipped.
import { applyD1Migrations, type D1Migration } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll } from "vitest";

beforeAll(async () => {
  const e = env as unknown as Record<string, unknown>;
  const migrations = e.TEST_MIGRATIONS as D1Migration[];
  for (const name of JSON.parse(e.TEST_SHARDS as string) as string[]) {
    await applyD1Migrations(e[name] as D1Database, migrations);
  }
});
