// One `vitest run` drives both projects: server tests inside workerd, the rest in plain Node.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: ["./vitest.workers.config.ts", "./vitest.node.config.ts"],
  },
});
