// Browser test 2 (issue 12): a 5 MiB file goes one way with a moving progress bar, the receiver downloads it
// and its SHA-256 matches; an image shows inline; an upload interrupted by a reload resumes where it stopped.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  attachFile,
  createPerson,
  messages,
  openChat,
  type Person,
  recorded,
  sendText,
  startChat,
  startWebEnv,
  waitForText,
  type WebEnv,
} from "./browser.ts";

let env: WebEnv;
let dir: string;
let alice: Person;
let bob: Person;
beforeAll(async () => {
  env = await startWebEnv();
  dir = mkdtempSync(join(tmpdir(), "cipherpost-files-"));
  alice = await createPerson(env, "Alice", undefined, { recordStatus: true });
  bob = await createPerson(env, "Bob");
  await startChat(bob.page, alice.invite);
  await sendText(bob.page, "send me the files");
  await openChat(alice.page, "Bob");
  await waitForText(messages(alice.page), "send me the files");
});
afterAll(async () => {
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function downloadFrom(page: Page, name: string): Promise<Buffer> {
  const link = messages(page).getByRole("link", { name: `Download ${name}` });
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  expect(download.suggestedFilename()).toBe(name);
  const saved = join(dir, `got-${name}`);
  await download.saveAs(saved);
  return readFileSync(saved);
}

/** A valid 3×2 RGB PNG, so the receiver's <img> has real dimensions. */
function tinyPng(): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.from([0, 0, 0, 3, 0, 0, 0, 2, 8, 2, 0, 0, 0]);
  const rows = Buffer.from([0, 200, 30, 30, 30, 200, 30, 30, 30, 200, 0, 250, 250, 250, 0, 0, 0, 90, 90, 90]);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function crc32(b: Buffer): number {
  let c = ~0;
  for (const byte of b) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

test("a 5 MiB file arrives intact, with a progress bar on the way", async () => {
  const file = randomBytes(5 * 1024 * 1024);
  const path = join(dir, "holiday.bin");
  writeFileSync(path, file);
  await attachFile(alice.page, path);
  const link = messages(bob.page).getByRole("link", { name: "Download holiday.bin" });
  await link.waitFor({ timeout: 30_000 });
  // The bar moved through intermediate values, not straight from nothing to done.
  const bars = (await recorded(alice.page, "__progress")).filter((p) => p.startsWith("Uploading holiday.bin"));
  const fractions = bars.map((p) => p.split(" ").at(-1)!.split("/").map(Number)).map(([v, m]) => v! / m!);
  expect(fractions.some((f) => f > 0 && f < 1)).toBe(true);
  await waitForText(messages(bob.page).filter({ hasText: "holiday.bin" }), "5.0 MB");
  expect(sha256(await downloadFrom(bob.page, "holiday.bin"))).toBe(sha256(file));
});

test("an image shows inline on both sides", async () => {
  const path = join(dir, "dots.png");
  writeFileSync(path, tinyPng());
  await attachFile(alice.page, path);
  for (const page of [bob.page, alice.page]) {
    const img = messages(page).getByRole("img", { name: "dots.png" });
    await img.waitFor();
    await expect.poll(() => img.evaluate((el: HTMLImageElement) => el.naturalWidth)).toBe(3);
  }
});

test("an upload interrupted by a reload resumes from where the relay stopped", async () => {
  const file = randomBytes(5 * 1024 * 1024);
  const path = join(dir, "resume.bin");
  writeFileSync(path, file);
  // Slow uploads down so the reload lands in the middle of this one.
  const cdp = await alice.context.newCDPSession(alice.page);
  await cdp.send("Network.enable");
  const slow = { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 1024 * 1024 };
  await cdp.send("Network.emulateNetworkConditions", slow);
  await attachFile(alice.page, path);
  await expect
    .poll(() => recorded(alice.page, "__progress"), { timeout: 20_000 })
    .toContainEqual(expect.stringMatching(/^Uploading resume\.bin [1-9]\d*\//));

  // Under the throttled network the old page's cancelled upload can hold the new page's load event back (seen
  // once past 30 s in CI): wait for the navigation itself, then for the app as a person does.
  await alice.page.reload({ waitUntil: "commit" });
  const creations: string[] = [];
  alice.page.on("request", (r) => {
    if (r.method() === "POST" && r.url().includes("/v1/attachments/tus")) creations.push(r.url());
  });
  await openChat(alice.page, "Bob");
  await waitForText(messages(alice.page), "Upload paused");
  await cdp.send("Network.emulateNetworkConditions", { ...slow, uploadThroughput: -1 });
  const [chooser] = await Promise.all([
    alice.page.waitForEvent("filechooser"),
    alice.page.getByRole("button", { name: "Resume upload of resume.bin" }).click(),
  ]);
  await chooser.setFiles(path);
  await messages(bob.page).getByRole("link", { name: "Download resume.bin" }).waitFor({ timeout: 30_000 });
  expect(creations).toEqual([]); // the same upload went on; none was created anew
  expect(sha256(await downloadFrom(bob.page, "resume.bin"))).toBe(sha256(file));
});
