// Keeps docs/configuration.md, wrangler.toml's [vars] and the config schema in agreement (every variable is
// documented with its default, and wrangler.toml ships exactly that default), docs/cost.md with the cost model,
// and the README's test commands with package.json and the slow tier's list.
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ConfigSchema, SECRET_VARS } from "../src/server/config.ts";
import { SLOW_FILES } from "./support/tiers.ts";

const root = new URL("../", import.meta.url);
const doc = readFileSync(new URL("docs/configuration.md", root), "utf8");
const toml = readFileSync(new URL("wrangler.toml", root), "utf8");
/** A markdown table row as a formatter may pad it: cells trimmed, dashes of a separator row collapsed. */
const cells = (row: string) => row.split("|").map((c) => c.trim().replace(/^-{3,}$/, "---"));
const rowOf = (name: string) => doc.split("\n").find((l) => cells(l)[1] === `\`${name}\``);
/** A whole table, compared with its padding removed: `npm run cost -- --write` and a formatter pad differently. */
const unpadded = (text: string) =>
  text
    .split("\n")
    .map((l) => (l.startsWith("|") ? cells(l).join("|") : l))
    .join("\n");
const vars = Object.fromEntries(
  [...toml.slice(toml.indexOf("[vars]")).matchAll(/^([A-Z][A-Z0-9_]*)\s*=\s*"([^"]*)"/gm)].map((m) => [m[1]!, m[2]!]),
);

describe("configuration docs", () => {
  const names = Object.keys(ConfigSchema.shape);

  it("every variable has its unit or kind in its name", () => {
    for (const n of names)
      expect(n, n).toMatch(
        /_(SECONDS|BYTES|LIMIT|BITS|MAP|DEVICES|RECIPIENTS|MESSAGES|THRESHOLD|PARTS|LEVEL|JWK|SUBJECT|HOSTS|PROVIDER|URL|URLS|ID|TOKEN|SECRET)$|^MAX_|_COUNT$|_ALLOW_[A-Z]+$/,
      );
  });

  for (const name of Object.keys(ConfigSchema.shape).filter((n) => !(SECRET_VARS as readonly string[]).includes(n))) {
    it(`${name} is documented with the default wrangler.toml ships`, () => {
      const row = rowOf(name);
      expect(row, `docs/configuration.md has no row for ${name}`).toBeDefined();
      const documentedDefault = row!.split("|")[2]!.trim().replace(/`/g, "");
      expect(vars[name], `wrangler.toml [vars] has no ${name}`).toBeDefined();
      expect(vars[name]).toBe(documentedDefault);
      // The schema's own default (an unset variable) is the same value.
      const parsed = ConfigSchema.shape[name as keyof typeof ConfigSchema.shape].safeParse(undefined);
      expect(parsed.success).toBe(true);
      const v = parsed.data as unknown;
      const schemaDefault = Array.isArray(v)
        ? v.map((r: { from: number; to: number; binding: string }) => `${r.from}-${r.to}:${r.binding}`).join(",")
        : String(v);
      expect(schemaDefault).toBe(documentedDefault);
    });
  }

  it("wrangler.toml has no var the schema does not parse", () => {
    expect(Object.keys(vars).filter((v) => !names.includes(v))).toEqual([]);
  });

  for (const name of SECRET_VARS) {
    it(`the secret ${name} is documented as one and never shipped in wrangler.toml`, () => {
      const row = rowOf(name);
      expect(row, `docs/configuration.md has no row for ${name}`).toBeDefined();
      expect(row).toContain("secret");
      expect(vars[name]).toBeUndefined();
      expect(toml).not.toMatch(new RegExp(`^\\s*${name}\\s*=`, "m"));
    });
  }
});

describe("cost docs", () => {
  it("docs/cost.md shows the table bench/cost-model.ts computes (npm run cost -- --write)", async () => {
    const { tables } = await import("../bench/cost-model.ts");
    expect(unpadded(readFileSync(new URL("docs/cost.md", root), "utf8"))).toContain(unpadded(tables()));
  });
});

describe("test commands", () => {
  it("the README names npm test and npm run test:fast, and package.json defines both", () => {
    const readme = readFileSync(new URL("README.md", root), "utf8");
    const scripts = (
      JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as { scripts: Record<string, string> }
    ).scripts;
    expect(readme).toContain("npm test");
    expect(readme).toContain("npm run test:fast");
    expect(scripts.test).toMatch(/npm run typecheck && npm run lint && .*vitest run$/);
    expect(scripts["test:fast"]).toMatch(/CIPHERPOST_FAST=1 vitest run\b/);
  });

  it("every file or folder the slow tier names exists, so a rename cannot drop it into test:fast unnoticed", () => {
    for (const pattern of SLOW_FILES)
      expect(existsSync(new URL(pattern.replace(/\/\*\*$/, ""), root)), pattern).toBe(true);
  });
});
