// The message queues in the account object's SQLite: one row per queued copy in a WITHOUT ROWID table keyed by
// (device, sequence), holding the delivery frame ready to send (one row written to queue a copy, one to delete
// it; the sequence is never a clock); the per-device and per-sender quota totals and the earliest expiry kept in
// memory; and the idempotency answers a retried send is given, carried by the queued copies themselves and kept
// in memory (a separate table wrote a record, its two index rows and their deletes per send: docs/cost.md).

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

/** A remembered answer to an idempotent send: the request's digest and the accepted send's server timestamp. */
export interface IdempotencyRecord {
  digest: string;
  serverTimestamp: number;
}

/** The idempotency key and answer a queued copy carries (null on copies sent without a key). */
export type CopyIdempotency = { key: string; record: IdempotencyRecord } | null;

/**
 * The queue's schema version, in mb_meta: 1 was mb_messages (rowid table with a (device_id, seq) index) and
 * mb_idempotency; 2 is mb_queue WITHOUT ROWID with the idempotency key in the row. Objects created before are
 * moved over at their first start (`#migrate`).
 */
export const QUEUE_SCHEMA_VERSION = 2;

export class MessageQueues {
  /** Queue totals per device for the quota checks, counted from SQLite when missing. */
  readonly #totals = new Map<number, DeviceTotals>();
  /** The earliest expiry of any queued copy: undefined when unknown (counted again from SQLite), null when none. */
  #earliest: number | null | undefined;
  /**
   * Idempotency answers by key, oldest first, each with the end of its window: every accepted send's since the
   * object started, and, once loaded, those the queued copies carry. Bounded by MAX_IDEMPOTENCY_ANSWERS.
   */
  readonly #records = new Map<string, IdempotencyRecord & { until: number }>();
  /** Whether the keys the queued copies carry have been read into #records since the object started. */
  #recordsLoaded = false;
  /** Whether #records has forgotten an answer for its bound: a miss then looks in the queue itself. */
  #recordsOverflowed = false;
  /** The next queue sequence number, and the last one reserved in storage (see #allocateSeq). */
  #nextSeq = 0;
  #reservedSeq = 0;

  constructor(private readonly sql: SqlStorage) {}

  createTables(): void {
    this.sql.exec("CREATE TABLE IF NOT EXISTS mb_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
    // WITHOUT ROWID, keyed by what delivery reads by: queuing a copy writes one row, acking it deletes one (a
    // rowid table with a (device_id, seq) index wrote two and deleted two). No index on expires_at: the earliest
    // expiry is kept in memory and the alarm's sweep scans the queue (rows read cost a thousandth of rows written).
    this.sql.exec(`CREATE TABLE IF NOT EXISTS mb_queue (
    device_id INTEGER NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, frame TEXT NOT NULL, bytes INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, sender TEXT NOT NULL DEFAULT '', idem TEXT, idem_digest TEXT, idem_at INTEGER,
    PRIMARY KEY (device_id, seq)) WITHOUT ROWID`);
    this.#migrate();
  }

  /** The schema version this object's queue is at (0 for one never created). */
  schemaVersion(): number {
    return this.sql.exec<{ v: number }>("SELECT v FROM mb_meta WHERE k = 'schema'").toArray()[0]?.v ?? 0;
  }

  /**
   * Moves a version-1 queue over (once, at the first start after the upgrade, in the same implicit transaction
   * as createTables: nothing awaits in between): every queued copy into mb_queue under its own sequence number,
   * the idempotency records still in their window into memory (they were kept for minutes; the object's memory
   * holds them from here), and the old tables dropped.
   */
  #migrate(): void {
    if (this.schemaVersion() >= QUEUE_SCHEMA_VERSION) return;
    const tables = new Set(
      this.sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('mb_messages', 'mb_idempotency')",
        )
        .toArray()
        .map((t) => t.name),
    );
    if (tables.has("mb_messages")) {
      const columns = this.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('mb_messages')").toArray();
      // Queues from before copies named their sender: the sender is read from each stored frame's envelope.
      const sender = columns.some((c) => c.name === "sender")
        ? "sender"
        : "coalesce(json_extract(frame, '$.envelope.sourceAccountId'), '')";
      this.sql.exec(`INSERT INTO mb_queue (device_id, seq, id, frame, bytes, expires_at, sender)
        SELECT device_id, seq, id, frame, bytes, expires_at, ${sender} FROM mb_messages`);
      this.sql.exec("DROP TABLE mb_messages");
    }
    if (tables.has("mb_idempotency")) {
      const rows = this.sql.exec<{ key: string; digest: string; answer: string; expires_at: number }>(
        "SELECT key, digest, answer, expires_at FROM mb_idempotency ORDER BY expires_at",
      );
      for (const r of rows) {
        const answer = JSON.parse(r.answer) as { serverTimestamp: number };
        this.#records.set(r.key, { digest: r.digest, serverTimestamp: answer.serverTimestamp, until: r.expires_at });
      }
      this.sql.exec("DROP TABLE mb_idempotency");
    }
    this.sql.exec("INSERT OR REPLACE INTO mb_meta (k, v) VALUES ('schema', ?)", QUEUE_SCHEMA_VERSION);
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
        "SELECT sender, count(*) AS messages, sum(bytes) AS bytes FROM mb_queue WHERE device_id = ? GROUP BY sender",
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
   * Queues one copy from `sender` (the sending account), with the idempotency key and answer of its send (so a
   * retry is answered while the copy waits, even after a restart), and answers its sequence number. Call inside
   * the send's transaction, then `counted`.
   */
  insert(
    deviceId: number,
    id: string,
    frame: string,
    bytes: number,
    expiresAt: number,
    sender: string,
    idem: CopyIdempotency = null,
  ): number {
    const seq = this.#allocateSeq();
    this.sql.exec(
      "INSERT INTO mb_queue (device_id, seq, id, frame, bytes, expires_at, sender, idem, idem_digest, idem_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      deviceId,
      seq,
      id,
      frame,
      bytes,
      expiresAt,
      sender,
      idem?.key ?? null,
      idem?.record.digest ?? null,
      idem?.record.serverTimestamp ?? null,
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
      .exec<{ n: number }>("SELECT count(*) AS n FROM mb_queue WHERE device_id = ? AND seq <= ?", deviceId, sentUpTo)
      .one().n;
  }

  /** The next `limit` live copies of the device after `sentUpTo`, oldest first. */
  nextUnsent(deviceId: number, sentUpTo: number, limit: number, now: number): { seq: number; frame: string }[] {
    return this.sql
      .exec<{ seq: number; frame: string }>(
        "SELECT seq, frame FROM mb_queue WHERE device_id = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
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
              "DELETE FROM mb_queue WHERE device_id = ? AND seq <= ? AND id = ? RETURNING seq",
              deviceId,
              sentUpTo,
              ids[0]!,
            )
            .toArray().length
        : this.sql
            .exec(
              "DELETE FROM mb_queue WHERE device_id = ? AND seq <= ? AND id IN (SELECT value FROM json_each(?)) RETURNING seq",
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
    this.sql.exec("DELETE FROM mb_queue WHERE device_id = ?", deviceId);
    this.#earliest = undefined;
    this.#totals.delete(deviceId);
  }

  /** Empties every queue and record (account deletion); sequence numbering starts over. */
  wipe(): void {
    this.sql.exec("DELETE FROM mb_queue");
    this.sql.exec("DELETE FROM mb_meta WHERE k <> 'schema'");
    this.#earliest = undefined;
    this.#records.clear();
    this.#recordsOverflowed = false;
    this.#totals.clear();
    this.#nextSeq = 0;
  }

  /** Deletes expired copies; answers how many expired. */
  expire(now: number): number {
    if ((this.nextExpiry() ?? Number.POSITIVE_INFINITY) > now) return 0; // nothing due: no scan of the queue
    this.#earliest = undefined;
    const n = this.sql.exec("DELETE FROM mb_queue WHERE expires_at <= ? RETURNING seq", now).toArray().length;
    if (n > 0) this.#totals.clear();
    return n;
  }

  /**
   * Forgets the idempotency answers whose window ended by `until` (memory only: nothing is written). Answers are
   * kept oldest first, so this stops at the first one still in its window.
   */
  sweepRecords(until: number): void {
    for (const [key, r] of this.#records) {
      if (r.until > until) break;
      this.#records.delete(key);
    }
  }

  /**
   * When the alarm must sweep idempotency records: never, since none are stored on their own (an answer lives in
   * memory and in the copies its send queued, which go with their ack or expiry).
   */
  nextRecordExpiry(): null {
    return null;
  }

  /** When the first queued copy expires; null when nothing is queued. */
  nextExpiry(): number | null {
    if (this.#earliest === undefined)
      this.#earliest = this.sql.exec<{ t: number | null }>("SELECT min(expires_at) AS t FROM mb_queue").one().t;
    return this.#earliest;
  }

  /**
   * The first answer to a send under `key`, while it is remembered: in memory, or carried by a copy still
   * queued (read once per start, and again on a miss after memory forgot answers for its bound). `ttlMs` is
   * IDEMPOTENCY_TTL_SECONDS: a queued copy's answer holds for that long after the send was accepted.
   */
  recall(key: string, now: number, ttlMs: number): IdempotencyRecord | undefined {
    if (!this.#recordsLoaded) {
      this.#recordsLoaded = true;
      const rows = this.sql.exec<{ idem: string; idem_digest: string; idem_at: number }>(
        "SELECT idem, idem_digest, idem_at FROM mb_queue WHERE idem IS NOT NULL AND idem_at > ? ORDER BY idem_at",
        now - ttlMs,
      );
      for (const r of rows)
        if (!this.#records.has(r.idem))
          this.#records.set(r.idem, { digest: r.idem_digest, serverTimestamp: r.idem_at, until: r.idem_at + ttlMs });
    }
    const r = this.#records.get(key);
    if (r) {
      if (r.until > now) return r;
      this.#records.delete(key);
      return undefined;
    }
    if (!this.#recordsOverflowed) return undefined;
    const queued = this.sql
      .exec<{ idem_digest: string; idem_at: number }>(
        "SELECT idem_digest, idem_at FROM mb_queue WHERE idem = ? AND idem_at > ? LIMIT 1",
        key,
        now - ttlMs,
      )
      .toArray()[0];
    return queued ? { digest: queued.idem_digest, serverTimestamp: queued.idem_at } : undefined;
  }

  /**
   * Remembers the answer to a send under `key` until `until`, in memory; past `max` answers the oldest is
   * forgotten (MAX_IDEMPOTENCY_ANSWERS). Copies the send queued carry it too (`insert`).
   */
  remember(key: string, record: IdempotencyRecord, until: number, max: number, now: number): void {
    this.sweepRecords(now);
    this.#records.delete(key);
    this.#records.set(key, { ...record, until });
    while (this.#records.size > max) {
      const oldest = this.#records.keys().next().value as string;
      this.#records.delete(oldest);
      this.#recordsOverflowed = true;
    }
  }

  /** How many idempotency answers are kept in memory (tests and operations). */
  get rememberedCount(): number {
    return this.#records.size;
  }

  /**
   * Queue sequence numbers only ever grow, even when the queue empties (SQLite would reuse rowids then, and a
   * connection's "sent up to" must stay meaningful). They are reserved in storage a thousand at a time, so a
   * message costs no extra row; after a restart numbering resumes above the last reservation.
   */
  #allocateSeq(): number {
    if (this.#nextSeq === 0) {
      const reserved = this.sql.exec<{ v: number }>("SELECT v FROM mb_meta WHERE k = 'seq'").toArray()[0]?.v ?? 0;
      const queued = this.sql.exec<{ m: number | null }>("SELECT max(seq) AS m FROM mb_queue").one().m ?? 0;
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
