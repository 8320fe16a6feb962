// The send log: what this device sent in the last day, kept so that a retry receipt (a recipient that could not
// decrypt) can be answered by sending the same content again; and the pruning of old log entries and of the
// seen markers of received messages, run when a client opens.
import type { Clock } from "../protocol/clock.ts";
import type { Content } from "./content.ts";
import type { Storage } from "./storage.ts";
import {
  SEEN_PREFIX,
  SENT_PREFIX,
  SENT_RATCHET_PREFIX,
  sentKey,
  sentPrefixAt,
  sentRatchetKey,
  timestampOfSentKey,
} from "./storage-keys.ts";

/** How long sent messages are kept for resending after a retry receipt (Signal keeps its send log a day). */
const SENT_LOG_MS = 86_400_000;

export interface SentLogEntry {
  /** The accounts the content went to (a retry receipt from any other is ignored). */
  accounts: string[];
  content: Content;
  /** How often it was sent again. */
  resends: number;
}

export class SentLog {
  readonly #storage: Storage;
  readonly #clock: Clock;

  constructor(storage: Storage, clock: Clock) {
    this.#storage = storage;
    this.#clock = clock;
  }

  /** Logs `content` sent to `accounts`; `suffix` tells apart two contents of one id (a message and its sync copy). */
  async record(content: Content, accounts: string[], suffix = ""): Promise<void> {
    const entry: SentLogEntry = { accounts, content, resends: 0 };
    await this.#storage.write({ set: { [sentKey(content.timestamp, content.id + suffix)]: JSON.stringify(entry) } });
  }

  /** The entries of contents sent with this sender timestamp, with their keys. */
  async at(timestamp: number): Promise<[string, SentLogEntry][]> {
    return (await this.#storage.list(sentPrefixAt(timestamp))).map(([k, v]) => [k, JSON.parse(v) as SentLogEntry]);
  }

  /** Whether the copy of a logged message sent to (account, device) at `timestamp` went out under this ratchet key. */
  async sentUnder(timestamp: number, account: string, device: number, ratchetKeyHex: string): Promise<boolean> {
    return (await this.#storage.get(sentRatchetKey(timestamp, account, device, ratchetKeyHex))) !== undefined;
  }

  async countResend(key: string, entry: SentLogEntry): Promise<void> {
    await this.#storage.write({ set: { [key]: JSON.stringify({ ...entry, resends: entry.resends + 1 }) } });
  }

  /** Forgets log entries older than a day and seen markers whose envelope has expired on the relay. */
  async prune(): Promise<void> {
    const now = this.#clock.now();
    const del: string[] = [];
    for (const prefix of [SENT_PREFIX, SENT_RATCHET_PREFIX])
      for (const [k] of await this.#storage.list(prefix)) if (timestampOfSentKey(k) < now - SENT_LOG_MS) del.push(k);
    for (const [k, v] of await this.#storage.list(SEEN_PREFIX)) if (Number(v) < now) del.push(k);
    if (del.length) await this.#storage.write({ delete: del });
  }
}
