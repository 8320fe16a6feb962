// The device's conversation history in Storage: one entry per message in arrival order, indexed in memory by
// (sender, client message id) so a message that arrives twice — a relay redelivery, or a resend after a retry
// receipt — is stored once. Changes are staged into the same batch as the session that decrypted the message.
import type { AttachmentPointer, GroupContext, MessageContent } from "./content.ts";
import type { Storage, StorageBatch } from "./storage.ts";
import { MESSAGE_PREFIX, messageKey, seqOfMessageKey } from "./storage-keys.ts";

export interface StoredMessage {
  /** The client message id, the same on every copy. */
  id: string;
  /** incoming: written to this account by someone else; outgoing: written by this account (here or on another of its devices). */
  direction: "incoming" | "outgoing";
  /** The sending account and device (the relay stamps both; they are authenticated). */
  from: string;
  fromDevice: number;
  /** The account the message was written to; absent for an outgoing group message (see `group`). */
  to?: string;
  group?: GroupContext;
  /** The sender's clock, ms since the epoch. */
  timestamp: number;
  /** When this device stored it. */
  storedAt: number;
  text?: string;
  attachments?: AttachmentPointer[];
  data?: unknown;
  /** Disappearing message: deleted from this store at `expiresAt` = storedAt + expireSeconds. */
  expireSeconds?: number;
  expiresAt?: number;
  /** Outgoing: accounts that sent delivery / read receipts. */
  delivered?: string[];
  read?: string[];
}

export interface MessageFilter {
  /** Direct messages between this account and that one, both ways. */
  with?: string;
  groupId?: string;
  /** Only messages stored after this time (ms). */
  since?: number;
}

const indexOf = (from: string, id: string) => `${from}/${id}`;

export class MessageStore {
  readonly #storage: Storage;
  readonly #byKey = new Map<string, StoredMessage>();
  readonly #index = new Map<string, string>();
  #seq = 0;

  private constructor(storage: Storage) {
    this.#storage = storage;
  }

  static async load(storage: Storage): Promise<MessageStore> {
    const s = new MessageStore(storage);
    for (const [k, v] of await storage.list(MESSAGE_PREFIX)) {
      const m = JSON.parse(v) as StoredMessage;
      s.#byKey.set(k, m);
      s.#index.set(indexOf(m.from, m.id), k);
      s.#seq = Math.max(s.#seq, seqOfMessageKey(k));
    }
    return s;
  }

  has(from: string, id: string): boolean {
    return this.#index.has(indexOf(from, id));
  }

  get(id: string, from?: string): StoredMessage | undefined {
    if (from !== undefined) {
      const k = this.#index.get(indexOf(from, id));
      return k ? this.#byKey.get(k) : undefined;
    }
    for (const m of this.#byKey.values()) if (m.id === id) return m;
    return undefined;
  }

  /** Messages in the order this device stored them, expired ones (at the client's clock's `now`) left out. */
  list(filter: MessageFilter, now: number): StoredMessage[] {
    const out: StoredMessage[] = [];
    const keys = [...this.#byKey.keys()].sort();
    for (const k of keys) {
      const m = this.#byKey.get(k)!;
      if (m.expiresAt !== undefined && m.expiresAt <= now) continue;
      if (filter.since !== undefined && m.storedAt <= filter.since) continue;
      if (filter.groupId !== undefined && m.group?.id !== filter.groupId) continue;
      if (filter.with !== undefined && (m.group || (m.from !== filter.with && m.to !== filter.with))) continue;
      out.push(m);
    }
    return out;
  }

  /** Stages a new message into `batch`; call the returned function once the batch is written. */
  stageAdd(message: StoredMessage, batch: StorageBatch & { set: Record<string, string> }): () => void {
    const key = messageKey(++this.#seq);
    batch.set[key] = JSON.stringify(message);
    return () => {
      this.#byKey.set(key, message);
      this.#index.set(indexOf(message.from, message.id), key);
    };
  }

  /** Stages a change to a stored message (receipts); undefined when it is not stored. */
  stageUpdate(
    from: string,
    id: string,
    change: (m: StoredMessage) => StoredMessage,
    batch: StorageBatch & { set: Record<string, string> },
  ): (() => void) | undefined {
    const key = this.#index.get(indexOf(from, id));
    const current = key ? this.#byKey.get(key) : undefined;
    if (!key || !current) return undefined;
    const next = change(current);
    batch.set[key] = JSON.stringify(next);
    return () => this.#byKey.set(key, next);
  }

  async delete(id: string, from?: string): Promise<boolean> {
    const entries = [...this.#byKey].filter(([, m]) => m.id === id && (from === undefined || m.from === from));
    if (entries.length === 0) return false;
    await this.#storage.write({ delete: entries.map(([k]) => k) });
    for (const [k, m] of entries) {
      this.#byKey.delete(k);
      this.#index.delete(indexOf(m.from, m.id));
    }
    return true;
  }

  /** Deletes every message whose disappearing timer has run out; answers how many went. */
  async deleteExpired(now: number): Promise<StoredMessage[]> {
    const gone = [...this.#byKey].filter(([, m]) => m.expiresAt !== undefined && m.expiresAt <= now);
    if (gone.length === 0) return [];
    await this.#storage.write({ delete: gone.map(([k]) => k) });
    for (const [k, m] of gone) {
      this.#byKey.delete(k);
      this.#index.delete(indexOf(m.from, m.id));
    }
    return gone.map(([, m]) => m);
  }

  /** The earliest disappearing-message deadline, if any. */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    for (const m of this.#byKey.values())
      if (m.expiresAt !== undefined && (next === undefined || m.expiresAt < next)) next = m.expiresAt;
    return next;
  }

  get size(): number {
    return this.#byKey.size;
  }
}

/** The stored form of a message content: received, synced from another own device, or sent from this one. */
export function toStored(
  content: MessageContent,
  o: { direction: StoredMessage["direction"]; from: string; fromDevice: number; to?: string; now: number },
): StoredMessage {
  return {
    id: content.id,
    direction: o.direction,
    from: o.from,
    fromDevice: o.fromDevice,
    ...(o.to ? { to: o.to } : {}),
    ...(content.group ? { group: content.group } : {}),
    timestamp: content.timestamp,
    storedAt: o.now,
    ...(content.text !== undefined ? { text: content.text } : {}),
    ...(content.attachments ? { attachments: content.attachments } : {}),
    ...(content.data !== undefined ? { data: content.data } : {}),
    ...(content.expireSeconds !== undefined
      ? { expireSeconds: content.expireSeconds, expiresAt: o.now + content.expireSeconds * 1000 }
      : {}),
  };
}
