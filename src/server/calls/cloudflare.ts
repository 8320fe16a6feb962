// ICE servers from Cloudflare's TURN service (Realtime TURN): the relay asks its credential API for each request,
// with the TURN key id in the path and the key's API token as a Bearer token:
//   POST {CALLS_CLOUDFLARE_API_URL}/v1/turn/keys/{CALLS_TURN_KEY_ID}/credentials/generate-ice-servers {"ttl": N}
// It answers 201 {"iceServers": [{urls, username?, credential?}, …]} (older documentation showed one object
// instead of the array: both are accepted). Cloudflare makes the username; the relay sends it nothing about the
// device. Any failure (network, timeout, a non-2xx status, an answer that does not parse) is 503 UNAVAILABLE,
// never a 500, and neither the token nor the answer's body is logged or returned.
import { z } from "zod";
import { type IceServer, IceServersResponse } from "../../protocol/calls.ts";
import { ApiError } from "../errors.ts";
import { log } from "../log.ts";

/** How long the relay waits for Cloudflare's answer before giving up (503 UNAVAILABLE). */
export const CLOUDFLARE_API_TIMEOUT_MS = 5000;
/** Largest answer read (Cloudflare's is under 1 KiB); a longer one is treated as garbage. */
const MAX_ANSWER_BYTES = 65_536;
/** Retry-After on a failed call to the API. */
const RETRY_AFTER_SECONDS = 5;

const UrlsField = z.union([z.string(), z.array(z.string()).min(1)]);
const CloudflareIceServer = z.object({
  urls: UrlsField,
  username: z.string().optional(),
  credential: z.string().optional(),
});
const CloudflareAnswer = z.object({
  iceServers: z.union([CloudflareIceServer, z.array(CloudflareIceServer).min(1)]),
});

export interface CloudflareSettings {
  apiUrl: string;
  keyId: string;
  apiToken: string;
}

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

const unavailable = (event: string, detail: Record<string, unknown>, message: string): ApiError => {
  log("error", { event: "turn_provider_failed", provider: "cloudflare", reason: event, ...detail });
  return new ApiError("UNAVAILABLE", message, { provider: "cloudflare" }, RETRY_AFTER_SECONDS);
};

/** Asks Cloudflare for ICE servers whose credentials last `ttlSeconds`; answers them in the relay's shape. */
export async function cloudflareIceServers(
  settings: CloudflareSettings,
  ttlSeconds: number,
  fetcher: FetchLike = (input, init) => fetch(input, init),
): Promise<IceServersResponse> {
  const url = `${settings.apiUrl}/v1/turn/keys/${encodeURIComponent(settings.keyId)}/credentials/generate-ice-servers`;
  let res: Response;
  try {
    res = await fetcher(url, {
      method: "POST",
      headers: { authorization: `Bearer ${settings.apiToken}`, "content-type": "application/json" },
      body: JSON.stringify({ ttl: ttlSeconds }),
      // The token must go nowhere but the API: a redirect is a failure, never followed.
      redirect: "manual",
      signal: AbortSignal.timeout(CLOUDFLARE_API_TIMEOUT_MS),
    });
  } catch (e) {
    const name = String((e as { name?: unknown } | null)?.name ?? "unknown");
    const timedOut = name === "TimeoutError" || name === "AbortError";
    throw unavailable(
      timedOut ? "timeout" : "network",
      { error: name },
      timedOut
        ? `the TURN provider (Cloudflare) did not answer within ${CLOUDFLARE_API_TIMEOUT_MS} ms; try again`
        : "the TURN provider (Cloudflare) could not be reached; try again",
    );
  }
  if (res.status < 200 || res.status > 299) {
    await res.body?.cancel().catch(() => undefined);
    const operator = res.status === 401 || res.status === 403 || res.status === 404;
    throw unavailable(
      "status",
      { status: res.status },
      operator
        ? `the TURN provider (Cloudflare) refused the relay's TURN key (HTTP ${res.status}): an operator must check CALLS_TURN_KEY_ID and CALLS_TURN_API_TOKEN`
        : `the TURN provider (Cloudflare) answered HTTP ${res.status}; try again`,
    );
  }
  const servers = parseAnswer(await readCapped(res));
  if (!servers)
    throw unavailable("garbage", {}, "the TURN provider (Cloudflare) answered something unusable; try again");
  return { iceServers: servers, ttlSeconds };
}

/** The body as text, or null when it is longer than MAX_ANSWER_BYTES or cannot be read. */
async function readCapped(res: Response): Promise<string | null> {
  try {
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > MAX_ANSWER_BYTES) {
      await res.body?.cancel();
      return null;
    }
    const buf = await res.arrayBuffer();
    return buf.byteLength > MAX_ANSWER_BYTES
      ? null
      : new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(buf);
  } catch {
    return null;
  }
}

/** Cloudflare's answer in the relay's shape (urls always an array), or null if it is not one. */
export function parseAnswer(text: string | null): IceServer[] | null {
  if (text === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = CloudflareAnswer.safeParse(json);
  if (!parsed.success) return null;
  const list = Array.isArray(parsed.data.iceServers) ? parsed.data.iceServers : [parsed.data.iceServers];
  const servers = list.map((s) => ({
    urls: typeof s.urls === "string" ? [s.urls] : s.urls,
    ...(s.username !== undefined ? { username: s.username } : {}),
    ...(s.credential !== undefined ? { credential: s.credential } : {}),
  }));
  // A TURN entry without credentials would be useless to a client: treat it as a broken answer.
  if (servers.some((s) => s.urls.some((u) => /^turns?:/.test(u)) && (!s.username || !s.credential))) return null;
  const checked = IceServersResponse.shape.iceServers.safeParse(servers);
  return checked.success ? checked.data : null;
}
