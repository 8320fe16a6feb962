// Shared helpers of the SDK tests: one relay per test file with the clients and directories it made cleaned up after,
// clients on it with a Node WebSocket, and waiting for events or conditions with a timeout that names what was
// awaited instead of hanging.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import {
  CipherpostClient,
  MemoryStorage,
  type ClientEvents,
  type ClientOptions,
  type Storage,
} from "../../src/client/index.ts";
import { nodeWebSocket } from "../../src/client/node.ts";
import { type Relay, type StartRelayOptions, startRelay } from "../support/relay.ts";

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

/**
 * One relay for the calling test file, started before its tests and stopped after them, with every client `client`
 * made or `track` was given closed first (each close bounded: on a loaded machine a slow close of background sends
 * must not fail a file whose tests passed) and every `tempDir` removed.
 */
export function relayForFile(options: StartRelayOptions = {}) {
  let relay: Relay | undefined;
  const open: CipherpostClient[] = [];
  const dirs: string[] = [];
  beforeAll(async () => {
    relay = await startRelay(options);
  }, 120_000);
  afterAll(async () => {
    const bounded = (p: Promise<unknown>, ms: number) => Promise.race([p, new Promise((r) => setTimeout(r, ms))]);
    await Promise.allSettled(open.map((c) => bounded(c.close(), 20_000)));
    await bounded(relay?.stop() ?? Promise.resolve(), 30_000);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }, 120_000);
  const track = <T extends CipherpostClient>(c: T): T => {
    open.push(c);
    return c;
  };
  return {
    relay: (): Relay => relay!,
    track,
    client: async (extra: Partial<ClientOptions> = {}) => track(await register(relay!.url, extra)),
    tempDir: (prefix = "cipherpost-test-"): string => {
      const d = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(d);
      return d;
    },
  };
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
