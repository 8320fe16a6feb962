// Per-client-IP limits (challenges, registrations) counted exactly in a small Durable Object per hashed IP.
// The IP itself is never stored or logged: the object's name is a SHA-256 of it.
import { DurableObject } from "cloudflare:workers";
import { utf8 } from "../crypto/bytes.ts";
import { systemClock, type Clock } from "../protocol/clock.ts";
import { sha256Hex } from "./account/credentials.ts";
import { RateWindow, type RateDecision } from "./account/rate-window.ts";

export class RateLimiter extends DurableObject<Cloudflare.Env> {
  /** The object's only source of time; a test may replace it (runInDurableObject) to move time. */
  clock: Clock = systemClock;
  private readonly rates: RateWindow;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    this.rates = new RateWindow(ctx.storage.sql);
    this.rates.createTables();
  }

  async take(key: string, limit: number, windowSeconds: number): Promise<RateDecision> {
    return this.rates.take(key, limit, windowSeconds, this.clock.now());
  }
}

export async function limitByIp(
  env: Cloudflare.Env,
  ip: string,
  purpose: string,
  limit: number,
  windowSeconds: number,
): Promise<RateDecision> {
  const name = await sha256Hex(utf8(`cipherpost-ip:${ip}`));
  return env.RATE_LIMITER.getByName(name).take(purpose, limit, windowSeconds);
}
