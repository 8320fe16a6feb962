// The account object's one alarm serves every timed duty (outbox retries, message expiry, idle connections):
// each part says when it is next due, and this keeps the runtime's alarm at the earliest of those times.
import type { Clock } from "../../protocol/clock.ts";

export class AlarmSchedule {
  constructor(
    private readonly storage: Pick<DurableObjectStorage, "getAlarm" | "setAlarm" | "deleteAlarm">,
    private readonly clock: Clock,
    /** Every part's next due time (null: nothing due). */
    private readonly dueTimes: () => (number | null)[],
  ) {}

  /** The earliest due time of any part; null when nothing is due. */
  next(): number | null {
    const times = this.dueTimes().filter((t): t is number => t !== null);
    return times.length ? Math.min(...times) : null;
  }

  /** Sets the alarm to the next due time (at least 10 ms ahead), or deletes it when nothing is due. */
  async schedule(): Promise<void> {
    const at = this.next();
    if (at === null) {
      await this.storage.deleteAlarm();
      return;
    }
    const current = await this.storage.getAlarm();
    const now = this.clock.now();
    if (current === null || current > at || current < now) await this.storage.setAlarm(Math.max(at, now + 10));
  }

  /** Makes sure the alarm fires by `at`: reschedules only when it is unset or later. */
  async by(at: number): Promise<void> {
    const current = await this.storage.getAlarm();
    if (current === null || current > at) await this.schedule();
  }
}
