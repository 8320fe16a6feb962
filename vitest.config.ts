// One `vitest run` drives both projects: server tests inside workerd, the rest in plain Node.
// `npm run test:fast` sets CIPHERPOST_FAST=1, which both project configs read to leave out the slow tier.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: ["./vitest.workers.config.ts", "./vitest.node.config.ts"],
  },
});
