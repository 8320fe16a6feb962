// What one sending device may cost per minute (src/client/sender-budget.ts), on a ManualClock: ratchet work before
// authentication and retry receipts, counted per (account, device) and given back when the minute is over.
import { describe, expect, it } from "vitest";
import { RETRY_RECEIPTS_PER_MINUTE, SENDER_WORK_PER_MINUTE, SenderBudgets } from "../../src/client/sender-budget.ts";
import { MAX_MESSAGE_WORK } from "../../src/crypto/work.ts";
import { ManualClock } from "../support/manual-clock.ts";

describe("per-sender budgets", () => {
  it("a sender's messages share its minute of ratchet work; each message is also held to its own bound", () => {
    const clock = new ManualClock();
    const budgets = new SenderBudgets(clock);
    const account = crypto.randomUUID();
    expect(budgets.work(account, 1).limit).toBe(MAX_MESSAGE_WORK);
    let spent = 0;
    while (spent < SENDER_WORK_PER_MINUTE) {
      const work = budgets.work(account, 1);
      work.reserve(work.limit); // a worst-case message
      budgets.spent(account, 1, work);
      spent += work.spent;
    }
    expect(budgets.work(account, 1).limit).toBe(0);
    expect(budgets.work(account, 2).limit).toBe(MAX_MESSAGE_WORK); // another device has its own
    clock.advance(60_000);
    expect(budgets.work(account, 1).limit).toBe(MAX_MESSAGE_WORK);
  });

  it(`at most ${RETRY_RECEIPTS_PER_MINUTE} retry receipts a minute go to one device`, () => {
    const clock = new ManualClock();
    const budgets = new SenderBudgets(clock);
    const account = crypto.randomUUID();
    const taken = Array.from({ length: RETRY_RECEIPTS_PER_MINUTE + 3 }, () => budgets.takeRetryReceipt(account, 1));
    expect(taken.filter(Boolean)).toHaveLength(RETRY_RECEIPTS_PER_MINUTE);
    clock.advance(59_999);
    expect(budgets.takeRetryReceipt(account, 1)).toBe(false);
    clock.advance(1);
    expect(budgets.takeRetryReceipt(account, 1)).toBe(true);
  });
});
