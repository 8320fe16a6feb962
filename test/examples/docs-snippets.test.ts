// The documents quote the examples and cannot drift from them: every `ts` block in docs/api.md and
// docs/attachments.md is a `// #region` of examples/*.ts word for word (indentation removed), and the regions the
// pages are built on are there. Also: docs/api.md's table of limits names real settings with their defaults, and
// docs/mailbox.md lists every close code and an answer for every client frame.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLOSE_CODES, FRAME_TYPES } from "../../src/protocol/frames.ts";
import { ConfigSchema } from "../../src/server/config.ts";

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

/** Strips the indentation every non-blank line shares (a method's region reads as top-level code in the docs). */
function dedent(text: string): string {
  const lines = text.replace(/\n+$/, "").split("\n");
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => /^ */.exec(l)![0].length));
  return lines.map((l) => (l.trim() ? l.slice(indent) : "")).join("\n");
}

/** The `// #region name` … `// #endregion name` blocks of a file, by name. */
function regions(path: string): Map<string, string> {
  const text = read(path);
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^[ \t]*\/\/ #region (\S+)\n([\s\S]*?)^[ \t]*\/\/ #endregion \1$/gm))
    out.set(m[1]!, dedent(m[2]!));
  expect(out.size, `${path}: every #region has its #endregion`).toBe(text.match(/\/\/ #region /g)?.length ?? 0);
  return out;
}

const tsBlocks = (markdown: string) => [...markdown.matchAll(/^```ts\n([\s\S]*?)\n```$/gm)].map((m) => m[1]!);

const QUOTED = [
  {
    doc: "docs/api.md",
    example: "examples/libsignal-client.ts",
    quotes: ["keys", "register", "session", "send", "receive"],
  },
  { doc: "docs/attachments.md", example: "examples/uppy-upload.ts", quotes: ["uppy"] },
];

describe("the documents quote the examples", () => {
  for (const { doc, example, quotes } of QUOTED) {
    it(`${doc} quotes ${example} word for word`, () => {
      const ours = regions(example);
      const blocks = tsBlocks(read(doc));
      for (const name of quotes) {
        expect(ours.has(name), `${example} has no region ${name}`).toBe(true);
        expect(blocks, `${doc} does not quote region ${name} of ${example} as it is now`).toContain(ours.get(name));
      }
      const known = [...ours.values()];
      for (const block of blocks)
        expect(known, `a ts block in ${doc} is not a region of ${example}:\n${block.slice(0, 300)}`).toContain(block);
    });
  }
});

describe("docs/api.md's table of limits", () => {
  const doc = read("docs/api.md");
  const table = doc.slice(doc.indexOf("## Limits a client meets"), doc.indexOf("## Register"));
  const rows = table
    .split("\n")
    .filter((l) => l.startsWith("| ") && !l.startsWith("| ---") && !l.startsWith("| limit"));
  const defaults = ConfigSchema.parse({}) as Record<string, unknown>;
  /** The settings a row names, in its third column (the others name error codes in the same style). */
  const named = (row: string) => [...(row.split("|")[3] ?? "").matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!);

  it("names settings that exist, each with its default in its row", () => {
    expect(rows.length).toBeGreaterThan(20);
    for (const row of rows)
      for (const name of named(row)) {
        expect(name in ConfigSchema.shape, `${name} is not a setting`).toBe(true);
        const value = defaults[name];
        if (typeof value === "number")
          expect(row.includes(String(value)), `the row of ${name} does not say its default ${value}`).toBe(true);
      }
  });

  it("covers every setting a client can meet (docs/configuration.md)", () => {
    // Settings only an operator meets: where data lives, how the registration rate is counted, push plumbing, logs.
    const operatorOnly = [
      "SHARD_MAP",
      "POW_RATE_WINDOW_SECONDS",
      "POW_RATE_SHARD_COUNT",
      "PUSH_TTL_SECONDS",
      "PUSH_ALLOW_LOOPBACK",
      "VAPID_PRIVATE_KEY_JWK",
      "VAPID_SUBJECT",
      "LOG_LEVEL",
    ];
    const inTable = new Set(rows.flatMap(named));
    const missing = Object.keys(ConfigSchema.shape).filter((n) => !inTable.has(n) && !operatorOnly.includes(n));
    expect(missing, "settings missing from docs/api.md's table of limits").toEqual([]);
  });
});

describe("docs/mailbox.md", () => {
  const doc = read("docs/mailbox.md");

  it("states every close code", () => {
    const list = doc.slice(doc.indexOf("Close codes ("), doc.indexOf("### Guarantees"));
    for (const code of Object.values(CLOSE_CODES)) expect(list, String(code)).toContain(`**${code}**`);
  });

  it("states the answer to every client frame, and what order a client can rely on", () => {
    const answers = doc.slice(doc.indexOf("### Answers"), doc.indexOf("Close codes ("));
    const clientFrames = [FRAME_TYPES.ack, FRAME_TYPES.ping, FRAME_TYPES.send, FRAME_TYPES.send_multi];
    const firstCells = answers.split("\n").map((l) => l.split("|")[1] ?? "");
    for (const type of clientFrames)
      expect(
        firstCells.some((c) => c.includes(`\`${type}\``)),
        type,
      ).toBe(true);
    expect(answers).toContain("any other id deletes nothing, silently");
    const order = doc.slice(doc.indexOf("- **Order**"), doc.indexOf("- **At least once**"));
    for (const phrase of ["order of arrival", "same `id`", "`serverTimestamp`", "online-only"])
      expect(order, phrase).toContain(phrase);
  });
});
