// How the D1 schema reaches every shard: the migrations in migrations/ (wrangler's format, NNNN_name.sql).
// `npm start` and `npm run deploy` run `wrangler d1 migrations apply` on each shard; code that builds its own
// local databases (test relays, the benchmark host, the schema test) applies them in process the same way.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { D1Migration } from "@cloudflare/vitest-pool-workers";
import { parse } from "smol-toml";

/** Every shard takes this one folder (wrangler's default `migrations_dir`), so every shard has one schema. */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../migrations", import.meta.url));
/** The table wrangler records applied migrations in (its default `migrations_table`). */
const MIGRATIONS_TABLE = "d1_migrations";
export const WRANGLER = fileURLToPath(new URL("../node_modules/wrangler/bin/wrangler.js", import.meta.url));

export interface D1Shard {
  binding: string;
  migrations_dir?: string;
}

/** The D1 databases a wrangler.toml declares: cipherpost's shards. */
export function d1Shards(tomlText: string): D1Shard[] {
  return (parse(tomlText) as { d1_databases?: D1Shard[] }).d1_databases ?? [];
}

/**
 * Runs the pinned wrangler with stdin closed. Without a terminal wrangler takes the default answer to its
 * prompts (yes to "About to apply N migration(s)"), so this never waits for a keypress, in CI or not.
 * `quiet` keeps wrangler's tables off the terminal unless the command fails. Exits the process on failure.
 */
export function runWrangler(args: string[], { quiet = false }: { quiet?: boolean } = {}): void {
  const r = spawnSync(process.execPath, [WRANGLER, ...args], {
    stdio: ["ignore", quiet ? "pipe" : "inherit", "inherit"],
    encoding: "utf8",
  });
  if (r.status === 0) return;
  if (quiet && r.stdout) process.stderr.write(r.stdout);
  process.stderr.write(`wrangler ${args.join(" ")} failed\n`);
  process.exit(r.status ?? 1);
}

/** `wrangler d1 migrations apply` on every shard, locally (`--local`, `--persist-to …`) or `--remote`. */
export function applyMigrationsWithWrangler(bindings: readonly string[], where: string[], quiet = false): void {
  for (const binding of bindings) {
    process.stderr.write(`applying D1 migrations to ${binding} (${where.join(" ")})\n`);
    runWrangler(["d1", "migrations", "apply", binding, ...where], { quiet });
  }
}

/** The migrations in order, each split into statements by wrangler's own SQL splitter. */
export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<D1Migration[]> {
  // Imported on use: the package loads Miniflare and esbuild, which `npm start` and `npm run deploy` never need.
  const { readD1Migrations } = await import("@cloudflare/vitest-pool-workers");
  return readD1Migrations(dir);
}

/** The part of a D1 binding (workerd, Miniflare or wrangler's platform proxy) the migrations need. */
export interface D1Like {
  prepare(sql: string): { bind(...values: unknown[]): unknown; all(): Promise<{ results: unknown[] }> };
  batch(statements: unknown[]): Promise<unknown>;
}

/**
 * Applies the migrations `db` has not recorded, each in one batch with its record, as wrangler and the Workers
 * test pool's `applyD1Migrations` do (same table, same DDL), so a database built here and one built by
 * `wrangler d1 migrations apply` are alike. Returns the names applied.
 */
export async function applyMigrations(db: D1Like, migrations: readonly D1Migration[]): Promise<string[]> {
  await db
    .prepare(
      `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE}(
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		name       TEXT UNIQUE,
		applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);`,
    )
    .all();
  const done = new Set(
    ((await db.prepare(`SELECT name FROM ${MIGRATIONS_TABLE}`).all()).results as { name: string }[]).map((r) => r.name),
  );
  const applied: string[] = [];
  for (const m of migrations) {
    if (done.has(m.name)) continue;
    await db.batch([
      ...m.queries.map((q) => db.prepare(q)),
      db.prepare(`INSERT INTO ${MIGRATIONS_TABLE} (name) VALUES (?)`).bind(m.name),
    ]);
    applied.push(m.name);
  }
  return applied;
}
