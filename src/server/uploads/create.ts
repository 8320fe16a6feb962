// Creating an upload (tus creation): the limits on its length, the device's creation rate, a fresh 128-bit id, the
// account's quotas (count and bytes) reserved in its D1 index in one statement, and the Upload object that receives
// the bytes. The HTTP side (headers, Location, the first bytes of creation-with-upload) is routes/tus.ts.
import { randomBytes, toHex } from "../../crypto/bytes.ts";
import { ATTACHMENT_ID_BYTES, R2_MAX_PARTS } from "../../protocol/attachments.ts";
import type { Config } from "../config.ts";
import { deleteEntry, reserveUpload, type ReserveResult } from "../db/attachments.ts";
import { shardFor } from "../db/shards.ts";
import { ApiError, storage, unwrap } from "../errors.ts";
import { limitByDevice } from "../rate-limiter.ts";
import type { Upload } from "./upload.ts";

/** Refuses an Upload-Length over MAX_ATTACHMENT_BYTES, or one R2 could not hold in parts of UPLOAD_PART_BYTES. */
export function checkUploadLength(cfg: Config, length: number): void {
  if (length > cfg.MAX_ATTACHMENT_BYTES) {
    throw new ApiError("UPLOAD_TOO_LARGE", `an attachment may be at most ${cfg.MAX_ATTACHMENT_BYTES} bytes`, {
      limitBytes: cfg.MAX_ATTACHMENT_BYTES,
    });
  }
  if (Math.ceil(length / cfg.UPLOAD_PART_BYTES) > R2_MAX_PARTS) {
    const limit = R2_MAX_PARTS * cfg.UPLOAD_PART_BYTES;
    throw new ApiError("UPLOAD_TOO_LARGE", `an attachment may be at most ${limit} bytes (${R2_MAX_PARTS} parts)`, {
      limitBytes: limit,
    });
  }
}

/** A new attachment id: 128 random bits as 32 lowercase hex digits (ATTACHMENT_ID_PATTERN). */
export const newAttachmentId = (): string => toHex(randomBytes(ATTACHMENT_ID_BYTES));

export interface NewUpload {
  accountId: string;
  deviceUid: number;
  /** Upload-Length, already checked by checkUploadLength. */
  length: number;
  metadata: string | null;
  now: number;
}

export interface CreatedUpload {
  id: string;
  upload: DurableObjectStub<Upload>;
  /** When the unfinished upload is aborted, or (an empty one is complete at once) when the attachment expires. */
  expiresAt: number;
}

/**
 * Reserves the upload's length against the account's quotas and creates its object. When the object cannot be
 * created the reservation is given back at once (the sweep would do it at expiry otherwise).
 */
export async function createUpload(env: Cloudflare.Env, cfg: Config, u: NewUpload): Promise<CreatedUpload> {
  const rate = await storage("rate limiter", () =>
    limitByDevice(env, u, "upload", cfg.UPLOADS_PER_DEVICE_LIMIT, cfg.UPLOADS_PER_DEVICE_WINDOW_SECONDS),
  );
  if (!rate.allowed)
    throw new ApiError(
      "RATE_LIMITED",
      `this device created UPLOADS_PER_DEVICE_LIMIT (${cfg.UPLOADS_PER_DEVICE_LIMIT}) uploads in the last ${cfg.UPLOADS_PER_DEVICE_WINDOW_SECONDS} s`,
      {},
      rate.retryAfterSeconds,
    );
  const id = newAttachmentId();
  const uploadExpiresAt = u.now + cfg.UPLOAD_TTL_SECONDS * 1000;
  const attachmentTtlMs = cfg.ATTACHMENT_TTL_SECONDS * 1000;
  const db = shardFor(env, cfg, u.accountId);
  const reserved = await storage("attachments index", () =>
    reserveUpload(db, {
      id,
      accountId: u.accountId,
      deviceUid: u.deviceUid,
      size: u.length,
      now: u.now,
      expiresAt: uploadExpiresAt,
      uploadQuotaBytes: cfg.UPLOAD_QUOTA_BYTES,
      storageQuotaBytes: cfg.STORAGE_QUOTA_BYTES,
      minReservationBytes: cfg.MIN_UPLOAD_RESERVATION_BYTES,
      maxEntries: cfg.MAX_ATTACHMENTS_PER_ACCOUNT,
    }),
  );
  if (!reserved.ok) throw quotaExceeded(reserved);
  const upload = env.UPLOAD.getByName(id);
  try {
    const created = unwrap(
      await storage("upload", () =>
        upload.create({
          id,
          accountId: u.accountId,
          deviceUid: u.deviceUid,
          length: u.length,
          partBytes: cfg.UPLOAD_PART_BYTES,
          now: u.now,
          uploadExpiresAt,
          attachmentTtlMs,
          metadata: u.metadata,
        }),
      ),
    );
    return { id, upload, expiresAt: created.completed ? u.now + attachmentTtlMs : uploadExpiresAt };
  } catch (e) {
    await deleteEntry(db, id).catch(() => undefined);
    throw e;
  }
}

function quotaExceeded(refused: Extract<ReserveResult, { ok: false }>): ApiError {
  if (refused.quota === "count") {
    return new ApiError(
      "TOO_MANY_ATTACHMENTS",
      `the account holds ${refused.count} attachments and unfinished uploads, the most it may (MAX_ATTACHMENTS_PER_ACCOUNT)`,
      { limit: refused.limit, count: refused.count },
    );
  }
  const which =
    refused.quota === "upload"
      ? "UPLOAD_QUOTA_BYTES (unfinished uploads)"
      : "STORAGE_QUOTA_BYTES (stored and unfinished)";
  return new ApiError("QUOTA_EXCEEDED", `this upload would pass the account's ${which} quota`, {
    quota: refused.quota,
    limitBytes: refused.limitBytes,
    usedBytes: refused.usedBytes,
  });
}
