// Usernames through the SDK against a local relay: setUsername picks a discriminator, lookups, username links and
// their reset, usernames and links accepted where an account is, and the relay never receiving a plaintext name
// or a link's key: every request the SDK sends (URL and body) is watched.
import { describe, expect, it } from "vitest";
import { CipherpostError } from "../../src/client/index.ts";
import type { FetchLike } from "../../src/client/http.ts";
import { relayForFile, waitFor } from "./helpers.ts";

const files = relayForFile();

/** A fetch that records every request's method, URL and body text before sending it. */
function watchedFetch(): { fetch: FetchLike; seen: string[] } {
  const seen: string[] = [];
  const fetch: FetchLike = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const body = typeof init?.body === "string" ? init.body : init?.body ? "[binary]" : "";
    seen.push(`${init?.method ?? "GET"} ${url} ${body}`);
    return globalThis.fetch(input, init);
  };
  return { fetch, seen };
}

const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return "resolved";
  } catch (e) {
    return CipherpostError.is(e) ? e.code : String(e);
  }
};

describe("usernames in the SDK", () => {
  it("sets, looks up, links and deletes without the relay ever seeing the name or the link's key", async () => {
    const a = watchedFetch();
    const b = watchedFetch();
    const alice = await files.client({ fetch: a.fetch });
    const bob = await files.client({ fetch: b.fetch });
    const nickname = `Zebracorn${Date.now() % 100000}`;

    const username = await alice.setUsername(nickname);
    expect(username).toMatch(new RegExp(`^${nickname.toLowerCase()}\\.\\d{2}$`));
    expect(await alice.username()).toBe(username);
    expect(await bob.lookupUsername(username)).toBe(alice.accountId);
    expect(await bob.lookupUsername(username.toUpperCase())).toBe(alice.accountId);

    const link = await alice.usernameLink();
    expect(link.startsWith(`${files.relay().url}/u#`)).toBe(true);
    expect(await alice.usernameLink()).toBe(link);
    expect(await bob.resolveUsernameLink(link)).toEqual({ username, accountId: alice.accountId });

    // Usernames and links wherever an account is.
    await bob.send(username, "by name");
    await bob.send(link, "by link");
    const byName = await bob.safetyNumber(username);
    expect(await bob.safetyNumber(alice.accountId)).toBe(byName);
    const got: string[] = [];
    alice.on("message", (m) => void got.push(m.text ?? ""));
    await alice.connect();
    await waitFor("both messages", () => got.length >= 2);
    expect(got).toEqual(["by name", "by link"]);

    const reset = await alice.resetUsernameLink();
    expect(reset).not.toBe(link);
    expect(await code(bob.resolveUsernameLink(link))).toBe("NOT_FOUND");
    expect((await bob.resolveUsernameLink(reset)).accountId).toBe(alice.accountId);

    // Another username replaces the first, which stops resolving.
    const second = await alice.setUsername(`${nickname}x.4242`);
    expect(second).toBe(`${nickname.toLowerCase()}x.4242`);
    expect(await code(bob.lookupUsername(username))).toBe("NOT_FOUND");
    expect(await bob.lookupUsername(second)).toBe(alice.accountId);

    await alice.deleteUsername();
    expect(await alice.username()).toBeNull();
    expect(await code(bob.lookupUsername(second))).toBe("NOT_FOUND");

    const keys = [link, reset].map((l) => l.slice(l.indexOf("#") + 1).split(".")[1]!);
    const everything = [...a.seen, ...b.seen];
    expect(everything.length).toBeGreaterThan(10);
    for (const line of everything) {
      expect(line.toLowerCase()).not.toContain(nickname.toLowerCase());
      for (const k of keys) expect(line).not.toContain(k);
      expect(line).not.toContain("#");
    }
  }, 120_000);

  it("refuses broken names before sending anything, with the rule's code", async () => {
    const w = watchedFetch();
    const carol = await files.client({ fetch: w.fetch });
    const before = w.seen.length;
    expect(await code(carol.setUsername("ab"))).toBe("USERNAME_INVALID");
    expect(await code(carol.setUsername("9lives"))).toBe("USERNAME_INVALID");
    expect(await code(carol.setUsername("carol.0"))).toBe("DISCRIMINATOR_INVALID");
    expect(await code(carol.lookupUsername("carol"))).toBe("DISCRIMINATOR_INVALID");
    expect(await code(carol.send("carol", "hi"))).toBe("INVALID_ARGUMENT");
    expect(await code(carol.resolveUsernameLink("https://elsewhere.example/u#00"))).toBe("INVALID_ARGUMENT");
    expect(await code(carol.usernameLink())).toBe("NOT_FOUND");
    expect(w.seen.length).toBe(before);
  }, 60_000);
});
