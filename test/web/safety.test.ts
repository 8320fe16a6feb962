// Browser test 5 (issue 12): both people see the same 60-digit safety number; when the identity key a contact
// presents differs from the one this device trusted, the chat shows a banner until the person accepts it.
import type { Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  messages,
  openChat,
  type PageStores,
  sendText,
  startWebEnv,
  storeBundle,
  twoPeopleChatting,
  waitForText,
  type WebEnv,
} from "./browser.ts";

let env: WebEnv;
beforeAll(async () => {
  env = await startWebEnv();
});
afterAll(async () => env?.stop());

async function safetyDigits(page: Page): Promise<string> {
  await page.getByRole("button", { name: "Safety number" }).click();
  const digits = page.getByLabel("Safety number digits", { exact: true });
  const text = (await digits.textContent()) ?? "";
  await page.getByRole("button", { name: "Close" }).click();
  return text.replace(/\s/g, "");
}

/**
 * Replaces the identity key this device trusts for `contact` in its encrypted storage and forgets its session
 * with the contact's first device, as if it had met another key than the contact's real one. Done from another
 * page of the origin while the app is not running.
 */
async function tamperTrustedIdentity(page: Page, url: string, contact: string): Promise<void> {
  await page.goto(`${url}/manifest.webmanifest`);
  await page.evaluate(await storeBundle());
  await page.evaluate(
    async ([name, session]) => {
      const fake = new Uint8Array(33);
      crypto.getRandomValues(fake);
      fake[0] = 5;
      const storage = await stores.EncryptedOpfsStorage.open("cipherpost");
      await storage.write({ set: { [name]: btoa(String.fromCharCode(...fake)) }, delete: [session] });
      await storage.close();
    },
    [`id/${contact}`, `s/${contact}/001`] as const,
  );
  await page.goto(`${url}/`);
}

declare const stores: PageStores;

test("safety numbers match on both sides; an identity change shows the banner", async () => {
  const { alice, bob } = await twoPeopleChatting(env, "first");

  const onAlice = await safetyDigits(alice.page);
  const onBob = await safetyDigits(bob.page);
  expect(onAlice).toMatch(/^\d{60}$/);
  expect(onBob).toBe(onAlice);

  // Alice's device now trusts another key for Bob than the one the relay serves for him: her next message is
  // held, and the chat says why.
  await tamperTrustedIdentity(alice.page, env.relay.url, bob.accountId);
  await openChat(alice.page, "Bob");
  await sendText(alice.page, "second");
  const banner = alice.page.getByRole("alert").filter({ hasText: "safety number has changed" });
  await banner.waitFor();
  // The number to compare is the one with the key Bob really has: the same as on Bob's screen.
  expect(await safetyDigits(alice.page)).toBe(onBob);
  await waitForText(messages(alice.page).filter({ hasText: "second" }), /Sending|Waiting/);
  expect(await messages(bob.page).filter({ hasText: "second" }).count()).toBe(0);
  // Accepting the new key lets the held message go, and the chat goes on both ways.
  await alice.page.getByRole("button", { name: "Trust new key" }).click();
  await banner.waitFor({ state: "detached" });
  await waitForText(messages(bob.page), "second");
  await sendText(bob.page, "third");
  await waitForText(messages(alice.page), "third");
  await Promise.all([alice.context.close(), bob.context.close()]);
});
