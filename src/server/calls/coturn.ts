// ICE servers for a self-hosted TURN server (coturn and others) with the shared-secret scheme of coturn's
// use-auth-secret (the "TURN REST API", draft-uberti-behave-turn-rest-00): username "<expiry>:<id>", password
// base64(HMAC-SHA1(secret, username)). The TURN server checks both with the same secret and refuses the
// username once its expiry (Unix seconds) has passed. Nothing is stored and no request leaves the Worker.
import { randomBytes, toBase64, toBase64Url, utf8 } from "../../crypto/bytes.ts";
import type { IceServersResponse } from "../../protocol/calls.ts";

/**
 * The id after the colon: 16 random bytes, new for every request, never the account or device id. TURN over
 * UDP or TCP (turn:, not turns:) sends the USERNAME attribute in the clear, so a stable id per device would let
 * anyone on the path, or the TURN server's logs, link one device's calls across networks and days. The relay's
 * own per-device limit on minting (CALLS_ICE_REQUESTS_PER_DEVICE_LIMIT) bounds what a device can obtain, and
 * coturn's user-quota still bounds the allocations of each username.
 */
export function opaqueTurnId(): string {
  return toBase64Url(randomBytes(16));
}

/** base64(HMAC-SHA1(secret, username)), the password coturn derives from the username (use-auth-secret). */
export async function turnPassword(secret: string, username: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", utf8(secret), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  return toBase64(new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(username))));
}

/** One ICE server entry with every configured URL and credentials valid for `ttlSeconds` from `nowMs`. */
export async function coturnIceServers(
  settings: { urls: string[]; secret: string },
  ttlSeconds: number,
  nowMs: number,
  id = opaqueTurnId(),
): Promise<IceServersResponse> {
  const username = `${Math.floor(nowMs / 1000) + ttlSeconds}:${id}`;
  const credential = await turnPassword(settings.secret, username);
  return { iceServers: [{ urls: [...settings.urls], username, credential }], ttlSeconds };
}
