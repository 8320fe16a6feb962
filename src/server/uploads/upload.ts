// The per-upload Durable Object: serialises one tus upload's PATCHes and cuts the stream into equal R2 multipart
// parts, keeping the tail not yet a part in its SQLite (store.ts) so an eviction loses nothing counted; at most one
// part in memory. It completes the multipart upload on the last byte and aborts it by alarm at expiry.
import { DurableObject } from "cloudflare:workers";
import { equalBytes } from "../../crypto/bytes.ts";
import { systemClock, type Clock } from "../../protocol/clock.ts";
import { Mutex } from "../../protocol/concurrency.ts";
import { loadConfig } from "../config.ts";
import { attachmentKey, deleteEntry, markStored } from "../db/attachments.ts";
import { shardFor } from "../db/shards.ts";
import { fail, type Failure } from "../errors.ts";
import { log } from "../log.ts";
import { drainBody, patchTooLarge } from "./http.ts";
import { expiryOf, UploadStore, type CreateUpload, type UploadRow } from "./store.ts";

/** When the index could not be updated after completion, the alarm retries after this long. */
const INDEX_RETRY_MS = 30_000;

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

type Appended = { ok: true; offset: number; expiresAt: number; completed: boolean };

const overrun = (u: UploadRow, room: number) =>
  fail("UPLOAD_OVERRUN", `only ${room} more bytes fit in Upload-Length ${u.length}`, {
    offset: u.offset,
    length: u.length,
  });

export class Upload extends DurableObject<Cloudflare.Env> {
  /** The time deadlines are compared with; tests replace it (runInDurableObject) to move time instead of sleeping. */
  clock: Clock = systemClock;
  private readonly store: UploadStore;
  /** PATCHes, terminations and alarms run one at a time, in arrival order. */
  private readonly mutex = new Mutex();

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    this.store = new UploadStore(ctx.storage);
  }

  private bucket(): R2Bucket {
    return this.env.ATTACHMENTS;
  }

  private shard(accountId: string): D1Database {
    const loaded = loadConfig(this.env);
    if (!loaded.ok) throw loaded.error;
    return shardFor(this.env, loaded.config, accountId);
  }

  /** Starts an upload: the multipart upload in R2, the state row, and the alarm that aborts it when it expires. */
  async create(p: CreateUpload): Promise<{ ok: true; completed: boolean } | Failure> {
    return this.mutex.run(async () => {
      if (this.store.row()) return fail("BAD_REQUEST", "the upload exists already");
      // On the R2 object, read by downloads: the attachment's lifetime after completion and a hard deadline.
      const customMetadata = {
        ttlMs: String(p.attachmentTtlMs),
        deadline: String(p.uploadExpiresAt + p.attachmentTtlMs),
      };
      const key = attachmentKey(p.id);
      if (p.length === 0) {
        // Nothing to wait for: an empty attachment is complete at creation (R2 has no empty multipart upload).
        await this.bucket().put(key, new Uint8Array(0), { customMetadata });
        this.store.insert(p, null);
        return { ok: true, completed: await this.finish(p.now) };
      }
      const mp = await this.bucket().createMultipartUpload(key, { customMetadata });
      this.store.insert(p, mp.uploadId);
      await this.ctx.storage.setAlarm(p.uploadExpiresAt);
      return { ok: true, completed: false };
    });
  }

  /** The upload as HEAD reports it, to its own device only; anything else is NOT_FOUND. */
  async status(owner: Owner): Promise<UploadStatus | Failure> {
    const u = this.live(owner);
    if (!u) return fail("NOT_FOUND", "no such upload");
    return {
      ok: true,
      offset: u.offset,
      length: u.length,
      expiresAt: expiryOf(u),
      metadata: u.metadata,
      completed: u.state === "completed",
    };
  }

  /** The state row if it exists, belongs to `owner` (when given) and has not expired. */
  private live(owner: Owner | null): UploadRow | undefined {
    const u = this.store.row();
    if (!u) return undefined;
    if (owner && (u.account_id !== owner.accountId || u.device_uid !== owner.deviceUid)) return undefined;
    return this.clock.now() < expiryOf(u) ? u : undefined;
  }

  /**
   * Appends one PATCH body at `offset`. Whole parts go to R2 as they fill; at the end the checksum (if any) is
   * verified, and only then do the new offset, the new parts and the new tail rows commit, in one transaction.
   * A checksum mismatch, an oversized body or an overrun commits nothing: the parts already sent to R2 under
   * the next part numbers are simply sent again by the next PATCH. A body cut short without a checksum keeps
   * what arrived (tus 1.0.0: the server should store as much of the received data as possible).
   */
  async patch(p: PatchUpload, body: ReadableStream<Uint8Array> | null): Promise<Appended | Failure> {
    // Taken before waiting for the mutex: a PATCH queued behind another one is answered once that one ends.
    const reader = body?.getReader();
    return this.mutex.run(async () => {
      // A refusal reads the body to its end first (drainBody), so the client's connection stays usable.
      const refuse = async (f: Failure) => {
        await drainBody(reader, p.maxPatchBytes);
        return f;
      };
      const u = this.live(p);
      if (!u) return refuse(fail("NOT_FOUND", "no such upload"));
      if (p.offset !== u.offset)
        return refuse(fail("UPLOAD_OFFSET_MISMATCH", `the upload is at offset ${u.offset}`, { offset: u.offset }));
      const room = u.length - u.offset;
      if (p.contentLength !== null && p.contentLength > room) return refuse(overrun(u, room));
      if (u.state === "completed") {
        // Only an empty PATCH fits a finished upload: it is answered with the offset (tus 1.0.0, PATCH). R2's
        // multipart upload is complete (or, for an empty one, never existed), so there is nothing to append to.
        if ((await drainBody(reader, p.maxPatchBytes)) > 0) return overrun(u, 0);
        return { ok: true, offset: u.offset, expiresAt: expiryOf(u), completed: true };
      }
      try {
        return await this.append(u, p, reader);
      } catch (e) {
        log("error", { event: "upload_patch_failed", error: String(e) });
        return refuse(
          fail("UNAVAILABLE", "the upload could not be stored; resume from the offset HEAD reports", {}, 1),
        );
      }
    });
  }

  private async append(u: UploadRow, p: PatchUpload, reader: ReadableStreamDefaultReader<Uint8Array> | undefined) {
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
      this.store.readTail(into, tailBytes);
      tailInBuf = true;
    };

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
          return patchTooLarge(p.maxPatchBytes);
        }
        if (received + chunk.byteLength > room) {
          await drainBody(reader, p.maxPatchBytes - received - chunk.byteLength);
          return overrun(u, room);
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
      await mp!.complete([...this.store.parts(), ...pending]);
    }

    const now = this.clock.now();
    this.store.commit(offset, pending, completing, buf && fill > freshStart ? buf.subarray(freshStart, fill) : null);
    if (completing) {
      const stillThere = await this.finish(now);
      if (!stillThere) return fail("NOT_FOUND", "the upload was deleted while it was being written");
    }
    const after = this.store.row()!;
    return { ok: true as const, offset, expiresAt: expiryOf(after), completed: after.state === "completed" };
  }

  /**
   * Marks the upload completed and its index entry stored. When the entry is gone (the attachment or the account
   * was deleted during the upload) the blob is deleted too and false is returned. A D1 failure is retried by alarm.
   */
  private async finish(now: number): Promise<boolean> {
    this.store.complete(now);
    return this.syncIndex();
  }

  private async syncIndex(): Promise<boolean> {
    const u = this.store.row()!;
    const expiresAt = expiryOf(u);
    let found: boolean;
    try {
      found = await markStored(this.shard(u.account_id), u.upload_id, expiresAt);
    } catch (e) {
      log("warn", { event: "upload_index_retry", error: String(e) });
      await this.ctx.storage.setAlarm(this.clock.now() + INDEX_RETRY_MS);
      return true;
    }
    if (!found) {
      await this.bucket().delete(attachmentKey(u.upload_id));
      await this.clear();
      return false;
    }
    this.store.markIndexed();
    // Wake once more at expiry to drop this object's own state; the cron sweep deletes the blob and the entry.
    await this.ctx.storage.setAlarm(expiresAt);
    return true;
  }

  /** tus termination by the uploading device: the upload (finished or not), its blob and its index entry go. */
  async terminate(owner: Owner): Promise<{ ok: true } | Failure> {
    return this.mutex.run(async () => {
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
    return this.mutex.run(async () => {
      const u = this.store.row();
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
    this.store.migrate();
  }

  /**
   * Unfinished and expired: abort the multipart upload, drop the index entry and all state. Completed: retry the
   * index update if it failed, or drop this object's state once the attachment has expired.
   */
  override async alarm(): Promise<void> {
    await this.mutex.run(async () => {
      const u = this.store.row();
      if (!u) return this.clear();
      const now = this.clock.now();
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
      const expiresAt = expiryOf(u);
      if (now < expiresAt) return this.ctx.storage.setAlarm(expiresAt);
      return this.clear();
    });
  }
}
