// The page's side of push notifications: subscribing this browser to Web Push with the relay's VAPID key and
// registering the endpoint with the relay (the "Notifications" switch), and answering the service worker when
// a push comes: catch up with the relay, then say what arrived (push-notice.ts).
import { type CipherpostClient, CipherpostError } from "../client/index.ts";
import { equalBytes, fromBase64Url } from "../crypto/bytes.ts";
import { conversationOf } from "./model/conversations.ts";
import type { Messenger } from "./model/messenger.ts";
import { CATCH_UP_MS, noticesFor, PUSH_MESSAGE, type PushAnswer, readNotificationSettings } from "./push-notice.ts";

export type PushStatus =
  | { kind: "unsupported" }
  /** The relay has no VAPID key (501 PUSH_NOT_CONFIGURED): it sends no pushes, so there is nothing to turn on. */
  | { kind: "unconfigured" }
  | { kind: "ready"; enabled: boolean };

function pushRegistration(): Promise<ServiceWorkerRegistration> | undefined {
  if (!("serviceWorker" in navigator) || !("PushManager" in globalThis) || !("Notification" in globalThis)) return;
  return navigator.serviceWorker.ready;
}

async function vapidKey(client: CipherpostClient): Promise<string | undefined> {
  try {
    return await client.vapidPublicKey();
  } catch (e) {
    if (CipherpostError.is(e, "PUSH_NOT_CONFIGURED")) return undefined;
    throw e;
  }
}

/** On when this browser holds a subscription and the relay has its endpoint for this device. */
export async function pushStatus(client: CipherpostClient): Promise<PushStatus> {
  const ready = pushRegistration();
  if (!ready) return { kind: "unsupported" };
  if ((await vapidKey(client)) === undefined) return { kind: "unconfigured" };
  const subscription = await (await ready).pushManager.getSubscription();
  const registered = subscription ? await client.pushEndpoint() : null;
  return { kind: "ready", enabled: subscription !== null && registered === subscription.endpoint };
}

/** Asks for permission, subscribes with the relay's key and registers the endpoint. Throws what went wrong. */
export async function enablePush(client: CipherpostClient): Promise<void> {
  const ready = pushRegistration();
  const key = await vapidKey(client);
  if (!ready || key === undefined) throw new Error("Notifications are not available here.");
  if ((await Notification.requestPermission()) !== "granted")
    throw new Error("Notifications are blocked for this site: allow them in the browser's site settings.");
  const applicationServerKey = fromBase64Url(key) as Uint8Array<ArrayBuffer>;
  const { pushManager } = await ready;
  let subscription = await pushManager.getSubscription();
  // A subscription made with another key (the relay's key changed) cannot be reused: the push service would
  // refuse the relay's pushes to it.
  const oldKey = subscription?.options.applicationServerKey;
  if (subscription && !(oldKey && equalBytes(new Uint8Array(oldKey), applicationServerKey))) {
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await pushManager.subscribe({ userVisibleOnly: true, applicationServerKey });
  try {
    await client.setPushEndpoint(subscription.endpoint);
  } catch (e) {
    await subscription.unsubscribe().catch(() => undefined);
    throw e;
  }
}

/** Unsubscribes this browser and removes the device's endpoint from the relay. */
export async function disablePush(client: CipherpostClient): Promise<void> {
  const subscription = await (await pushRegistration())?.pushManager.getSubscription();
  await subscription?.unsubscribe();
  await client.removePushEndpoint();
}

/**
 * A browser may renew a subscription on its own (a new endpoint): on start, a subscription the relay does not
 * know is registered again. Nothing happens where notifications are off (no subscription).
 */
export async function resyncPushEndpoint(client: CipherpostClient): Promise<void> {
  const subscription = await (await pushRegistration())?.pushManager.getSubscription();
  if (subscription && (await client.pushEndpoint()) !== subscription.endpoint)
    await client.setPushEndpoint(subscription.endpoint);
}

/** Resolves true once the relay's queue has been received, false after CATCH_UP_MS. */
function catchUp(m: Messenger): Promise<boolean> {
  const drained = m.client.waitForQueueEmpty().then(() => true);
  // The relay pushes only to a device it sees without a connection. Messenger reconnects a page that knows it
  // is offline; a page that believes it is online may hold a socket the relay already counts as gone.
  if (m.online) m.client.reconnect();
  return Promise.race([drained, new Promise<boolean>((r) => setTimeout(() => r(false), CATCH_UP_MS))]);
}

/**
 * Answers the service worker's pushes while this page owns the device: "fetching" at once, then the notices for
 * the unread messages that arrived since the last answer, leaving out the conversation the person is looking
 * at (`onScreen`, when the page is visible and focused). Answers the function that stops listening.
 */
export function answerPushes(m: Messenger, onScreen: () => string | undefined): () => void {
  const container = navigator.serviceWorker;
  if (!container) return () => {};
  let answeredUpTo = Date.now();
  const onMessage = async (e: MessageEvent<{ type?: string }>) => {
    const port = e.ports[0];
    if (e.data?.type !== PUSH_MESSAGE || !port) return;
    port.postMessage({ type: "fetching" } satisfies PushAnswer);
    const caughtUp = await catchUp(m);
    const looking = document.visibilityState === "visible" && document.hasFocus() ? onScreen() : undefined;
    const since = answeredUpTo;
    const arrived = m.client.messages.list({ since }).filter((msg) => {
      const conv = conversationOf(msg);
      return conv !== undefined && conv !== looking && msg.storedAt > m.prefsOf(conv).lastRead;
    });
    answeredUpTo = Math.max(since, ...arrived.map((msg) => msg.storedAt));
    const { previews } = await readNotificationSettings(m.storage);
    port.postMessage({ type: "notices", notices: noticesFor(m, arrived, previews), caughtUp } satisfies PushAnswer);
  };
  container.addEventListener("message", onMessage);
  return () => container.removeEventListener("message", onMessage);
}
