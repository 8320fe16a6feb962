// What one sending device may cost this device per minute, on top of the crypto layer's bound per message: the
// ratchet work its messages take before they authenticate, and the retry receipts sent back to it. A sender is
// the relay-authenticated (account, device) of an envelope; windows are fixed minutes on the client's clock.
import { MAX_MESSAGE_WORK, RatchetWork } from "../crypto/work.ts";
import type { Clock } from "../protocol/clock.ts";

/** Ratchet work one sending device may cause per minute: four worst-case messages (a normal message costs 1–65). */
export const SENDER_WORK_PER_MINUTE = 4 * MAX_MESSAGE_WORK;
/** Retry receipts sent to one device per minute; failures beyond it are still reported to the application. */
export const RETRY_RECEIPTS_PER_MINUTE = 5;

const WINDOW_MS = 60_000;
/** Windows kept before stale ones are swept. */
const MAX_TRACKED = 1000;

interface Window {
  start: number;
  work: number;
  receipts: number;
}

export class SenderBudgets {
  readonly #clock: Clock;
  readonly #windows = new Map<string, Window>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  #window(account: string, device: number): Window {
    const now = this.#clock.now();
    const key = `${account}.${device}`;
    let w = this.#windows.get(key);
    if (!w || now - w.start >= WINDOW_MS) {
      if (this.#windows.size >= MAX_TRACKED)
        for (const [k, old] of this.#windows) if (now - old.start >= WINDOW_MS) this.#windows.delete(k);
      w = { start: now, work: 0, receipts: 0 };
      this.#windows.set(key, w);
    }
    return w;
  }

  /** The budget for the sender's next message: what is left of its minute, at most one message's bound. */
  work(account: string, device: number): RatchetWork {
    return new RatchetWork(SENDER_WORK_PER_MINUTE - this.#window(account, device).work);
  }

  /** Counts what decrypting a message of the sender cost, whether it decrypted or not. */
  spent(account: string, device: number, work: RatchetWork): void {
    this.#window(account, device).work += work.spent;
  }

  /** Whether another retry receipt may go to the sender this minute (and counts it). */
  takeRetryReceipt(account: string, device: number): boolean {
    const w = this.#window(account, device);
    if (w.receipts >= RETRY_RECEIPTS_PER_MINUTE) return false;
    w.receipts++;
    return true;
  }
}
