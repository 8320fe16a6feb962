// Browser test 1 (issue 12): two people in two browser contexts create accounts (proof of work in a worker,
// with progress), exchange the invite link and chat both ways with delivered and read states and typing.
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  createPerson,
  messages,
  openChat,
  recorded,
  sendText,
  startChat,
  startWebEnv,
  waitForText,
  type WebEnv,
} from "./browser.ts";

let env: WebEnv;
// A proof of work long enough (2^12 hashes expected) that its progress is reported.
beforeAll(async () => {
  env = await startWebEnv({ vars: { POW_DIFFICULTY_BITS: "12" } });
});
afterAll(async () => env?.stop());

test("two people chat both ways with delivered, read and typing", async () => {
  const alice = await createPerson(env, "Alice", undefined, { recordStatus: true });
  const bob = await createPerson(env, "Bob");
  // Onboarding showed its phases, the proof of work among them, and the invite link holds the account id.
  const statuses = await recorded(alice.page, "__statuses");
  expect(statuses).toContain("Proving this is not a bulk sign-up…");
  expect(alice.invite).toContain(alice.accountId);
  expect(alice.accountId).toMatch(/^[0-9a-f-]{36}$/);

  // Bob pastes Alice's invite link and writes first.
  await startChat(bob.page, alice.invite);
  await sendText(bob.page, "Hi Alice, it is Bob");
  const bobSide = messages(bob.page);
  await waitForText(bobSide, "Hi Alice, it is Bob");

  // Alice sees the new conversation by Bob's name, unread, without accepting anything.
  const conversations = alice.page.getByRole("list", { name: "Conversations" });
  await waitForText(conversations.getByRole("listitem"), /Bob.*Hi Alice, it is Bob.*1 unread/);
  await waitForText(bobSide.filter({ hasText: "Hi Alice" }), "Delivered");

  // Opening it reads it: Bob sees "Read".
  await openChat(alice.page, "Bob");
  await waitForText(messages(alice.page), "Hi Alice, it is Bob");
  await waitForText(bobSide.filter({ hasText: "Hi Alice" }), "Read");

  // Alice types: Bob sees the indicator; she sends: the indicator goes and the message arrives.
  await alice.page.getByRole("textbox", { name: "Message" }).pressSequentially("Hello B");
  const bobStatus = bob.page.getByRole("status").filter({ hasText: "Alice is typing…" });
  await bobStatus.waitFor();
  await alice.page.getByRole("textbox", { name: "Message" }).press("Enter");
  await waitForText(bobSide, "Hello B");
  await bobStatus.waitFor({ state: "detached" });
  const aliceSide = messages(alice.page);
  await waitForText(aliceSide.filter({ hasText: "Hello B" }), "Read");

  // Every message shows a time.
  expect(await aliceSide.locator("time").count()).toBe(2);
  await Promise.all([alice.context.close(), bob.context.close()]);
});
