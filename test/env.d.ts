// Bindings the workers test configuration adds to the Worker's own (vitest.workers.config.ts).
declare namespace Cloudflare {
  interface Env {
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
    TEST_SHARDS: string;
    DB_1: D1Database;
    DB_2: D1Database;
  }
}
