// The test tiers. `npm test` runs every test; `npm run test:fast` sets CIPHERPOST_FAST=1 and both vitest projects
// (vitest.workers.config.ts, vitest.node.config.ts) then leave out the slow tier: the files listed here, and
// single tests inside other files tagged `slow` (`it("…", { tags: ["slow"] }, async () => …)`). test:fast also
// runs two files at once (--maxWorkers=2; vitest's default on two cores is one, and a workerd file leaves Node idle).
import { configDefaults } from "vitest/config";

export const FAST = process.env.CIPHERPOST_FAST === "1";

/**
 * Files in the slow tier: the load benchmark's smoke, every file that starts local relays (each start is seconds
 * of wrangler and workerd, then whole conversations, uploads or browsers go through them: e2e uploads 64 MiB,
 * the SDK 20 MiB), and the walk of every route with hundreds of bad bodies (one of 8.5 MB per route).
 */
export const SLOW_FILES = [
  "test/bench.test.ts",
  "test/examples/libsignal-client.test.ts",
  "test/e2e/**",
  "test/cli/**",
  "test/client/messaging.test.ts",
  "test/client/linking.test.ts",
  "test/client/receive-hardening.test.ts",
  "test/client/attachments.test.ts",
  "test/client/push.test.ts",
  "test/client/usernames.test.ts",
  "test/client/calls.test.ts",
  "test/web/**",
  "test/server/bad-input.test.ts",
  "test/server/abuse-account.test.ts",
];

/**
 * A project's `exclude` (vitest's defaults, the project's own, and under CIPHERPOST_FAST=1 the slow files), the
 * `slow` tag, and under CIPHERPOST_FAST=1 the filter that skips tests tagged with it.
 */
export function tierOptions(exclude: string[] = []) {
  return {
    exclude: [...configDefaults.exclude, ...exclude, ...(FAST ? SLOW_FILES : [])],
    tags: [{ name: "slow", description: "left out of npm run test:fast (test/support/tiers.ts)" }],
    ...(FAST ? { tagsFilter: ["!slow"] } : {}),
  };
}
