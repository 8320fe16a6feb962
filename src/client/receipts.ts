// Receipts: delivery receipts for received messages, queued per sender and sent once the incoming queue is idle
// (one receipt per sender, not one per message, after a short timer on the client's clock), and the one way a
// receipt of either kind is cut into contents of at most MAX_RECEIPT_IDS ids and sent.
import type { TimerHandle } from "../protocol/clock.ts";
import { MAX_RECEIPT_IDS } from "./content.ts";
import type { ClientContext } from "./context.ts";
import type { Sender } from "./sending.ts";

/** How long the incoming queue must stay idle before queued delivery receipts go out. */
const RECEIPT_DELAY_MS = 50;

export class Receipts {
  readonly #ctx: ClientContext;
  readonly #sender: Sender;
  readonly #pending = new Map<string, string[]>();
  #timer: TimerHandle | undefined;

  constructor(ctx: ClientContext, sender: Sender) {
    this.#ctx = ctx;
    this.#sender = sender;
  }

  /** Tells `account` that its messages `ids` were delivered or read. */
  async send(account: string, kind: "delivery" | "read", ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
      await this.#sender.sendContent(account, {
        type: "receipt",
        id: crypto.randomUUID(),
        timestamp: this.#ctx.clock.now(),
        kind,
        messageIds: ids.slice(i, i + MAX_RECEIPT_IDS),
      });
    }
  }

  /** Queues a delivery receipt for message `id` from `from`. */
  queue(from: string, id: string): void {
    const list = this.#pending.get(from) ?? [];
    list.push(id);
    this.#pending.set(from, list);
  }

  /** Sends what is queued shortly, unless more messages (`queued`, this one included) are waiting to be processed. */
  schedule(queued: number): void {
    if (queued > 1 || this.#pending.size === 0 || this.#timer !== undefined) return;
    this.#timer = this.#ctx.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#ctx.runInBackground("delivery receipts", () => this.#flush());
    }, RECEIPT_DELAY_MS);
  }

  /** On close: no more timer; what is queued is sent now. */
  flushNow(): void {
    this.#ctx.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.size) this.#ctx.runInBackground("delivery receipts", () => this.#flush());
  }

  async #flush(): Promise<void> {
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const [account, ids] of pending) await this.send(account, "delivery", ids);
  }
}
