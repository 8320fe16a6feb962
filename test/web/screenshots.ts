// `npm run screenshots` (tsx test/web/screenshots.ts): drives the app like the browser tests and saves phone and
// desktop screenshots of onboarding, a chat with an image and a file, a safety number and the device list into
// docs/screenshots/, as shown in the README.
import { mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import {
  attachFile,
  createPerson,
  messages,
  openChat,
  sendText,
  startChat,
  startWebEnv,
  waitForText,
} from "./browser.ts";

const OUT = new URL("../../docs/screenshots/", import.meta.url).pathname;
const SIZES = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } } as const;

async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(OUT, `${name}.png`) });
  console.log(`saved docs/screenshots/${name}.png`);
}

/** A small picture for the chat: an SVG rendered by the browser itself into a PNG. */
async function picture(page: Page): Promise<string> {
  const png = await page.evaluate(async () => {
    const c = document.createElement("canvas");
    c.width = 480;
    c.height = 300;
    const g = c.getContext("2d")!;
    const sky = g.createLinearGradient(0, 0, 0, 300);
    sky.addColorStop(0, "#9fd3e6");
    sky.addColorStop(1, "#f5e6c8");
    g.fillStyle = sky;
    g.fillRect(0, 0, 480, 300);
    g.fillStyle = "#f2b134";
    g.beginPath();
    g.arc(360, 90, 40, 0, Math.PI * 2);
    g.fill();
    g.fillStyle = "#3f7f6b";
    g.beginPath();
    g.moveTo(0, 300);
    g.lineTo(140, 150);
    g.lineTo(260, 260);
    g.lineTo(360, 170);
    g.lineTo(480, 300);
    g.fill();
    return c.toDataURL("image/png").split(",")[1]!;
  });
  const path = join(tmpdir(), "lighthouse.png");
  writeFileSync(path, Buffer.from(png, "base64"));
  return path;
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const env = await startWebEnv();
  try {
    for (const [size, viewport] of Object.entries(SIZES)) {
      const onboarding = await env.browser.newContext({ viewport });
      const first = await onboarding.newPage();
      await first.goto(`${env.relay.url}/`);
      await first.getByRole("textbox", { name: "Display name" }).fill("Maya");
      await shoot(first, `${size}-onboarding`);
      await onboarding.close();

      const maya = await createPerson(env, "Maya", viewport);
      const sam = await createPerson(env, "Sam", viewport);
      await startChat(sam.page, maya.invite);
      await sendText(sam.page, "Are we still on for the coast this weekend?");
      await openChat(maya.page, "Sam");
      await sendText(maya.page, "Yes! I found the lighthouse trail. Photo from last year:");
      await attachFile(maya.page, await picture(maya.page));
      const notes = join(tmpdir(), "packing-list.pdf");
      writeFileSync(notes, Buffer.alloc(48_000, 1));
      await attachFile(maya.page, notes);
      await messages(sam.page).getByRole("link", { name: "Download packing-list.pdf" }).waitFor();
      await sendText(sam.page, "Perfect, see you at 9.");
      await waitForText(messages(maya.page), "see you at 9");
      await messages(maya.page).getByRole("img", { name: "lighthouse.png" }).waitFor();
      await shoot(maya.page, `${size}-chat`);

      await maya.page.getByRole("button", { name: "Safety number" }).click();
      await maya.page.getByLabel("Safety number digits", { exact: true }).waitFor();
      await shoot(maya.page, `${size}-safety-number`);
      await maya.page.getByRole("button", { name: "Close" }).click();

      if (size === "phone") await maya.page.getByRole("button", { name: "Back to conversations" }).click();
      await maya.page.getByRole("button", { name: "Devices" }).click();
      await maya.page.getByRole("button", { name: "Link a device" }).click();
      await maya.page.getByLabel("Link code value", { exact: true }).waitFor();
      await shoot(maya.page, `${size}-devices`);
      await Promise.all([maya.context.close(), sam.context.close()]);
    }
  } finally {
    await env.stop();
  }
}

await main();
