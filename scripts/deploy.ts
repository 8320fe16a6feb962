// `npm run deploy`: refuses a configuration that fails validation, applies the D1 migrations (migrations/) to
// every remote shard wrangler.toml declares, then deploys with wrangler. `--check` stops after validation (the
// test suite runs that on wrangler.toml).
import { readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { loadConfig } from "../src/server/config.ts";
import { applyMigrationsWithWrangler, d1Shards, runWrangler } from "./d1-migrations.ts";

interface WranglerToml {
  vars?: Record<string, unknown>;
}

/** Problems that would make the deployed relay answer 503, or deploy without a shard it names. */
export function checkDeployConfig(tomlText: string): { problems: string[]; warnings: string[]; shards: string[] } {
  const toml = parse(tomlText) as WranglerToml;
  const d1 = d1Shards(tomlText);
  const shards = d1.map((d) => d.binding);
  // Stand-in D1 objects for the bindings wrangler.toml declares, so the same check the Worker runs applies.
  const env: Record<string, unknown> = { ...(toml.vars ?? {}) };
  for (const s of shards) env[s] = { prepare() {} };
  const loaded = loadConfig(env);
  const problems = loaded.ok ? [] : loaded.error.problems.map((p) => `${p.variable}: ${p.problem}`);
  // One schema on every shard: wrangler applies each shard's migrations_dir, so they must all name the same one.
  const dirs = new Set(d1.map((d) => d.migrations_dir ?? "migrations"));
  if (dirs.size > 1)
    problems.push(`d1_databases: every shard must take the same migrations_dir, not ${[...dirs].join(" and ")}`);
  // Loopback push endpoints are for `npm start` and the test relays: deployed, they would let anyone make the relay
  // call its own machine.
  if (loaded.ok && loaded.config.PUSH_ALLOW_LOOPBACK)
    problems.push("PUSH_ALLOW_LOOPBACK: development only (npm start, test relays); a deployed relay must not set it");
  const warnings: string[] = [];
  if (loaded.ok) {
    // A bound shard nothing reads yet is the first step of adding one (docs/scaling.md): allowed, but said.
    const used = new Set(loaded.config.SHARD_MAP.map((r) => r.binding));
    for (const s of shards)
      if (!used.has(s))
        warnings.push(`D1 binding ${s} is not in SHARD_MAP yet: nothing will read it until SHARD_MAP gives it buckets`);
  }
  return { problems, warnings, shards };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const configPath = process.argv.find((a) => a.startsWith("--config="))?.slice(9) ?? "wrangler.toml";
  const { problems, warnings, shards } = checkDeployConfig(readFileSync(configPath, "utf8"));
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  if (problems.length) {
    process.stderr.write(
      `refusing to deploy: the configuration does not validate\n${problems.map((p) => `  - ${p}`).join("\n")}\n`,
    );
    process.exit(1);
  }
  process.stderr.write(`configuration valid; ${shards.length} shard(s): ${shards.join(", ")}\n`);
  if (process.argv.includes("--check")) process.exit(0);
  // Migrations first: the version still serving must keep working on the new schema (docs/scaling.md), and the
  // new version may rely on it. A failed migration stops here, before anything is deployed.
  applyMigrationsWithWrangler(shards, ["--remote", "--config", configPath]);
  runWrangler(["deploy", "--config", configPath]);
}
