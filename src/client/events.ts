// What a client tells its application: the event types, the emitter (listeners run in order and are awaited; a
// listener's failure becomes an `error` event), and background tasks, whose failures become `error` events too.
import type { Clock } from "../protocol/clock.ts";
import type { Call } from "./call.ts";
import type { ConnectionEvent } from "./connection.ts";
import { asCipherpostError, CipherpostError } from "./errors.ts";
import type { StoredMessage } from "./message-store.ts";

export interface ReceiptEvent {
  from: string;
  fromDevice: number;
  kind: "delivery" | "read";
  messageIds: string[];
}

export interface TypingEvent {
  from: string;
  fromDevice: number;
  action: "started" | "stopped";
  groupId?: string;
}

export interface DecryptionErrorEvent {
  /** The relay's id of the message (its client id is inside the ciphertext). */
  relayId: string;
  from: string;
  fromDevice: number;
  /** The envelope's sender timestamp. */
  timestamp: number;
  error: CipherpostError;
}

export interface ClientEvents {
  /** A message stored: incoming, or a sync copy of one sent from another of this account's devices. */
  message: StoredMessage;
  receipt: ReceiptEvent;
  typing: TypingEvent;
  /** A message that could not be decrypted; the sender has been sent a retry receipt. */
  decryptionError: DecryptionErrorEvent;
  /** Everything queued when the connection opened has been processed. */
  queueEmpty: undefined;
  connection: ConnectionEvent;
  /** Disappearing messages deleted from the store. */
  expired: StoredMessage[];
  /** A background failure (prekey upkeep, receipts, resends). The client carries on. */
  error: CipherpostError;
  /** A call rings on this device: accept() or decline() it (docs/calls.md). */
  call: Call;
  /** The connection stopped for good: the device was removed, the account deleted, or another connection took over. */
  stopped: CipherpostError;
}

export type Listener<T> = (value: T) => void | Promise<void>;

export class Emitter {
  readonly #listeners = new Map<keyof ClientEvents, Set<Listener<never>>>();

  /** Subscribes; answers the function that unsubscribes. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    const listeners = set;
    listeners.add(listener as Listener<never>);
    return () => listeners.delete(listener as Listener<never>);
  }

  /** Resolves at the next `event`. */
  once<K extends keyof ClientEvents>(event: K): Promise<ClientEvents[K]> {
    return new Promise((resolve) => {
      const off = this.on(event, (v) => {
        off();
        resolve(v);
      });
    });
  }

  async emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): Promise<void> {
    for (const l of [...(this.#listeners.get(event) ?? [])]) {
      try {
        await (l as Listener<ClientEvents[K]>)(value);
      } catch (e) {
        if (event !== "error") await this.emit("error", asCipherpostError(e));
      }
    }
  }
}

/** Work the client does on its own (receipts, prekey upkeep, resends): failures are reported, never thrown. */
export class BackgroundTasks {
  readonly #running = new Set<Promise<unknown>>();
  readonly #events: Emitter;
  readonly #closed: () => boolean;

  constructor(events: Emitter, closed: () => boolean) {
    this.#events = events;
    this.#closed = closed;
  }

  run(what: string, task: () => Promise<unknown>): void {
    const p = task().catch((e: unknown) => {
      if (this.#closed() && CipherpostError.is(e, "CLOSED")) return;
      const err = asCipherpostError(e);
      return this.#events.emit(
        "error",
        new CipherpostError(err.code, `${what}: ${err.message}`, { extras: err.extras, cause: err }),
      );
    });
    this.#running.add(p);
    void p.finally(() => this.#running.delete(p));
  }

  /** Waits for the running tasks (and any they start) for at most `ms` of `clock`'s time. */
  async settle(clock: Clock, ms: number): Promise<void> {
    const deadline = clock.now() + ms;
    while (this.#running.size && clock.now() < deadline) {
      let timer: unknown;
      await Promise.race([
        Promise.allSettled([...this.#running]),
        new Promise((resolve) => {
          timer = clock.setTimeout(() => resolve(undefined), Math.max(0, deadline - clock.now()));
        }),
      ]);
      clock.clearTimeout(timer);
    }
  }
}
