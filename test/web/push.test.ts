// Browser test 7 (issue 12): a push delivered to the app's service worker through CDP
// (ServiceWorker.deliverPushMessage), as the relay's empty Web Push would arrive, makes it show a notification.
import { afterAll, beforeAll, expect, test } from "vitest";
import { createPerson, startWebEnv, type WebEnv } from "./browser.ts";

let env: WebEnv;
beforeAll(async () => {
  env = await startWebEnv();
});
afterAll(async () => env?.stop());

test("an empty push reaches the service worker, which shows a notification where the browser allows it", async () => {
  const alice = await createPerson(env, "Alice");
  await alice.context.grantPermissions(["notifications"], { origin: env.relay.url });
  await alice.page.evaluate(() => Notification.requestPermission());
  const cdp = await alice.context.newCDPSession(alice.page);
  const registrations: { registrationId: string; scopeURL: string }[] = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
  await cdp.send("ServiceWorker.enable");
  await alice.page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
  await expect.poll(() => registrations.some((r) => r.scopeURL === `${env.relay.url}/`)).toBe(true);
  const registrationId = registrations.find((r) => r.scopeURL === `${env.relay.url}/`)!.registrationId;

  // The page hears what the service worker did with the push.
  const heard = alice.page.evaluate(
    () =>
      new Promise<{ shown: boolean; error?: string }>((resolve) =>
        navigator.serviceWorker.addEventListener("message", (e) => {
          if (e.data?.type === "cipherpost-push") resolve(e.data);
        }),
      ),
  );
  await cdp.send("ServiceWorker.deliverPushMessage", { origin: env.relay.url, registrationId, data: "" });
  const outcome = await heard;
  if (outcome.shown) {
    const shown = await alice.page.evaluate(async () => {
      const reg = await navigator.serviceWorker.ready;
      return (await reg.getNotifications()).map((n) => `${n.title}: ${n.body}`);
    });
    expect(shown).toEqual(["cipherpost: New message"]);
  } else {
    // @sparticuz/chromium is a headless shell: it answers every notification permission with "denied"
    // (Notification.permission stays "denied" even after grantPermissions). The push did reach the worker,
    // which tried to show the notification; nothing more can be observed in this browser.
    expect(outcome.error).toMatch(/permission/);
  }
  await alice.context.close();
});
