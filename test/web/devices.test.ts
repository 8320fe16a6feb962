// Browser test 4 (issue 12) and groups: Alice makes a group with Bob; a third browser links to Alice's account
// with the link code (Alice approves after both show the same verification code) and receives new messages of both conversations; Alice sees it in her device list and
// removes it, and the removed browser says so.
import { afterAll, beforeAll, expect, test } from "vitest";
import { messages, openChat, sendText, startWebEnv, waitForText, type WebEnv, twoPeopleChatting } from "./browser.ts";

let env: WebEnv;
beforeAll(async () => {
  env = await startWebEnv();
});
afterAll(async () => env?.stop());

test("a linked browser receives both conversations; the device list shows and removes it", async () => {
  const { alice, bob } = await twoPeopleChatting(env, "hello from Bob");

  // A group from contacts, named, sent to, with its members listed.
  await alice.page.getByRole("button", { name: "New group" }).click();
  await alice.page.getByRole("textbox", { name: "Group name" }).fill("Trip");
  await alice.page.getByRole("checkbox", { name: "Bob" }).check();
  await alice.page.getByRole("button", { name: "Create group" }).click();
  await sendText(alice.page, "welcome to the trip group");
  await openChat(bob.page, "Trip");
  await waitForText(messages(bob.page), "welcome to the trip group");
  await bob.page.getByRole("button", { name: "Members" }).click();
  await waitForText(bob.page.getByRole("list", { name: "Members" }).getByRole("listitem"), "Alice");
  await bob.page.getByRole("button", { name: "Close" }).click();

  // Alice shows a link code; a new browser enters it; both show the same verification code; Alice approves.
  await alice.page.getByRole("button", { name: "Devices" }).click();
  await alice.page.getByRole("button", { name: "Link a device" }).click();
  const code = (await alice.page.getByLabel("Link code value", { exact: true }).textContent()) ?? "";
  expect(code).toMatch(/^cplink2\./);

  const context = await env.browser.newContext({ viewport: { width: 1000, height: 700 } });
  const linked = await context.newPage();
  await linked.goto(`${env.relay.url}/`);
  await linked.getByRole("button", { name: "Link to an existing account" }).click();
  await linked.getByRole("textbox", { name: "Link code" }).fill(code);
  await linked.getByRole("button", { name: "Link this device" }).click();
  const shown = linked.getByLabel("Verification code", { exact: true });
  await waitForText(shown, /^\d{6}$/);
  const approve = alice.page.getByRole("button", { name: "Approve" });
  await approve.waitFor();
  // Not approved yet: the new browser is still waiting (the identity key has not left Alice's browser).
  expect(await linked.getByLabel("Account ID", { exact: true }).count()).toBe(0);
  expect(await alice.page.getByLabel("Verification code", { exact: true }).textContent()).toBe(
    await shown.textContent(),
  );
  await approve.click();
  expect(await linked.getByLabel("Account ID", { exact: true }).textContent()).toBe(alice.accountId);
  await alice.page.getByRole("button", { name: "Close" }).click();
  await linked.getByRole("button", { name: "Close" }).click();

  // New messages of both conversations reach the linked browser.
  await openChat(bob.page, "Alice");
  await sendText(bob.page, "direct, after the link");
  await openChat(bob.page, "Trip");
  await sendText(bob.page, "group, after the link");
  const list = linked.getByRole("list", { name: "Conversations" }).getByRole("listitem");
  await waitForText(list, /Bob.*direct, after the link/);
  await waitForText(list, /Trip.*group, after the link/);
  await openChat(linked, "Trip");
  await waitForText(messages(linked), "group, after the link");

  // The device list shows both; removing the linked one stops it.
  await alice.page.getByRole("button", { name: "Devices" }).click();
  const devices = alice.page.getByRole("list", { name: "Your devices" }).getByRole("listitem");
  await waitForText(devices, "Device 2");
  expect(await devices.count()).toBe(2);
  alice.page.once("dialog", (d) => void d.accept());
  await alice.page.getByRole("button", { name: "Remove device 2" }).click();
  await expect.poll(() => devices.count()).toBe(1);
  await waitForText(linked.getByRole("alert"), "This device was removed");
  await Promise.all([alice.context.close(), bob.context.close(), context.close()]);
});
