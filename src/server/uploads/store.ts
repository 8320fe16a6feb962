// The Upload object's SQLite storage: one state row, the etags of the parts already in R2, and the staged tail
// (the bytes after the last whole part, in 1 MiB rows). The layout is the one deployed objects hold, so an upload
// in flight survives a deploy: change it only with a migration.

/** Staged tail rows stay well under the 2 MB per-row limit of Durable Object storage. */
const TAIL_ROW_BYTES = 1024 * 1024;

export type UploadState = "uploading" | "completed";

export interface UploadRow extends Record<string, SqlStorageValue> {
  upload_id: string;
  account_id: string;
  device_uid: number;
  length: number;
  offset: number;
  part_bytes: number;
  parts: number;
  multipart_id: string | null;
  state: UploadState;
  metadata: string | null;
  created_at: number;
  expires_at: number;
  attachment_ttl_ms: number;
  completed_at: number | null;
  indexed: number;
}

export interface CreateUpload {
  id: string;
  accountId: string;
  deviceUid: number;
  length: number;
  partBytes: number;
  now: number;
  uploadExpiresAt: number;
  attachmentTtlMs: number;
  metadata: string | null;
}

/** When an unfinished upload is aborted, or when a completed attachment expires. */
export const expiryOf = (u: UploadRow): number =>
  u.state === "completed" ? u.completed_at! + u.attachment_ttl_ms : u.expires_at;

export class UploadStore {
  private readonly sql: SqlStorage;

  constructor(private readonly storage: DurableObjectStorage) {
    this.sql = storage.sql;
    this.migrate();
  }

  /** Creates the tables (again after deleteAll). */
  migrate(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS upload (
      id INTEGER PRIMARY KEY CHECK (id = 1), upload_id TEXT NOT NULL, account_id TEXT NOT NULL, device_uid INTEGER NOT NULL,
      length INTEGER NOT NULL, offset INTEGER NOT NULL, part_bytes INTEGER NOT NULL, parts INTEGER NOT NULL,
      multipart_id TEXT, state TEXT NOT NULL, metadata TEXT, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
      attachment_ttl_ms INTEGER NOT NULL, completed_at INTEGER, indexed INTEGER NOT NULL DEFAULT 0)`);
    this.sql.exec("CREATE TABLE IF NOT EXISTS parts (part_number INTEGER PRIMARY KEY, etag TEXT NOT NULL)");
    // The bytes after the last whole part, in upload order.
    this.sql.exec("CREATE TABLE IF NOT EXISTS tail (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)");
  }

  row(): UploadRow | undefined {
    return this.sql.exec<UploadRow>("SELECT * FROM upload WHERE id = 1").toArray()[0];
  }

  insert(p: CreateUpload, multipartId: string | null): void {
    this.sql.exec(
      `INSERT INTO upload (id, upload_id, account_id, device_uid, length, offset, part_bytes, parts, multipart_id, state,
         metadata, created_at, expires_at, attachment_ttl_ms) VALUES (1, ?, ?, ?, ?, 0, ?, 0, ?, 'uploading', ?, ?, ?, ?)`,
      p.id,
      p.accountId,
      p.deviceUid,
      p.length,
      p.partBytes,
      multipartId,
      p.metadata,
      p.now,
      p.uploadExpiresAt,
      p.attachmentTtlMs,
    );
  }

  /** Copies the staged tail to the start of `into`; it must be exactly `bytes` long. */
  readTail(into: Uint8Array, bytes: number): void {
    let at = 0;
    for (const r of this.sql.exec<{ data: ArrayBuffer }>("SELECT data FROM tail ORDER BY seq")) {
      into.set(new Uint8Array(r.data), at);
      at += r.data.byteLength;
    }
    if (at !== bytes) throw new Error(`staged tail is ${at} bytes, expected ${bytes}`);
  }

  /** The parts already in R2, in order, as R2's complete() takes them. */
  parts(): R2UploadedPart[] {
    return this.sql
      .exec<{ part_number: number; etag: string }>("SELECT part_number, etag FROM parts ORDER BY part_number")
      .toArray()
      .map((r) => ({ partNumber: r.part_number, etag: r.etag }));
  }

  /**
   * Commits one PATCH in one transaction: the parts it sent, the new offset, and its bytes that did not fill a
   * part (`tail`, appended to the staged ones; when a part was sent the staged ones went into it and are dropped).
   */
  commit(offset: number, sent: R2UploadedPart[], completing: boolean, tail: Uint8Array | null): void {
    this.storage.transactionSync(() => {
      for (const part of sent)
        this.sql.exec("INSERT OR REPLACE INTO parts (part_number, etag) VALUES (?, ?)", part.partNumber, part.etag);
      if (completing || sent.length > 0) this.sql.exec("DELETE FROM tail");
      if (!completing && tail) {
        for (let at = 0; at < tail.byteLength; at += TAIL_ROW_BYTES) {
          this.sql.exec(
            "INSERT INTO tail (data) VALUES (?)",
            tail.slice(at, Math.min(tail.byteLength, at + TAIL_ROW_BYTES)).buffer,
          );
        }
      }
      this.sql.exec("UPDATE upload SET offset = ?, parts = parts + ? WHERE id = 1", offset, sent.length);
    });
  }

  /** The upload is complete at `now`: its staged bytes and part list are no longer needed. */
  complete(now: number): void {
    this.sql.exec("UPDATE upload SET state = 'completed', completed_at = ?, indexed = 0 WHERE id = 1", now);
    this.sql.exec("DELETE FROM tail");
    this.sql.exec("DELETE FROM parts");
  }

  markIndexed(): void {
    this.sql.exec("UPDATE upload SET indexed = 1 WHERE id = 1");
  }
}
