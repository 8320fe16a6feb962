// Browser test 8 (issue 12): a message written while the browser is offline (CDP network emulation) waits in
// the outbox, visibly, and goes out by itself when the network returns.
import { afterAll, beforeAll, expect, test } from "vitest";
import { messages, openChat, sendText, startWebEnv, waitForText, type WebEnv, twoPeopleChatting } from "./browser.ts";

let env: WebEnv;
beforeAll(async () => {
  env = await startWebEnv();
});
afterAll(async () => env?.stop());

test("a message written offline is queued and goes out on reconnect", async () => {
  const { alice, bob } = await twoPeopleChatting(env, "are you there?");

  const cdp = await alice.context.newCDPSession(alice.page);
  await cdp.send("Network.enable");
  const conditions = { latency: 0, downloadThroughput: -1, uploadThroughput: -1 };
  await cdp.send("Network.emulateNetworkConditions", { ...conditions, offline: true });
  await alice.page.getByRole("status", { name: "Offline" }).waitFor();
  await sendText(alice.page, "written on the train");
  const queued = messages(alice.page).filter({ hasText: "written on the train" });
  await waitForText(queued, "Waiting for network");
  // Still queued after a reload while offline (the app shell comes from the service worker's cache).
  await alice.page.reload();
  await openChat(alice.page, "Bob");
  await waitForText(queued, "Waiting for network");
  expect(await messages(bob.page).filter({ hasText: "written on the train" }).count()).toBe(0);

  await cdp.send("Network.emulateNetworkConditions", { ...conditions, offline: false });
  await waitForText(messages(bob.page), "written on the train");
  await waitForText(queued, /Delivered|Read/);
  await Promise.all([alice.context.close(), bob.context.close()]);
});
