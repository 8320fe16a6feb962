// The message queues in the account object's SQLite: one row per queued copy, holding the delivery frame ready
// to send and ordered by an INTEGER PRIMARY KEY sequence (never a clock); the per-device and per-sender quota
// totals and the earliest expiries kept in memory; and the idempotency records a retried send is answered from.

export interface QueueTotals {
  messages: number;
  bytes: number;
}

/** A device's queue totals: all copies, and per sending account (for each sender's share). */
interface DeviceTotals {
  all: QueueTotals;
  bySender: Map<string, QueueTotals>;
}

const NONE: Readonly<QueueTotals> = Object.freeze({ messages: 0, bytes: 0 });

/** A remembered answer to an idempotent send. */
export interface IdempotencyRecord {
  digest: string;
  answer: string;
}

export class MessageQueues {
  /** Queue totals per device for the quota checks, counted from SQLite when missing. */
  readonly #totals = new Map<number, DeviceTotals>();
  /** The earliest expiry of any queued copy: undefined when unknown (counted again from SQLite), null when none. */
  #earliest: number | null | undefined;
  /** The same for idempotency records (read from their expiry index when unknown). */
  #earliestRecord: number | null | undefined;
  /** The next queue sequence number, and the last one reserved in storage (see #allocateSeq). */
  #nextSeq = 0;
  #reservedSeq = 0;

  constructor(private readonly sql: SqlStorage) {}

  createTables(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS mb_messages (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, device_id INTEGER NOT NULL, frame TEXT NOT NULL,
    bytes INTEGER NOT NULL, expires_at INTEGER NOT NULL, sender TEXT NOT NULL DEFAULT '')`);
    this.#addSenderColumn();
    this.sql.exec("CREATE INDEX IF NOT EXISTS mb_messages_device ON mb_messages (device_id, seq)");
    // No index on expires_at: it would be a third row written per message. The earliest expiry is kept in
    // memory and the alarm's sweep scans the queue (rows read cost a thousandth of rows written).
    this.sql.exec("CREATE TABLE IF NOT EXISTS mb_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
    this.sql.exec(`CREATE TABLE IF NOT EXISTS mb_idempotency (
    key TEXT PRIMARY KEY, digest TEXT NOT NULL, answer TEXT NOT NULL, expires_at INTEGER NOT NULL)`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS mb_idempotency_expiry ON mb_idempotency (expires_at)");
  }

  /**
   * Queues stored before copies named their sender get the column, filled from each stored frame's envelope
   * (once, at the first start after the upgrade), so every sender's share is counted from the first message.
   */
  #addSenderColumn(): void {
    const columns = this.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('mb_messages')").toArray();
    if (columns.some((c) => c.name === "sender")) return;
    this.sql.exec("ALTER TABLE mb_messages ADD COLUMN sender TEXT NOT NULL DEFAULT ''");
    this.sql.exec("UPDATE mb_messages SET sender = coalesce(json_extract(frame, '$.envelope.sourceAccountId'), '')");
  }

  /**
   * A device's queue totals, all copies and per sender, in one pass over its rows. Kept in memory and counted
   * again only after acks, expiry or a restart: totals kept in a table by triggers would write two more rows per
   * message, and a row per sender would be one more write per message.
   */
  #device(deviceId: number): DeviceTotals {
    let t = this.#totals.get(deviceId);
    if (!t) {
      t = { all: { messages: 0, bytes: 0 }, bySender: new Map() };
      const rows = this.sql.exec<{ sender: string; messages: number; bytes: number }>(
        "SELECT sender, count(*) AS messages, sum(bytes) AS bytes FROM mb_messages WHERE device_id = ? GROUP BY sender",
        deviceId,
      );
      for (const r of rows) {
        t.bySender.set(r.sender, { messages: r.messages, bytes: r.bytes });
        t.all.messages += r.messages;
        t.all.bytes += r.bytes;
      }
      this.#totals.set(deviceId, t);
    }
    return t;
  }

  /** A device's queue totals, for the quota. */
  totals(deviceId: number): QueueTotals {
    return this.#device(deviceId).all;
  }

  /** What one sending account has in a device's queue, for its share. */
  senderTotals(deviceId: number, sender: string): Readonly<QueueTotals> {
    return this.#device(deviceId).bySender.get(sender) ?? NONE;
  }

  /**
   * Queues one copy from `sender` (the sending account) and answers its sequence number. Call inside the send's
   * transaction, then `counted`.
   */
  insert(deviceId: number, id: string, frame: string, bytes: number, expiresAt: number, sender: string): number {
    const seq = this.#allocateSeq();
    this.sql.exec(
      "INSERT INTO mb_messages (seq, id, device_id, frame, bytes, expires_at, sender) VALUES (?, ?, ?, ?, ?, ?, ?)",
      seq,
      id,
      deviceId,
      frame,
      bytes,
      expiresAt,
      sender,
    );
    if (this.#earliest !== undefined)
      this.#earliest = this.#earliest === null ? expiresAt : Math.min(this.#earliest, expiresAt);
    return seq;
  }

  /** Adds a committed copy to its device's totals and its sender's (when they are in memory). */
  counted(deviceId: number, bytes: number, sender: string): void {
    const t = this.#totals.get(deviceId);
    if (!t) return;
    t.all.messages++;
    t.all.bytes += bytes;
    const s = t.bySender.get(sender);
    if (s) {
      s.messages++;
      s.bytes += bytes;
    } else t.bySender.set(sender, { messages: 1, bytes });
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
    this.#earliestRecord = undefined;
    this.#totals.clear();
    this.#nextSeq = 0;
  }

  /** Deletes expired copies; answers how many expired. */
  expire(now: number): number {
    if ((this.nextExpiry() ?? Number.POSITIVE_INFINITY) > now) return 0; // nothing due: no scan of the queue
    this.#earliest = undefined;
    const n = this.sql.exec("DELETE FROM mb_messages WHERE expires_at <= ? RETURNING seq", now).toArray().length;
    if (n > 0) this.#totals.clear();
    return n;
  }

  /**
   * Deletes the idempotency records whose window ends by `until`. The alarm sweeps when the earliest one ends and
   * passes a little ahead of now, so one sweep clears every record ending in the next stretch: under steady
   * traffic the sweeps come once per stretch, not once per send, and no record outlives its window.
   */
  sweepRecords(until: number): void {
    if ((this.nextRecordExpiry() ?? Number.POSITIVE_INFINITY) > until) return;
    this.sql.exec("DELETE FROM mb_idempotency WHERE expires_at <= ?", until);
    this.#earliestRecord = undefined;
  }

  /** When the first idempotency record's window ends; null when none is kept. */
  nextRecordExpiry(): number | null {
    if (this.#earliestRecord === undefined)
      this.#earliestRecord = this.sql
        .exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM mb_idempotency")
        .one().t;
    return this.#earliestRecord;
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
    if (this.#earliestRecord !== undefined)
      this.#earliestRecord = this.#earliestRecord === null ? expiresAt : Math.min(this.#earliestRecord, expiresAt);
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
