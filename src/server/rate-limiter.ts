// Per-client-IP limits (challenges, registrations) counted exactly in a small Durable Object per hashed IP.
// The IP itself is never stored or logged: the object's name is a SHA-256 of it.
import { DurableObject } from "cloudflare:workers";
import { RateWindow, type RateDecision } from "./account/rate-window.ts";

export class RateLimiter extends DurableObject<Cloudflare.Env> {
  private readonly rates: RateWindow;
  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    this.rates = new RateWindow(ctx.storage.sql);
    this.rates.migrate();
  }

  async take(key: string, limit: number, windowSeconds: number): Promise<RateDecision> {
    return this.rates.take(key, limit, windowSeconds);
  }
}

export async function limitByIp(
  env: Cloudflare.Env,
  ip: string,
  purpose: string,
  limit: number,
  windowSeconds: number,
): Promise<RateDecision> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`cipherpost-ip:${ip}`)));
  const name = [...digest].map((x) => x.toString(16).padStart(2, "0")).join("");
  return env.RATE_LIMITER.getByName(name).take(purpose, limit, windowSeconds);
}
