// The D1 migrations and schema.sql describe one schema: the migrations applied in order to an empty database
// give exactly the tables and indexes schema.sql creates, so a migration added without updating schema.sql (or
// the reverse) fails here. Also the file names wrangler orders by, and shards made by hand before migrations.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unstable_splitSqlQuery } from "wrangler";
import { applyMigrations, type D1Like, MIGRATIONS_DIR, readMigrations } from "../scripts/d1-migrations.ts";

const SCHEMA_SQL = readFileSync(new URL("../schema.sql", import.meta.url), "utf8");

let mf: Miniflare;
beforeAll(async () => {
  mf = new Miniflare({
    modules: true,
    script: "export default { fetch() { return new Response(null); } };",
    d1Databases: ["FROM_MIGRATIONS", "FROM_SCHEMA", "MADE_BY_HAND"],
  });
  await mf.ready;
  await execute(await db("FROM_SCHEMA"), SCHEMA_SQL);
});
afterAll(() => mf?.dispose());

const db = (name: string) => mf.getD1Database(name) as Promise<D1Like>;

/** Runs SQL text statement by statement, split as `wrangler d1 execute --file` splits it. */
async function execute(d1: D1Like, sql: string): Promise<void> {
  await d1.batch(unstable_splitSqlQuery(sql).map((s) => d1.prepare(s)));
}

/**
 * The schema as SQLite keeps it: every table, index, view and trigger with its SQL, whitespace and comments
 * normalised. SQLite's own objects, D1's internal tables and wrangler's d1_migrations record are left out.
 */
async function schemaOf(d1: D1Like): Promise<{ type: string; name: string; tbl_name: string; sql: string }[]> {
  const { results } = await d1
    .prepare(
      `SELECT type, name, tbl_name, sql FROM sqlite_master
       WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name <> 'd1_migrations'
       ORDER BY type, name`,
    )
    .all();
  return (results as { type: string; name: string; tbl_name: string; sql: string | null }[]).map((r) => ({
    ...r,
    sql: (r.sql ?? "")
      .replace(/--[^\n]*/g, "")
      .replace(/\s+/g, " ")
      .replace(/\s*([(),])\s*/g, "$1")
      .trim(),
  }));
}

describe("D1 migrations", () => {
  it("are named NNNN_name.sql and numbered 0001, 0002, … without gaps, the order wrangler applies them in", async () => {
    const files = readdirSync(MIGRATIONS_DIR).sort();
    expect(files.length).toBeGreaterThan(0);
    for (const [i, f] of files.entries())
      expect(f).toMatch(new RegExp(`^${String(i + 1).padStart(4, "0")}_[a-z0-9_]+\\.sql$`));
    expect((await readMigrations()).map((m) => m.name)).toEqual(files);
  });

  it("applied in order to an empty database give exactly the schema in schema.sql", async () => {
    const fromMigrations = await db("FROM_MIGRATIONS");
    const migrations = await readMigrations();
    expect(await applyMigrations(fromMigrations, migrations)).toEqual(migrations.map((m) => m.name));
    const expected = await schemaOf(await db("FROM_SCHEMA"));
    expect(expected.filter((o) => o.type === "table").length).toBeGreaterThan(0);
    expect(await schemaOf(fromMigrations)).toEqual(expected);
  });

  it("are recorded, so applying them again (the next `npm start` or deploy) applies nothing", async () => {
    const d1 = await db("FROM_MIGRATIONS");
    expect(await applyMigrations(d1, await readMigrations())).toEqual([]);
    const { results } = await d1.prepare("SELECT name FROM d1_migrations ORDER BY id").all();
    expect(results).toEqual((await readMigrations()).map((m) => ({ name: m.name })));
  });

  it("take a shard whose schema was applied by hand before migrations existed (0001 is a no-op there)", async () => {
    const d1 = await db("MADE_BY_HAND");
    await execute(d1, readFileSync(join(MIGRATIONS_DIR, "0001_initial_schema.sql"), "utf8"));
    await d1.prepare("INSERT INTO accounts (account_id, identity_key, created_at) VALUES ('a', 'k', 1)").all();
    await applyMigrations(d1, await readMigrations());
    expect(await schemaOf(d1)).toEqual(await schemaOf(await db("FROM_SCHEMA")));
    expect((await d1.prepare("SELECT account_id FROM accounts").all()).results).toEqual([{ account_id: "a" }]);
  });
});
