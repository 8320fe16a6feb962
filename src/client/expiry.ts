// Disappearing messages: one timer, on the client's clock, set for the earliest deadline in the message store;
// when it runs, every message whose time has come is deleted and reported in one `expired` event.
import type { Clock, TimerHandle } from "../protocol/clock.ts";
import { unref } from "./context.ts";
import type { Emitter } from "./events.ts";
import type { MessageStore } from "./message-store.ts";

/** The longest delay timers take (2^31 - 1 ms, about 24.8 days); a later deadline is looked at again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class Expiry {
  readonly #store: MessageStore;
  readonly #clock: Clock;
  readonly #events: Emitter;
  #timer: TimerHandle | undefined;
  #stopped = false;

  constructor(store: MessageStore, clock: Clock, events: Emitter) {
    this.#store = store;
    this.#clock = clock;
    this.#events = events;
  }

  /** Sets the timer for the earliest deadline; call after storing a message that may disappear. */
  schedule(): void {
    const next = this.#store.nextExpiry();
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (next === undefined || this.#stopped) return;
    const delay = Math.max(0, Math.min(next - this.#clock.now(), MAX_TIMER_MS));
    this.#timer = this.#clock.setTimeout(() => void this.expire(), delay);
    unref(this.#timer);
  }

  /** Deletes what is due now, reports it, and sets the timer for what is left. */
  async expire(): Promise<void> {
    const gone = await this.#store.deleteExpired(this.#clock.now());
    if (gone.length) await this.#events.emit("expired", gone);
    this.schedule();
  }

  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
