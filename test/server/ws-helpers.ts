// Helpers for the mailbox tests: real WebSockets through the Worker with a frame queue that times out with a
// clear message, sends in Signal's shape, linking a second device, per-object vars and clocks.
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { expect } from "vitest";
import type { Clock } from "../../src/protocol/clock.ts";
import type { MessageFrame, ServerFrame } from "../../src/protocol/frames.ts";
import { PING_FRAME } from "../../src/protocol/frames.ts";
import type { OutgoingMessage } from "../../src/protocol/messages.ts";
import { BASE, basic, call, registerAccount, type TestAccount } from "./helpers.ts";
import { completeLink, startLink } from "./link-helpers.ts";

const randomIp = () =>
  `10.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}`;

/** A fresh account with one device; its own address so per-IP registration limits never bite. */
export const newAccount = (opts: { preKeys?: number; pqPreKeys?: number } = {}) =>
  registerAccount({ ...opts, ip: randomIp() });

export interface Device {
  accountId: string;
  deviceId: number;
  registrationId: number;
  auth: string;
}

export const primary = (a: TestAccount): Device => ({
  accountId: a.accountId,
  deviceId: a.deviceId,
  registrationId: a.keys.registrationId,
  auth: a.auth,
});

/** Links a new device to `a` through the real link flow; its registration id differs from every other. */
export async function linkDevice(a: TestAccount, registrationId: number): Promise<Device> {
  // The whole approved flow (test/server/link-helpers.ts): request, approval, hand-over, registration.
  const { res, keys } = await completeLink(await startLink(a), registrationId);
  if (res.status !== 200) throw new Error(`link: ${res.status} ${await res.text()}`);
  const r = (await res.json()) as { deviceId: number };
  return {
    accountId: a.accountId,
    deviceId: r.deviceId,
    registrationId,
    auth: basic(a.accountId, r.deviceId, keys.password),
  };
}

let counter = 0;
/** A ciphertext of `bytes` random bytes, base64. */
export function ciphertext(bytes = 48): string {
  const b = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65_536) crypto.getRandomValues(b.subarray(i, Math.min(bytes, i + 65_536)));
  b[0] = counter++ & 0xff;
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

export const to = (d: Device, content = ciphertext(), type: 2 | 3 | 7 | 8 = 2): OutgoingMessage => ({
  type,
  destinationDeviceId: d.deviceId,
  destinationRegistrationId: d.registrationId,
  content,
});

export interface SendOptions {
  online?: boolean;
  urgent?: boolean;
  ttlSeconds?: number;
  timestamp?: number;
  idempotencyKey?: string;
}

export function send(
  from: Device,
  accountId: string,
  messages: OutgoingMessage[],
  opts: SendOptions = {},
): Promise<Response> {
  const { idempotencyKey, ...rest } = opts;
  return call("PUT", `/v1/messages/${accountId}`, {
    auth: from.auth,
    body: { messages, timestamp: opts.timestamp ?? Date.now(), ...rest },
    ...(idempotencyKey ? { headers: { "idempotency-key": idempotencyKey } } : {}),
  });
}

export async function sendOk(
  from: Device,
  recipients: Device[],
  opts: SendOptions & { content?: string } = {},
): Promise<{ serverTimestamp: number; needsSync: boolean }> {
  const res = await send(
    from,
    recipients[0]!.accountId,
    recipients.map((d) => to(d, opts.content)),
    opts,
  );
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return JSON.parse(text) as { serverTimestamp: number; needsSync: boolean };
}

export interface Conn {
  ws: WebSocket;
  /** Every frame received so far, in order. */
  frames: ServerFrame[];
  /** The next frame not yet taken, waiting at most `timeoutMs`. */
  next(what?: string, timeoutMs?: number): Promise<ServerFrame>;
  /** Takes frames until `n` message frames have arrived; fails if anything else comes first (queue_empty allowed when `allowEmpty`). */
  messages(n: number, timeoutMs?: number): Promise<MessageFrame[]>;
  /**
   * Resolves true if nothing more arrived (and nothing is left untaken) by the time the mailbox answers a
   * barrier ping: whatever it had to send for earlier events and frames goes out before that pong.
   */
  quiet(): Promise<boolean>;
  ack(ids: string[]): void;
  /**
   * Resolves once the mailbox has handled every frame sent on this socket before it: a ping that is not
   * byte-exact goes to the object (the exact one is answered by the runtime), in order after them, and its pong
   * comes back. Use it after an ack instead of sleeping. The pong is removed from `frames`.
   */
  settle(timeoutMs?: number): Promise<void>;
  ping(): void;
  closed: Promise<{ code: number; reason: string }>;
  close(code?: number): void;
}

/** Opens the mailbox socket with Basic credentials (or a ticket) and starts buffering frames. */
export async function connect(auth: string | { ticket: string }): Promise<Conn> {
  const url =
    typeof auth === "string"
      ? `${BASE}/v1/websocket`
      : `${BASE}/v1/websocket?ticket=${encodeURIComponent(auth.ticket)}`;
  const headers: Record<string, string> = { upgrade: "websocket" };
  if (typeof auth === "string") headers.authorization = auth;
  const res = await exports.default.fetch(url, { headers });
  if (res.status !== 101 || !res.webSocket)
    throw new Error(`expected 101 with a WebSocket, got ${res.status}: ${await res.text()}`);
  const ws = res.webSocket;
  ws.accept();
  const frames: ServerFrame[] = [];
  let taken = 0;
  let wake: (() => void) | undefined;
  let closeInfo: { code: number; reason: string } | undefined;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.addEventListener("close", (e) => {
      closeInfo = { code: e.code, reason: e.reason };
      resolve(closeInfo);
      wake?.();
    });
  });
  ws.addEventListener("message", (e) => {
    if (typeof e.data !== "string") throw new Error("binary frame from the mailbox");
    frames.push(JSON.parse(e.data) as ServerFrame);
    wake?.();
  });
  const next = async (what = "a frame", timeoutMs = 5000): Promise<ServerFrame> => {
    const deadline = Date.now() + timeoutMs;
    while (taken >= frames.length) {
      if (closeInfo)
        throw new Error(
          `waiting for ${what}: the socket closed (${closeInfo.code} ${closeInfo.reason}) after ${frames.length} frames`,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; ${frames.length} frames so far, last: ${JSON.stringify(frames.at(-1) ?? null)?.slice(0, 200)}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = undefined;
    }
    return frames[taken++]!;
  };
  const settle = async (timeoutMs = 10_000) => {
    const pongs = () => frames.filter((f) => f.type === "pong").length;
    const before = pongs();
    ws.send('{ "type": "ping" }');
    const deadline = Date.now() + timeoutMs;
    while (pongs() === before) {
      if (closeInfo) throw new Error(`settle: the socket closed (${closeInfo.code} ${closeInfo.reason})`);
      if (Date.now() > deadline) throw new Error(`settle: no pong within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    for (let i = frames.length - 1; i >= taken; i--) {
      if (frames[i]!.type === "pong") {
        frames.splice(i, 1);
        break;
      }
    }
  };
  return {
    ws,
    frames,
    next,
    async messages(n, timeoutMs = 10_000) {
      const out: MessageFrame[] = [];
      while (out.length < n) {
        const f = await next(`message ${out.length + 1} of ${n}`, timeoutMs);
        if (f.type !== "message")
          throw new Error(`expected message ${out.length + 1} of ${n}, got ${JSON.stringify(f).slice(0, 200)}`);
        out.push(f);
      }
      return out;
    },
    async quiet() {
      const before = frames.length;
      await settle();
      return frames.length === before && taken === frames.length;
    },
    ack: (ids) => ws.send(JSON.stringify({ type: "ack", ids })),
    settle,
    ping: () => ws.send(PING_FRAME),
    closed,
    close: (code = 1000) => ws.close(code, "test done"),
  };
}

/** The account's object stub (fetched fresh: stubs from before abortAllDurableObjects throw). */
export const accountStub = (accountId: string) => env.ACCOUNT.getByName(accountId);

/**
 * Runs one account object with some vars changed, as if deployed with them: its `env` becomes an object
 * whose prototype is the real env, so bindings stay and loadConfig parses afresh (it caches per env object).
 * Lasts until the object is reset.
 */
export async function withObjectVars(accountId: string, vars: Record<string, string>) {
  await runInDurableObject(accountStub(accountId), async (instance) => {
    // `env` is a readonly field in the type but an ordinary property at run time; replacing it is the point.
    const o = instance as unknown as { env: object };
    o.env = Object.create(
      o.env,
      Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, { value: v, enumerable: true }])),
    );
  });
}

export async function queueDepth(accountId: string, deviceId: number) {
  return accountStub(accountId).queueDepth(deviceId);
}

/**
 * Gives one account object another clock (a ManualClock, to move time instead of sleeping). Lasts until the
 * object is reset; every part of the object reads the clock it holds at each use.
 */
export async function useClock(accountId: string, clock: Clock) {
  await runInDurableObject(accountStub(accountId), (instance) => {
    instance.clock = clock;
  });
}
