// Every tunable of the relay, parsed once from the Worker's vars by one zod schema. A value that does not
// parse is never replaced by a guess: the relay answers 503 MISCONFIGURED naming the variable, and /health
// says the same. Defaults here equal the ones in wrangler.toml and docs/configuration.md.
import { z } from "zod";
import {
  cloudflareApiUrl,
  missingVars as missingCallVars,
  turnApiToken,
  turnKeyId,
  turnProvider,
  turnSecret,
  turnUrls,
} from "./calls/config.ts";
import { LOG_LEVELS, setLogLevel } from "./log.ts";
import { DEFAULT_PUSH_HOSTS, parseHostPatterns, type PushHosts } from "./push/endpoint-policy.ts";
import { parseVapidKey, type VapidKey } from "./push/webpush.ts";

/** Buckets an account id falls into; SHARD_MAP assigns contiguous bucket ranges to D1 bindings. */
export const SHARD_BUCKETS = 4096;

const int = (min: number, max: number, dflt: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return dflt;
      if (!/^-?\d+$/.test(v.trim())) {
        ctx.addIssue({ code: "custom", message: `must be a whole number, got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      const n = Number(v.trim());
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: "custom", message: `must be between ${min} and ${max}, got ${v}` });
        return z.NEVER;
      }
      return n;
    });

/** A true/false switch; "" or unset is the default. */
const bool = (dflt: boolean) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      const text = v?.trim() ?? "";
      if (text === "") return dflt;
      if (text === "true" || text === "false") return text === "true";
      ctx.addIssue({ code: "custom", message: `must be true or false, got ${JSON.stringify(v)}` });
      return z.NEVER;
    });

export interface ShardRange {
  from: number;
  to: number;
  binding: string;
}

const shardMap = z
  .string()
  .optional()
  .transform((v, ctx): ShardRange[] => {
    const text = v === undefined || v === "" ? "0-4095:DB_0" : v;
    const ranges: ShardRange[] = [];
    for (const part of text.split(",")) {
      const m = /^\s*(\d+)-(\d+):([A-Z][A-Z0-9_]*)\s*$/.exec(part);
      if (!m) {
        ctx.addIssue({ code: "custom", message: `entry ${JSON.stringify(part)} is not FROM-TO:BINDING` });
        return z.NEVER;
      }
      ranges.push({ from: Number(m[1]), to: Number(m[2]), binding: m[3]! });
    }
    ranges.sort((a, b) => a.from - b.from);
    let next = 0;
    for (const r of ranges) {
      if (r.from !== next || r.to < r.from) {
        ctx.addIssue({
          code: "custom",
          message: `buckets must be covered once each from 0 to ${SHARD_BUCKETS - 1}; gap or overlap at ${next}`,
        });
        return z.NEVER;
      }
      next = r.to + 1;
    }
    if (next !== SHARD_BUCKETS) {
      ctx.addIssue({
        code: "custom",
        message: `buckets must be covered up to ${SHARD_BUCKETS - 1}; they stop at ${next - 1}`,
      });
      return z.NEVER;
    }
    return ranges;
  });

export const ConfigSchema = z.object({
  SHARD_MAP: shardMap,
  MAX_DEVICES: int(1, 127, 6),
  POW_DIFFICULTY_BITS: int(0, 32, 16),
  POW_CHALLENGE_TTL_SECONDS: int(10, 86_400, 300),
  CHALLENGES_PER_IP_LIMIT: int(1, 1_000_000_000, 60),
  CHALLENGES_PER_IP_WINDOW_SECONDS: int(1, 86_400, 3600),
  REGISTRATIONS_PER_IP_LIMIT: int(1, 1_000_000_000, 20),
  REGISTRATIONS_PER_IP_WINDOW_SECONDS: int(1, 86_400, 3600),
  // The per-IP limits key an IPv6 client on this prefix (one subscriber's network), an IPv4 one on its address.
  IPV6_RATE_LIMIT_PREFIX_BITS: int(32, 128, 64),
  // The adaptive proof of work (registration-rate.ts): POW_DIFFICULTY_BITS while at most
  // POW_NORMAL_REGISTRATIONS_LIMIT accounts are created per POW_RATE_WINDOW_SECONDS, relay-wide; one bit more per
  // doubling above it, up to POW_MAX_DIFFICULTY_BITS. The rate is counted in POW_RATE_SHARD_COUNT objects.
  POW_MAX_DIFFICULTY_BITS: int(0, 32, 22),
  POW_NORMAL_REGISTRATIONS_LIMIT: int(1, 1_000_000_000, 60),
  POW_RATE_WINDOW_SECONDS: int(10, 3600, 60),
  POW_RATE_SHARD_COUNT: int(1, 64, 8),
  LINK_TOKEN_TTL_SECONDS: int(30, 3600, 600),
  LINK_TOKENS_PER_ACCOUNT_LIMIT: int(1, 1_000_000_000, 10),
  LINK_TOKENS_PER_ACCOUNT_WINDOW_SECONDS: int(1, 86_400, 3600),
  MAX_LINK_ENVELOPE_BYTES: int(1024, 1_048_576, 65_536),
  PREKEY_CLAIMS_PER_PAIR_LIMIT: int(1, 1_000_000_000, 6),
  PREKEY_CLAIMS_PER_PAIR_WINDOW_SECONDS: int(1, 86_400, 600),
  // Per target device, whoever asks: claims past it get no one-time keys (the last-resort KEM key instead).
  PREKEY_CLAIMS_PER_DEVICE_LIMIT: int(1, 1_000_000_000, 30),
  PREKEY_CLAIMS_PER_DEVICE_WINDOW_SECONDS: int(1, 86_400, 3600),
  // One-time keys of each kind a device may hold; at least one full upload (100).
  MAX_ONE_TIME_PREKEYS_PER_DEVICE: int(100, 1_000_000, 1000),
  KEY_UPLOADS_PER_DEVICE_LIMIT: int(1, 1_000_000_000, 20),
  KEY_UPLOADS_PER_DEVICE_WINDOW_SECONDS: int(1, 86_400, 3600),
  MAX_KEYS_REQUEST_BYTES: int(4096, 8_388_608, 393_216),
  // mailbox
  MAX_MESSAGE_BYTES: int(1, 1_048_576, 98_304),
  MAX_SEND_REQUEST_BYTES: int(65_536, 104_857_600, 8_388_608),
  MAX_GROUP_RECIPIENTS: int(1, 10_000, 1000),
  MESSAGE_TTL_SECONDS: int(60, 315_360_000, 2_592_000),
  QUEUE_MAX_MESSAGES: int(1, 1_000_000, 10_000),
  QUEUE_MAX_BYTES: int(1024, 1_073_741_824, 104_857_600),
  // Of each device queue, what one sending account (not the recipient's own) may fill.
  QUEUE_SENDER_MAX_MESSAGES: int(1, 1_000_000, 1000),
  QUEUE_SENDER_MAX_BYTES: int(1024, 1_073_741_824, 10_485_760),
  MAX_UNACKED_PER_CONNECTION: int(1, 1000, 100),
  IDLE_TIMEOUT_SECONDS: int(1, 3600, 90),
  // Deliveries: a group send counts each recipient, so the default fits one full group (MAX_GROUP_RECIPIENTS).
  SENDS_PER_DEVICE_LIMIT: int(1, 1_000_000_000, 1200),
  SENDS_PER_DEVICE_WINDOW_SECONDS: int(1, 86_400, 60),
  SENDS_PER_PAIR_LIMIT: int(1, 1_000_000_000, 120),
  SENDS_PER_PAIR_WINDOW_SECONDS: int(1, 86_400, 60),
  PREKEY_LOW_THRESHOLD: int(0, 100, 10),
  WS_TICKET_TTL_SECONDS: int(1, 600, 30),
  IDEMPOTENCY_TTL_SECONDS: int(60, 604_800, 600),
  // Idempotency answers an account object keeps in memory (besides the keys its queued copies carry).
  MAX_IDEMPOTENCY_ANSWERS: int(1, 1_000_000, 10_000),
  // A copy for a connected, caught-up device is pushed before it is stored and written only if its ack is not
  // back within this many ms; the send's answer waits at most this long for it. 0: every copy stored first.
  MAX_ACK_WAIT_MS: int(0, 5000, 500),
  // usernames: a reservation holds a name this long; a name freed by delete or change is held for its last
  // owner this long before anyone else can take it (so the old owner's contacts are not instantly hijacked).
  USERNAME_RESERVATION_TTL_SECONDS: int(10, 86_400, 300),
  USERNAME_RELEASE_TTL_SECONDS: int(0, 31_536_000, 604_800),
  USERNAME_RESERVATIONS_PER_ACCOUNT_LIMIT: int(1, 1_000_000_000, 20),
  USERNAME_RESERVATIONS_PER_ACCOUNT_WINDOW_SECONDS: int(1, 86_400, 3600),
  USERNAME_LOOKUPS_PER_ACCOUNT_LIMIT: int(1, 1_000_000_000, 100),
  USERNAME_LOOKUPS_PER_ACCOUNT_WINDOW_SECONDS: int(1, 86_400, 3600),
  USERNAME_LOOKUPS_PER_IP_LIMIT: int(1, 1_000_000_000, 300),
  USERNAME_LOOKUPS_PER_IP_WINDOW_SECONDS: int(1, 86_400, 3600),
  // attachments
  // Upload-Length above this is refused (tus Tus-Max-Size). R2 allows 10,000 parts, so it must also fit
  // 10,000 × UPLOAD_PART_BYTES; creation checks both.
  MAX_ATTACHMENT_BYTES: int(1, 5_497_558_138_880, 2_147_483_648),
  // One tus PATCH body at most; under the Workers 100 MiB request-body limit of the lower plans.
  MAX_PATCH_BYTES: int(1024, 104_857_600, 52_428_800),
  // The equal size of every R2 multipart part but the last (R2: at least 5 MiB); an upload object holds
  // about one part in memory, so it is capped well under the 128 MB isolate limit.
  UPLOAD_PART_BYTES: int(5_242_880, 67_108_864, 10_485_760),
  // A completed attachment is readable this long after its last byte arrived.
  ATTACHMENT_TTL_SECONDS: int(1, 31_536_000, 2_592_000),
  // An unfinished upload is aborted this long after creation (keep the R2 lifecycle rule for incomplete
  // multipart uploads at or above it; docs/deploy.md).
  UPLOAD_TTL_SECONDS: int(1, 604_800, 86_400),
  // Per account: bytes reserved by unfinished uploads (their Upload-Length).
  UPLOAD_QUOTA_BYTES: int(0, 1_099_511_627_776, 4_294_967_296),
  // Per account: bytes of stored attachments plus unfinished uploads' reservations.
  STORAGE_QUOTA_BYTES: int(0, 1_099_511_627_776, 10_737_418_240),
  // Per account: attachments and unfinished uploads held at once, whatever their size.
  MAX_ATTACHMENTS_PER_ACCOUNT: int(1, 1_000_000_000, 2000),
  // Per device: uploads created per window.
  UPLOADS_PER_DEVICE_LIMIT: int(1, 1_000_000_000, 300),
  UPLOADS_PER_DEVICE_WINDOW_SECONDS: int(1, 86_400, 3600),
  // Every upload counts at least this many bytes against both quotas, so small and empty ones are not free.
  MIN_UPLOAD_RESERVATION_BYTES: int(0, 1_073_741_824, 1_048_576),
  // push: a secret (wrangler secret put), never a [vars] entry; unset means no push wake-ups.
  VAPID_PRIVATE_KEY_JWK: z
    .string()
    .optional()
    .transform((v, ctx): VapidKey | null => {
      if (v === undefined || v === "") return null;
      const key = parseVapidKey(v);
      if (typeof key === "string") {
        ctx.addIssue({ code: "custom", message: key });
        return z.NEVER;
      }
      return key;
    }),
  // Who runs the relay, for push services (RFC 8292 "sub"): mailto: or https:. Required with a VAPID key.
  VAPID_SUBJECT: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const text = v?.trim() ?? "";
      if (text !== "" && !/^(mailto:[^\s@]+@[^\s@]+|https:\/\/\S+)$/.test(text)) {
        ctx.addIssue({ code: "custom", message: `must be a mailto: or https: URI, got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      return text;
    }),
  // At most one wake-up per device per this many seconds, however many messages arrive meanwhile.
  PUSH_MIN_INTERVAL_SECONDS: int(0, 3600, 10),
  // How long a push service keeps a wake-up for a device it cannot reach (the TTL header; 28 days at most).
  PUSH_TTL_SECONDS: int(0, 2_419_200, 86_400),
  // The hosts push endpoints may name (https, port 443): the browsers' push services; `*.` allows subdomains.
  PUSH_ALLOWED_HOSTS: z
    .string()
    .optional()
    .transform((v, ctx): PushHosts => {
      const hosts = parseHostPatterns(v === undefined || v.trim() === "" ? DEFAULT_PUSH_HOSTS : v);
      if (typeof hosts !== "string") return hosts;
      ctx.addIssue({ code: "custom", message: hosts });
      return z.NEVER;
    }),
  // Development only (npm start, test relays): endpoints on the loopback interface, http or https. A deploy refuses it.
  PUSH_ALLOW_LOOPBACK: bool(false),
  // calls (docs/calls.md): the TURN provider that mints ICE servers' credentials; unset, no calls (501).
  CALLS_TURN_PROVIDER: turnProvider,
  // cloudflare: the TURN key's id, and its API token, a secret (wrangler secret put); the API's base URL.
  CALLS_TURN_KEY_ID: turnKeyId,
  CALLS_TURN_API_TOKEN: turnApiToken,
  CALLS_CLOUDFLARE_API_URL: cloudflareApiUrl,
  // coturn: the server's stun:/turn:/turns: URIs, and its static-auth-secret, a secret (wrangler secret put).
  CALLS_TURN_URLS: turnUrls,
  CALLS_TURN_SECRET: turnSecret,
  // How long minted TURN credentials last; a call longer than this needs fresh ones and an ICE restart.
  CALLS_CREDENTIAL_TTL_SECONDS: int(60, 86_400, 3600),
  CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT: int(1, 1_000_000_000, 60),
  CALLS_ICE_REQUESTS_PER_DEVICE_WINDOW_SECONDS: int(1, 86_400, 3600),
  // logs: lines below this level are dropped (src/server/log.ts); "warn" keeps failures and drops the access log.
  LOG_LEVEL: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === "") return "info" as const;
      const level = LOG_LEVELS.find((l) => l === v);
      if (!level) {
        ctx.addIssue({ code: "custom", message: `must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      return level;
    }),
});

export type Config = z.output<typeof ConfigSchema>;

/** Settings that are secrets (wrangler secret put), so they have no [vars] entry in wrangler.toml. */
export const SECRET_VARS = ["VAPID_PRIVATE_KEY_JWK", "CALLS_TURN_API_TOKEN", "CALLS_TURN_SECRET"] as const;
export type ConfigVar = keyof typeof ConfigSchema.shape;

export class ConfigError extends Error {
  constructor(readonly problems: { variable: string; problem: string }[]) {
    super(`configuration does not parse: ${problems.map((p) => `${p.variable} ${p.problem}`).join("; ")}`);
  }
}

type ConfigResult = { ok: true; config: Config } | { ok: false; error: ConfigError };
const cache = new WeakMap<object, ConfigResult>();

/** Parses the vars once per env object (one per isolate in production) and remembers the verdict. */
export function loadConfig(env: object): ConfigResult {
  const hit = cache.get(env);
  if (hit) {
    setLogLevel(hit.ok ? hit.config.LOG_LEVEL : "info");
    return hit;
  }
  const vars = env as Record<string, unknown>;
  const input: Record<string, unknown> = {};
  for (const key of Object.keys(ConfigSchema.shape)) {
    const v = vars[key];
    input[key] = typeof v === "number" || typeof v === "boolean" ? String(v) : v;
  }
  const parsed = ConfigSchema.safeParse(input);
  let result: ConfigResult;
  if (!parsed.success) {
    result = {
      ok: false,
      error: new ConfigError(
        parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? "?"), problem: i.message })),
      ),
    };
  } else if (missingCallVars(parsed.data).length) {
    result = { ok: false, error: new ConfigError(missingCallVars(parsed.data)) };
  } else if (parsed.data.VAPID_PRIVATE_KEY_JWK && !parsed.data.VAPID_SUBJECT) {
    result = {
      ok: false,
      error: new ConfigError([
        { variable: "VAPID_SUBJECT", problem: "must be set (mailto: or https:) when VAPID_PRIVATE_KEY_JWK is" },
      ]),
    };
  } else {
    const missing = parsed.data.SHARD_MAP.filter((r) => !isD1(vars[r.binding]));
    result = missing.length
      ? {
          ok: false,
          error: new ConfigError(
            missing.map((r) => ({
              variable: "SHARD_MAP",
              problem: `names binding ${r.binding}, which is not a D1 database of this Worker`,
            })),
          ),
        }
      : { ok: true, config: parsed.data };
  }
  cache.set(env, result);
  setLogLevel(result.ok ? result.config.LOG_LEVEL : "info");
  return result;
}

function isD1(v: unknown): boolean {
  return typeof v === "object" && v !== null && typeof (v as { prepare?: unknown }).prepare === "function";
}
