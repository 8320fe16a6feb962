// Exact limits counted in a small Durable Object per limited party: a client network (challenges, registrations;
// an IPv6 client by its /64, so rotating addresses inside one subscriber's network gains nothing) or a device
// (upload creation). Neither the address nor the account is stored or logged: an object's name is a SHA-256.
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

/** The eight 16-bit groups of an IPv6 address in any RFC 4291 text form (`::`, an embedded IPv4 tail), or null. */
function ipv6Groups(text: string): number[] | null {
  let s = text.toLowerCase().replace(/%.*$/, ""); // a zone id names an interface, not a network
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const b = v4.slice(1).map(Number);
    if (b.some((x) => x > 255)) return null;
    s = `${s.slice(0, v4.index)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string) => (part === "" ? [] : part.split(":"));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return null;
  return groups.map((g) => Number.parseInt(g, 16));
}

/**
 * What a client address is limited as: an IPv4 address itself; an IPv6 address by its first `prefixBits` bits
 * (a subscriber gets a whole /64 or more and can pick any address in it); an IPv4-mapped IPv6 address as the
 * IPv4 address it maps. Anything else (a proxy's placeholder) is used as it is.
 */
export function ipLimitKey(ip: string, prefixBits: number): string {
  if (!ip.includes(":")) return ip;
  const g = ipv6Groups(ip);
  if (!g) return ip;
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff)
    return [g[6]! >> 8, g[6]! & 255, g[7]! >> 8, g[7]! & 255].join(".");
  const masked = g.map((x, i) => {
    const keep = Math.max(0, Math.min(16, prefixBits - 16 * i));
    return keep === 0 ? 0 : x & ~((1 << (16 - keep)) - 1) & 0xffff;
  });
  return `${masked.map((x) => x.toString(16)).join(":")}/${prefixBits}`;
}

/** Counts one `purpose` event in the limiter object of `party` (a namespaced name, hashed). */
async function take(env: Cloudflare.Env, party: string, purpose: string, limit: number, windowSeconds: number) {
  const name = await sha256Hex(utf8(`cipherpost-${party}`));
  return env.RATE_LIMITER.getByName(name).take(purpose, limit, windowSeconds);
}

/** Counts one `purpose` event for the client network of `ip` (see ipLimitKey). */
export function limitByIp(
  env: Cloudflare.Env,
  ip: string,
  ipv6PrefixBits: number,
  purpose: string,
  limit: number,
  windowSeconds: number,
): Promise<RateDecision> {
  return take(env, `ip:${ipLimitKey(ip, ipv6PrefixBits)}`, purpose, limit, windowSeconds);
}

/** Counts one `purpose` event for a device (by its uid, which a later device reusing the device id never has). */
export function limitByDevice(
  env: Cloudflare.Env,
  device: { accountId: string; deviceUid: number },
  purpose: string,
  limit: number,
  windowSeconds: number,
): Promise<RateDecision> {
  return take(env, `device:${device.accountId}:${device.deviceUid}`, purpose, limit, windowSeconds);
}
