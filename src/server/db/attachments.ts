// Each account's index of attachments and unfinished uploads, on the account's D1 shard. It is what the quotas,
// the cron sweep and account deletion read: R2 cannot list unfinished multipart uploads and cron cannot list
// Durable Objects. The R2 object of attachment `id` is `attachmentKey(id)`; the upload object is UPLOAD[id].
import type { Config } from "../config.ts";
import { allShards, shardFor } from "./shards.ts";

export type AttachmentState = "uploading" | "stored";

export interface AttachmentEntry {
  id: string;
  accountId: string;
  deviceUid: number;
  size: number;
  state: AttachmentState;
  createdAt: number;
  expiresAt: number;
}

interface Row {
  id: string;
  account_id: string;
  device_uid: number;
  size: number;
  state: AttachmentState;
  created_at: number;
  expires_at: number;
}

const toEntry = (r: Row): AttachmentEntry => ({
  id: r.id,
  accountId: r.account_id,
  deviceUid: r.device_uid,
  size: r.size,
  state: r.state,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
});

/** The R2 key of an attachment: nothing in it links the blob to an account. */
export const attachmentKey = (id: string) => `att/${id}`;

export interface Reservation {
  id: string;
  accountId: string;
  deviceUid: number;
  size: number;
  now: number;
  expiresAt: number;
  uploadQuotaBytes: number;
  storageQuotaBytes: number;
  /** Every entry counts at least this many bytes against both quotas (MIN_UPLOAD_RESERVATION_BYTES). */
  minReservationBytes: number;
  /** Entries (attachments and unfinished uploads) an account may hold (MAX_ATTACHMENTS_PER_ACCOUNT). */
  maxEntries: number;
}

export type ReserveResult =
  | { ok: true }
  | { ok: false; quota: "upload" | "storage"; limitBytes: number; usedBytes: number }
  | { ok: false; quota: "count"; limit: number; count: number };

/**
 * Records a new upload if the account's limits allow it, in one statement, so concurrent creations cannot
 * together pass a check: fewer than `maxEntries` entries; unfinished bytes + size ≤ UPLOAD_QUOTA_BYTES; all
 * (stored + unfinished) bytes + size ≤ STORAGE_QUOTA_BYTES, where every entry, the new one too, counts at least
 * `minReservationBytes`. Entries already expired (not yet swept) do not count.
 */
export async function reserveUpload(db: D1Database, r: Reservation): Promise<ReserveResult> {
  const inserted = await db
    .prepare(
      `INSERT INTO attachments (id, account_id, device_uid, size, state, created_at, expires_at)
       SELECT ?1, ?2, ?3, ?4, 'uploading', ?5, ?6
       WHERE (SELECT count(*) FROM attachments WHERE account_id = ?2 AND expires_at > ?5) < ?10
         AND (SELECT coalesce(sum(max(size, ?9)), 0) FROM attachments WHERE account_id = ?2 AND state = 'uploading' AND expires_at > ?5) + max(?4, ?9) <= ?7
         AND (SELECT coalesce(sum(max(size, ?9)), 0) FROM attachments WHERE account_id = ?2 AND expires_at > ?5) + max(?4, ?9) <= ?8
       RETURNING id`,
    )
    .bind(
      r.id,
      r.accountId,
      r.deviceUid,
      r.size,
      r.now,
      r.expiresAt,
      r.uploadQuotaBytes,
      r.storageQuotaBytes,
      r.minReservationBytes,
      r.maxEntries,
    )
    .first<{ id: string }>();
  if (inserted) return { ok: true };
  const used = await usage(db, r.accountId, r.now, r.minReservationBytes);
  if (used.entries >= r.maxEntries) return { ok: false, quota: "count", limit: r.maxEntries, count: used.entries };
  const reserved = Math.max(r.size, r.minReservationBytes);
  if (used.uploadingBytes + reserved > r.uploadQuotaBytes) {
    return { ok: false, quota: "upload", limitBytes: r.uploadQuotaBytes, usedBytes: used.uploadingBytes };
  }
  return {
    ok: false,
    quota: "storage",
    limitBytes: r.storageQuotaBytes,
    usedBytes: used.uploadingBytes + used.storedBytes,
  };
}

/** What an account holds: entries, and bytes reserved by unfinished uploads and stored (each at least `minBytes`). */
export async function usage(
  db: D1Database,
  accountId: string,
  now: number,
  minBytes = 0,
): Promise<{ entries: number; uploadingBytes: number; storedBytes: number }> {
  const row = await db
    .prepare(
      `SELECT count(*) AS entries,
              coalesce(sum(CASE WHEN state = 'uploading' THEN max(size, ?3) END), 0) AS uploading,
              coalesce(sum(CASE WHEN state = 'stored' THEN max(size, ?3) END), 0) AS stored
       FROM attachments WHERE account_id = ?1 AND expires_at > ?2`,
    )
    .bind(accountId, now, minBytes)
    .first<{ entries: number; uploading: number; stored: number }>();
  return { entries: row?.entries ?? 0, uploadingBytes: row?.uploading ?? 0, storedBytes: row?.stored ?? 0 };
}

/** Marks a finished upload stored until `expiresAt`; false when its entry is gone (deleted meanwhile). */
export async function markStored(db: D1Database, id: string, expiresAt: number): Promise<boolean> {
  const row = await db
    .prepare("UPDATE attachments SET state = 'stored', expires_at = ?2 WHERE id = ?1 RETURNING id")
    .bind(id, expiresAt)
    .first<{ id: string }>();
  return row !== null;
}

export async function getEntry(db: D1Database, id: string): Promise<AttachmentEntry | null> {
  const row = await db.prepare("SELECT * FROM attachments WHERE id = ?1").bind(id).first<Row>();
  return row ? toEntry(row) : null;
}

export async function deleteEntry(db: D1Database, id: string): Promise<void> {
  await db.prepare("DELETE FROM attachments WHERE id = ?1").bind(id).run();
}

/**
 * Removes index entries and what they stand for: the R2 object, and the upload object's state (for an
 * unfinished upload that aborts the multipart upload and drops its staged bytes). Objects first, rows last,
 * so a failure leaves the row for the next attempt. Idempotent.
 */
async function removeEntries(env: Cloudflare.Env, db: D1Database, entries: AttachmentEntry[]): Promise<void> {
  if (entries.length === 0) return;
  // Every entry's R2 key is deleted, stored or not: an upload that completed after it was listed leaves no blob.
  await env.ATTACHMENTS.delete(entries.map((e) => attachmentKey(e.id)));
  // The upload object aborts an unfinished multipart upload and clears what it keeps (staged bytes, owner).
  await Promise.all(entries.map((e) => env.UPLOAD.getByName(e.id).discard()));
  const ids = entries.map((e) => e.id);
  await db
    .prepare(`DELETE FROM attachments WHERE id IN (${ids.map((_, i) => `?${i + 1}`).join(",")})`)
    .bind(...ids)
    .run();
}

/** R2 deletes at most 1,000 keys per call; D1 binds at most 100 parameters per statement. */
const BATCH = 100;
/** A sweep does at most this many batches per shard per run; the next cron run goes on. */
const MAX_BATCHES_PER_SHARD = 20;

/** Removes what `select` lists (at most BATCH entries a call), a batch at a time, until it lists fewer. */
async function removeListed(
  env: Cloudflare.Env,
  db: D1Database,
  select: () => D1PreparedStatement,
  maxBatches = Number.POSITIVE_INFINITY,
): Promise<number> {
  let removed = 0;
  for (let i = 0; i < maxBatches; i++) {
    const { results } = await select().all<Row>();
    await removeEntries(env, db, results.map(toEntry));
    removed += results.length;
    if (results.length < BATCH) break;
  }
  return removed;
}

/** The cron sweep: deletes expired entries (stored and unfinished) and their R2 objects on every shard. */
export async function sweepAttachments(env: Cloudflare.Env, config: Config, now: number): Promise<number> {
  let removed = 0;
  for (const { db } of allShards(env, config)) {
    const expired = () =>
      db.prepare("SELECT * FROM attachments WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2").bind(now, BATCH);
    removed += await removeListed(env, db, expired, MAX_BATCHES_PER_SHARD);
  }
  return removed;
}

/** Account deletion: every attachment and unfinished upload of the account goes (idempotent). */
export async function deleteAccountAttachments(
  env: Cloudflare.Env,
  config: Config,
  accountId: string,
): Promise<number> {
  const db = shardFor(env, config, accountId);
  const owned = () => db.prepare("SELECT * FROM attachments WHERE account_id = ?1 LIMIT ?2").bind(accountId, BATCH);
  return removeListed(env, db, owned);
}
