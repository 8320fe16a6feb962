// The mailbox's tables in the account object's SQLite: one row per queued copy, ordered by an INTEGER PRIMARY
// KEY sequence (never a clock), connection tickets and remembered idempotent answers. Each queued row holds the delivery frame ready to send, so delivery never re-serialises.

export interface SocketState {
  /** Connection id, the key of what the object remembers about the connection while awake. */
  c: string;
  /**
   * The highest sequence number sent on this connection. A connection sends its device's queue in order from
   * the oldest copy, so every copy of the device with `seq <= h` went out on it: exactly the copies an ack on
   * this connection may delete. Kept on the socket (it survives hibernation) instead of in each row, which
   * would cost an index and an UPDATE per copy.
   */
  h: number;
  /** Device id. */
  d: number;
  /** When the connection opened (ms): the idle baseline until the first ping. */
  t: number;
  /** 1 once the queue-empty frame went out on this connection. */
  e: 0 | 1;
}

export function migrateMailbox(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS mb_messages (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, device_id INTEGER NOT NULL, frame TEXT NOT NULL,
    bytes INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
  sql.exec("CREATE INDEX IF NOT EXISTS mb_messages_device ON mb_messages (device_id, seq)");
  // No index on expires_at: it would be a third row written per message. The account object remembers the
  // earliest expiry in memory and the alarm's sweep scans the queue (rows read cost a thousandth of rows written).
  sql.exec("CREATE TABLE IF NOT EXISTS mb_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
  sql.exec(
    "CREATE TABLE IF NOT EXISTS mb_tickets (hash TEXT PRIMARY KEY, device_id INTEGER NOT NULL, expires_at INTEGER NOT NULL)",
  );
  sql.exec(`CREATE TABLE IF NOT EXISTS mb_idempotency (
    key TEXT PRIMARY KEY, digest TEXT NOT NULL, answer TEXT NOT NULL, expires_at INTEGER NOT NULL)`);
  sql.exec("CREATE INDEX IF NOT EXISTS mb_idempotency_expiry ON mb_idempotency (expires_at)");
  // Web Push endpoints, one per device that registered one (src/server/push/webpush.ts).
  sql.exec("CREATE TABLE IF NOT EXISTS push_endpoints (device_id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL)");
}

/**
 * A device's queue totals, counted from its rows. The account object keeps them in memory and counts again only
 * after acks, expiry or a restart: totals kept in a table by triggers would write two more rows per message.
 */
export function queueTotals(sql: SqlStorage, deviceId: number): { messages: number; bytes: number } {
  return sql
    .exec<{ messages: number; bytes: number }>(
      "SELECT count(*) AS messages, coalesce(sum(bytes), 0) AS bytes FROM mb_messages WHERE device_id = ?",
      deviceId,
    )
    .one();
}

/** Queues one copy under `seq` (from the account object's allocateSeq). */
export function insertMessage(
  sql: SqlStorage,
  seq: number,
  id: string,
  deviceId: number,
  frame: string,
  bytes: number,
  expiresAt: number,
): void {
  sql.exec(
    "INSERT INTO mb_messages (seq, id, device_id, frame, bytes, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
    seq,
    id,
    deviceId,
    frame,
    bytes,
    expiresAt,
  );
}

/** The highest sequence number reserved so far (0 for a new mailbox), never below any queued copy's. */
export function reservedSeq(sql: SqlStorage): number {
  const reserved = sql.exec<{ v: number }>("SELECT v FROM mb_meta WHERE k = 'seq'").toArray()[0]?.v ?? 0;
  const queued = sql.exec<{ m: number | null }>("SELECT max(seq) AS m FROM mb_messages").one().m ?? 0;
  return Math.max(reserved, queued);
}

export function reserveSeq(sql: SqlStorage, upTo: number): void {
  sql.exec("INSERT OR REPLACE INTO mb_meta (k, v) VALUES ('seq', ?)", upTo);
}

/** Copies sent on this connection and not acked yet. */
export function inFlight(sql: SqlStorage, s: SocketState): number {
  return sql
    .exec<{ n: number }>("SELECT count(*) AS n FROM mb_messages WHERE device_id = ? AND seq <= ?", s.d, s.h)
    .one().n;
}

/** The next `limit` live messages of the device not yet sent on this connection, oldest first. */
export function nextUnsent(
  sql: SqlStorage,
  s: SocketState,
  limit: number,
  now: number,
): { seq: number; frame: string }[] {
  return sql
    .exec<{ seq: number; frame: string }>(
      "SELECT seq, frame FROM mb_messages WHERE device_id = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
      s.d,
      s.h,
      now,
      limit,
    )
    .toArray();
}

/** Deletes the named messages only where they were delivered on this connection; answers how many went. */
export function ackMessages(sql: SqlStorage, s: SocketState, ids: string[]): number {
  // One id (the usual ack of a live message) avoids the json_each table function.
  if (ids.length === 1)
    return sql
      .exec("DELETE FROM mb_messages WHERE device_id = ? AND seq <= ? AND id = ? RETURNING seq", s.d, s.h, ids[0]!)
      .toArray().length;
  return sql
    .exec(
      "DELETE FROM mb_messages WHERE device_id = ? AND seq <= ? AND id IN (SELECT value FROM json_each(?)) RETURNING seq",
      s.d,
      s.h,
      JSON.stringify(ids),
    )
    .toArray().length;
}

export function dropDeviceQueue(sql: SqlStorage, deviceId: number): void {
  sql.exec("DELETE FROM mb_messages WHERE device_id = ?", deviceId);
  sql.exec("DELETE FROM mb_tickets WHERE device_id = ?", deviceId);
  sql.exec("DELETE FROM push_endpoints WHERE device_id = ?", deviceId);
}

export function wipeMailbox(sql: SqlStorage): void {
  for (const t of ["mb_messages", "mb_meta", "mb_tickets", "mb_idempotency", "push_endpoints"])
    sql.exec(`DELETE FROM ${t}`);
}

/** Deletes expired queued copies, tickets and remembered answers; answers how many messages expired. */
export function expire(sql: SqlStorage, now: number): number {
  const n = sql.exec("DELETE FROM mb_messages WHERE expires_at <= ? RETURNING seq", now).toArray().length;
  sql.exec("DELETE FROM mb_tickets WHERE expires_at <= ?", now);
  sql.exec("DELETE FROM mb_idempotency WHERE expires_at <= ?", now);
  return n;
}

export function earliestExpiry(sql: SqlStorage): number | null {
  return sql.exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM mb_messages").one().t;
}
