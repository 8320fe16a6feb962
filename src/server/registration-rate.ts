// The adaptive proof of work: the relay-wide registration rate, counted in POW_RATE_SHARD_COUNT RegistrationRate
// objects (each registration in one at random, so no single object takes a surge's whole rate), and the curve that
// turns it into a challenge's difficulty: POW_DIFFICULTY_BITS at a normal rate, one bit more per doubling above it.
import { DurableObject } from "cloudflare:workers";
import { systemClock, type Clock } from "../protocol/clock.ts";
import type { Config } from "./config.ts";
import { log } from "./log.ts";

/** A window is counted in this many time buckets: the rate forgets a flood in steps of a twelfth of the window. */
const BUCKETS_PER_WINDOW = 12;
/** How long an isolate reuses the rate it read (one read of every shard per isolate per this long, at most). */
export const RATE_CACHE_MS = 5000;

export class RegistrationRate extends DurableObject<Cloudflare.Env> {
  /** The object's only source of time; a test may replace it (runInDurableObject) to move time. */
  clock: Clock = systemClock;
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS buckets (start INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
  }

  /** Counts one registration now, and forgets buckets that have left every window this object is asked about. */
  async record(windowSeconds: number): Promise<void> {
    const bucketMs = (windowSeconds * 1000) / BUCKETS_PER_WINDOW;
    const now = this.clock.now();
    const start = Math.floor(now / bucketMs) * bucketMs;
    this.sql.exec("INSERT INTO buckets (start, n) VALUES (?, 1) ON CONFLICT (start) DO UPDATE SET n = n + 1", start);
    this.sql.exec("DELETE FROM buckets WHERE start < ?", now - 2 * windowSeconds * 1000);
  }

  /** Registrations this object counted in the last `windowSeconds` (to a bucket's precision). */
  async count(windowSeconds: number): Promise<number> {
    const since = this.clock.now() - windowSeconds * 1000;
    const bucketMs = (windowSeconds * 1000) / BUCKETS_PER_WINDOW;
    return this.sql
      .exec<{ n: number }>("SELECT coalesce(sum(n), 0) AS n FROM buckets WHERE start > ?", since - bucketMs)
      .one().n;
  }
}

const shard = (env: Cloudflare.Env, i: number) => env.REGISTRATION_RATE.getByName(`registrations:${i}`);

/** Counts a new account in one shard, picked at random. A failure costs the count, never the registration. */
export async function recordRegistration(env: Cloudflare.Env, cfg: Config): Promise<void> {
  try {
    await shard(env, Math.floor(Math.random() * cfg.POW_RATE_SHARD_COUNT)).record(cfg.POW_RATE_WINDOW_SECONDS);
  } catch (e) {
    log("warn", { event: "registration_rate_unrecorded", error: String(e) });
  }
}

/**
 * The difficulty for a relay-wide rate of `registrations` per POW_RATE_WINDOW_SECONDS: POW_DIFFICULTY_BITS up to
 * POW_NORMAL_REGISTRATIONS_LIMIT, then one bit more per doubling (ceil(log2(rate / normal))), at most
 * POW_MAX_DIFFICULTY_BITS (never less than POW_DIFFICULTY_BITS). Each bit doubles a solver's expected work.
 */
export function difficultyFor(registrations: number, cfg: Config): number {
  const base = cfg.POW_DIFFICULTY_BITS;
  const normal = cfg.POW_NORMAL_REGISTRATIONS_LIMIT;
  if (registrations <= normal) return base;
  return Math.min(Math.max(base, cfg.POW_MAX_DIFFICULTY_BITS), base + Math.ceil(Math.log2(registrations / normal)));
}

/** The sum of every shard's count: the relay-wide registrations in the window. */
async function readRate(env: Cloudflare.Env, cfg: Config): Promise<number> {
  const counts = await Promise.all(
    Array.from({ length: cfg.POW_RATE_SHARD_COUNT }, (_, i) => shard(env, i).count(cfg.POW_RATE_WINDOW_SECONDS)),
  );
  return counts.reduce((a, b) => a + b, 0);
}

/** Per env object (one per isolate in production): when the rate was read, and the read (shared while pending). */
const cached = new WeakMap<object, { at: number; rate: Promise<number> }>();

/**
 * The difficulty for a challenge issued at `now`. The rate is read from every shard at most once per isolate per
 * RATE_CACHE_MS; when the shards do not answer, the last rate read stands (0 at first: today's difficulty).
 */
export async function currentDifficulty(env: Cloudflare.Env, cfg: Config, now: number): Promise<number> {
  const hit = cached.get(env);
  if (!hit || now - hit.at >= RATE_CACHE_MS || now < hit.at) {
    const previous = hit?.rate ?? Promise.resolve(0);
    const rate = readRate(env, cfg).catch(async (e: unknown) => {
      log("warn", { event: "registration_rate_unread", error: String(e) });
      return previous;
    });
    cached.set(env, { at: now, rate });
  }
  return difficultyFor(await cached.get(env)!.rate, cfg);
}
