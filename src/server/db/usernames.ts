// Username rows (on the shard the hash's bucket picks) and username links (on the owner's shard: a handle begins
// with the owner's bucket digits). Each write is one statement or one batch on one shard, so the primary key on
// the hash decides every race: of any number of concurrent reservations of one hash, one statement takes it.
import type { Config } from "../config.ts";
import { allShards, shardFor } from "./shards.ts";

/**
 * Reserves `hash` for `accountId` until `expiresAt`, unless someone else holds it: a confirmed name (anyone's,
 * this account's too), a live reservation of another account, or another account's tombstone before it
 * expires. True when this account now holds the reservation.
 */
export async function reserveUsername(
  env: object,
  config: Config,
  hash: string,
  accountId: string,
  now: number,
  expiresAt: number,
): Promise<boolean> {
  const row = await shardFor(env, config, hash)
    .prepare(
      `INSERT INTO usernames (username_hash, account_id, state, expires_at) VALUES (?1, ?2, 'reserved', ?3)
       ON CONFLICT (username_hash) DO UPDATE SET account_id = excluded.account_id, state = 'reserved', expires_at = excluded.expires_at
       WHERE usernames.state <> 'confirmed' AND (usernames.expires_at <= ?4 OR usernames.account_id = ?2)
       RETURNING account_id`,
    )
    .bind(hash, accountId, expiresAt, now)
    .first<{ account_id: string }>();
  return row?.account_id === accountId;
}

/** Turns this account's live reservation of `hash` into its confirmed name; false when it holds none. */
export async function confirmUsername(
  env: object,
  config: Config,
  hash: string,
  accountId: string,
  now: number,
): Promise<boolean> {
  const row = await shardFor(env, config, hash)
    .prepare(
      `UPDATE usernames SET state = 'confirmed', expires_at = NULL
       WHERE username_hash = ?1 AND account_id = ?2 AND state = 'reserved' AND expires_at > ?3 RETURNING 1 AS done`,
    )
    .bind(hash, accountId, now)
    .first();
  return row !== null;
}

/**
 * Frees this account's confirmed `hash` (or its reservation of it): a confirmed name becomes a tombstone that only
 * this account can take back until `holdUntil`; a reservation simply goes. Idempotent.
 */
export async function releaseUsername(
  env: object,
  config: Config,
  hash: string,
  accountId: string,
  holdUntil: number,
): Promise<void> {
  const db = shardFor(env, config, hash);
  await db.batch([
    db
      .prepare(
        "UPDATE usernames SET state = 'released', expires_at = ?3 WHERE username_hash = ?1 AND account_id = ?2 AND state = 'confirmed'",
      )
      .bind(hash, accountId, holdUntil),
    db
      .prepare("DELETE FROM usernames WHERE username_hash = ?1 AND account_id = ?2 AND state = 'reserved'")
      .bind(hash, accountId),
  ]);
}

/** The account whose confirmed name `hash` is, or null (never existed, reserved, released or expired alike). */
export async function lookupUsername(env: object, config: Config, hash: string): Promise<string | null> {
  const row = await shardFor(env, config, hash)
    .prepare("SELECT account_id FROM usernames WHERE username_hash = ?1 AND state = 'confirmed'")
    .bind(hash)
    .first<{ account_id: string }>();
  return row?.account_id ?? null;
}

/** Replaces the account's link (if any) by one under `handle`: one batch, so the old handle stops at once. */
export async function putUsernameLink(
  env: object,
  config: Config,
  accountId: string,
  handle: string,
  ciphertext: string,
): Promise<void> {
  const db = shardFor(env, config, accountId);
  await db.batch([
    db.prepare("DELETE FROM username_links WHERE account_id = ?1").bind(accountId),
    db
      .prepare("INSERT INTO username_links (account_id, handle, ciphertext) VALUES (?1, ?2, ?3)")
      .bind(accountId, handle, ciphertext),
  ]);
}

export async function deleteUsernameLink(env: object, config: Config, accountId: string): Promise<void> {
  await shardFor(env, config, accountId)
    .prepare("DELETE FROM username_links WHERE account_id = ?1")
    .bind(accountId)
    .run();
}

/** The ciphertext under `handle`, or null. The handle's first three digits are its owner's bucket. */
export async function getUsernameLink(env: object, config: Config, handle: string): Promise<string | null> {
  const row = await shardFor(env, config, handle)
    .prepare("SELECT ciphertext FROM username_links WHERE handle = ?1")
    .bind(handle)
    .first<{ ciphertext: string }>();
  return row?.ciphertext ?? null;
}

/** Cron: removes reservations and tombstones past their time (a later reservation would overwrite them anyway). */
export async function sweepUsernames(env: object, config: Config, now: number): Promise<number> {
  let removed = 0;
  for (const { db } of allShards(env, config)) {
    const r = await db
      .prepare("DELETE FROM usernames WHERE state <> 'confirmed' AND expires_at IS NOT NULL AND expires_at <= ?1")
      .bind(now)
      .run();
    removed += r.meta.changes ?? 0;
  }
  return removed;
}
