// Exact sliding-window rate limits kept in a Durable Object's SQLite: one row per counted event, at most
// `limit` rows per key, so "6 claims per 10 minutes per pair" means exactly that, unlike the approximate
// rate-limiting binding.

export interface RateDecision {
  allowed: boolean;
  /** Seconds until the oldest counted event leaves the window (when refused). */
  retryAfterSeconds: number;
}

export class RateWindow {
  constructor(private readonly sql: SqlStorage) {}

  createTables() {
    this.sql.exec("CREATE TABLE IF NOT EXISTS rate_events (key TEXT NOT NULL, at INTEGER NOT NULL)");
    this.sql.exec("CREATE INDEX IF NOT EXISTS rate_events_key ON rate_events (key, at)");
  }

  /** Counts one event under `key` if fewer than `limit` happened in the last `windowSeconds`. */
  take(key: string, limit: number, windowSeconds: number, now: number): RateDecision {
    const since = now - windowSeconds * 1000;
    this.sql.exec("DELETE FROM rate_events WHERE key = ? AND at <= ?", key, since);
    // A count from the index, not the rows: on the hot send path this runs for every message.
    const count = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM rate_events WHERE key = ?", key).one().n;
    if (count >= limit) {
      // The event that must leave the window before one more fits.
      const oldest = this.sql
        .exec<{ at: number }>(
          "SELECT at FROM rate_events WHERE key = ? ORDER BY at ASC LIMIT 1 OFFSET ?",
          key,
          count - limit,
        )
        .one().at;
      return refused(oldest, windowSeconds, now);
    }
    this.sql.exec("INSERT INTO rate_events (key, at) VALUES (?, ?)", key, now);
    return { allowed: true, retryAfterSeconds: 0 };
  }

  /** Drops events older than the longest window in use, so keys nobody uses again do not accumulate. */
  prune(olderThan: number) {
    this.sql.exec("DELETE FROM rate_events WHERE at <= ?", olderThan);
  }
}

/**
 * The same sliding window kept in the object's memory, for the limits on the message path (per sending device,
 * per sender and recipient pair). Counting in SQLite would write four rows (event and index, insert and delete)
 * per limit per message, the largest share of a message's cost. Memory is exact while the object is in memory,
 * which it is while anyone sends to it; the counts start over only after the object was idle long enough to be
 * evicted, that is, after nobody sent for a while.
 */
export class MemoryRateWindow {
  private readonly events = new Map<string, number[]>();

  /**
   * Counts `weight` events under `key` if they all fit in the window (a group send counts each recipient);
   * otherwise counts none. A weight over `limit` never fits: callers refuse such requests before asking.
   */
  take(key: string, limit: number, windowSeconds: number, now: number, weight = 1): RateDecision {
    const since = now - windowSeconds * 1000;
    const list = this.events.get(key) ?? [];
    let drop = 0;
    while (drop < list.length && list[drop]! <= since) drop++;
    if (drop) list.splice(0, drop);
    this.events.set(key, list);
    if (list.length + weight > limit) {
      // The event that must leave the window before `weight` more fit (the whole window when none would do).
      const oldest = weight > limit ? now : list[list.length + weight - limit - 1]!;
      return refused(oldest, windowSeconds, now);
    }
    for (let i = 0; i < weight; i++) list.push(now);
    return { allowed: true, retryAfterSeconds: 0 };
  }

  /** Forgets keys with no event after `olderThan`, so senders who stopped do not hold memory. */
  prune(olderThan: number) {
    for (const [key, list] of this.events) if ((list[list.length - 1] ?? 0) <= olderThan) this.events.delete(key);
  }
}

/** A refusal: the wait, in whole seconds (at least 1), until the event `oldest` leaves the window. */
function refused(oldest: number, windowSeconds: number, now: number): RateDecision {
  return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((oldest + windowSeconds * 1000 - now) / 1000)) };
}
