// Applies schema.sql to every D1 shard of the test Worker. Storage is isolated per test file, so this runs
// once per file; the schema is idempotent, so running it again is harmless.
import { env } from "cloudflare:workers";
import { beforeAll } from "vitest";

beforeAll(async () => {
  const e = env as unknown as Record<string, unknown>;
  const statements = JSON.parse(e.TEST_SCHEMA as string) as string[];
  for (const name of JSON.parse(e.TEST_SHARDS as string) as string[]) {
    const db = e[name] as D1Database;
    await db.batch(statements.map((s) => db.prepare(s)));
  }
});
