// Browser test 7 (issue 12): push notifications. The "Notifications" switch subscribes with the relay's VAPID key
// and registers the endpoint; a push delivered to the service worker through CDP (ServiceWorker.deliverPushMessage)
// becomes a notification titled with the contact's name, with the text only when previews are on, both with the
// app open (the page answers) and with no page open (the service worker connects as the device itself).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { BrowserContext, Page, Worker } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";
import { fromBase64Url } from "../../src/crypto/bytes.ts";
import {
  createPerson,
  messages,
  type Person,
  sendText,
  startChat,
  startWebEnv,
  waitForText,
  type WebEnv,
} from "./browser.ts";

let env: WebEnv;
let pushService: Server;
let endpoint = "";
/** Paths of the empty pushes the relay sent to the recording push service. */
const pushes: string[] = [];
let alice: Person;
let bob: Person;

beforeAll(async () => {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  pushService = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      pushes.push(req.url ?? "");
      res.writeHead(201).end();
    });
  });
  await new Promise<void>((r) => pushService.listen(0, "127.0.0.1", r));
  endpoint = `http://127.0.0.1:${(pushService.address() as AddressInfo).port}/push/alice`;
  env = await startWebEnv({
    vars: {
      VAPID_PRIVATE_KEY_JWK: JSON.stringify(await crypto.subtle.exportKey("jwk", pair.privateKey)),
      VAPID_SUBJECT: "mailto:ops@cipherpost.example",
      PUSH_MIN_INTERVAL_SECONDS: "0",
    },
  });
  [alice, bob] = await Promise.all([createPerson(env, "Alice"), createPerson(env, "Bob")]);
  await alice.context.grantPermissions(["notifications"], { origin: env.relay.url });
});
afterAll(async () => {
  await env?.stop();
  await new Promise((r) => pushService?.close(r));
});

/**
 * This headless Chromium has no push service (and no notification service: Notification.permission stays
 * "denied" whatever is granted), so PushManager.subscribe fails. Stand in for the browser's push service only:
 * subscriptions name the test's recording push service; the app's permission request stays the real one.
 */
async function fakePushService(page: Page, at: string): Promise<void> {
  await page.evaluate((url) => {
    type Sub = { endpoint: string; options: PushSubscriptionOptions; unsubscribe(): Promise<boolean> };
    const w = window as unknown as { __push: { subscription: Sub | null; calls: PushCall[] } };
    w.__push = { subscription: null, calls: [] };
    PushManager.prototype.subscribe = async (options?: PushSubscriptionOptionsInit) => {
      const key = new Uint8Array((options?.applicationServerKey as ArrayBuffer | undefined) ?? new ArrayBuffer(0));
      w.__push.calls.push({ op: "subscribe", userVisibleOnly: options?.userVisibleOnly, key: [...key] });
      const sub: Sub = {
        endpoint: url,
        options: { userVisibleOnly: true, applicationServerKey: key.buffer },
        unsubscribe: async () => {
          w.__push.calls.push({ op: "unsubscribe" });
          w.__push.subscription = null;
          return true;
        },
      };
      w.__push.subscription = sub;
      return sub as unknown as PushSubscription;
    };
    PushManager.prototype.getSubscription = async () => w.__push.subscription as unknown as PushSubscription | null;
  }, at);
}

interface PushCall {
  op: "subscribe" | "unsubscribe";
  userVisibleOnly?: boolean;
  key?: number[];
}

const pushCalls = (page: Page) =>
  page.evaluate(() => (window as unknown as { __push: { calls: PushCall[] } }).__push.calls);

/** Subscribes through the (fake) push manager, as the page held a subscription before. */
const resubscribe = (page: Page) =>
  page.evaluate(() => navigator.serviceWorker.ready.then((r) => r.pushManager.subscribe()).then(() => undefined));

async function openSettings(page: Page) {
  await page.getByRole("button", { name: "Settings" }).click();
  return {
    notifications: page.getByRole("switch", { name: "Notifications" }),
    previews: page.getByRole("checkbox", { name: "Show message previews" }),
  };
}

interface Shown {
  title: string;
  body: string;
  /** "shown", or the browser's refusal. */
  outcome: string;
}

/**
 * The test hook: wraps the service worker's registration.showNotification so every call is recorded with its
 * title and body and what the browser answered. Installed from outside; the app's code is unchanged.
 */
async function recordNotifications(context: BrowserContext): Promise<Worker> {
  const worker =
    context.serviceWorkers().find((w) => w.url().startsWith(env.relay.url)) ??
    (await context.waitForEvent("serviceworker"));
  await worker.evaluate(() => {
    const g = self as unknown as { __shown?: Shown[]; registration: ServiceWorkerRegistration };
    if (g.__shown) return;
    const shown: Shown[] = [];
    g.__shown = shown;
    const reg = g.registration;
    const show = reg.showNotification.bind(reg);
    reg.showNotification = async (title, options) => {
      const entry = { title, body: options?.body ?? "", outcome: "pending" };
      shown.push(entry);
      try {
        await show(title, options);
        entry.outcome = "shown";
      } catch (e) {
        entry.outcome = e instanceof Error ? e.message : String(e);
        throw e;
      }
    };
  });
  return worker;
}

async function nextNotification(worker: Worker, index: number): Promise<Shown> {
  const read = () => worker.evaluate((i) => (self as unknown as { __shown: Shown[] }).__shown[i], index);
  await expect.poll(async () => (await read())?.outcome ?? "pending", { timeout: 30_000 }).not.toBe("pending");
  return (await read()) as Shown;
}

/** What the browser did with the notification: shown where it can; here, refused for want of a notification service. */
async function expectDisplayed(worker: Worker, n: Shown): Promise<void> {
  if (n.outcome === "shown") {
    const list = await worker.evaluate(async () =>
      (await (self as unknown as { registration: ServiceWorkerRegistration }).registration.getNotifications()).map(
        (x) => `${x.title}: ${x.body}`,
      ),
    );
    expect(list).toContain(`${n.title}: ${n.body}`);
  } else {
    expect(n.outcome).toMatch(/No notification permission has been granted/);
  }
}

/** Delivers an empty push to the app's service worker through CDP, from a blank page of the same profile. */
async function deliverPush(context: BrowserContext): Promise<void> {
  const blank = await context.newPage();
  const cdp = await context.newCDPSession(blank);
  const registrations: { registrationId: string; scopeURL: string; isDeleted: boolean }[] = [];
  cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
  await cdp.send("ServiceWorker.enable");
  const ours = () => registrations.find((r) => r.scopeURL === `${env.relay.url}/` && !r.isDeleted);
  await expect.poll(() => ours() !== undefined).toBe(true);
  await cdp.send("ServiceWorker.deliverPushMessage", {
    origin: env.relay.url,
    registrationId: ours()!.registrationId,
    data: "",
  });
  await cdp.detach();
  await blank.close();
}

test("the Notifications switch subscribes with the relay's key and registers the endpoint", async () => {
  const page = alice.page;
  let settings = await openSettings(page);
  await expect.poll(() => settings.notifications.isVisible()).toBe(true);
  expect(await settings.notifications.isChecked()).toBe(false);
  expect(await settings.previews.isChecked()).toBe(false);

  // The real browser first: permission is granted to the page, but this build cannot subscribe.
  await settings.notifications.click();
  const refusal = page.getByRole("alert");
  await refusal.waitFor();
  expect(await refusal.textContent()).toMatch(/Could not turn notifications on: .*permission denied/);
  expect(await settings.notifications.isChecked()).toBe(false);

  await fakePushService(page, endpoint);
  await settings.notifications.click();
  await expect.poll(() => settings.notifications.isChecked()).toBe(true);
  const { publicKey } = (await (await fetch(`${env.relay.url}/v1/push/vapid-key`)).json()) as { publicKey: string };
  expect(await pushCalls(page)).toEqual([
    { op: "subscribe", userVisibleOnly: true, key: [...fromBase64Url(publicKey)] },
  ]);

  // Reopened, the switch reads its state back: this browser's subscription and the relay's endpoint agree.
  await page.getByRole("button", { name: "Close" }).click();
  settings = await openSettings(page);
  await expect.poll(() => settings.notifications.isChecked()).toBe(true);
  await page.getByRole("button", { name: "Close" }).click();
});

test("with the app open, a push becomes a notification named after the contact, the text only with previews", async () => {
  const worker = await recordNotifications(alice.context);
  await startChat(bob.page, alice.invite);
  await sendText(bob.page, "First from Bob");
  const conversations = alice.page.getByRole("list", { name: "Conversations" });
  await waitForText(conversations.getByRole("listitem"), /Bob.*First from Bob/);

  await deliverPush(alice.context);
  const first = await nextNotification(worker, 0);
  expect([first.title, first.body]).toEqual(["Bob", "New message"]);
  await expectDisplayed(worker, first);

  const settings = await openSettings(alice.page);
  await settings.previews.check();
  await alice.page.getByRole("button", { name: "Close" }).click();
  await sendText(bob.page, "Second from Bob");
  await waitForText(conversations.getByRole("listitem"), /Bob.*Second from Bob/);
  await deliverPush(alice.context);
  const second = await nextNotification(worker, 1);
  expect([second.title, second.body]).toEqual(["Bob", "Second from Bob"]);
  await expectDisplayed(worker, second);
});

test("with no page open, the relay pushes and the service worker fetches the message itself", async () => {
  const worker = await recordNotifications(alice.context);
  await alice.page.close();
  const before = pushes.length;
  await sendText(bob.page, "While you were away");
  await waitForText(messages(bob.page), "While you were away");
  // The relay saw Alice's device without a connection and sent one empty push to the registered endpoint.
  await expect.poll(() => pushes.slice(before), { timeout: 15_000 }).toContain("/push/alice");

  await deliverPush(alice.context);
  const shown = await nextNotification(worker, 2);
  expect([shown.title, shown.body]).toEqual(["Bob", "While you were away"]);
  await expectDisplayed(worker, shown);

  // The service worker stored what it received as the app does: the reopened app shows it.
  alice.page = await alice.context.newPage();
  await alice.page.goto(`${env.relay.url}/`);
  const conversations = alice.page.getByRole("list", { name: "Conversations" });
  await waitForText(conversations.getByRole("listitem"), /Bob.*While you were away/);
});

test("turning Notifications off unsubscribes and removes the endpoint from the relay", async () => {
  const page = alice.page;
  await fakePushService(page, endpoint);
  // The fake subscription lives in the page: give the reopened page the one it had.
  await resubscribe(page);
  let settings = await openSettings(page);
  await expect.poll(() => settings.notifications.isChecked()).toBe(true);
  await settings.notifications.click();
  await expect.poll(() => settings.notifications.isChecked()).toBe(false);
  expect((await pushCalls(page)).at(-1)).toEqual({ op: "unsubscribe" });

  // Hand the page its old subscription back: the relay no longer has the endpoint, so the switch stays off.
  await page.getByRole("button", { name: "Close" }).click();
  await resubscribe(page);
  settings = await openSettings(page);
  await expect.poll(() => settings.notifications.isChecked()).toBe(false);
});
