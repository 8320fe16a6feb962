// The service worker's side of a push. The relay's push is empty, so the worker must learn what arrived: an
// open page that owns the device catches up and answers; with no such page, the worker takes the device's Web
// Lock itself, opens the encrypted storage and connects as the device. Failing both, a generic notification.
import { CipherpostClient, type StoredMessage } from "../client/index.ts";
import { acquireDeviceLock } from "./device-lock.ts";
import { Messenger } from "./model/messenger.ts";
import {
  CATCH_UP_MS,
  DATABASE,
  GENERIC_NOTICE,
  type Notice,
  noticesFor,
  PUSH_MESSAGE,
  type PushAnswer,
  readNotificationSettings,
} from "./push-notice.ts";
import { openWebStorage, type WebStorage } from "./storage/opfs-storage.ts";

/** A page that owns the device says "fetching" at once; a page without the device (or frozen) stays silent. */
const ACK_MS = 1_000;

export interface PushScope {
  clients: { matchAll(o: object): Promise<{ postMessage(message: unknown, transfer: Transferable[]): void }[]> };
  registration: { showNotification(title: string, options: NotificationOptions): Promise<void> };
}

type Answer = Extract<PushAnswer, { type: "notices" }>;

/** Asks every open page; the first that owns the device answers. Undefined when none does in time. */
async function askPages(scope: PushScope): Promise<Answer | undefined> {
  const pages = await scope.clients.matchAll({ type: "window", includeUncontrolled: true });
  if (pages.length === 0) return undefined;
  return new Promise((resolve) => {
    let timer = setTimeout(() => resolve(undefined), ACK_MS);
    for (const page of pages) {
      const channel = new MessageChannel();
      channel.port1.onmessage = (e: MessageEvent<PushAnswer>) => {
        clearTimeout(timer);
        if (e.data.type === "notices") resolve(e.data);
        else timer = setTimeout(() => resolve(undefined), CATCH_UP_MS + ACK_MS);
      };
      page.postMessage({ type: PUSH_MESSAGE }, [channel.port2]);
    }
  });
}

/**
 * No page owns the device: take its lock (if free), connect as the device, receive the queue, close. What it
 * receives is stored as the page would store it (the same Messenger), so the next page shows it.
 */
async function fetchHere(): Promise<Answer | undefined> {
  const lock = await acquireDeviceLock(false);
  if (!lock) return undefined;
  let storage: WebStorage | undefined;
  try {
    storage = await openWebStorage(DATABASE);
    const client = await CipherpostClient.open({ storage });
    const m = await Messenger.open(client, storage);
    const arrived: StoredMessage[] = [];
    client.on("message", (msg) => void arrived.push(msg));
    const drained = client.waitForQueueEmpty().then(() => true);
    const caughtUp = await Promise.race([
      client.connect({ failFast: true }).then(() => drained),
      new Promise<boolean>((r) => setTimeout(() => r(false), CATCH_UP_MS)),
      // A page took the device over ("Use here"): let it have the connection at once.
      lock.lost.then(() => false),
    ]);
    await client.close();
    const { previews } = await readNotificationSettings(storage);
    return { type: "notices", notices: noticesFor(m, arrived, previews), caughtUp };
  } catch (e) {
    console.warn("cipherpost: could not fetch after a push", e);
    return undefined;
  } finally {
    await storage?.close();
    lock.release();
  }
}

/** What to show for one push: the notices learnt, nothing when all is known to be seen, else the generic one. */
export async function noticesForPush(scope: PushScope): Promise<Notice[]> {
  const answer = (await askPages(scope)) ?? (await fetchHere());
  if (!answer || (answer.notices.length === 0 && !answer.caughtUp)) return [GENERIC_NOTICE];
  return answer.notices;
}

export async function showPush(scope: PushScope): Promise<void> {
  for (const n of await noticesForPush(scope)) {
    await scope.registration
      .showNotification(n.title, { body: n.body, tag: n.tag, icon: "icon.svg" })
      .catch((e: unknown) => console.warn("cipherpost: the browser refused the notification", e));
  }
}
