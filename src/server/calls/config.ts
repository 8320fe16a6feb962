// The call settings' parsers (src/server/config.ts puts them in the one schema): which TURN provider mints the
// ICE servers' credentials, and what each needs. Secrets are checked but never repeated in a problem's text.
import { z } from "zod";
import { ICE_URL_PATTERN } from "../../protocol/calls.ts";

export const TURN_PROVIDERS = ["cloudflare", "coturn"] as const;
export type TurnProvider = (typeof TURN_PROVIDERS)[number];

export const DEFAULT_CLOUDFLARE_API_URL = "https://rtc.live.cloudflare.com";

/** The shortest CALLS_TURN_SECRET accepted: whoever knows it can mint credentials for the TURN server. */
export const MIN_TURN_SECRET_CHARS = 16;

const text = (v: string | undefined) => v?.trim() ?? "";

/** CALLS_TURN_PROVIDER: "cloudflare", "coturn", or unset (no calls: 501 CALLS_NOT_CONFIGURED). */
export const turnProvider = z
  .string()
  .optional()
  .transform((v, ctx): TurnProvider | "" => {
    const t = text(v);
    if (t === "") return "";
    const p = TURN_PROVIDERS.find((x) => x === t);
    if (p) return p;
    ctx.addIssue({
      code: "custom",
      message: `must be one of ${TURN_PROVIDERS.join(", ")} or unset, got ${JSON.stringify(v)}`,
    });
    return z.NEVER;
  });

/** CALLS_TURN_KEY_ID: the Cloudflare TURN key's id (not a secret: it names the key in the API's path). */
export const turnKeyId = z
  .string()
  .optional()
  .transform((v, ctx) => {
    const t = text(v);
    if (t !== "" && !/^[A-Za-z0-9_-]{1,128}$/.test(t)) {
      ctx.addIssue({
        code: "custom",
        message: `must be a TURN key id (letters, digits, - and _), got ${JSON.stringify(v)}`,
      });
      return z.NEVER;
    }
    return t;
  });

/** CALLS_CLOUDFLARE_API_URL: https, or http on the loopback interface only (a local stand-in in tests). */
export const cloudflareApiUrl = z
  .string()
  .optional()
  .transform((v, ctx) => {
    const t = text(v) || DEFAULT_CLOUDFLARE_API_URL;
    let url: URL | null = null;
    try {
      url = new URL(t);
    } catch {
      url = null;
    }
    const loopback = url !== null && ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
    if (
      !url ||
      !(url.protocol === "https:" || (url.protocol === "http:" && loopback)) ||
      url.username ||
      url.password ||
      url.search ||
      url.hash
    ) {
      ctx.addIssue({
        code: "custom",
        message: `must be an https URL with no credentials, query or fragment (http only on localhost), got ${JSON.stringify(v)}`,
      });
      return z.NEVER;
    }
    return t.replace(/\/+$/, "");
  });

/** CALLS_TURN_URLS: comma-separated stun:, stuns:, turn: and turns: URIs of a self-hosted TURN server. */
export const turnUrls = z
  .string()
  .optional()
  .transform((v, ctx): string[] => {
    const t = text(v);
    if (t === "") return [];
    const urls = t.split(",").map((u) => u.trim());
    for (const u of urls) {
      const port = /:(\d+)(?:\?|$)/.exec(u.replace(/^\w+:\[[^\]]*\]/, "x:"))?.[1];
      if (!ICE_URL_PATTERN.test(u) || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) {
        ctx.addIssue({
          code: "custom",
          message: `entry ${JSON.stringify(u)} is not a stun:, stuns:, turn: or turns: URI (host[:port][?transport=udp|tcp])`,
        });
        return z.NEVER;
      }
    }
    if (urls.length > 32) {
      ctx.addIssue({ code: "custom", message: `at most 32 URIs, got ${urls.length}` });
      return z.NEVER;
    }
    if (!urls.some((u) => /^turns?:/.test(u))) {
      ctx.addIssue({ code: "custom", message: "must name at least one turn: or turns: URI" });
      return z.NEVER;
    }
    return urls;
  });

/** CALLS_TURN_API_TOKEN (a secret): sent as a Bearer token, so one line of printable characters. */
export const turnApiToken = z
  .string()
  .optional()
  .transform((v, ctx) => {
    const t = text(v);
    if (t !== "" && !/^[\x21-\x7e]+$/.test(t)) {
      ctx.addIssue({ code: "custom", message: "must be printable ASCII with no spaces (its value is not shown)" });
      return z.NEVER;
    }
    return t;
  });

/** CALLS_TURN_SECRET (a secret): coturn's static-auth-secret (use-auth-secret). */
export const turnSecret = z
  .string()
  .optional()
  .transform((v, ctx) => {
    const t = text(v);
    if (t !== "" && t.length < MIN_TURN_SECRET_CHARS) {
      ctx.addIssue({
        code: "custom",
        message: `must be at least ${MIN_TURN_SECRET_CHARS} characters, e.g. openssl rand -hex 32 (its value is not shown)`,
      });
      return z.NEVER;
    }
    return t;
  });

/** The call settings as parsed; a structural type, so this file need not import the whole Config. */
export interface CallSettings {
  CALLS_TURN_PROVIDER: TurnProvider | "";
  CALLS_TURN_KEY_ID: string;
  CALLS_TURN_API_TOKEN: string;
  CALLS_CLOUDFLARE_API_URL: string;
  CALLS_TURN_URLS: string[];
  CALLS_TURN_SECRET: string;
}

export interface SettingProblem {
  variable: string;
  problem: string;
}

/**
 * What the chosen provider's [vars] lack (the configuration gate: every route answers 503 MISCONFIGURED, and
 * `npm run deploy` refuses). Secrets are left to `missingSecrets`: the deploy check sees wrangler.toml, never them.
 */
export function missingVars(s: CallSettings): SettingProblem[] {
  if (s.CALLS_TURN_PROVIDER === "cloudflare" && !s.CALLS_TURN_KEY_ID)
    return [{ variable: "CALLS_TURN_KEY_ID", problem: "must be set when CALLS_TURN_PROVIDER is cloudflare" }];
  if (s.CALLS_TURN_PROVIDER === "coturn" && s.CALLS_TURN_URLS.length === 0)
    return [{ variable: "CALLS_TURN_URLS", problem: "must be set when CALLS_TURN_PROVIDER is coturn" }];
  return [];
}

/** The chosen provider's secret when it has not been put (answered 503 MISCONFIGURED by the calls route). */
export function missingSecrets(s: CallSettings): SettingProblem[] {
  if (s.CALLS_TURN_PROVIDER === "cloudflare" && !s.CALLS_TURN_API_TOKEN)
    return [
      {
        variable: "CALLS_TURN_API_TOKEN",
        problem: "must be set (npx wrangler secret put CALLS_TURN_API_TOKEN) when CALLS_TURN_PROVIDER is cloudflare",
      },
    ];
  if (s.CALLS_TURN_PROVIDER === "coturn" && !s.CALLS_TURN_SECRET)
    return [
      {
        variable: "CALLS_TURN_SECRET",
        problem: "must be set (npx wrangler secret put CALLS_TURN_SECRET) when CALLS_TURN_PROVIDER is coturn",
      },
    ];
  return [];
}
