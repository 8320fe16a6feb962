// The `username` commands, and usernames and username links wherever the CLI takes an account: Bob sets a
// username, Alice sends to bob.NN and to Bob's link (a text and a file), checks the safety number by username,
// and Bob receives everything.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRelay, type Relay } from "../support/relay.ts";
import { runCli } from "./run.ts";

let relay: Relay;
let cwd: string;

beforeAll(async () => {
  relay = await startRelay();
  cwd = mkdtempSync(join(tmpdir(), "cipherpost-cli-usernames-"));
}, 120_000);

afterAll(async () => {
  await relay?.stop();
  rmSync(cwd, { recursive: true, force: true });
});

const cli = (args: string[]) => runCli(cwd, args);

async function ok(args: string[]): Promise<Record<string, unknown>> {
  const r = await cli(args);
  expect(r.code, `${args.join(" ")}: ${r.stderr} ${JSON.stringify(r.lines)}`).toBe(0);
  return r.json;
}

describe("cipherpost username", () => {
  it("Bob sets a username; Alice sends to bob.NN and to Bob's link, and Bob receives both", async () => {
    const alice = (await ok(["--profile", "alice", "register", "--server", relay.url])).accountId as string;
    const bob = (await ok(["--profile", "bob", "register", "--server", relay.url])).accountId as string;

    const set = await ok(["--profile", "bob", "username", "set", "Bob"]);
    expect(set.username).toMatch(/^bob\.\d{2}$/);
    const username = set.username as string;
    expect(await ok(["--profile", "alice", "username", "lookup", username.toUpperCase()])).toEqual({ accountId: bob });

    const link = (await ok(["--profile", "bob", "username", "link"])).url as string;
    expect(link).toMatch(new RegExp(`^${relay.url}/u#[0-9a-f]{32}\\.[A-Za-z0-9_-]{43}$`));
    // The same link until reset.
    expect((await ok(["--profile", "bob", "username", "link"])).url).toBe(link);

    await ok(["--profile", "alice", "send", username, "to your username"]);
    await ok(["--profile", "alice", "send", link, "to your link"]);
    writeFileSync(join(cwd, "note.txt"), "a file by username");
    await ok(["--profile", "alice", "send-file", username, "note.txt"]);
    const byName = await ok(["--profile", "alice", "safety-number", username]);
    expect(await ok(["--profile", "alice", "safety-number", bob])).toEqual(byName);
    expect(await ok(["--profile", "alice", "safety-number", link])).toEqual(byName);

    const got = await cli(["--profile", "bob", "receive"]);
    expect(got.code, got.stderr).toBe(0);
    const texts = got.lines.filter((l) => l.text !== "").map((l) => [l.from, l.text]);
    expect(texts).toEqual([
      [alice, "to your username"],
      [alice, "to your link"],
    ]);
    expect(got.lines.filter((l) => l.file !== undefined).map((l) => l.from)).toEqual([alice]);

    // A reset link: the old one no longer resolves, the new one does.
    const reset = (await ok(["--profile", "bob", "username", "reset-link"])).url as string;
    expect(reset).not.toBe(link);
    const old = await cli(["--profile", "alice", "send", link, "to the old link"]);
    expect(old.code).toBe(1);
    expect((old.json.error as { code: string }).code).toBe("NOT_FOUND");
    await ok(["--profile", "alice", "send", reset, "to the new link"]);

    // Deleted: the name no longer resolves.
    expect(await ok(["--profile", "bob", "username", "delete"])).toEqual({ deleted: true });
    const gone = await cli(["--profile", "alice", "send", username, "after delete"]);
    expect(gone.code).toBe(1);
    expect((gone.json.error as { code: string }).code).toBe("NOT_FOUND");
  }, 240_000);

  it("refuses a broken name with its code, and wrong command lines with usage", async () => {
    await ok(["--profile", "carol", "register", "--server", relay.url]);
    const short = await cli(["--profile", "carol", "username", "set", "ab"]);
    expect(short.code).toBe(1);
    expect((short.json.error as { code: string }).code).toBe("USERNAME_INVALID");
    const disc = await cli(["--profile", "carol", "username", "set", "carol.007"]);
    expect((disc.json.error as { code: string }).code).toBe("DISCRIMINATOR_INVALID");
    const notAnAccount = await cli(["--profile", "carol", "send", "carol", "hi"]);
    expect((notAnAccount.json.error as { code: string }).code).toBe("INVALID_ARGUMENT");
    for (const args of [["username"], ["username", "set"], ["username", "rename", "x"], ["username", "link", "x"]]) {
      const r = await cli(["--profile", "carol", ...args]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toContain("usage:");
    }
  }, 120_000);
});
