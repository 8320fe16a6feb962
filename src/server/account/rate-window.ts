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

  migrate() {
    this.sql.exec("CREATE TABLE IF NOT EXISTS rate_events (key TEXT NOT NULL, at INTEGER NOT NULL)");
    this.sql.exec("CREATE INDEX IF NOT EXISTS rate_events_key ON rate_events (key, at)");
  }

  /** Counts one event under `key` if fewer than `limit` happened in the last `windowSeconds`. */
  take(key: string, limit: number, windowSeconds: number, now = Date.now()): RateDecision {
    const since = now - windowSeconds * 1000;
    this.sql.exec("DELETE FROM rate_events WHERE key = ? AND at <= ?", key, since);
    // A count from the index, not the rows: on the hot send path this runs for every message.
    const count = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM rate_events WHERE key = ?", key).one().n;
    if (count >= limit) {
      // The event that must leave the window before one more fits.
      const oldest = this.sql
        .exec<{ at: number }>("SELECT at FROM rate_events WHERE key = ? ORDER BY at ASC LIMIT 1 OFFSET ?", key, count - limit)
        .one().at;
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((oldest + windowSeconds * 1000 - now) / 1000)) };
    }
    this.sql.exec("INSERT INTO rate_events (key, at) VALUES (?, ?)", key, now);
    return { allowed: true, retryAfterSeconds: 0 };
  }

  /** Drops events older than the longest window in use, so keys nobody uses again do not accumulate. */
  prune(olderThan: number) {
    this.sql.exec("DELETE FROM rate_events WHERE at <= ?", olderThan);
  }
}
