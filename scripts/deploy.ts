// `npm run deploy`: refuses a configuration that fails validation, applies schema.sql to every remote D1 shard,
// then deploys with wrangler. `--check` stops after validation (the test suite runs that on wrangler.toml).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { loadConfig } from "../src/server/config.ts";

interface WranglerToml {
  vars?: Record<string, unknown>;
  d1_databases?: { binding: string; database_name: string; database_id: string }[];
  r2_buckets?: { binding: string; bucket_name: string }[];
}

/** Problems that would make the deployed relay answer 503, or deploy without a shard it names. */
export function checkDeployConfig(tomlText: string): { problems: string[]; warnings: string[]; shards: string[] } {
  const toml = parse(tomlText) as WranglerToml;
  const shards = (toml.d1_databases ?? []).map((d) => d.binding);
  // Stand-in D1 objects for the bindings wrangler.toml declares, so the same check the Worker runs applies.
  const env: Record<string, unknown> = { ...(toml.vars ?? {}) };
  for (const s of shards) env[s] = { prepare() {} };
  const loaded = loadConfig(env);
  const problems = loaded.ok ? [] : loaded.error.problems.map((p) => `${p.variable}: ${p.problem}`);
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

function run(args: string[]) {
  const r = spawnSync(
    process.execPath,
    [new URL("../node_modules/wrangler/bin/wrangler.js", import.meta.url).pathname, ...args],
    { stdio: "inherit" },
  );
  if (r.status !== 0) process.exit(r.status ?? 1);
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
  for (const s of shards) run(["d1", "execute", s, "--remote", "--file", "schema.sql", "--config", configPath]);
  run(["deploy", "--config", configPath]);
}
