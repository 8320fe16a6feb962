// Browser test 6 (issue 12): after a reload the history is still there, and the raw files of the whole browser
// profile (the store's files in the origin-private file system, IndexedDB, caches) contain no message text, no
// private key and no contact's account id. Also: one tab owns the device; a second tab says so and can take over.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  createPerson,
  decryptedEntries,
  messages,
  openChat,
  personWithProfile,
  profileFiles,
  sendText,
  startChat,
  startWebEnv,
  storeFiles,
  waitForText,
  type WebEnv,
} from "./browser.ts";

let env: WebEnv;
let profile: string;
beforeAll(async () => {
  env = await startWebEnv();
  profile = mkdtempSync(join(tmpdir(), "cipherpost-profile-"));
});
afterAll(async () => {
  await env?.stop();
  rmSync(profile, { recursive: true, force: true });
});

test("history survives a reload; the profile holds no text, key or contact in the clear", async () => {
  const { context, page, invite } = await personWithProfile(env, profile, "Alice");
  const bob = await createPerson(env, "Bob");
  // A control: a plain IndexedDB value written before the messages must be found by the scan below, so the
  // scan is known to see what this profile writes (and not, say, only compressed tables).
  const canary = `canary-${Date.now()}-in-the-clear`;
  await page.evaluate(async (value) => {
    const open = indexedDB.open("control", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("s");
    const db = await new Promise<IDBDatabase>((ok) => (open.onsuccess = () => ok(open.result)));
    const tx = db.transaction("s", "readwrite", { durability: "strict" });
    tx.objectStore("s").put(value, "k");
    await new Promise((ok) => (tx.oncomplete = ok));
    db.close();
  }, canary);

  const secrets = ["Meet me at the old lighthouse at nine", "Bring the blue umbrella"];
  await startChat(bob.page, invite);
  await sendText(bob.page, secrets[0]!);
  await openChat(page, "Bob");
  await waitForText(messages(page), secrets[0]!);
  await sendText(page, secrets[1]!);
  await waitForText(messages(bob.page), secrets[1]!);
  await waitForText(messages(page).filter({ hasText: secrets[1]! }), "Read");

  // Reload: the conversation, both messages and their states come back from the encrypted storage.
  await page.reload();
  await openChat(page, "Bob");
  await waitForText(messages(page), secrets[0]!);
  await waitForText(messages(page).filter({ hasText: secrets[1]! }), "Read");

  // What an attacker copying the profile folder would look for.
  const entries = new Map(await decryptedEntries(page));
  const device = JSON.parse(entries.get("device")!) as { identityPrivateKey: string; password: string };
  const privateKeys = [...entries].filter(([k]) => k.startsWith("pk/")).map(([, v]) => v);
  expect(privateKeys.length).toBeGreaterThan(100);
  const needles: [string, Buffer][] = [];
  const add = (what: string, text: string) => {
    needles.push([what, Buffer.from(text, "utf8")], [what, Buffer.from(text, "utf16le")]);
  };
  for (const s of secrets) add("message text", s);
  add("identity private key", device.identityPrivateKey);
  needles.push(["identity private key (bytes)", Buffer.from(device.identityPrivateKey, "base64")]);
  add("device password", device.password);
  add("contact account id", bob.accountId);
  add("contact name", "Bob");
  for (const v of privateKeys.slice(0, 20)) add("prekey record", v.slice(0, 40));

  const bytes = profileFiles(join(profile, "Default")).join("\n");
  expect(bytes.includes(canary)).toBe(true);
  // And the store's files are in what was scanned: its manifest as it is now.
  const manifest = Buffer.from((await storeFiles(page)).manifest!, "base64").toString("latin1");
  expect(bytes.includes(manifest)).toBe(true);
  for (const [what, needle] of needles) expect(bytes.includes(needle.toString("latin1")), what).toBe(false);

  await context.close();
  await bob.context.close();
});

test("one tab owns the device; another tab says so and can take over", async () => {
  const alice = await createPerson(env, "Alice");
  const second = await alice.context.newPage();
  await second.goto(`${env.relay.url}/`);
  await second.getByRole("heading", { name: "cipherpost is open in another tab" }).waitFor();
  await second.getByRole("button", { name: "Use here" }).click();
  await second.getByRole("button", { name: "New chat" }).waitFor();
  await alice.page.getByRole("heading", { name: "cipherpost was opened in another tab" }).waitFor();
  // And back again.
  await alice.page.getByRole("button", { name: "Use here" }).click();
  await alice.page.getByRole("button", { name: "New chat" }).waitFor();
  await second.getByRole("heading", { name: "cipherpost was opened in another tab" }).waitFor();
  await alice.context.close();
});
