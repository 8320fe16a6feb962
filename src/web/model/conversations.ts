// Pure functions from the SDK's stored messages to what the screens show: which conversation a message belongs
// to, the conversation list with unread counts, a message's delivery state, and the app's own payload that
// rides inside messages (`data`): the sender's display name, a group's name, a disappearing-timer change.
import type { StoredMessage } from "../../client/index.ts";

/** What the app puts in a message's `data` (inside the encryption). */
export interface AppData {
  /** The sender's display name, so a new contact shows by name. */
  name?: string;
  /** A group's name, on group messages. */
  groupName?: string;
  /** A change of the conversation's disappearing-message timer (seconds; 0 = off). No text: shown as a notice. */
  timer?: number;
}

export interface Contact {
  id: string;
  name: string;
}

export interface Group {
  id: string;
  name: string;
  members: string[];
}

export interface ConversationPrefs {
  /** storedAt of the last message this device showed as read. */
  lastRead: number;
  /** Disappearing-message timer in seconds; absent or 0 = off. */
  timer?: number;
  /** The contact's new identity key (base64) while the person has not accepted it: the chat shows a banner. */
  identityChanged?: string;
}

export interface ConversationSummary {
  id: string;
  name: string;
  isGroup: boolean;
  last?: StoredMessage;
  unread: number;
}

export const GROUP_PREFIX = "group:";

export function appData(m: StoredMessage): AppData {
  const d = m.data;
  if (!d || typeof d !== "object") return {};
  const o = d as Record<string, unknown>;
  return {
    ...(typeof o.name === "string" ? { name: o.name.slice(0, 64) } : {}),
    ...(typeof o.groupName === "string" ? { groupName: o.groupName.slice(0, 64) } : {}),
    ...(typeof o.timer === "number" && Number.isInteger(o.timer) && o.timer >= 0 ? { timer: o.timer } : {}),
  };
}

/** A direct conversation is keyed by the contact's account id, a group one by "group:" and the group id. */
export function conversationOf(m: StoredMessage): string | undefined {
  if (m.group) return GROUP_PREFIX + m.group.id;
  return m.direction === "outgoing" ? m.to : m.from;
}

export function isGroupConversation(id: string): boolean {
  return id.startsWith(GROUP_PREFIX);
}

/** sent → delivered → read, from the receipts the SDK recorded on the stored message. */
export function deliveryState(m: StoredMessage): "sent" | "delivered" | "read" {
  if (m.read?.length) return "read";
  if (m.delivered?.length) return "delivered";
  return "sent";
}

/** Every conversation with a message or a known contact, newest activity first. */
export function summarize(
  messages: StoredMessage[],
  self: string,
  contacts: ReadonlyMap<string, Contact>,
  groups: ReadonlyMap<string, Group>,
  prefs: ReadonlyMap<string, ConversationPrefs>,
): ConversationSummary[] {
  const byId = new Map<string, ConversationSummary>();
  const entry = (id: string): ConversationSummary => {
    let s = byId.get(id);
    if (!s) {
      const isGroup = isGroupConversation(id);
      const name = isGroup
        ? (groups.get(id.slice(GROUP_PREFIX.length))?.name ?? "Group")
        : (contacts.get(id)?.name ?? shortId(id));
      s = { id, name, isGroup, unread: 0 };
      byId.set(id, s);
    }
    return s;
  };
  for (const c of contacts.values()) if (c.id !== self) entry(c.id);
  for (const g of groups.values()) entry(GROUP_PREFIX + g.id);
  for (const m of messages) {
    const id = conversationOf(m);
    if (!id || id === self) continue;
    const s = entry(id);
    s.last = m;
    if (m.direction === "incoming" && m.storedAt > (prefs.get(id)?.lastRead ?? 0)) s.unread++;
  }
  return [...byId.values()].sort((a, b) => (b.last?.storedAt ?? 0) - (a.last?.storedAt ?? 0));
}

export function shortId(accountId: string): string {
  return accountId.slice(0, 8);
}

/** What a message shows as its text: the text, a timer notice, or the attachment names. */
export function previewOf(m: StoredMessage, timerLabel: (seconds: number) => string): string {
  if (m.text) return m.text;
  const d = appData(m);
  if (d.timer !== undefined) return `Disappearing messages: ${timerLabel(d.timer)}`;
  if (m.attachments?.length) return m.attachments.map((a) => a.name ?? "file").join(", ");
  return "";
}

export const TIMER_CHOICES: readonly number[] = [0, 5, 30, 300, 3600, 86_400, 604_800];

export function timerLabel(seconds: number): string {
  if (!seconds) return "off";
  if (seconds < 60) return `${seconds} seconds`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} minutes`;
  if (seconds < 86_400) return `${Math.round(seconds / 3600)} hours`;
  if (seconds < 604_800) return `${Math.round(seconds / 86_400)} days`;
  return `${Math.round(seconds / 604_800)} weeks`;
}

/** The invite link carries the account id and, in the fragment only, the display name (never sent to the relay). */
export function inviteLink(origin: string, accountId: string, name: string): string {
  return `${origin}/#u=${accountId}${name ? `&n=${encodeURIComponent(name)}` : ""}`;
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/** Reads an invite link or a bare account id; undefined when it holds neither. */
export function parseInvite(text: string): { accountId: string; name?: string } | undefined {
  const id = text.match(UUID)?.[0]?.toLowerCase();
  if (!id) return undefined;
  const hash = text.includes("#") ? text.slice(text.indexOf("#") + 1) : "";
  const name = new URLSearchParams(hash).get("n") ?? undefined;
  return { accountId: id, ...(name ? { name: name.slice(0, 64) } : {}) };
}
