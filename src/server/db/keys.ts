// The prekey directory on an account's D1 shard, and the one-time KEM key pages in R2. Claims are single
// statements (DELETE … RETURNING, UPDATE … RETURNING), so D1's one-writer order makes every one-time key go
// to exactly one claimer, oldest first.
import type { BundleDevice, ECPreKey, ECSignedPreKey, KEMSignedPreKey } from "../../protocol/directory.ts";
import { toBase64, fromBase64 } from "../../crypto/bytes.ts";
import { KEM_PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from "../../protocol/limits.ts";
import { log } from "../log.ts";

/** A KEM page record: key id (4 bytes, big-endian) ‖ public key (1569) ‖ signature (64). */
export const KEM_RECORD_BYTES = 4 + KEM_PUBLIC_KEY_BYTES + SIGNATURE_BYTES;

export interface DeviceKeysInput {
  signedPreKey?: ECSignedPreKey | undefined;
  pqLastResortPreKey?: KEMSignedPreKey | undefined;
  preKeys?: ECPreKey[] | undefined;
  pqPreKeys?: KEMSignedPreKey[] | undefined;
}

export const kemPagePrefix = (accountId: string, deviceUid?: number) =>
  deviceUid === undefined ? `kem/${accountId}/` : `kem/${accountId}/${deviceUid}/`;
const kemPageKey = (accountId: string, deviceUid: number, pageId: string) =>
  `${kemPagePrefix(accountId, deviceUid)}${pageId}`;

/** Replaces a device's one key of a kind that is signed and kept until replaced (signed EC prekey, KEM last resort). */
function replaceSignedKey(
  db: D1Database,
  table: "signed_prekeys" | "kem_last_resort_keys",
  accountId: string,
  deviceUid: number,
  k: ECSignedPreKey | KEMSignedPreKey,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT OR REPLACE INTO ${table} (account_id, device_uid, key_id, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5)`,
    )
    .bind(accountId, deviceUid, k.keyId, k.publicKey, k.signature);
}

/** The one-time keys a device has left: EC prekeys, then KEM keys in ready pages (each answers one row `n`). */
function countStatements(db: D1Database, accountId: string, deviceUid: number): D1PreparedStatement[] {
  return [
    db
      .prepare("SELECT count(*) AS n FROM ec_prekeys WHERE account_id = ?1 AND device_uid = ?2")
      .bind(accountId, deviceUid),
    db
      .prepare(
        "SELECT coalesce(sum(key_count - next_index), 0) AS n FROM kem_prekey_pages WHERE account_id = ?1 AND device_uid = ?2 AND ready = 1",
      )
      .bind(accountId, deviceUid),
  ];
}

/** A device as the directory's account and device rows hold it. */
export interface DeviceRowInput {
  accountId: string;
  identityKey: string;
  deviceId: number;
  deviceUid: number;
  registrationId: number;
  createdAt: number;
}

/** Writes the account row and the device row (idempotent upserts). */
export function deviceRowStatements(db: D1Database, a: DeviceRowInput): D1PreparedStatement[] {
  return [
    db
      .prepare("INSERT OR IGNORE INTO accounts (account_id, identity_key, created_at) VALUES (?1, ?2, ?3)")
      .bind(a.accountId, a.identityKey, a.createdAt),
    db
      .prepare(
        "INSERT OR REPLACE INTO devices (account_id, device_id, device_uid, registration_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
      )
      .bind(a.accountId, a.deviceId, a.deviceUid, a.registrationId, a.createdAt),
  ];
}

/** Stores a device's keys: replaces the signed and last-resort keys, adds one-time keys, ignoring re-sent ids. */
export async function putDeviceKeys(
  db: D1Database,
  pages: R2Bucket,
  accountId: string,
  deviceUid: number,
  keys: DeviceKeysInput,
  extra: D1PreparedStatement[] = [],
): Promise<void> {
  const stmts: D1PreparedStatement[] = [...extra];
  if (keys.signedPreKey) stmts.push(replaceSignedKey(db, "signed_prekeys", accountId, deviceUid, keys.signedPreKey));
  if (keys.pqLastResortPreKey)
    stmts.push(replaceSignedKey(db, "kem_last_resort_keys", accountId, deviceUid, keys.pqLastResortPreKey));
  // seq orders claims oldest first: upload time, then position within the upload.
  const base = Date.now() * 1024;
  for (const [i, k] of (keys.preKeys ?? []).entries()) {
    stmts.push(
      db
        .prepare(
          "INSERT OR IGNORE INTO ec_prekeys (account_id, device_uid, key_id, seq, public_key) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(accountId, deviceUid, k.keyId, base + i, k.publicKey),
    );
  }
  if (stmts.length) await db.batch(stmts);
  if (keys.pqPreKeys?.length) await addKemPage(db, pages, accountId, deviceUid, keys.pqPreKeys);
}

/**
 * Adds one-time KEM keys as one immutable R2 page. The ids are recorded first (a re-sent id is ignored, even
 * by a concurrent upload, because the id row is the primary key); only the keys whose ids were new go into the
 * page; the page becomes claimable once its object is written. If R2 fails, the id rows are taken back.
 */
async function addKemPage(
  db: D1Database,
  pages: R2Bucket,
  accountId: string,
  deviceUid: number,
  keys: KEMSignedPreKey[],
) {
  const pageId = crypto.randomUUID();
  const now = Date.now();
  const results = await db.batch<{ key_id: number }>([
    db
      .prepare(
        "INSERT INTO kem_prekey_pages (page_id, account_id, device_uid, key_count, next_index, ready, created_at) VALUES (?1, ?2, ?3, 0, 0, 0, ?4)",
      )
      .bind(pageId, accountId, deviceUid, now),
    ...keys.map((k) =>
      db
        .prepare(
          "INSERT OR IGNORE INTO kem_prekey_ids (account_id, device_uid, key_id, page_seq) VALUES (?1, ?2, ?3, (SELECT seq FROM kem_prekey_pages WHERE page_id = ?4)) RETURNING key_id",
        )
        .bind(accountId, deviceUid, k.keyId, pageId),
    ),
  ]);
  const fresh = new Set<number>();
  for (const r of results.slice(1)) for (const row of r.results) fresh.add(row.key_id);
  const chosen: KEMSignedPreKey[] = [];
  for (const k of keys) if (fresh.delete(k.keyId)) chosen.push(k); // keeps upload order, drops repeats within the upload
  if (chosen.length === 0) {
    await db.prepare("DELETE FROM kem_prekey_pages WHERE page_id = ?1").bind(pageId).run();
    return;
  }
  const body = new Uint8Array(chosen.length * KEM_RECORD_BYTES);
  chosen.forEach((k, i) => {
    const off = i * KEM_RECORD_BYTES;
    new DataView(body.buffer).setUint32(off, k.keyId);
    body.set(fromBase64(k.publicKey), off + 4);
    body.set(fromBase64(k.signature), off + 4 + KEM_PUBLIC_KEY_BYTES);
  });
  try {
    await pages.put(kemPageKey(accountId, deviceUid, pageId), body);
  } catch (e) {
    await db.batch(dropPageStatements(db, accountId, deviceUid, pageId));
    throw e;
  }
  await db
    .prepare("UPDATE kem_prekey_pages SET key_count = ?2, ready = 1 WHERE page_id = ?1")
    .bind(pageId, chosen.length)
    .run();
}

export async function countPreKeys(
  db: D1Database,
  accountId: string,
  deviceUid: number,
): Promise<{ count: number; pqCount: number }> {
  const [ec, kem] = await db.batch<{ n: number }>(countStatements(db, accountId, deviceUid));
  return { count: ec!.results[0]?.n ?? 0, pqCount: kem!.results[0]?.n ?? 0 };
}

/**
 * The one-time keys of each kind the device would hold once `keys` is stored: what it holds now plus the ids in
 * the upload not stored yet (a re-sent id is ignored by the upload, so a retried upload is not counted twice).
 * One D1 batch of counts; the caller runs uploads for a device one at a time, so nothing lands in between.
 */
export async function countAfterUpload(
  db: D1Database,
  accountId: string,
  deviceUid: number,
  keys: DeviceKeysInput,
): Promise<{ count: number; pqCount: number }> {
  const ec = [...new Set((keys.preKeys ?? []).map((k) => k.keyId))];
  const kem = [...new Set((keys.pqPreKeys ?? []).map((k) => k.keyId))];
  const known = (table: "ec_prekeys" | "kem_prekey_ids", ids: number[]) =>
    db
      .prepare(
        `SELECT count(*) AS n FROM ${table} WHERE account_id = ?1 AND device_uid = ?2 AND key_id IN (SELECT value FROM json_each(?3))`,
      )
      .bind(accountId, deviceUid, JSON.stringify(ids));
  const [held, heldPq, knownEc, knownKem] = await db.batch<{ n: number }>([
    ...countStatements(db, accountId, deviceUid),
    known("ec_prekeys", ec),
    known("kem_prekey_ids", kem),
  ]);
  const n = (r: D1Result<{ n: number }> | undefined) => Number(r?.results[0]?.n ?? 0);
  return { count: n(held) + ec.length - n(knownEc), pqCount: n(heldPq) + kem.length - n(knownKem) };
}

export interface ClaimTarget {
  deviceId: number;
  deviceUid: number;
  registrationId: number;
  /**
   * Whether this claim may take one-time keys: false once the device's claim budget is spent, and the bundle then
   * carries its signed prekey and last-resort KEM key only (a session still starts; the stock is not drained).
   */
  oneTime: boolean;
}

export interface ClaimedDevice extends BundleDevice {
  /** One-time keys left after this claim, so the account object can warn a device running low. */
  remaining: { count: number; pqCount: number };
}

/**
 * Claims one bundle per device in one D1 transaction: the signed prekey, the oldest one-time EC key (deleted),
 * the oldest one-time KEM key (cursor advanced) or the last-resort key, then reads the KEM records from R2.
 * A target whose `oneTime` is false gets neither one-time key. A device with no signed prekey or last-resort
 * key yet (its keys are still being written) is left out.
 */
export async function claimBundles(
  db: D1Database,
  pages: R2Bucket,
  accountId: string,
  targets: ClaimTarget[],
  waitUntil: (p: Promise<unknown>) => void,
): Promise<ClaimedDevice[]> {
  const stmts: D1PreparedStatement[] = [];
  /** Adds a statement to the batch; answers where its result will be. */
  const add = (s: D1PreparedStatement) => stmts.push(s) - 1;
  const slots = targets.map((t) => ({
    spk: add(
      db
        .prepare("SELECT key_id, public_key, signature FROM signed_prekeys WHERE account_id = ?1 AND device_uid = ?2")
        .bind(accountId, t.deviceUid),
    ),
    ec: t.oneTime
      ? add(
          db
            .prepare(
              "DELETE FROM ec_prekeys WHERE account_id = ?1 AND device_uid = ?2 AND key_id = (SELECT key_id FROM ec_prekeys WHERE account_id = ?1 AND device_uid = ?2 ORDER BY seq LIMIT 1) RETURNING key_id, public_key",
            )
            .bind(accountId, t.deviceUid),
        )
      : -1,
    page: t.oneTime
      ? add(
          db
            .prepare(
              `UPDATE kem_prekey_pages SET next_index = next_index + 1
           WHERE seq = (SELECT seq FROM kem_prekey_pages WHERE account_id = ?1 AND device_uid = ?2 AND ready = 1 AND next_index < key_count ORDER BY seq LIMIT 1)
           RETURNING page_id, next_index - 1 AS idx, key_count`,
            )
            .bind(accountId, t.deviceUid),
        )
      : -1,
    lastResort: add(
      db
        .prepare(
          "SELECT key_id, public_key, signature FROM kem_last_resort_keys WHERE account_id = ?1 AND device_uid = ?2",
        )
        .bind(accountId, t.deviceUid),
    ),
    counts: countStatements(db, accountId, t.deviceUid).map(add),
  }));
  const results = await db.batch<Record<string, unknown>>(stmts);
  const out: ClaimedDevice[] = [];
  await Promise.all(
    targets.map(async (t, i) => {
      const at = slots[i]!;
      const row = (slot: number) =>
        slot < 0 ? undefined : (results[slot]!.results[0] as Record<string, unknown> | undefined);
      const spk = row(at.spk) as { key_id: number; public_key: string; signature: string } | undefined;
      const ec = row(at.ec) as { key_id: number; public_key: string } | undefined;
      const page = row(at.page) as { page_id: string; idx: number; key_count: number } | undefined;
      const lastResort = row(at.lastResort) as { key_id: number; public_key: string; signature: string } | undefined;
      const remaining = { count: Number(row(at.counts[0]!)?.n ?? 0), pqCount: Number(row(at.counts[1]!)?.n ?? 0) };
      if (!spk || !lastResort) return;
      let pq: KEMSignedPreKey | undefined;
      if (page) {
        const key = kemPageKey(accountId, t.deviceUid, page.page_id);
        const obj = await pages.get(key, { range: { offset: page.idx * KEM_RECORD_BYTES, length: KEM_RECORD_BYTES } });
        if (obj) {
          const rec = new Uint8Array(await obj.arrayBuffer());
          if (rec.length === KEM_RECORD_BYTES) {
            pq = {
              keyId: new DataView(rec.buffer, rec.byteOffset).getUint32(0),
              publicKey: toBase64(rec.subarray(4, 4 + KEM_PUBLIC_KEY_BYTES)),
              signature: toBase64(rec.subarray(4 + KEM_PUBLIC_KEY_BYTES)),
            };
          }
        }
        if (page.idx + 1 >= page.key_count)
          waitUntil(dropKemPage(db, pages, key, accountId, t.deviceUid, page.page_id));
      }
      pq ??= { keyId: lastResort.key_id, publicKey: lastResort.public_key, signature: lastResort.signature };
      out.push({
        deviceId: t.deviceId,
        registrationId: t.registrationId,
        signedPreKey: { keyId: spk.key_id, publicKey: spk.public_key, signature: spk.signature },
        ...(ec ? { preKey: { keyId: ec.key_id, publicKey: ec.public_key } } : {}),
        pqPreKey: pq,
        remaining,
      });
    }),
  );
  return out.sort((a, b) => a.deviceId - b.deviceId);
}

function dropPageStatements(
  db: D1Database,
  accountId: string,
  deviceUid: number,
  pageId: string,
): D1PreparedStatement[] {
  return [
    db
      .prepare(
        "DELETE FROM kem_prekey_ids WHERE account_id = ?1 AND device_uid = ?2 AND page_seq = (SELECT seq FROM kem_prekey_pages WHERE page_id = ?3)",
      )
      .bind(accountId, deviceUid, pageId),
    db.prepare("DELETE FROM kem_prekey_pages WHERE page_id = ?1").bind(pageId),
  ];
}

/** A fully claimed page: its object and rows go (its ids may then be uploaded again, as claimed EC ids may). */
async function dropKemPage(
  db: D1Database,
  pages: R2Bucket,
  key: string,
  accountId: string,
  deviceUid: number,
  pageId: string,
) {
  try {
    await pages.delete(key);
    await db.batch(dropPageStatements(db, accountId, deviceUid, pageId));
  } catch (e) {
    // Harmless to leave: an exhausted page is never claimed again; account or device deletion removes it.
    log("warn", { event: "kem_page_cleanup_failed", error: String(e) });
  }
}

/** Removes every directory row and KEM page of one device (idempotent). */
export async function deleteDeviceKeys(
  db: D1Database,
  pages: R2Bucket,
  accountId: string,
  deviceId: number,
  deviceUid: number,
) {
  await db.batch([
    db
      .prepare("DELETE FROM devices WHERE account_id = ?1 AND device_id = ?2 AND device_uid = ?3")
      .bind(accountId, deviceId, deviceUid),
    ...["signed_prekeys", "kem_last_resort_keys", "ec_prekeys", "kem_prekey_pages", "kem_prekey_ids"].map((t) =>
      db.prepare(`DELETE FROM ${t} WHERE account_id = ?1 AND device_uid = ?2`).bind(accountId, deviceUid),
    ),
  ]);
  await deletePrefix(pages, kemPagePrefix(accountId, deviceUid));
}

/** Removes every directory row and KEM page of an account (idempotent). */
export async function deleteAccountRows(db: D1Database, pages: R2Bucket, accountId: string) {
  await db.batch(
    [
      "accounts",
      "devices",
      "signed_prekeys",
      "kem_last_resort_keys",
      "ec_prekeys",
      "kem_prekey_pages",
      "kem_prekey_ids",
      "username_links",
    ].map((t) => db.prepare(`DELETE FROM ${t} WHERE account_id = ?1`).bind(accountId)),
  );
  await deletePrefix(pages, kemPagePrefix(accountId));
}

export async function deletePrefix(bucket: R2Bucket, prefix: string) {
  let cursor: string | undefined;
  do {
    const list = await bucket.list({ prefix, ...(cursor ? { cursor } : {}) });
    if (list.objects.length) await bucket.delete(list.objects.map((o) => o.key));
    cursor = list.truncated ? list.cursor : undefined;
  } while (cursor);
}
