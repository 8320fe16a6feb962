// Issue 14 in the web app: Bob sets a username in Settings and sees it with his username link and its QR code;
// Alice finds him by "Find by username", Carol by opening his username link; both write and Bob reads both. A bad
// name is refused with a reason, a reset link stops working, and a deleted username is no longer found.
import { afterAll, beforeAll, expect, test } from "vitest";
import { createPerson, messages, openChat, sendText, startWebEnv, waitForText, type WebEnv } from "./browser.ts";

let env: WebEnv;
beforeAll(async () => {
  env = await startWebEnv();
});
afterAll(async () => env?.stop());

test("a username and its link find a person; reset and delete take them away", async () => {
  const [alice, bob, carol] = await Promise.all([
    createPerson(env, "Alice"),
    createPerson(env, "Bob"),
    createPerson(env, "Carol"),
  ]);

  // Bob: a refused name first, then "bob".
  await bob.page.getByRole("button", { name: "Settings" }).click();
  const nickname = bob.page.getByRole("textbox", { name: "Username" });
  await nickname.fill("9lives");
  await bob.page.getByRole("button", { name: "Set username" }).click();
  await waitForText(bob.page.getByRole("alert"), "does not start with a digit");
  await nickname.fill("bob");
  await bob.page.getByRole("button", { name: "Set username" }).click();
  const shown = bob.page.getByLabel("Your username", { exact: true });
  await waitForText(shown, /^bob\.\d{2,9}$/);
  const username = (await shown.textContent())!;
  const linkNote = bob.page.getByLabel("Username link", { exact: true });
  await waitForText(linkNote, `${env.relay.url}/u#`);
  const link = (await linkNote.textContent())!;
  expect(link).toMatch(/\/u#[0-9a-f]+\.[A-Za-z0-9_-]+$/);
  await bob.page.getByRole("img", { name: "QR code of your username link" }).waitFor();
  await bob.page.getByRole("button", { name: "Close" }).click();

  // Alice finds Bob by his username, in "New chat".
  await alice.page.getByRole("button", { name: "New chat" }).click();
  await alice.page.getByRole("textbox", { name: "Find by username" }).fill(username.toUpperCase());
  await alice.page.getByRole("button", { name: "Find" }).click();
  await sendText(alice.page, "found you by your username");

  // Carol opens Bob's username link: "New chat" opens with it, and "Find" starts the chat.
  await carol.page.goto(link);
  const find = carol.page.getByRole("textbox", { name: "Find by username" });
  await find.waitFor();
  expect(await find.inputValue()).toBe(link);
  await carol.page.getByRole("button", { name: "Find" }).click();
  await sendText(carol.page, "found you by your link");

  await openChat(bob.page, "Alice");
  await waitForText(messages(bob.page), "found you by your username");
  await openChat(bob.page, "Carol");
  await waitForText(messages(bob.page), "found you by your link");

  // Bob resets his link: the old one no longer works, the new one does.
  await bob.page.getByRole("button", { name: "Settings" }).click();
  await bob.page.getByRole("button", { name: "Reset username link" }).click();
  await expect.poll(async () => linkNote.textContent()).not.toBe(link);
  await carol.page.getByRole("button", { name: "New chat" }).click();
  await carol.page.getByRole("textbox", { name: "Find by username" }).fill(link);
  await carol.page.getByRole("button", { name: "Find" }).click();
  await waitForText(carol.page.getByRole("alert"), "no longer works");
  await carol.page.getByRole("button", { name: "Close" }).click();

  // Bob deletes his username: Alice no longer finds it.
  await bob.page.getByRole("button", { name: "Delete username" }).click();
  await bob.page.getByRole("button", { name: "Set username" }).waitFor();
  await alice.page.getByRole("button", { name: "New chat" }).click();
  await alice.page.getByRole("textbox", { name: "Find by username" }).fill(username);
  await alice.page.getByRole("button", { name: "Find" }).click();
  await waitForText(alice.page.getByRole("alert"), "Nobody has that username");

  await Promise.all([alice.context.close(), bob.context.close(), carol.context.close()]);
}, 120_000);
