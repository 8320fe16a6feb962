// What every part of a client shares (the storage, the relay, this device, the one mutex, the clock, the
// events) and the options an application passes. It imports none of the parts, so each part can import it
// without making an import cycle.
import type { CallOptions } from "./call.ts";
import type { LocalIdentity } from "../crypto/pqxdh.ts";
import type { Clock } from "../protocol/clock.ts";
import type { PowProgress } from "../protocol/pow.ts";
import type { Mutex } from "../protocol/concurrency.ts";
import { AccountId } from "../protocol/directory.ts";
import type { ConnectionOptions, MailboxConnection, WebSocketConstructor } from "./connection.ts";
import { CipherpostError } from "./errors.ts";
import type { Emitter } from "./events.ts";
import { type Credentials, type FetchLike, RelayHttp } from "./http.ts";
import type { PreKeyPolicy } from "./prekeys.ts";
import type { Storage } from "./storage.ts";

export interface ClientOptions {
  storage: Storage;
  /** WebSocket constructor; defaults to the global one (browsers, Workers, Node 22+). In Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** fetch; defaults to the global one. */
  fetch?: FetchLike;
  preKeys?: Partial<PreKeyPolicy>;
  connection?: ConnectionOptions;
  /** Send delivery receipts for received messages, coalesced per sender (default true). */
  deliveryReceipts?: boolean;
  /** HTTP timeout per request (ms); default 30 000. */
  timeoutMs?: number;
  /**
   * The time the client reads and its timers run on (receipt batching, disappearing messages, prekey upkeep,
   * the send log, reconnect backoff and keep-alive); default `systemClock`. Tests pass a clock they move.
   */
  clock?: Clock;
  /** Calls: the RTCPeerConnection factory, ring time, ICE policy (docs/calls.md). Without a factory, no calls. */
  calls?: CallOptions;
}

export interface RegisterOptions extends ClientOptions {
  server: string;
  /** Called while the relay's proof of work is being solved (its difficulty rises under a registration flood). */
  onPowProgress?: (progress: PowProgress) => void;
}

export interface LinkOptions extends ClientOptions {
  server: string;
  code: string;
  /**
   * Called with the six-digit verification code once the link code is answered: show it, so the person checks
   * the existing device shows the same before approving there. Linking then waits for that approval.
   */
  onVerificationCode?: (verificationCode: string) => void | Promise<void>;
}

/** The device as stored under DEVICE_KEY. */
export interface DeviceRecord {
  version: 1;
  server: string;
  accountId: string;
  deviceId: number;
  password: string;
  registrationId: number;
  identityKey: string;
  identityPrivateKey: string;
  nextKeyId: number;
  created: number;
}

export interface ClientContext {
  readonly storage: Storage;
  readonly http: RelayHttp;
  readonly clock: Clock;
  readonly accountId: string;
  readonly deviceId: number;
  readonly identity: LocalIdentity;
  readonly auth: Credentials;
  /** Sessions, keys and the message store change under it, so no two operations interleave their writes. */
  readonly mutex: Mutex;
  readonly events: Emitter;
  /** The open mailbox connection, if any (sends prefer it). */
  connection(): MailboxConnection | null;
  /** Runs `task` without waiting for it; a failure becomes an `error` event naming `what`. */
  runInBackground(what: string, task: () => Promise<unknown>): void;
}

/** The relay client an application's options ask for. */
export function relayHttp(server: string, options: ClientOptions): RelayHttp {
  return new RelayHttp(server, options.fetch, options.timeoutMs);
}

/** An account id from an application, lowercased; INVALID_ARGUMENT naming `what` when it is not one. */
export function checkAccountId(accountId: string, what = "account"): string {
  const parsed = AccountId.safeParse(accountId);
  if (!parsed.success) throw new CipherpostError("INVALID_ARGUMENT", `${what}: not an account id (UUID): ${accountId}`);
  return accountId.toLowerCase();
}

/** Lets a Node timer not keep the process alive (a no-op elsewhere, and for a test's clock). */
export function unref(timer: unknown): void {
  (timer as { unref?: () => void } | undefined)?.unref?.();
}
