// Proof-of-work challenges: issued with a difficulty and an expiry, stored on the shard their first bytes
// pick, deleted by the registration that uses them (so each works once), swept by cron when they expire.
import { randomBytes, toBase64, toHex } from "../../crypto/bytes.ts";
import { POW_CHALLENGE_BYTES } from "../../protocol/limits.ts";
import type { Config } from "../config.ts";
import { allShards, shardFor } from "./shards.ts";

/** The shard of a challenge: its first bytes, as hex, pick the bucket as an account id's first digits do. */
const shardKey = (b: Uint8Array) => toHex(b.subarray(0, 2));

/** A new challenge of `difficulty` bits (the adaptive one, registration-rate.ts), stored with it: it is what counts. */
export async function issueChallenge(env: object, config: Config, now: number, difficulty: number) {
  const bytes = randomBytes(POW_CHALLENGE_BYTES);
  const challenge = toBase64(bytes);
  const expiresAt = now + config.POW_CHALLENGE_TTL_SECONDS * 1000;
  await shardFor(env, config, shardKey(bytes))
    .prepare("INSERT INTO pow_challenges (challenge, difficulty, expires_at) VALUES (?1, ?2, ?3)")
    .bind(challenge, difficulty, expiresAt)
    .run();
  return { challenge, difficulty, expiresAt };
}

/** The stored difficulty of a live challenge, or null when it is unknown, used or expired. */
export async function peekChallenge(env: object, config: Config, bytes: Uint8Array, challenge: string, now: number) {
  const row = await shardFor(env, config, shardKey(bytes))
    .prepare("SELECT difficulty FROM pow_challenges WHERE challenge = ?1 AND expires_at > ?2")
    .bind(challenge, now)
    .first<{ difficulty: number }>();
  return row ? row.difficulty : null;
}

/** Deletes the challenge; true only for the one caller that deleted it while it was live. */
export async function consumeChallenge(env: object, config: Config, bytes: Uint8Array, challenge: string, now: number) {
  const row = await shardFor(env, config, shardKey(bytes))
    .prepare("DELETE FROM pow_challenges WHERE challenge = ?1 AND expires_at > ?2 RETURNING difficulty")
    .bind(challenge, now)
    .first();
  return row !== null;
}

export async function sweepChallenges(env: object, config: Config, now: number) {
  let removed = 0;
  for (const { db } of allShards(env, config)) {
    const r = await db.prepare("DELETE FROM pow_challenges WHERE expires_at <= ?1").bind(now).run();
    removed += r.meta.changes ?? 0;
  }
  return removed;
}
