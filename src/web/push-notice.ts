// What a push turns into, shared by the page and the service worker: the notification for newly arrived
// messages (titled with the contact's name, the text only with previews on), the previews setting in the
// encrypted storage, and the messages the two exchange about a push.
import type { Storage, StoredMessage } from "../client/index.ts";
import { conversationOf, isGroupConversation } from "./model/conversations.ts";
import type { Messenger } from "./model/messenger.ts";

/** The app's IndexedDB database (the encrypted storage), as main.tsx opens it. */
export const DATABASE = "cipherpost";

/** How long the page, or the worker, waits for the relay's queue after a push before it says what it has. */
export const CATCH_UP_MS = 10_000;

const SETTINGS_KEY = "web/settings";

/** Settings the service worker reads too. Previews are off until the person turns them on. */
export interface NotificationSettings {
  previews: boolean;
}

export async function readNotificationSettings(storage: Storage): Promise<NotificationSettings> {
  const stored = JSON.parse((await storage.get(SETTINGS_KEY)) ?? "{}") as Partial<NotificationSettings>;
  return { previews: stored.previews === true };
}

export async function writeNotificationSettings(storage: Storage, settings: NotificationSettings): Promise<void> {
  await storage.write({ set: { [SETTINGS_KEY]: JSON.stringify(settings) } });
}

/** One notification: one per conversation, replacing the conversation's earlier one (same tag). */
export interface Notice {
  tag: string;
  title: string;
  body: string;
}

/** Shown when the service worker cannot learn what arrived (no page answered, the device busy or offline). */
export const GENERIC_NOTICE: Notice = { tag: "cipherpost-new-message", title: "cipherpost", body: "New message" };

/** Service worker → every open page: a push came; the port carries the page's answer. */
export const PUSH_MESSAGE = "cipherpost-push";
/** Page → service worker, on the port: "I own the device and am fetching", then the result. */
export type PushAnswer = { type: "fetching" } | { type: "notices"; notices: Notice[]; caughtUp: boolean };

/** A message a person would want to hear of: someone else's text or file (not a timer notice or a sync copy). */
export function isNotifiable(m: StoredMessage): boolean {
  return m.direction === "incoming" && (m.text !== undefined || (m.attachments?.length ?? 0) > 0);
}

function preview(m: StoredMessage): string {
  if (m.text) return m.text;
  const files = m.attachments ?? [];
  return files.length === 1 ? `File: ${files[0]?.name ?? "attachment"}` : `${files.length} files`;
}

/**
 * The notifications for `arrived` (newest last): one per conversation, titled with the sender's name (and the
 * group's), the newest text as the body only when `previews` is on, otherwise only how many arrived.
 */
export function noticesFor(m: Messenger, arrived: StoredMessage[], previews: boolean): Notice[] {
  const byConversation = new Map<string, StoredMessage[]>();
  for (const msg of arrived.filter(isNotifiable)) {
    const conv = conversationOf(msg);
    if (conv) byConversation.set(conv, [...(byConversation.get(conv) ?? []), msg]);
  }
  return [...byConversation].map(([conv, list]) => {
    const newest = list[list.length - 1] as StoredMessage;
    const sender = m.nameOf(newest.from);
    const title = isGroupConversation(conv) ? `${sender} · ${m.nameOf(conv)}` : sender;
    const count = list.length === 1 ? "New message" : `${list.length} new messages`;
    return { tag: `cipherpost-${conv}`, title, body: previews ? preview(newest) : count };
  });
}
