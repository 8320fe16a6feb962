// The service worker: keeps the app shell available offline (network first, so a deploy shows at once; the
// cached copy when the network is gone) and turns the relay's empty Web Push into a notification (sw-push.ts).
// API paths are never touched: the SDK talks to the relay directly.
import { type PushScope, showPush } from "./sw-push.ts";

declare const SHELL_FILES: string[];
declare const SHELL_VERSION: string;

interface SwScope extends Pick<PushScope, "registration"> {
  addEventListener(type: "install" | "activate", fn: (e: { waitUntil(p: Promise<unknown>): void }) => void): void;
  addEventListener(type: "fetch", fn: (e: FetchEventLike) => void): void;
  addEventListener(type: "push", fn: (e: { waitUntil(p: Promise<unknown>): void }) => void): void;
  addEventListener(type: "notificationclick", fn: (e: NotificationEventLike) => void): void;
  skipWaiting(): Promise<void>;
  clients: {
    claim(): Promise<void>;
    matchAll(o: object): Promise<WindowClientLike[]>;
    openWindow(url: string): Promise<unknown>;
  };
}
interface FetchEventLike {
  request: Request;
  respondWith(r: Promise<Response>): void;
}
interface NotificationEventLike {
  notification: Notification;
  waitUntil(p: Promise<unknown>): void;
}
interface WindowClientLike {
  focus(): Promise<unknown>;
  postMessage(message: unknown, transfer: Transferable[]): void;
}

const sw = self as unknown as SwScope;
const CACHE = `cipherpost-shell-${SHELL_VERSION}`;

sw.addEventListener("install", (e) => {
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(SHELL_FILES))
      .then(() => sw.skipWaiting()),
  );
});

sw.addEventListener("activate", (e) => {
  e.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(keys.filter((k) => k.startsWith("cipherpost-shell-") && k !== CACHE).map((k) => caches.delete(k))),
      )
      .then(() => sw.clients.claim()),
  );
});

const API = /^\/(v1|v2|health)(\/|$)/;

sw.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== location.origin || API.test(url.pathname)) return;
  e.respondWith(
    fetch(e.request).catch(async () => {
      const cache = await caches.open(CACHE);
      const hit = await cache.match(e.request, { ignoreSearch: true });
      return (
        hit ?? (e.request.mode === "navigate" ? ((await cache.match("./")) ?? Response.error()) : Response.error())
      );
    }),
  );
});

// The relay's push is empty by design (it knows nothing worth saying): sw-push.ts learns what arrived, from an
// open page or by connecting itself, and shows it.
sw.addEventListener("push", (e) => e.waitUntil(showPush(sw)));

sw.addEventListener("notificationclick", (e) => {
  e.notification.close();
  e.waitUntil(
    sw.clients.matchAll({ type: "window" }).then((list) => (list[0] ? list[0].focus() : sw.clients.openWindow("./"))),
  );
});
