// Starts a Worker for benchmarking the same way for every target: bundle it with wrangler (as a deploy would),
// then run the bundle in Miniflare directly on a free loopback port, with in-memory D1 (migrated), R2 and Durable
// Objects declared by its wrangler.toml. Miniflare without wrangler dev's proxy is the closest local stand-in for
// the platform, so the comparison measures the Workers, not the tooling.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { Miniflare } from "miniflare";
import { parse } from "smol-toml";
import { applyMigrations, readMigrations } from "../../scripts/d1-migrations.ts";

interface WranglerToml {
  main: string;
  compatibility_date: string;
  compatibility_flags?: string[];
  vars?: Record<string, string>;
  d1_databases?: { binding: string }[];
  r2_buckets?: { binding: string }[];
  durable_objects?: { bindings: { name: string; class_name: string }[] };
}

export interface WorkerHost {
  url: string;
  mf: Miniflare;
  stop(): Promise<void>;
}

const root = resolve(new URL("../../", import.meta.url).pathname);

export async function startWorker(opts: {
  config: string;
  vars?: Record<string, string>;
  inspectorPort?: number;
}): Promise<WorkerHost> {
  process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
  const config = resolve(root, opts.config);
  const toml = parse(readFileSync(config, "utf8")) as unknown as WranglerToml;
  const outdir = mkdtempSync(join(tmpdir(), "cipherpost-bench-"));
  const built = spawnSync(
    process.execPath,
    [
      join(root, "node_modules/wrangler/bin/wrangler.js"),
      "deploy",
      "--dry-run",
      "--outdir",
      outdir,
      "--config",
      config,
    ],
    {
      encoding: "utf8",
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
    },
  );
  if (built.status !== 0) throw new Error(`bundling ${opts.config} failed:\n${built.stderr}`);
  const scriptPath = join(outdir, `${basename(toml.main).replace(/\.ts$/, "")}.js`);
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    modulesRoot: outdir,
    compatibilityDate: toml.compatibility_date,
    compatibilityFlags: toml.compatibility_flags ?? [],
    host: "127.0.0.1",
    port: 0,
    ...(opts.inspectorPort ? { inspectorPort: opts.inspectorPort } : {}),
    bindings: { ...(toml.vars ?? {}), ...(opts.vars ?? {}) },
    d1Databases: (toml.d1_databases ?? []).map((d) => d.binding),
    r2Buckets: (toml.r2_buckets ?? []).map((r) => r.binding),
    // The Worker's own logs (one JSON line per request) are drained, not printed: the load generator's output
    // is the result. They are still produced, so their cost is measured.
    handleRuntimeStdio(stdout: Readable, stderr: Readable) {
      stdout.resume();
      // The runtime's own errors still reach the operator running the benchmark.
      if (process.env.BENCH_RUNTIME_LOGS) stderr.pipe(process.stderr);
      else stderr.resume();
    },
    durableObjects: Object.fromEntries(
      (toml.durable_objects?.bindings ?? []).map((b) => [b.name, { className: b.class_name, useSQLite: true }]),
    ),
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  // Every D1 database the config declares gets the migrations, as `npm start` gives them to its shards.
  if (toml.d1_databases?.length) {
    const migrations = await readMigrations();
    for (const d of toml.d1_databases) await applyMigrations(await mf.getD1Database(d.binding), migrations);
  }
  return {
    url,
    mf,
    async stop() {
      await mf.dispose();
      rmSync(outdir, { recursive: true, force: true });
    },
  };
}
