// The per-upload Durable Object: it serialises one tus upload's PATCHes and cuts the byte stream into equal R2
// multipart parts. Bytes counted in the offset are durable: whole parts are in R2, the tail not yet a part is
// in this object's SQLite storage (1 MiB rows), so an eviction mid-upload loses nothing. It holds at most one
// part in memory, completes the multipart upload on the last byte, and aborts it by alarm when the upload expires.
import { DurableObject } from "cloudflare:workers";
import { loadConfig } from "../config.ts";
import { attachmentKey, deleteEntry, markStored } from "../db/attachments.ts";
import { shardFor } from "../db/shards.ts";
import { fail, type Failure } from "../errors.ts";
import { log } from "../log.ts";

/** Staged tail rows stay well under the 2 MB per-row limit of Durable Object storage. */
const TAIL_ROW_BYTES = 1024 * 1024;
/** When the index could not be updated after completion, the alarm retries after this long. */
const INDEX_RETRY_MS = 30_000;

type UploadState = "uploading" | "completed";

interface UploadRow extends Record<string, SqlStorageValue> {
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

export interface PatchUpload {
  accountId: string;
  deviceUid: number;
  offset: number;
  /** From Content-Length when the client sent one; the stream is counted either way. */
  contentLength: number | null;
  /** The SHA-256 digest from Upload-Checksum, or null when the client sent none. */
  sha256: Uint8Array | null;
  maxPatchBytes: number;
}

export interface UploadStatus {
  ok: true;
  offset: number;
  length: number;
  /** When an unfinished upload is aborted, or when a completed attachment expires. */
  expiresAt: number;
  metadata: string | null;
  completed: boolean;
}

export interface Owner {
  accountId: string;
  deviceUid: number;
}

export class Upload extends DurableObject<Cloudflare.Env> {
  private readonly sql: SqlStorage;
  /** PATCHes, terminations and alarms run one at a time, in arrival order. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.migrate();
  }

  private migrate(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS upload (
      id INTEGER PRIMARY KEY CHECK (id = 1), upload_id TEXT NOT NULL, account_id TEXT NOT NULL, device_uid INTEGER NOT NULL,
      length INTEGER NOT NULL, offset INTEGER NOT NULL, part_bytes INTEGER NOT NULL, parts INTEGER NOT NULL,
      multipart_id TEXT, state TEXT NOT NULL, metadata TEXT, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
      attachment_ttl_ms INTEGER NOT NULL, completed_at INTEGER, indexed INTEGER NOT NULL DEFAULT 0)`);
    this.sql.exec("CREATE TABLE IF NOT EXISTS parts (part_number INTEGER PRIMARY KEY, etag TEXT NOT NULL)");
    // The bytes after the last whole part, in upload order.
    this.sql.exec("CREATE TABLE IF NOT EXISTS tail (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)");
  }

  private row(): UploadRow | undefined {
    return this.sql.exec<UploadRow>("SELECT * FROM upload WHERE id = 1").toArray()[0];
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private bucket(): R2Bucket {
    return this.env.ATTACHMENTS;
  }

  private shard(accountId: string): D1Database {
    const loaded = loadConfig(this.env);
    if (!loaded.ok) throw loaded.error;
    return shardFor(this.env, loaded.config, accountId);
  }

  /** The attachment's metadata on its R2 object: its lifetime after completion and a hard deadline, read by downloads. */
  private objectMetadata(p: { now: number; uploadExpiresAt: number; attachmentTtlMs: number }): Record<string, string> {
    return { ttlMs: String(p.attachmentTtlMs), deadline: String(p.uploadExpiresAt + p.attachmentTtlMs) };
  }

  /** Starts an upload: the multipart upload in R2, the state row, and the alarm that aborts it when it expires. */
  async create(p: CreateUpload): Promise<{ ok: true; completed: boolean } | Failure> {
    return this.serial(async () => {
      if (this.row()) return fail("BAD_REQUEST", "the upload exists already");
      const customMetadata = this.objectMetadata(p);
      const key = attachmentKey(p.id);
      if (p.length === 0) {
        // Nothing to wait for: an empty attachment is complete at creation (R2 has no empty multipart upload).
        await this.bucket().put(key, new Uint8Array(0), { customMetadata });
        this.insert(p, null);
        return { ok: true, completed: await this.finish(p.now) };
      }
      const mp = await this.bucket().createMultipartUpload(key, { customMetadata });
      this.insert(p, mp.uploadId);
      await this.ctx.storage.setAlarm(p.uploadExpiresAt);
      return { ok: true, completed: false };
    });
  }

  private insert(p: CreateUpload, multipartId: string | null): void {
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

  /** The upload as HEAD reports it, to its own device only; anything else is NOT_FOUND. */
  async status(owner: Owner): Promise<UploadStatus | Failure> {
    const u = this.live(owner);
    if (!u) return fail("NOT_FOUND", "no such upload");
    return {
      ok: true,
      offset: u.offset,
      length: u.length,
      expiresAt: u.state === "completed" ? u.completed_at! + u.attachment_ttl_ms : u.expires_at,
      metadata: u.metadata,
      completed: u.state === "completed",
    };
  }

  /** The state row if it exists, belongs to `owner` (when given) and has not expired. */
  private live(owner: Owner | null, now = Date.now()): UploadRow | undefined {
    const u = this.row();
    if (!u) return undefined;
    if (owner && (u.account_id !== owner.accountId || u.device_uid !== owner.deviceUid)) return undefined;
    const expiresAt = u.state === "completed" ? u.completed_at! + u.attachment_ttl_ms : u.expires_at;
    return now < expiresAt ? u : undefined;
  }

  /**
   * Appends one PATCH body at `offset`. Whole parts go to R2 as they fill; at the end the checksum (if any) is
   * verified, and only then do the new offset, the new parts and the new tail rows commit, in one transaction.
   * A checksum mismatch, an oversized body or an overrun commits nothing: the parts already sent to R2 under
   * the next part numbers are simply sent again by the next PATCH. A body cut short without a checksum keeps
   * what arrived (tus 1.0.0: the server should store as much of the received data as possible).
   */
  async patch(
    p: PatchUpload,
    body: ReadableStream<Uint8Array> | null,
  ): Promise<{ ok: true; offset: number; expiresAt: number; completed: boolean } | Failure> {
    return this.serial(async () => {
      const discard = async () => {
        try {
          await body?.cancel();
        } catch {
          // The body may already be errored or closed.
        }
      };
      const u = this.live(p);
      if (!u) {
        await discard();
        return fail("NOT_FOUND", "no such upload");
      }
      if (p.offset !== u.offset) {
        await discard();
        return fail("UPLOAD_OFFSET_MISMATCH", `the upload is at offset ${u.offset}`, { offset: u.offset });
      }
      const room = u.length - u.offset;
      if (p.contentLength !== null && p.contentLength > room) {
        await discard();
        return fail("UPLOAD_OVERRUN", `only ${room} more bytes fit in Upload-Length ${u.length}`, {
          offset: u.offset,
          length: u.length,
        });
      }
      try {
        return await this.append(u, p, body);
      } catch (e) {
        await discard();
        log("error", { event: "upload_patch_failed", error: String(e) });
        return fail("UNAVAILABLE", "the upload could not be stored; resume from the offset HEAD reports", {}, 1);
      }
    });
  }

  private async append(u: UploadRow, p: PatchUpload, body: ReadableStream<Uint8Array> | null) {
    const P = u.part_bytes;
    const tailBytes = u.offset - u.parts * P; // committed bytes after the last whole part, in `tail` rows
    const room = u.length - u.offset;
    const mp = u.multipart_id ? this.bucket().resumeMultipartUpload(attachmentKey(u.upload_id), u.multipart_id) : null;
    const pending: R2UploadedPart[] = [];
    // `buf` holds the part being assembled. Fresh bytes go in at `fill`; positions [0, tailBytes) are the
    // committed tail, read from storage only when the part is about to be sent.
    let buf: Uint8Array | null = null;
    let fill = tailBytes;
    let freshStart = tailBytes;
    let tailInBuf = tailBytes === 0;
    let received = 0;
    let cutShort = false;
    const digest = p.sha256 ? new crypto.DigestStream("SHA-256") : null;
    const hasher = digest?.getWriter();

    const loadTail = (into: Uint8Array) => {
      let at = 0;
      for (const r of this.sql.exec<{ data: ArrayBuffer }>("SELECT data FROM tail ORDER BY seq")) {
        into.set(new Uint8Array(r.data), at);
        at += r.data.byteLength;
      }
      if (at !== tailBytes) throw new Error(`staged tail is ${at} bytes, expected ${tailBytes}`);
      tailInBuf = true;
    };

    const reader = body?.getReader();
    if (reader) {
      for (;;) {
        let chunk: Uint8Array;
        try {
          const r = await reader.read();
          if (r.done) break;
          chunk = r.value;
        } catch {
          cutShort = true; // the client went away mid-body
          break;
        }
        if (received + chunk.byteLength > p.maxPatchBytes) {
          await reader.cancel().catch(() => undefined);
          return fail(
            "PAYLOAD_TOO_LARGE",
            `a PATCH body may be at most ${p.maxPatchBytes} bytes; set the tus client's chunkSize below it`,
            {
              limitBytes: p.maxPatchBytes,
            },
          );
        }
        if (received + chunk.byteLength > room) {
          await reader.cancel().catch(() => undefined);
          return fail("UPLOAD_OVERRUN", `only ${room} more bytes fit in Upload-Length ${u.length}`, {
            offset: u.offset,
            length: u.length,
          });
        }
        received += chunk.byteLength;
        if (hasher) await hasher.write(chunk);
        let pos = 0;
        while (pos < chunk.byteLength) {
          buf ??= new Uint8Array(P);
          const take = Math.min(chunk.byteLength - pos, P - fill);
          buf.set(chunk.subarray(pos, pos + take), fill);
          fill += take;
          pos += take;
          if (fill === P) {
            if (!tailInBuf) loadTail(buf);
            pending.push(await mp!.uploadPart(u.parts + pending.length + 1, buf));
            fill = 0;
            freshStart = 0;
          }
        }
      }
    }

    if (digest && hasher) {
      if (cutShort)
        return fail("BAD_REQUEST", "the body was cut short; its bytes were discarded because it carried a checksum");
      await hasher.close();
      const got = new Uint8Array(await digest.digest);
      if (!equalBytes(got, p.sha256!)) {
        return fail("CHECKSUM_MISMATCH", "the body's sha256 does not match Upload-Checksum; its bytes were discarded", {
          offset: u.offset,
        });
      }
    }

    const offset = u.offset + received;
    const completing = offset === u.length;
    if (completing) {
      // The last part is whatever is assembled: committed tail (if not yet sent) and fresh bytes.
      if (fill > 0) {
        buf ??= new Uint8Array(P);
        if (!tailInBuf) loadTail(buf);
        pending.push(await mp!.uploadPart(u.parts + pending.length + 1, buf.subarray(0, fill)));
      }
      const parts = [
        ...this.sql
          .exec<{ part_number: number; etag: string }>("SELECT part_number, etag FROM parts ORDER BY part_number")
          .toArray()
          .map((r) => ({
            partNumber: r.part_number,
            etag: r.etag,
          })),
        ...pending,
      ];
      await mp!.complete(parts);
    }

    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      for (const part of pending)
        this.sql.exec("INSERT OR REPLACE INTO parts (part_number, etag) VALUES (?, ?)", part.partNumber, part.etag);
      if (completing || pending.length > 0) this.sql.exec("DELETE FROM tail");
      if (!completing && buf && fill > freshStart) {
        for (let at = freshStart; at < fill; at += TAIL_ROW_BYTES) {
          this.sql.exec(
            "INSERT INTO tail (data) VALUES (?)",
            buf.slice(at, Math.min(fill, at + TAIL_ROW_BYTES)).buffer,
          );
        }
      }
      this.sql.exec("UPDATE upload SET offset = ?, parts = parts + ? WHERE id = 1", offset, pending.length);
    });
    if (completing) {
      const stillThere = await this.finish(now);
      if (!stillThere) return fail("NOT_FOUND", "the upload was deleted while it was being written");
    }
    const after = this.row()!;
    return {
      ok: true as const,
      offset,
      expiresAt: after.state === "completed" ? after.completed_at! + after.attachment_ttl_ms : after.expires_at,
      completed: after.state === "completed",
    };
  }

  /**
   * Marks the upload completed and its index entry stored. When the entry is gone (the attachment or the account
   * was deleted during the upload) the blob is deleted too and false is returned. A D1 failure is retried by alarm.
   */
  private async finish(now: number): Promise<boolean> {
    this.sql.exec("UPDATE upload SET state = 'completed', completed_at = ?, indexed = 0 WHERE id = 1", now);
    this.sql.exec("DELETE FROM tail");
    this.sql.exec("DELETE FROM parts");
    return this.syncIndex();
  }

  private async syncIndex(): Promise<boolean> {
    const u = this.row()!;
    const expiresAt = u.completed_at! + u.attachment_ttl_ms;
    let found: boolean;
    try {
      found = await markStored(this.shard(u.account_id), u.upload_id, expiresAt);
    } catch (e) {
      log("warn", { event: "upload_index_retry", error: String(e) });
      await this.ctx.storage.setAlarm(Date.now() + INDEX_RETRY_MS);
      return true;
    }
    if (!found) {
      await this.bucket().delete(attachmentKey(u.upload_id));
      await this.clear();
      return false;
    }
    this.sql.exec("UPDATE upload SET indexed = 1 WHERE id = 1");
    // Wake once more at expiry to drop this object's own state; the cron sweep deletes the blob and the entry.
    await this.ctx.storage.setAlarm(expiresAt);
    return true;
  }

  /** tus termination by the uploading device: the upload (finished or not), its blob and its index entry go. */
  async terminate(owner: Owner): Promise<{ ok: true } | Failure> {
    return this.serial(async () => {
      const u = this.live(owner);
      if (!u) return fail("NOT_FOUND", "no such upload");
      await this.dropR2(u);
      await deleteEntry(this.shard(u.account_id), u.upload_id);
      await this.clear();
      return { ok: true };
    });
  }

  /**
   * Drops everything this object holds and its R2 data, whoever owns it; the caller (attachment deletion, the
   * sweep, account deletion) has checked ownership and deletes the index entry. Idempotent.
   */
  async discard(): Promise<{ ok: true }> {
    return this.serial(async () => {
      const u = this.row();
      if (u) await this.dropR2(u);
      await this.clear();
      return { ok: true as const };
    });
  }

  private async dropR2(u: UploadRow): Promise<void> {
    const key = attachmentKey(u.upload_id);
    if (u.state === "uploading" && u.multipart_id) {
      try {
        await this.bucket().resumeMultipartUpload(key, u.multipart_id).abort();
      } catch (e) {
        // Already aborted or completed; the R2 lifecycle rule is the backstop for anything left (docs/deploy.md).
        log("warn", { event: "multipart_abort_failed", error: String(e) });
      }
    }
    await this.bucket().delete(key);
  }

  private async clear(): Promise<void> {
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.migrate();
  }

  /**
   * Unfinished and expired: abort the multipart upload, drop the index entry and all state. Completed: retry the
   * index update if it failed, or drop this object's state once the attachment has expired.
   */
  override async alarm(): Promise<void> {
    await this.serial(async () => {
      const u = this.row();
      if (!u) return this.clear();
      const now = Date.now();
      if (u.state === "uploading") {
        if (now < u.expires_at) return this.ctx.storage.setAlarm(u.expires_at);
        await this.dropR2(u);
        await deleteEntry(this.shard(u.account_id), u.upload_id); // a throw here makes the runtime retry the alarm
        return this.clear();
      }
      if (!u.indexed) {
        await this.syncIndex();
        return;
      }
      const expiresAt = u.completed_at! + u.attachment_ttl_ms;
      if (now < expiresAt) return this.ctx.storage.setAlarm(expiresAt);
      return this.clear();
    });
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
