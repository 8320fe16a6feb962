// The account's Durable Object as the runtime instantiates it (the class wrangler.toml binds): the one entry for
// RPC, the WebSocket upgrade, the socket events and the alarm. It holds the parts that do the work, each owning
// its SQL and tables; it creates them in a fixed order and inherits nothing but DurableObject.
import { DurableObject } from "cloudflare:workers";
import { systemClock, type Clock } from "../../protocol/clock.ts";
import type { DeviceInfo, PreKeyBundleResponse } from "../../protocol/directory.ts";
import { PING_FRAME, PONG_FRAME } from "../../protocol/frames.ts";
import type { Config } from "../config.ts";
import type { DeviceKeysInput } from "../db/keys.ts";
import { fail, type Failure } from "../errors.ts";
import { log } from "../log.ts";
import type { DeliverRequest, Delivered } from "../mailbox/delivery.ts";
import { MessageIntake } from "../mailbox/intake.ts";
import { MessageQueues } from "../mailbox/queues.ts";
import { SendPath } from "../mailbox/send-path.ts";
import { DeviceSockets } from "../mailbox/sockets.ts";
import { PushWaker } from "../push/waker.ts";
import { AlarmSchedule } from "./alarm.ts";
import { configOf, type PartContext } from "./context.ts";
import { DeviceRegistry } from "./device-registry.ts";
import type { AuthenticatedDevice, NewDevice } from "./directory.ts";
import { KeyUploads } from "./key-uploads.ts";
import { DirectoryOutbox } from "./outbox.ts";
import { PrekeyClaims } from "./prekey-claims.ts";
import { MemoryRateWindow, RateWindow } from "./rate-window.ts";
import { UsernameRecord } from "./usernames.ts";

/** Headers only the Worker sets on the upgrade it forwards here (objects are not reachable from outside). */
export const INTERNAL_DEVICE_HEADER = "x-cipherpost-device";
export const INTERNAL_TICKET_HEADER = "x-cipherpost-ticket";

export interface SenderDevice extends AuthenticatedDevice {
  /** How many other devices the sender's account has (Signal's `needsSync`). */
  linkedDevices: number;
}

type Result<T> = Promise<({ ok: true } & T) | Failure>;

export class Account extends DurableObject<Cloudflare.Env> {
  /** The object's only source of time, read afresh at every use; tests replace it to move time. */
  clock: Clock = systemClock;
  readonly #devices: DeviceRegistry;
  readonly #outbox: DirectoryOutbox;
  readonly #claims: PrekeyClaims;
  readonly #uploads: KeyUploads;
  readonly #queues: MessageQueues;
  readonly #sockets: DeviceSockets;
  readonly #push: PushWaker;
  readonly #intake: MessageIntake;
  readonly #sendPath: SendPath;
  readonly #alarm: AlarmSchedule;
  readonly #usernames: UsernameRecord;
  /** Exact windows in SQLite (link tokens, prekey claims) and the message path's windows in memory. */
  readonly #rates: RateWindow;
  readonly #sendRates = new MemoryRateWindow();

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    const clock: Clock = {
      now: () => this.clock.now(),
      setTimeout: (fn, ms) => this.clock.setTimeout(fn, ms),
      clearTimeout: (handle) => this.clock.clearTimeout(handle),
    };
    const part: PartContext = {
      sql: ctx.storage.sql,
      storage: ctx.storage,
      clock,
      env: () => this.env,
      config: () => configOf(this.env),
      waitUntil: (p) => ctx.waitUntil(p),
    };
    this.#rates = new RateWindow(part.sql);
    this.#outbox = new DirectoryOutbox(part, {
      hasTables: () => this.#devices.hasTables,
      purgeLocal: () => this.#purgeMailbox(),
      drained: (left) => this.#drained(left),
    });
    this.#devices = new DeviceRegistry(part, this.#outbox, this.#rates);
    this.#queues = new MessageQueues(part.sql);
    this.#sockets = new DeviceSockets(part, ctx, this.#queues);
    this.#push = new PushWaker(part);
    this.#claims = new PrekeyClaims(part, this.#devices, this.#rates, (d, frame) => this.#sockets.tell(d, frame));
    this.#uploads = new KeyUploads(part, this.#devices, this.#rates);
    this.#usernames = new UsernameRecord(part, this.#rates);
    this.#alarm = new AlarmSchedule(ctx.storage, clock, () => this.#dueTimes());
    this.#intake = new MessageIntake(part, {
      devices: this.#devices,
      queues: this.#queues,
      sockets: this.#sockets,
      push: this.#push,
      sendRates: this.#sendRates,
      alarmBy: (at) => this.#alarm.by(at),
    });
    this.#sendPath = new SendPath(part, this.#devices, this.#sendRates, this.#intake);
    // Keep-alive pings are answered by the runtime without waking a hibernated object; the time of the last
    // one is read back with getWebSocketAutoResponseTimestamp for the idle close.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
    // An object nobody registered stays empty: its tables appear only when an account is created here.
    void ctx.blockConcurrencyWhile(async () => {
      if (this.#devices.holdsAccount()) this.#createTables();
    });
  }

  /** Every part's tables, in a fixed order; at start, and again when an account is created after a deletion. */
  #createTables(): void {
    this.#devices.createTables();
    this.#outbox.createTables();
    this.#rates.createTables();
    this.#queues.createTables();
    this.#sockets.createTables();
    this.#push.createTables();
    this.#usernames.createTables();
  }

  #config(): Config | Failure {
    return configOf(this.env);
  }

  // ---------- devices and credentials ----------

  /** Creates the account with its primary device. The caller has checked the challenge and every signature. */
  async register(accountId: string, identityKey: string, device: NewDevice): Result<{ deviceId: number }> {
    if (this.#devices.account()) return fail("FORBIDDEN", "account already exists");
    this.#createTables();
    const created = await this.#devices.createAccount(accountId, identityKey, device);
    await this.#outbox.drain();
    return created;
  }

  /** The public identity key, for checking signatures on keys a device links or uploads. */
  async identity(): Result<{ identityKey: string }> {
    const a = this.#devices.liveAccount();
    return a ? { ok: true, identityKey: a.identity_key } : fail("NOT_FOUND", "no such account");
  }

  async authenticate(deviceId: number, password: string): Promise<AuthenticatedDevice | Failure> {
    return this.#devices.authenticate(deviceId, password);
  }

  async listDevices(): Result<{ devices: DeviceInfo[] }> {
    if (!this.#devices.account()) return fail("NOT_FOUND", "no such account");
    return { ok: true, devices: this.#devices.list() };
  }

  async createLinkToken(): Result<{ linkToken: string; expiresAt: number }> {
    const cfg = this.#config();
    return "ok" in cfg ? cfg : this.#devices.createLinkToken(cfg);
  }

  /** Linking's hand-shake (account/device-registry.ts): request, pending, approve or reject, envelope. */
  async requestLink(linkToken: string, publicKey: string): Result<object> {
    return this.#devices.requestLink(linkToken, publicKey);
  }

  async pendingLink(linkToken: string): Result<{ publicKey: string | null }> {
    return this.#devices.pendingLink(linkToken);
  }

  async approveLink(linkToken: string, publicKey: string, envelope: string): Result<object> {
    return this.#devices.approveLink(linkToken, publicKey, envelope);
  }

  async rejectLink(linkToken: string): Result<object> {
    return this.#devices.rejectLink(linkToken);
  }

  async linkEnvelope(linkToken: string, publicKey: string): Result<{ envelope: string | null }> {
    return this.#devices.linkEnvelope(linkToken, publicKey);
  }

  async approvedLinkIdentity(linkToken: string): Result<{ identityKey: string }> {
    return this.#devices.approvedLinkIdentity(linkToken);
  }

  /** Adds a device with a live, approved link token (consumed); the caller has checked its keys' signatures. */
  async linkDevice(linkToken: string, device: NewDevice): Result<{ deviceId: number }> {
    const cfg = this.#config();
    if ("ok" in cfg) return cfg;
    const linked = await this.#devices.linkDevice(linkToken, device, cfg);
    if (linked.ok) await this.#outbox.drain();
    return linked;
  }

  /** Removes a device: its queue, tickets, push endpoint and connection go with it (4410). */
  async removeDevice(byDeviceId: number, deviceId: number): Promise<{ ok: true } | Failure> {
    const removed = this.#devices.removeDevice(byDeviceId, deviceId);
    if (!removed.ok) return removed;
    this.#queues.dropDevice(deviceId);
    this.#sockets.dropDevice(deviceId);
    this.#push.dropDevice(deviceId);
    await this.#outbox.drain();
    return removed;
  }

  /**
   * Deletes the account: credentials go at once (every later request is 401), then the outbox removes the
   * mailbox and everything the account owns elsewhere, and finally this object's own storage goes.
   */
  async deleteAccount(): Promise<{ ok: true } | Failure> {
    // The username goes first (it lives on other shards, which the outbox's purge does not reach); if D1 does
    // not answer, nothing is deleted yet and the client's retry starts over.
    const a = this.#devices.liveAccount();
    const cfg = this.#config();
    if (a && !("ok" in cfg)) {
      const freed = await this.#usernames.purge(a.account_id, cfg);
      if (!freed.ok) return freed;
    }
    const marked = this.#devices.markDeleted();
    if (marked.ok) await this.#outbox.drain();
    return marked;
  }

  // ---------- usernames (account/usernames.ts) ----------

  /**
   * Runs `fn` with the live account's id and the config; UNAUTHORIZED for an account that is gone, UNAVAILABLE
   * (a value, not a throw, so the runtime does not report it as uncaught) when D1 does not answer.
   */
  async #withAccount<T extends { ok: true }>(
    fn: (accountId: string, cfg: Config) => Promise<T | Failure>,
  ): Promise<T | Failure> {
    const a = this.#devices.liveAccount();
    if (!a) return fail("UNAUTHORIZED", "wrong credentials");
    const cfg = this.#config();
    if ("ok" in cfg) return cfg;
    try {
      return await fn(a.account_id, cfg);
    } catch (e) {
      log("error", { event: "storage_error", what: "usernames", error: String(e) });
      return fail("UNAVAILABLE", "the directory did not answer; try again", {}, 1);
    } finally {
      // A clean-up D1 did not take (the old name's release after a change) is retried from the alarm.
      if (this.#usernames.nextDueAt() !== null) await this.#alarm.schedule();
    }
  }

  async reserveUsername(hashes: string[]): Result<{ usernameHash: string; expiresAt: number }> {
    return this.#withAccount((id, cfg) => this.#usernames.reserve(id, hashes, cfg));
  }

  async confirmUsername(hash: string): Result<{ usernameHash: string }> {
    return this.#withAccount((id, cfg) => this.#usernames.confirm(id, hash, cfg));
  }

  async deleteUsername(): Result<object> {
    return this.#withAccount((id, cfg) => this.#usernames.delete(id, cfg));
  }

  async setUsernameLink(ciphertext: string): Result<{ handle: string }> {
    return this.#withAccount((id, cfg) => this.#usernames.setLink(id, ciphertext, cfg));
  }

  /** Counts one username lookup by this account (the per-account limit). */
  async takeUsernameLookup(): Result<object> {
    return this.#withAccount(async (_id, cfg) => this.#usernames.takeLookup(cfg));
  }

  /** A prekey bundle for one device or all (`deviceId` null), limited exactly per requesting account. */
  async claimBundle(requesterAccountId: string, deviceId: number | null): Result<PreKeyBundleResponse> {
    return this.#claims.claim(requesterAccountId, deviceId);
  }

  /** Authentication for PUT /v2/keys, with the device's upload window counted: one RPC. */
  async authorizeKeyUpload(deviceId: number, password: string): Promise<AuthenticatedDevice | Failure> {
    return this.#uploads.authorize(deviceId, password);
  }

  /** Stores a device's checked keys unless its one-time keys would pass their cap (account/key-uploads.ts). */
  async publishKeys(deviceId: number, deviceUid: number, keys: DeviceKeysInput): Promise<{ ok: true } | Failure> {
    return this.#uploads.publish(deviceId, deviceUid, keys);
  }

  /** Test and operations aid: how many directory changes wait to reach D1. */
  async pendingOutbox(): Promise<number> {
    return this.#outbox.pending();
  }

  // ---------- the mailbox ----------

  /**
   * Authentication for a send, with the per-device send limit counted here in the sender's own object: one RPC.
   * `deliveries` is how many recipient accounts the send reaches (a group send counts each).
   */
  async authorizeSend(deviceId: number, password: string, deliveries = 1): Promise<SenderDevice | Failure> {
    const auth = await this.#devices.authenticate(deviceId, password);
    if (!auth.ok) return auth;
    const cfg = this.#config();
    if ("ok" in cfg) return cfg;
    return (
      this.#sendPath.takeSend(deviceId, cfg, deliveries) ?? {
        ...auth,
        linkedDevices: this.#devices.devices().length - 1,
      }
    );
  }

  /** Accepts one send for this account (mailbox/intake.ts). */
  async deliver(req: DeliverRequest): Promise<Delivered | Failure> {
    return this.#intake.deliver(req);
  }

  /** A single-use ticket for browsers, which cannot set headers on a WebSocket. */
  async createTicket(deviceId: number): Result<{ ticket: string; expiresAt: number }> {
    const cfg = this.#config();
    if ("ok" in cfg) return cfg;
    const a = this.#devices.liveAccount();
    if (!a || !this.#devices.device(deviceId)) return fail("UNAUTHORIZED", "wrong credentials");
    return { ok: true, ...(await this.#sockets.createTicket(a.account_id, deviceId, cfg)) };
  }

  /** Registers (or with null, removes) the device's Web Push endpoint. */
  async setPushEndpoint(deviceId: number, endpoint: string | null): Promise<{ ok: true } | Failure> {
    if (!this.#devices.liveDevice(deviceId)) return fail("UNAUTHORIZED", "wrong credentials");
    this.#push.set(deviceId, endpoint);
    return { ok: true };
  }

  /** The device's registered endpoint, if it still has one (a 404/410 from its push service removes it). */
  async getPushEndpoint(deviceId: number): Result<{ endpoint: string | null }> {
    if (!this.#devices.liveDevice(deviceId)) return fail("UNAUTHORIZED", "wrong credentials");
    return { ok: true, endpoint: this.#push.get(deviceId) ?? null };
  }

  /** Test and operations aid: queued copies per device. */
  async queueDepth(deviceId: number): Promise<{ messages: number; bytes: number }> {
    if (!this.#devices.hasTables) return { messages: 0, bytes: 0 };
    return this.#queues.totals(deviceId);
  }

  // ---------- the socket ----------

  /** Only the WebSocket upgrade arrives by fetch, forwarded by the Worker after it authenticated the device. */
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket")
      return refusal(fail("BAD_REQUEST", "expected a WebSocket upgrade"));
    const cfg = this.#config();
    if ("ok" in cfg) return refusal(cfg);
    if (!this.#devices.liveAccount()) return refusal(fail("UNAUTHORIZED", "wrong credentials"));
    const ticket = request.headers.get(INTERNAL_TICKET_HEADER);
    const deviceId =
      ticket === null ? Number(request.headers.get(INTERNAL_DEVICE_HEADER)) : await this.#sockets.redeemTicket(ticket);
    if (deviceId === undefined) return refusal(fail("UNAUTHORIZED", "the ticket is unknown, used or expired"));
    if (!this.#devices.device(deviceId)) return refusal(fail("UNAUTHORIZED", "wrong credentials"));
    const client = this.#sockets.accept(deviceId, cfg);
    await this.#alarm.schedule();
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, data: string | ArrayBuffer): Promise<void> {
    try {
      const cfg = this.#config();
      const frame = this.#sockets.readFrame(ws, data, cfg);
      if (!frame || "ok" in cfg) return;
      switch (frame.type) {
        case "ack":
          return this.#sockets.ack(ws, frame.ids, cfg);
        case "send":
        case "send_multi":
          return await this.#sockets.sending(ws, () => this.#sendPath.handle(ws, cfg, frame));
        case "ping":
          return this.#sockets.ping(ws);
      }
    } catch (e) {
      log("error", { event: "ws_message_failed", error: String(e) });
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.#sockets.closed(ws, code, reason);
  }

  override async webSocketError(_ws: WebSocket, error: unknown): Promise<void> {
    log("warn", { event: "ws_error", error: String(error) });
  }

  // ---------- the alarm ----------

  /**
   * Every part's next due time: the outbox's retry, the first message expiry, the end of the first idempotency
   * record's window, the next idle check, the retry of username clean-ups D1 did not take.
   */
  #dueTimes(): (number | null)[] {
    if (!this.#devices.hasTables) return [];
    const cfg = this.#config();
    return [
      this.#outbox.nextDueAt(),
      this.#queues.nextExpiry(),
      this.#queues.nextRecordExpiry(),
      "ok" in cfg ? null : this.#sockets.nextIdleCheck(cfg),
      this.#usernames.nextDueAt(),
    ];
  }

  override async alarm(): Promise<void> {
    const now = this.clock.now();
    const cfg = this.#config();
    if (this.#devices.hasTables) {
      // Expire first, so the outbox's drain below schedules the next alarm from what is left, not from the
      // copies just deleted. Expired copies may have been in flight: windows are recounted at the next event.
      if (this.#queues.expire(now) > 0) this.#sockets.forgetAll();
      // Records whose window ends within the next tenth of it go too (a retry is answered for at least 90% of
      // IDEMPOTENCY_TTL_SECONDS, never longer than all of it), so steady traffic wakes the sweep once per tenth.
      this.#queues.sweepRecords("ok" in cfg ? now : now + cfg.IDEMPOTENCY_TTL_SECONDS * 100);
      this.#sockets.expireTickets(now);
    }
    await this.#outbox.drain();
    if (!this.#devices.hasTables) return; // the account was deleted: nothing left to expire or watch
    if (!("ok" in cfg)) {
      const olderThan = now - longestWindowSeconds(cfg) * 1000;
      this.#rates.prune(olderThan);
      this.#sendRates.prune(olderThan);
      this.#sockets.closeIdle(cfg, now);
      const a = this.#devices.liveAccount();
      if (a) await this.#usernames.retry(a.account_id, cfg);
    }
    await this.#alarm.schedule();
  }

  /** Account deletion's first step (from the outbox): every connection closes (4411) and the mailbox empties. */
  #purgeMailbox(): void {
    this.#sockets.wipe();
    this.#queues.wipe();
    this.#push.wipe();
  }

  /** After every outbox drain: a deleted account's storage goes once its last op is done; else the alarm. */
  async #drained(left: number): Promise<void> {
    if (this.#devices.account()?.deleting && left === 0) {
      await this.ctx.storage.deleteAlarm();
      await this.ctx.storage.deleteAll();
      // Empty again, like an id nobody registered: no tables until someone registers here.
      this.#devices.dropped();
      return;
    }
    await this.#alarm.schedule();
  }
}

/** The longest rate window in use: older events can be forgotten. */
function longestWindowSeconds(cfg: Config): number {
  return Math.max(
    ...Object.entries(cfg)
      .filter(([k]) => k.endsWith("_WINDOW_SECONDS"))
      .map(([, v]) => v as number),
  );
}

/** A refusal of the upgrade as the Worker expects it: the Failure as JSON with its status. */
function refusal(f: Failure): Response {
  return Response.json(f, { status: 400 });
}
