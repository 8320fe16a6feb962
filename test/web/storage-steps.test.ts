// Issue 13 for the browser store: two people chat in real Chromium, and after each step that replaces a secret
// (a one-time prekey used, a ratchet step, a disappearing message expired, a message deleted) the raw files of the
// receiver's whole browser profile hold neither the replaced secret (raw, base64 or hex) nor any message text, nor
// the sealed store file that held it: with the key taken too, the old secret cannot be recovered.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";
import { shardOf } from "../../src/client/sharded-store.ts";
import { PREKEY_PREFIXES, sessionPrefix } from "../../src/client/storage-keys.ts";
import { fromBase64, utf8 } from "../../src/crypto/bytes.ts";
import { SessionRecord } from "../../src/crypto/session-record.ts";
import { containsSecret } from "../client/storage-scan.ts";
import {
  createPerson,
  decryptedEntries,
  messages,
  openChat,
  sendText,
  startChat,
  personWithProfile,
  profileFiles,
  startWebEnv,
  storeFiles,
  waitForText,
  type WebEnv,
} from "./browser.ts";

let env: WebEnv;
let profile: string;
beforeAll(async () => {
  env = await startWebEnv();
  profile = mkdtempSync(join(tmpdir(), "cipherpost-steps-"));
});
afterAll(async () => {
  await env?.stop();
  rmSync(profile, { recursive: true, force: true });
});

/** The app's live entries, decrypted in the page with the database's own keys (browser.ts). */
async function liveEntries(page: Page): Promise<Map<string, string>> {
  return new Map(await decryptedEntries(page));
}

/** Polls the decrypted entries until `done` holds (the app writes after the UI shows a change). */
async function entriesWhen(page: Page, what: string, done: (e: Map<string, string>) => boolean) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const e = await liveEntries(page);
    if (done(e)) return e;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

/** A 64-byte run of a sealed file's ciphertext (past its header), as latin1: random, so found only where that file is. */
const sealedRun = (base64: string) => Buffer.from(base64, "base64").subarray(17, 81).toString("latin1");

/**
 * The raw bytes of every file of the whole profile (the store's files, IndexedDB, caches, everything). The store's
 * manifest as it is now must be found: the scan then also sees every write committed before it, the step's included.
 */
async function rawProfile(page: Page): Promise<string[]> {
  const now = await storeFiles(page);
  const files = profileFiles(join(profile, "Default"));
  expect(
    files.some((f) => f.includes(sealedRun(now.manifest!))),
    "the scan sees the store's latest write",
  ).toBe(true);
  return files;
}

/**
 * The sealed file that held `key` before a step (its shard's file then) is neither the live file of its shard now
 * nor anywhere in the profile's raw bytes.
 */
function sealedFileGone(files: string[], before: Record<string, string>, after: Record<string, string>, key: string) {
  const name = Object.keys(before).find((n) => n.startsWith(`${shardOf(key)}.`));
  expect(name, `the file that held ${key}`).toBeDefined();
  expect(after[name!], `${name} replaced`).toBeUndefined();
  expect(
    files.some((f) => f.includes(sealedRun(before[name!]!))),
    `the sealed bytes of ${name}`,
  ).toBe(false);
}

/** Whether a text occurs in the files as UTF-8 or UTF-16 (V8 serializes some strings as two-byte). */
function containsText(files: string[], text: string): boolean {
  return (
    containsSecret(files, utf8(text)) || files.some((f) => f.includes(Buffer.from(text, "utf16le").toString("latin1")))
  );
}

const prekeyHalves = (e: Map<string, string>) =>
  new Map(
    [...e]
      .filter(([k]) => k.startsWith(PREKEY_PREFIXES.ec) || k.startsWith(PREKEY_PREFIXES.kem))
      .map(([k, v]) => {
        const j = JSON.parse(v) as { priv?: string; sk?: string };
        return [k, fromBase64((j.priv ?? j.sk)!)] as const;
      }),
  );

const sessionOf = (e: Map<string, string>, account: string) => {
  const entry = [...e].find(([k]) => k.startsWith(sessionPrefix(account)));
  return entry && SessionRecord.deserialize(fromBase64(entry[1])).current;
};

test("after a prekey is used, a ratchet step, an expiry and a deletion, the profile holds no old secret, text or sealed file", async () => {
  const { context, page, invite } = await personWithProfile(env, profile, "Alice");
  const bob = await createPerson(env, "Bob");
  const texts: string[] = [];
  const noTextIn = (files: string[]) => {
    for (const t of texts) expect(containsText(files, t), `message text "${t}"`).toBe(false);
  };
  const secretGone = (files: string[], live: Map<string, string>, what: string, secret: Uint8Array) => {
    expect(containsSecret(files, secret), `${what} in the raw files`).toBe(false);
    expect(containsSecret([...live.values()], secret), `${what} in the live entries`).toBe(false);
  };

  const entryWith = (e: Map<string, string>, text: string) => [...e].find(([, v]) => v.includes(text))?.[0];

  // 1. A one-time prekey used: Bob's first message spends one EC and one KEM one-time key of Alice's.
  let sealed = await storeFiles(page);
  const before = prekeyHalves(await liveEntries(page));
  expect(before.size).toBeGreaterThan(100);
  texts.push(`first words ${crypto.randomUUID()}`);
  await startChat(bob.page, invite);
  await sendText(bob.page, texts[0]!);
  await openChat(page, "Bob");
  await waitForText(messages(page), texts[0]!);
  let live = await entriesWhen(page, "a one-time prekey spent", (e) => {
    const now = prekeyHalves(e);
    return [...before.keys()].filter((k) => !now.has(k)).length >= 2;
  });
  const after = prekeyHalves(live);
  const spent = [...before].filter(([k]) => !after.has(k));
  expect(spent.map(([k]) => k.slice(0, k.lastIndexOf("/") + 1)).sort()).toEqual([
    PREKEY_PREFIXES.ec,
    PREKEY_PREFIXES.kem,
  ]);
  let files = await rawProfile(page);
  for (const [k, secret] of spent) {
    secretGone(files, live, `spent prekey ${k}`, secret);
    sealedFileGone(files, sealed, await storeFiles(page), k);
  }
  noTextIn(files);

  // 2. A ratchet step: Alice answers and Bob writes again, so Alice's root key and receiving chain are replaced.
  const old = sessionOf(live, bob.accountId)!;
  const sessionKey = [...live.keys()].find((k) => k.startsWith(sessionPrefix(bob.accountId)))!;
  sealed = await storeFiles(page);
  const [oldRoot, oldChain] = [old.rootKey, old.receivingChains.at(-1)!.key!];
  texts.push(`an answer ${crypto.randomUUID()}`, `after the ratchet step ${crypto.randomUUID()}`);
  await sendText(page, texts[1]!);
  await waitForText(messages(bob.page), texts[1]!);
  await sendText(bob.page, texts[2]!);
  await waitForText(messages(page), texts[2]!);
  live = await entriesWhen(page, "a new receiving chain", (e) => {
    const s = sessionOf(e, bob.accountId);
    return !!s && s.receivingChains.every((c) => !c.key || !Buffer.from(c.key).equals(Buffer.from(oldChain)));
  });
  expect(Buffer.from(sessionOf(live, bob.accountId)!.rootKey).equals(Buffer.from(oldRoot))).toBe(false);
  files = await rawProfile(page);
  secretGone(files, live, "old root key", oldRoot);
  secretGone(files, live, "old receiving chain key", oldChain);
  sealedFileGone(files, sealed, await storeFiles(page), sessionKey);
  noTextIn(files);

  // 3. A disappearing message expired: Alice sets a 5-second timer, Bob's message under it goes everywhere.
  await page.getByRole("button", { name: "Disappearing messages" }).click();
  await page.getByRole("radio", { name: "5 seconds" }).check();
  await page.getByRole("button", { name: "Set timer" }).click();
  await waitForText(bob.page.getByRole("status"), "Disappearing: 5 seconds");
  const vanishing = `vanishing ${crypto.randomUUID()}`;
  texts.push(vanishing);
  await sendText(bob.page, vanishing);
  const shown = messages(page).filter({ hasText: vanishing });
  await shown.waitFor();
  const vanishingKey = entryWith(
    await entriesWhen(page, "the message stored", (e) => !!entryWith(e, vanishing)),
    vanishing,
  )!;
  sealed = await storeFiles(page);
  await shown.waitFor({ state: "detached", timeout: 15_000 });
  live = await entriesWhen(page, "the expired message deleted", (e) => !entryWith(e, vanishing));
  files = await rawProfile(page);
  expect(containsText([...live.values()], vanishing)).toBe(false);
  sealedFileGone(files, sealed, await storeFiles(page), vanishingKey);
  noTextIn(files);

  // 4. A message deleted: Alice deletes Bob's last message from her device ("Delete message", "Delete for me").
  const doomed = texts[2]!;
  const doomedKey = entryWith(await liveEntries(page), doomed)!;
  expect(doomedKey).toBeDefined();
  sealed = await storeFiles(page);
  const item = messages(page).filter({ hasText: doomed });
  await item.getByRole("button", { name: "Delete message" }).click();
  await item.getByRole("button", { name: "Delete for me" }).click();
  await item.waitFor({ state: "detached" });
  live = await entriesWhen(page, "the deleted message gone", (e) => !entryWith(e, doomed));
  files = await rawProfile(page);
  expect(containsText([...live.values()], doomed)).toBe(false);
  sealedFileGone(files, sealed, await storeFiles(page), doomedKey);
  noTextIn(files);
  // The other messages stay, on the screen and in the store.
  await waitForText(messages(page), texts[1]!);
  expect(entryWith(live, texts[0]!)).toBeDefined();

  await Promise.all([context.close(), bob.context.close()]);
}, 120_000);
