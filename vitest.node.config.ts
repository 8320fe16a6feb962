// Plain Node tests: crypto, client SDK, CLI, end to end against a locally started relay.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "node",
    include: ["test/**/*.test.ts"],
    exclude: ["test/server/**", "test/**/*.workers.test.ts", "node_modules/**"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Relays started by these tests log one JSON line per request: show output only for failing tests.
    silent: "passed-only",
  },
});
