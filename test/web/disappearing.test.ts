// Browser test 3 (issue 12): a conversation's disappearing-message timer is set on one side, shown and adopted
// on the other, and a message sent under it vanishes from both sides on time.
import { afterAll, beforeAll, expect, test } from "vitest";
import { messages, openChat, sendText, startWebEnv, waitForText, type WebEnv, twoPeopleChatting } from "./browser.ts";

let env: WebEnv;
beforeAll(async () => {
  env = await startWebEnv();
});
afterAll(async () => env?.stop());

test("a disappearing message vanishes from both sides on time", async () => {
  const { alice, bob } = await twoPeopleChatting(env, "hi");

  await alice.page.getByRole("button", { name: "Disappearing messages" }).click();
  await alice.page.getByRole("radio", { name: "5 seconds" }).check();
  await alice.page.getByRole("button", { name: "Set timer" }).click();
  // The other side shows the change and adopts the timer.
  await waitForText(messages(bob.page), "Alice set disappearing messages to 5 seconds");
  await waitForText(bob.page.getByRole("status"), "Disappearing: 5 seconds");

  await sendText(alice.page, "This will self-destruct");
  const onAlice = messages(alice.page).filter({ hasText: "This will self-destruct" });
  const onBob = messages(bob.page).filter({ hasText: "This will self-destruct" });
  await Promise.all([onAlice.waitFor(), onBob.waitFor()]);
  const shown = Date.now();
  await waitForText(onBob, "⏱");
  await Promise.all([
    onAlice.waitFor({ state: "detached", timeout: 15_000 }),
    onBob.waitFor({ state: "detached", timeout: 15_000 }),
  ]);
  const lasted = Date.now() - shown;
  expect(lasted).toBeGreaterThan(3_000);
  expect(lasted).toBeLessThan(9_000);

  // Bob's replies carry the same timer: the setting is in sync.
  await sendText(bob.page, "mine goes too");
  const reply = messages(alice.page).filter({ hasText: "mine goes too" });
  await waitForText(reply, "⏱");
  await reply.waitFor({ state: "detached", timeout: 15_000 });
  // And after a reload, nothing comes back.
  await bob.page.reload();
  await openChat(bob.page, "Alice");
  await waitForText(messages(bob.page), "Alice set disappearing messages");
  expect(
    await messages(bob.page)
      .filter({ hasText: /self-destruct|mine goes too/ })
      .count(),
  ).toBe(0);
  await Promise.all([alice.context.close(), bob.context.close()]);
});
