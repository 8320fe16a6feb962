// Shared helpers of the SDK tests: clients on the test relay with a Node WebSocket, and waiting for events or
// conditions with a timeout that names what was awaited instead of hanging.
import {
  CipherpostClient,
  MemoryStorage,
  type ClientEvents,
  type ClientOptions,
  type Storage,
} from "../../src/client/index.ts";
import { nodeWebSocket } from "../../src/client/node.ts";

const WebSocket = await nodeWebSocket();

/** Small prekey batches keep registration fast; the policy is tested on its own. */
export const FAST_KEYS = { batch: 10, threshold: 5 };

export function clientOptions(
  storage: Storage = new MemoryStorage(),
  extra: Partial<ClientOptions> = {},
): ClientOptions {
  return { storage, WebSocket, preKeys: FAST_KEYS, connection: { initialDelayMs: 200, maxDelayMs: 2000 }, ...extra };
}

export function register(server: string, extra: Partial<ClientOptions> = {}): Promise<CipherpostClient> {
  return CipherpostClient.register({ server, ...clientOptions(extra.storage, extra) });
}

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 20_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The next `event` of `client` that satisfies `match`, or a clear failure after `timeoutMs`. */
export function nextEvent<K extends keyof ClientEvents>(
  client: CipherpostClient,
  event: K,
  match: (v: ClientEvents[K]) => boolean = () => true,
  timeoutMs = 20_000,
): Promise<ClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(
        new Error(
          `timed out after ${timeoutMs} ms waiting for a ${String(event)} event on ${client.accountId}.${client.deviceId}`,
        ),
      );
    }, timeoutMs);
    const off = client.on(event, (v) => {
      if (!match(v)) return;
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}
