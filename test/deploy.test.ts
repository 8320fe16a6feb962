// `npm run deploy` refuses a configuration that would make the relay answer 503 or give shards different schemas,
// before touching anything.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkDeployConfig } from "../scripts/deploy.ts";

const toml = readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8");

describe("deploy configuration check", () => {
  it("accepts the shipped wrangler.toml", () => {
    expect(checkDeployConfig(toml)).toEqual({ problems: [], warnings: [], shards: ["DB_0"] });
  });

  it("names a bad var", () => {
    const r = checkDeployConfig(toml.replace('MAX_DEVICES = "6"', 'MAX_DEVICES = "lots"'));
    expect(r.problems).toEqual([expect.stringMatching(/^MAX_DEVICES: must be a whole number/)]);
  });

  it("refuses a SHARD_MAP naming a binding wrangler.toml does not declare, and warns of a shard nothing reads yet", () => {
    expect(
      checkDeployConfig(toml.replace('SHARD_MAP = "0-4095:DB_0"', 'SHARD_MAP = "0-2047:DB_0,2048-4095:DB_1"')).problems,
    ).toEqual([expect.stringMatching(/SHARD_MAP: names binding DB_1, which is not a D1 database/)]);
    const extra = `${toml}\n[[d1_databases]]\nbinding = "DB_7"\ndatabase_name = "x"\ndatabase_id = "y"\n`;
    expect(checkDeployConfig(extra)).toMatchObject({
      problems: [],
      warnings: [expect.stringMatching(/DB_7 is not in SHARD_MAP yet/)],
    });
  });

  it("refuses PUSH_ALLOW_LOOPBACK, which only npm start and the test relays set", () => {
    const r = checkDeployConfig(toml.replace('PUSH_ALLOW_LOOPBACK = "false"', 'PUSH_ALLOW_LOOPBACK = "true"'));
    expect(r.problems).toEqual([expect.stringMatching(/^PUSH_ALLOW_LOOPBACK: development only/)]);
  });

  it("refuses shards that would take different migrations folders, so every shard keeps one schema", () => {
    const other = `${toml}\n[[d1_databases]]\nbinding = "DB_7"\ndatabase_name = "x"\ndatabase_id = "y"\nmigrations_dir = "elsewhere"\n`;
    expect(checkDeployConfig(other).problems).toEqual([
      expect.stringMatching(/^d1_databases: every shard must take the same migrations_dir/),
    ]);
  });

  it("npm run deploy exits 1 on a bad configuration without running wrangler", () => {
    const dir = mkdtempSync(join(tmpdir(), "cipherpost-deploy-"));
    const bad = join(dir, "wrangler.toml");
    writeFileSync(bad, toml.replace('POW_DIFFICULTY_BITS = "16"', 'POW_DIFFICULTY_BITS = "99"'));
    const r = spawnSync(
      process.execPath,
      [join("node_modules", "tsx", "dist", "cli.mjs"), "scripts/deploy.ts", `--config=${bad}`],
      { encoding: "utf8" },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/refusing to deploy[\s\S]*POW_DIFFICULTY_BITS: must be between 0 and 32/);
  });
});
