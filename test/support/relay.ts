// Starts the cipherpost relay locally from Node for tests and benchmarks: the same Worker and wrangler.toml, a
// fresh persisted state in a temporary directory with the D1 migrations applied to every shard, vars overridden
// (an easy proof of work and generous rate limits by default), on a free port. Built on wrangler's public API
// only (getPlatformProxy to apply the migrations, unstable_startWorker to serve), so it needs no build step.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyMigrations, type D1Like, readMigrations } from "../../scripts/d1-migrations.ts";

// Offline, wrangler and Miniflare would wait 3 s for Cloudflare's cf.json and print a stack (TOOLCHAIN.md).
process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
process.env.WRANGLER_SEND_METRICS ??= "false";

const ROOT = new URL("../../", import.meta.url).pathname;
const CONFIG = join(ROOT, "wrangler.toml");

/**
 * Vars every test relay gets unless the caller overrides them: a 4-bit proof of work, and limits high enough
 * that a test sending hundreds of messages or registering many accounts from one address is never throttled.
 */
export const TEST_VARS: Readonly<Record<string, string>> = {
  POW_DIFFICULTY_BITS: "4",
  CHALLENGES_PER_IP_LIMIT: "100000",
  REGISTRATIONS_PER_IP_LIMIT: "100000",
  LINK_TOKENS_PER_ACCOUNT_LIMIT: "1000",
  PREKEY_CLAIMS_PER_PAIR_LIMIT: "100000",
  SENDS_PER_DEVICE_LIMIT: "100000",
  SENDS_PER_PAIR_LIMIT: "100000",
  // The tests' own push service listens on http://127.0.0.1 (development only; a deploy refuses it).
  PUSH_ALLOW_LOOPBACK: "true",
  // Throw-away-account defences a test relay must not trip: uploads by count and rate, and the adaptive proof of
  // work (tests register hundreds of accounts in seconds, which a live relay would rightly read as a flood).
  UPLOADS_PER_DEVICE_LIMIT: "100000",
  MAX_ATTACHMENTS_PER_ACCOUNT: "1000000",
  POW_NORMAL_REGISTRATIONS_LIMIT: "1000000",
  PREKEY_CLAIMS_PER_DEVICE_LIMIT: "100000",
  KEY_UPLOADS_PER_DEVICE_LIMIT: "100000",
  QUEUE_SENDER_MAX_MESSAGES: "1000000",
  QUEUE_SENDER_MAX_BYTES: "1073741824",
};

export interface StartRelayOptions {
  /** Wrangler vars to set on top of wrangler.toml and TEST_VARS (values are strings, as in wrangler.toml). */
  vars?: Record<string, string>;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Show the Worker's own log lines (one access-log line per request); off by default. */
  logs?: boolean;
}

export interface Relay {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234. */
  url: string;
  /** The directory holding the relay's local D1, R2 and Durable Object state. */
  stateDir: string;
  /**
   * Stops the relay and starts it again on the same port with the same state, as a deploy does: every
   * WebSocket is closed, queued messages and accounts survive. Answers once the relay serves again.
   */
  restart(options?: { downMs?: number }): Promise<void>;
  /** Stops the relay and deletes its state. */
  stop(): Promise<void>;
}

type Wrangler = typeof import("wrangler");
type Worker = Awaited<ReturnType<Wrangler["unstable_startWorker"]>>;

/** Starts a relay with fresh state; call `stop()` when done (afterAll). */
export async function startRelay(options: StartRelayOptions = {}): Promise<Relay> {
  const wrangler: Wrangler = await import("wrangler");
  const stateDir = mkdtempSync(join(tmpdir(), "cipherpost-relay-"));
  const vars = { ...TEST_VARS, ...(options.vars ?? {}) };
  await migrateShards(wrangler, stateDir);

  let port = options.port ?? 0;
  const serve = async (): Promise<Worker> => {
    const worker = await wrangler.unstable_startWorker({
      config: CONFIG,
      bindings: Object.fromEntries(
        Object.entries(vars).map(([k, v]) => [k, { type: "plain_text" as const, value: v }]),
      ),
      dev: {
        server: { hostname: "127.0.0.1", port },
        inspector: false,
        watch: false,
        persist: stateDir,
        logLevel: options.logs ? "log" : "error",
      },
    });
    await worker.ready;
    return worker;
  };

  let worker: Worker | null = await quietly(options.logs, serve);
  const url = new URL((await worker.url).toString());
  port = Number(url.port);
  const base = url.toString().replace(/\/$/, "");

  return {
    url: base,
    stateDir,
    async restart({ downMs = 0 } = {}) {
      await quietly(options.logs, async () => worker?.dispose());
      worker = null;
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      worker = await quietly(options.logs, serve);
    },
    async stop() {
      await quietly(options.logs, async () => worker?.dispose());
      worker = null;
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/**
 * The D1 migrations into every shard wrangler.toml names, in the directory the Worker then persists to
 * (getPlatformProxy takes the `v3` directory itself; unstable_startWorker appends `v3` to its persist path).
 */
async function migrateShards(wrangler: Wrangler, stateDir: string): Promise<void> {
  const migrations = await readMigrations();
  const config = wrangler.unstable_readConfig({ config: CONFIG });
  const proxy = await quietly(false, () =>
    wrangler.getPlatformProxy<Record<string, D1Like>>({
      configPath: CONFIG,
      persist: { path: join(stateDir, "v3") },
      remoteBindings: false,
    }),
  );
  try {
    for (const db of config.d1_databases) {
      const d1 = proxy.env[db.binding];
      if (!d1) throw new Error(`D1 binding ${db.binding} missing from the platform proxy`);
      await applyMigrations(d1, migrations);
    }
  } finally {
    await proxy.dispose();
  }
}

/**
 * Runs `fn` with wrangler's and workerd's chatter kept off the test output: getPlatformProxy warns that the
 * Durable Object classes are not exported by its stub Worker (true and irrelevant here), and dispose can race
 * its own esbuild watcher and print "Could not resolve …middleware-loader.entry.ts" (a known teardown race in
 * wrangler 4.86's BundlerController; nothing is wrong).
 */
async function quietly<T>(show: boolean | undefined, fn: () => Promise<T>): Promise<T> {
  if (show) return fn();
  const noise = /DurableObjectNamespace in the config referenced the class|middleware-loader\.entry\.ts|^\s*$/;
  const previous = process.env.WRANGLER_LOG;
  process.env.WRANGLER_LOG = "error";
  const write = process.stderr.write.bind(process.stderr);
  const consoleError = console.error;
  const consoleWarn = console.warn;
  const text = (chunk: unknown) =>
    typeof chunk === "string" ? chunk : chunk instanceof Uint8Array ? new TextDecoder().decode(chunk) : String(chunk);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    if (noise.test(text(chunk))) return true;
    return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  // Under vitest the same lines arrive through console (miniflare's log), which vitest captures.
  console.error = (...args: unknown[]) => void (noise.test(args.map(text).join(" ")) || consoleError(...args));
  console.warn = (...args: unknown[]) => void (noise.test(args.map(text).join(" ")) || consoleWarn(...args));
  try {
    return await fn();
  } finally {
    process.stderr.write = write;
    console.error = consoleError;
    console.warn = consoleWarn;
    if (previous === undefined) delete process.env.WRANGLER_LOG;
    else process.env.WRANGLER_LOG = previous;
  }
}
