// Server tests run inside workerd through the Workers Vitest integration, with three D1 shards so that
// sharding is exercised, and with the schema handed to a setup file that applies it to every shard.
import { readFileSync } from "node:fs";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
import { splitSqlStatements } from "./scripts/sql.mjs";

const schema = splitSqlStatements(readFileSync(new URL("./schema.sql", import.meta.url), "utf8"));

export const TEST_SHARDS = ["DB_0", "DB_1", "DB_2"];

export default defineConfig({
  plugins: [
    cloudflareTest({
      main: "./src/server/index.ts",
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        d1Databases: TEST_SHARDS,
        bindings: {
          TEST_SCHEMA: JSON.stringify(schema),
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
    setupFiles: ["./test/server/setup.ts"],
    testTimeout: 30_000,
    // Access logs are one JSON line per request: show a test's console output only when it fails.
    silent: "passed-only",
  },
});
