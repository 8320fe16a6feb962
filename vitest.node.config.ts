// Plain Node tests: crypto, client SDK, CLI, end to end against a locally started relay, the schema's migrations.
import { defineConfig } from "vitest/config";
import { tierOptions } from "./test/support/tiers.ts";

export default defineConfig({
  test: {
    name: "node",
    include: ["test/**/*.test.ts"],
    // `npm run test:fast` leaves out the slow tier (test/support/tiers.ts).
    ...tierOptions(["test/server/**", "test/**/*.workers.test.ts"]),
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Relays started by these tests log one JSON line per request: show output only for failing tests.
    silent: "passed-only",
  },
});
