// Device authentication: HTTP Basic `accountId.deviceId:password`, as Signal does, checked by the account's
// own Durable Object (one hop, never D1, so a D1 outage never stops a device from authenticating).
import type { MiddlewareHandler } from "hono";
import { fromBase64, fromUtf8 } from "../crypto/bytes.ts";
import { parseDeviceIdText } from "../protocol/directory.ts";
import { PRIMARY_DEVICE_ID } from "../protocol/limits.ts";
import type { AuthenticatedDevice } from "./account/directory.ts";
import type { AppEnv } from "./app.ts";
import { ApiError, storage, unwrap } from "./errors.ts";

/** An account id as the relay names it: a lowercase UUID (credentials and tickets are lowercased first). */
export const ACCOUNT_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The text of a Basic token, or null. Unpadded base64 is padded first: the relay has always accepted it. */
function decodeToken(token: string): string | null {
  const padded = token.includes("=") ? token : token.padEnd(Math.ceil(token.length / 4) * 4, "=");
  try {
    return fromUtf8(fromBase64(padded));
  } catch {
    return null;
  }
}

export interface Credentials {
  accountId: string;
  deviceId: number;
  password: string;
}

export function parseBasic(header: string | undefined): Credentials | null {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!m) return null;
  const text = decodeToken(m[1]!);
  if (text === null) return null;
  const colon = text.indexOf(":");
  if (colon < 0) return null;
  const user = text.slice(0, colon);
  const password = text.slice(colon + 1);
  const dot = user.lastIndexOf(".");
  const accountId = (dot < 0 ? user : user.slice(0, dot)).toLowerCase();
  // Without a dot the user is the account and the device is 1 (as Signal's clients send it).
  const deviceId = dot < 0 ? PRIMARY_DEVICE_ID : parseDeviceIdText(user.slice(dot + 1));
  if (!ACCOUNT_ID_PATTERN.test(accountId) || deviceId === null) return null;
  if (password.length === 0 || password.length > 256) return null;
  return { accountId, deviceId, password };
}

/** The credentials of an Authorization header, or the 401 every route answers for missing or malformed ones. */
export function requireCredentials(header: string | undefined): Credentials {
  const creds = parseBasic(header);
  if (!creds)
    throw new ApiError("UNAUTHORIZED", "credentials missing or malformed: use Basic accountId.deviceId:password");
  return creds;
}

export async function authenticate(env: Cloudflare.Env, header: string | undefined): Promise<AuthenticatedDevice> {
  const creds = requireCredentials(header);
  const stub = env.ACCOUNT.getByName(creds.accountId);
  return unwrap(await storage("account", () => stub.authenticate(creds.deviceId, creds.password)));
}

/** Requires an authenticated device; the WWW-Authenticate challenge is left out so browsers show no dialog. */
export const requireDevice: MiddlewareHandler<AppEnv> = async (c, next) => {
  c.set("device", await authenticate(c.env, c.req.header("authorization")));
  return next();
};
