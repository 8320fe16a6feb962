// The message queues in the account object's SQLite: one row per queued copy, holding the delivery frame ready
// to send and ordered by an INTEGER PRIMARY KEY sequence (never a clock); the per-device quota totals and the
// earliest expiry kept in memory; and the idempotency records that let a retried send answer its first result.

export interface QueueTotals {
  messages: number;
  bytes: number;
}

/** A remembered answer to an idempotent send. */
export interface IdempotencyRecord {
  digest: string;
  answer: string;
}

export class MessageQueues {
  /** Queue totals per device for the quota check, counted from SQLite when missing. */
  readonly #totals = new Map<number, QueueTotals>();
  /** The earliest expiry of any queued copy: undefined when unknown (counted again from SQLite), null when none. */
  #earliest: number | null | undefined;
  /** The next queue sequence number, and the last one reserved in storage (see #allocateSeq). */
  #nextSeq = 0;
  #reservedSeq = 0;

  constructor(private readonly sql: SqlStorage) {}

  createTables(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS mb_messages (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, device_id INTEGER NOT NULL, frame TEXT NOT NULL,
    bytes INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS mb_messages_device ON mb_messages (device_id, seq)");
    // No index on expires_at: it would be a third row written per message. The earliest expiry is kept in
    // memory and the alarm's sweep scans the queue (rows read cost a thousandth of rows written).
    this.sql.exec("CREATE TABLE IF NOT EXISTS mb_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
    this.sql.exec(`CREATE TABLE IF NOT EXISTS mb_idempotency (
    key TEXT PRIMARY KEY, digest TEXT NOT NULL, answer TEXT NOT NULL, expires_at INTEGER NOT NULL)`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS mb_idempotency_expiry ON mb_idempotency (expires_at)");
  }

  /**
   * A device's queue totals. Kept in memory and counted again from the rows only after acks, expiry or a
   * restart: totals kept in a table by triggers would write two more rows per message.
   */
  totals(deviceId: number): QueueTotals {
    let t = this.#totals.get(deviceId);
    if (!t) {
      t = this.sql
        .exec<{ messages: number; bytes: number }>(
          "SELECT count(*) AS messages, coalesce(sum(bytes), 0) AS bytes FROM mb_messages WHERE device_id = ?",
          deviceId,
        )
        .one();
      this.#totals.set(deviceId, t);
    }
    return t;
  }

  /** Queues one copy and answers its sequence number. Call inside the send's transaction, then `counted`. */
  insert(deviceId: number, id: string, frame: string, bytes: number, expiresAt: number): number {
    const seq = this.#allocateSeq();
    this.sql.exec(
      "INSERT INTO mb_messages (seq, id, device_id, frame, bytes, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
      seq,
      id,
      deviceId,
      frame,
      bytes,
      expiresAt,
    );
    if (this.#earliest !== undefined)
      this.#earliest = this.#earliest === null ? expiresAt : Math.min(this.#earliest, expiresAt);
    return seq;
  }

  /** Adds a committed copy to its device's totals (when they are in memory). */
  counted(deviceId: number, bytes: number): void {
    const t = this.#totals.get(deviceId);
    if (t) {
      t.messages++;
      t.bytes += bytes;
    }
  }

  /** Copies of the device up to `sentUpTo` not acked yet: what a connection that sent them has in flight. */
  inFlight(deviceId: number, sentUpTo: number): number {
    return this.sql
      .exec<{ n: number }>("SELECT count(*) AS n FROM mb_messages WHERE device_id = ? AND seq <= ?", deviceId, sentUpTo)
      .one().n;
  }

  /** The next `limit` live copies of the device after `sentUpTo`, oldest first. */
  nextUnsent(deviceId: number, sentUpTo: number, limit: number, now: number): { seq: number; frame: string }[] {
    return this.sql
      .exec<{ seq: number; frame: string }>(
        "SELECT seq, frame FROM mb_messages WHERE device_id = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
        deviceId,
        sentUpTo,
        now,
        limit,
      )
      .toArray();
  }

  /** Deletes the named copies of the device, only those up to `sentUpTo`; answers how many went. */
  ack(deviceId: number, sentUpTo: number, ids: string[]): number {
    // One id (the usual ack of a live message) avoids the json_each table function.
    const deleted =
      ids.length === 1
        ? this.sql
            .exec(
              "DELETE FROM mb_messages WHERE device_id = ? AND seq <= ? AND id = ? RETURNING seq",
              deviceId,
              sentUpTo,
              ids[0]!,
            )
            .toArray().length
        : this.sql
            .exec(
              "DELETE FROM mb_messages WHERE device_id = ? AND seq <= ? AND id IN (SELECT value FROM json_each(?)) RETURNING seq",
              deviceId,
              sentUpTo,
              JSON.stringify(ids),
            )
            .toArray().length;
    if (deleted > 0) {
      this.#totals.delete(deviceId);
      this.#earliest = undefined;
    }
    return deleted;
  }

  /** Drops a removed device's queue. */
  dropDevice(deviceId: number): void {
    this.sql.exec("DELETE FROM mb_messages WHERE device_id = ?", deviceId);
    this.#earliest = undefined;
    this.#totals.delete(deviceId);
  }

  /** Empties every queue and record (account deletion); sequence numbering starts over. */
  wipe(): void {
    for (const t of ["mb_messages", "mb_meta", "mb_idempotency"]) this.sql.exec(`DELETE FROM ${t}`);
    this.#earliest = undefined;
    this.#totals.clear();
    this.#nextSeq = 0;
  }

  /** Deletes expired copies and idempotency records; answers how many copies expired. */
  expire(now: number): number {
    this.#earliest = undefined;
    const n = this.sql.exec("DELETE FROM mb_messages WHERE expires_at <= ? RETURNING seq", now).toArray().length;
    this.sql.exec("DELETE FROM mb_idempotency WHERE expires_at <= ?", now);
    if (n > 0) this.#totals.clear();
    return n;
  }

  /** When the first queued copy expires; null when nothing is queued. */
  nextExpiry(): number | null {
    if (this.#earliest === undefined)
      this.#earliest = this.sql.exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM mb_messages").one().t;
    return this.#earliest;
  }

  /** The first answer to a send under `key`, while it is remembered. */
  recall(key: string, now: number): IdempotencyRecord | undefined {
    return this.sql
      .exec<{ digest: string; answer: string }>(
        "SELECT digest, answer FROM mb_idempotency WHERE key = ? AND expires_at > ?",
        key,
        now,
      )
      .toArray()[0];
  }

  /** Remembers the answer to a send under `key`; call inside the send's transaction. */
  remember(key: string, record: IdempotencyRecord, expiresAt: number): void {
    this.sql.exec(
      "INSERT OR REPLACE INTO mb_idempotency (key, digest, answer, expires_at) VALUES (?, ?, ?, ?)",
      key,
      record.digest,
      record.answer,
      expiresAt,
    );
  }

  /**
   * Queue sequence numbers only ever grow, even when the queue empties (SQLite would reuse rowids then, and a
   * connection's "sent up to" must stay meaningful). They are reserved in storage a thousand at a time, so a
   * message costs no extra row; after a restart numbering resumes above the last reservation.
   */
  #allocateSeq(): number {
    if (this.#nextSeq === 0) {
      const reserved = this.sql.exec<{ v: number }>("SELECT v FROM mb_meta WHERE k = 'seq'").toArray()[0]?.v ?? 0;
      const queued = this.sql.exec<{ m: number | null }>("SELECT max(seq) AS m FROM mb_messages").one().m ?? 0;
      this.#nextSeq = Math.max(reserved, queued) + 1;
      this.#reservedSeq = this.#nextSeq - 1;
    }
    if (this.#nextSeq > this.#reservedSeq) {
      this.#reservedSeq = this.#nextSeq + 999;
      this.sql.exec("INSERT OR REPLACE INTO mb_meta (k, v) VALUES ('seq', ?)", this.#reservedSeq);
    }
    return this.#nextSeq++;
  }
}
