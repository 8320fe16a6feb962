// Server tests run inside workerd through the Workers Vitest integration, with three D1 shards so that
// sharding is exercised, and with the D1 migrations handed to a setup file that applies them to every shard.
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { MIGRATIONS_DIR } from "./scripts/d1-migrations.ts";
import { tierOptions } from "./test/support/tiers.ts";

export const TEST_SHARDS = ["DB_0", "DB_1", "DB_2"];

export default defineConfig({
  plugins: [
    cloudflareTest({
      main: "./src/server/index.ts",
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        d1Databases: TEST_SHARDS,
        bindings: {
          TEST_MIGRATIONS: await readD1Migrations(MIGRATIONS_DIR),
          TEST_SHARDS: JSON.stringify(TEST_SHARDS),
          SHARD_MAP: "0-1364:DB_0,1365-2729:DB_1,2730-4095:DB_2",
          POW_DIFFICULTY_BITS: "4",
          // Failures only: an access log line per request would bury the test report (test/server/http.test.ts
          // runs the same Worker at "info" to check those lines).
          LOG_LEVEL: "warn",
        },
      },
    }),
  ],
  test: {
    name: "workers",
    include: ["test/server/**/*.test.ts", "test/**/*.workers.test.ts"],
    // `npm run test:fast` leaves out the slow tier (test/support/tiers.ts).
    ...tierOptions(),
    setupFiles: ["./test/server/setup.ts"],
    testTimeout: 30_000,
    // Access logs are one JSON line per request: show a test's console output only when it fails.
    silent: "passed-only",
  },
});
