// The account's Durable Object, as the runtime instantiates it: the directory duties of AccountDirectory plus
// the mailbox: a queue per device in SQLite and the account's device WebSockets on the Hibernation API.
// Tables and SQL are in ../mailbox/store.ts; the device-set check and frames in ../mailbox/delivery.ts.
import {
  CLIENT_FRAME_OVERHEAD_CHARS,
  CLOSE_CODES,
  ClientFrame,
  FRAME_TYPES,
  PING_FRAME,
  PONG_FRAME,
  type SendFrame,
  type SendMultiFrame,
  type SendResultFrame,
} from "../../protocol/frames.ts";
import { statusOf, type ErrorCode } from "../../protocol/errors.ts";
import type { Config } from "../config.ts";
import { fail, type Failure } from "../errors.ts";
import {
  checkDeviceSet,
  checkSizes,
  requestDigest,
  ciphertextBytes,
  commonEnvelopeFields,
  messageFrame,
  type DeliverRequest,
  type Delivered,
} from "../mailbox/delivery.ts";
import { checkGroupSend, fanOut } from "../mailbox/fanout.ts";
import * as store from "../mailbox/store.ts";
import type { SocketState } from "../mailbox/store.ts";
import { AccountDirectory, type AuthenticatedDevice } from "./directory.ts";
import { MemoryRateWindow } from "./rate-window.ts";
import { log } from "../log.ts";
import { sendPush, VapidSigner, type VapidKey } from "../push/webpush.ts";

/** Headers only the Worker sets on the upgrade it forwards here (objects are not reachable from outside). */
export const INTERNAL_DEVICE_HEADER = "x-cipherpost-device";
export const INTERNAL_TICKET_HEADER = "x-cipherpost-ticket";

const QUEUE_EMPTY_FRAME = `{"type":"${FRAME_TYPES.queue_empty}"}`;
const deviceTag = (deviceId: number) => `d${deviceId}`;

export interface SenderDevice extends AuthenticatedDevice {
  /** How many other devices the sender's account has (Signal's `needsSync`). */
  linkedDevices: number;
}

/**
 * What the object remembers about a connection while it is awake, so a live message to a device that has
 * nothing else waiting goes out with one INSERT and its ack needs one DELETE. Lost on hibernation or reset; the
 * next event recomputes it from SQLite (`pump`).
 */
interface LiveState {
  /** Messages in flight on the connection (sent, not acked). */
  inflight: number;
  /** Nothing of the device's queue is waiting to be sent on this connection. */
  caughtUp: boolean;
}

export class Account extends AccountDirectory {
  /** Send limits, counted in memory (see MemoryRateWindow for why). */
  private readonly sendRates = new MemoryRateWindow();
  /** Queue totals per device for the quota check, counted from SQLite when missing (store.queueTotals). */
  private readonly totals = new Map<number, { messages: number; bytes: number }>();
  /** The earliest expiry of any queued copy: undefined when unknown (counted again from SQLite), null when none. */
  private earliest: number | null | undefined;
  /** The next queue sequence number, and the last one reserved in storage (see allocateSeq). */
  private nextSeq = 0;
  private reservedSeq = 0;
  private readonly live = new Map<string, LiveState>();
  /** Push endpoints by device, read from SQLite once (the object is their only writer); null: none. */
  private pushEndpoints: Map<number, string> | undefined;
  /** When each device was last sent a wake-up (PUSH_MIN_INTERVAL_SECONDS), in memory. */
  private readonly lastPush = new Map<number, number>();
  private vapid: { key: VapidKey; signer: VapidSigner } | undefined;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    // Keep-alive pings are answered by the runtime without waking a hibernated object; the time of the last
    // one is read back with getWebSocketAutoResponseTimestamp for the idle close.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
  }

  protected override migrate(): void {
    super.migrate();
    store.migrateMailbox(this.sql);
  }

  // ---------- sending ----------

  /** Authentication for a send, with the per-device send limit counted here in the sender's own object: one RPC. */
  async authorizeSend(deviceId: number, password: string): Promise<SenderDevice | Failure> {
    const auth = await this.authenticate(deviceId, password);
    if (!auth.ok) return auth;
    const cfg = this.config();
    if ("ok" in cfg) return cfg;
    const limited = this.takeSend(deviceId, cfg);
    if (limited) return limited;
    return { ...auth, linkedDevices: this.deviceRows().length - 1 };
  }

  /**
   * Accepts one send for this account: device-set check, per-pair limit, quota, then every copy stored in one
   * transaction before the answer (the output gate holds the answer until the write is durable), then live
   * delivery to connected devices. Online messages skip storage and go only to devices connected now.
   */
  async deliver(req: DeliverRequest): Promise<Delivered | Failure> {
    const cfg = this.config();
    if ("ok" in cfg) return cfg;
    const a = this.accountRow();
    if (!a || a.deleting) return fail("NOT_FOUND", "no such account");
    const now = Date.now();
    const idemKey = req.idempotency ? `${req.sender.accountId}.${req.sender.deviceId}:${req.idempotency.key}` : null;
    if (idemKey) {
      const seen = this.sql
        .exec<{ digest: string; answer: string }>(
          "SELECT digest, answer FROM mb_idempotency WHERE key = ? AND expires_at > ?",
          idemKey,
          now,
        )
        .toArray()[0];
      if (seen) {
        if (seen.digest !== req.idempotency!.digest)
          return fail("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for a different request");
        return { ...(JSON.parse(seen.answer) as Delivered), replayed: true };
      }
    }
    const self = req.sender.accountId === a.account_id;
    const devices = this.deviceRows();
    const mismatch = checkDeviceSet(devices, req.messages, self ? req.sender.deviceId : null);
    if (mismatch) return mismatch;
    if (!self) {
      const rate = this.sendRates.take(
        `pair:${req.sender.accountId}`,
        cfg.SENDS_PER_PAIR_LIMIT,
        cfg.SENDS_PER_PAIR_WINDOW_SECONDS,
        now,
      );
      if (!rate.allowed)
        return fail("RATE_LIMITED", "too many messages from this sender to this account", {}, rate.retryAfterSeconds);
    }
    const ttl = Math.min(req.ttlSeconds ?? cfg.MESSAGE_TTL_SECONDS, cfg.MESSAGE_TTL_SECONDS);
    const expiresAt = now + ttl * 1000;
    const common = commonEnvelopeFields(req, now, expiresAt);
    const answer: Delivered = { ok: true, serverTimestamp: now, replayed: false };

    if (req.online) {
      // Never stored: a device not connected now never sees it (Signal drops these too).
      for (const m of req.messages)
        for (const ws of this.openSockets(m.destinationDeviceId))
          safeSend(ws, messageFrame(crypto.randomUUID(), m, common));
      return answer;
    }

    const full: number[] = [];
    for (const m of req.messages) {
      const q = this.queueTotals(m.destinationDeviceId);
      if (q.messages + 1 > cfg.QUEUE_MAX_MESSAGES || q.bytes + ciphertextBytes(m) > cfg.QUEUE_MAX_BYTES)
        full.push(m.destinationDeviceId);
    }
    if (full.length)
      return fail(
        "QUEUE_FULL",
        `the queue of device ${full.join(", ")} is at its quota (${cfg.QUEUE_MAX_MESSAGES} messages, ${cfg.QUEUE_MAX_BYTES} bytes)`,
        { devices: full },
        60,
      );

    // Live fast path: a device whose connection has sent everything and has room in its window gets the copy
    // written as already in flight and sent straight after the commit; anyone else's copy is pumped from SQLite.
    const direct: { ws: WebSocket; frame: string; state: LiveState; seq: number }[] = [];
    const pumpAfter: WebSocket[] = [];
    const asleep: number[] = []; // devices with no open connection: push wake-up candidates
    this.ctx.storage.transactionSync(() => {
      for (const m of req.messages) {
        const id = crypto.randomUUID();
        const frame = messageFrame(id, m, common);
        const seq = this.allocateSeq();
        store.insertMessage(this.sql, seq, id, m.destinationDeviceId, frame, ciphertextBytes(m), expiresAt);
        if (this.earliest !== undefined)
          this.earliest = this.earliest === null ? expiresAt : Math.min(this.earliest, expiresAt);
        const sockets = this.openSockets(m.destinationDeviceId);
        if (sockets.length === 0) asleep.push(m.destinationDeviceId);
        for (const ws of sockets) {
          const s = ws.deserializeAttachment() as SocketState;
          const state = this.live.get(s.c);
          if (state?.caughtUp && s.e === 1 && state.inflight < cfg.MAX_UNACKED_PER_CONNECTION)
            direct.push({ ws, frame, state, seq });
          else pumpAfter.push(ws);
        }
      }
      if (idemKey)
        this.sql.exec(
          "INSERT OR REPLACE INTO mb_idempotency (key, digest, answer, expires_at) VALUES (?, ?, ?, ?)",
          idemKey,
          req.idempotency!.digest,
          JSON.stringify(answer),
          now + cfg.IDEMPOTENCY_TTL_SECONDS * 1000,
        );
    });
    for (const m of req.messages) {
      const t = this.totals.get(m.destinationDeviceId);
      if (t) {
        t.messages++;
        t.bytes += ciphertextBytes(m);
      }
    }
    for (const d of direct) {
      if (safeSend(d.ws, d.frame)) {
        d.state.inflight++;
        sentUpTo(d.ws, d.seq);
      } else d.state.caughtUp = false; // stays queued for the next connection
    }
    for (const ws of pumpAfter) this.pump(ws, cfg, now);
    // Devices with nothing open get a wake-up push, if they registered an endpoint.
    for (const d of asleep) this.wake(d, req.urgent, cfg, now);
    const alarm = await this.ctx.storage.getAlarm();
    if (alarm === null || alarm > expiresAt) await this.scheduleAlarm();
    return answer;
  }

  // ---------- connecting ----------

  /** A single-use ticket for browsers, which cannot set headers on a WebSocket. */
  async createTicket(deviceId: number): Promise<{ ok: true; ticket: string; expiresAt: number } | Failure> {
    const cfg = this.config();
    if ("ok" in cfg) return cfg;
    const a = this.accountRow();
    if (!a || a.deleting || !this.deviceRow(deviceId)) return fail("UNAUTHORIZED", "wrong credentials");
    const now = Date.now();
    const secret = base64url(crypto.getRandomValues(new Uint8Array(32)));
    const expiresAt = now + cfg.WS_TICKET_TTL_SECONDS * 1000;
    this.sql.exec("DELETE FROM mb_tickets WHERE expires_at <= ?", now);
    this.sql.exec(
      "INSERT INTO mb_tickets (hash, device_id, expires_at) VALUES (?, ?, ?)",
      await sha256Hex(secret),
      deviceId,
      expiresAt,
    );
    return { ok: true, ticket: `${a.account_id}.${secret}`, expiresAt };
  }

  /** Only the WebSocket upgrade arrives by fetch, forwarded by the Worker after it authenticated the device. */
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket")
      return failure(fail("BAD_REQUEST", "expected a WebSocket upgrade"));
    const cfg = this.config();
    if ("ok" in cfg) return failure(cfg);
    const a = this.accountRow();
    if (!a || a.deleting) return failure(fail("UNAUTHORIZED", "wrong credentials"));
    let deviceId: number;
    const ticket = request.headers.get(INTERNAL_TICKET_HEADER);
    if (ticket !== null) {
      const row = this.sql
        .exec<{ device_id: number }>(
          "DELETE FROM mb_tickets WHERE hash = ? AND expires_at > ? RETURNING device_id",
          await sha256Hex(ticket),
          Date.now(),
        )
        .toArray()[0];
      if (!row) return failure(fail("UNAUTHORIZED", "the ticket is unknown, used or expired"));
      deviceId = row.device_id;
    } else {
      deviceId = Number(request.headers.get(INTERNAL_DEVICE_HEADER));
    }
    if (!this.deviceRow(deviceId)) return failure(fail("UNAUTHORIZED", "wrong credentials"));

    // One connection per device: the newer one wins (Signal closes the older with 4409).
    for (const old of this.ctx.getWebSockets(deviceTag(deviceId))) {
      this.forget(old);
      closeQuietly(old, CLOSE_CODES.displaced, "another connection of this device replaced this one");
    }
    const pair = new WebSocketPair();
    const client = pair[0];
    const server = pair[1];
    this.ctx.acceptWebSocket(server, [deviceTag(deviceId)]);
    const state: SocketState = {
      c: base64url(crypto.getRandomValues(new Uint8Array(9))),
      d: deviceId,
      t: Date.now(),
      e: 0,
      h: 0,
    };
    server.serializeAttachment(state);
    // Frames sent before the 101 goes out are buffered by the runtime and arrive in order after it.
    this.pump(server, cfg, Date.now());
    await this.scheduleAlarm();
    return new Response(null, { status: 101, webSocket: client });
  }

  // ---------- push wake-ups ----------

  /** Registers (or with null, removes) the device's Web Push endpoint. */
  async setPushEndpoint(deviceId: number, endpoint: string | null): Promise<{ ok: true } | Failure> {
    const a = this.accountRow();
    if (!a || a.deleting || !this.deviceRow(deviceId)) return fail("UNAUTHORIZED", "wrong credentials");
    if (endpoint === null) this.sql.exec("DELETE FROM push_endpoints WHERE device_id = ?", deviceId);
    else this.sql.exec("INSERT OR REPLACE INTO push_endpoints (device_id, endpoint) VALUES (?, ?)", deviceId, endpoint);
    this.pushEndpoints = undefined;
    this.lastPush.delete(deviceId);
    return { ok: true };
  }

  /** The device's registered endpoint, if it still has one (a 404/410 from its push service removes it). */
  async getPushEndpoint(deviceId: number): Promise<{ ok: true; endpoint: string | null } | Failure> {
    const a = this.accountRow();
    if (!a || a.deleting || !this.deviceRow(deviceId)) return fail("UNAUTHORIZED", "wrong credentials");
    return { ok: true, endpoint: this.pushEndpoint(deviceId) ?? null };
  }

  private pushEndpoint(deviceId: number): string | undefined {
    if (!this.pushEndpoints) {
      this.pushEndpoints = new Map();
      for (const r of this.sql.exec<{ device_id: number; endpoint: string }>(
        "SELECT device_id, endpoint FROM push_endpoints",
      ))
        this.pushEndpoints.set(r.device_id, r.endpoint);
    }
    return this.pushEndpoints.get(deviceId);
  }

  /**
   * Asks the device's push service to wake it: at most once per PUSH_MIN_INTERVAL_SECONDS, in the background
   * (the send has already been answered by then). A push service that says the subscription is gone (404, 410)
   * gets no more pushes: the endpoint is dropped until the device registers one again.
   */
  private wake(deviceId: number, urgent: boolean, cfg: Config, now: number): void {
    const key = cfg.VAPID_PRIVATE_KEY_JWK;
    if (!key) return;
    const endpoint = this.pushEndpoint(deviceId);
    if (!endpoint) return;
    const last = this.lastPush.get(deviceId);
    if (last !== undefined && now - last < cfg.PUSH_MIN_INTERVAL_SECONDS * 1000) return;
    this.lastPush.set(deviceId, now);
    if (this.vapid?.key !== key) this.vapid = { key, signer: new VapidSigner(key) };
    const signer = this.vapid.signer;
    const pushed = sendPush(signer, endpoint, {
      ttlSeconds: cfg.PUSH_TTL_SECONDS,
      urgent,
      subject: cfg.VAPID_SUBJECT,
    }).then(
      (status) => {
        if (status === 404 || status === 410) {
          this.sql.exec("DELETE FROM push_endpoints WHERE device_id = ? AND endpoint = ?", deviceId, endpoint);
          this.pushEndpoints = undefined;
          log("info", { event: "push_endpoint_gone", status });
        } else if (status >= 300) log("warn", { event: "push_refused", status });
      },
      (e: unknown) => log("warn", { event: "push_failed", error: String(e) }),
    );
    this.ctx.waitUntil(pushed);
  }

  // ---------- sending over the socket ----------

  /**
   * A send or send_multi frame: the same send as PUT /v1/messages/{accountId} or /v1/messages/multi, from the
   * device this connection authenticated at its upgrade. No request through the Worker and no password check:
   * the connection is the credential, and removing the device or deleting the account closes it (4410, 4411),
   * so access still ends at once. The device limit counts the frame as HTTP counts the request, then the same
   * checks run; the answer is a send_result frame with the status and body HTTP would have had.
   */
  private async socketSend(ws: WebSocket, s: SocketState, cfg: Config, f: SendFrame | SendMultiFrame): Promise<void> {
    let status = 200;
    let body: SendResultFrame["body"];
    const extra: Partial<SendResultFrame> = {};
    const me = this.accountRow();
    const out: { status: 200; body: SendResultFrame["body"]; replayed?: boolean } | Failure =
      !me || me.deleting || !this.deviceRow(s.d)
        ? fail("UNAUTHORIZED", "this device is no longer registered")
        : (this.takeSend(s.d, cfg) ??
          (f.type === "send"
            ? await this.frameSend(me.account_id, s.d, cfg, f)
            : await this.frameSendMulti(me.account_id, s.d, cfg, f)));
    if ("ok" in out) {
      status = statusOf(out.code);
      body = { code: out.code, message: out.message, requestId: f.id, ...out.extras };
      if (out.retryAfterSeconds !== undefined) extra.retryAfterSeconds = Math.max(1, Math.ceil(out.retryAfterSeconds));
    } else {
      body = out.body;
      if (out.replayed) extra.replayed = true;
    }
    safeSend(
      ws,
      JSON.stringify({ type: FRAME_TYPES.send_result, id: f.id, status, body, ...extra } satisfies SendResultFrame),
    );
  }

  /** The per-device send window, shared by HTTP sends (authorizeSend) and frames: a Failure when it is spent. */
  private takeSend(deviceId: number, cfg: Config): Failure | null {
    const rate = this.sendRates.take(
      `send:${deviceId}`,
      cfg.SENDS_PER_DEVICE_LIMIT,
      cfg.SENDS_PER_DEVICE_WINDOW_SECONDS,
    );
    return rate.allowed ? null : fail("RATE_LIMITED", "this device is sending too fast", {}, rate.retryAfterSeconds);
  }

  private async frameSend(
    accountId: string,
    deviceId: number,
    cfg: Config,
    f: SendFrame,
  ): Promise<{ status: 200; body: SendResultFrame["body"]; replayed: boolean } | Failure> {
    const tooBig = checkSizes(cfg.MAX_MESSAGE_BYTES, f.message.messages, "message.");
    if (tooBig) return tooBig;
    const destination = f.destination.toLowerCase();
    const m = f.message;
    const fields = { timestamp: m.timestamp, online: m.online, urgent: m.urgent, ttlSeconds: m.ttlSeconds };
    const req: DeliverRequest = {
      sender: { accountId, deviceId },
      messages: m.messages,
      ...fields,
      idempotency: f.idempotencyKey
        ? { key: f.idempotencyKey, digest: await requestDigest(destination, m.messages, fields) }
        : undefined,
    };
    const self = destination === accountId;
    let out: Delivered | Failure;
    try {
      out = self ? await this.deliver(req) : await this.env.ACCOUNT.getByName(destination).deliver(req);
    } catch (e) {
      log("error", { event: "storage_error", what: "mailbox", error: String(e) });
      out = fail("UNAVAILABLE", "mailbox did not answer; try again", {}, 1);
    }
    if (!out.ok) return out;
    const linked = this.deviceRows().length - 1;
    return {
      status: 200,
      body: { needsSync: !self && linked > 0, serverTimestamp: out.serverTimestamp },
      replayed: out.replayed,
    };
  }

  private async frameSendMulti(
    accountId: string,
    deviceId: number,
    cfg: Config,
    f: SendMultiFrame,
  ): Promise<{ status: 200; body: SendResultFrame["body"] } | Failure> {
    const refused = checkGroupSend(cfg, f.message);
    if (refused) return refused;
    const results = await fanOut(this.env.ACCOUNT, { accountId, deviceId }, f.message, f.idempotencyKey, (e) =>
      log("error", { event: "fan_out_failed", error: String(e) }),
    );
    return { status: 200, body: { needsSync: this.deviceRows().length > 1, results } };
  }

  // ---------- the socket ----------

  override async webSocketMessage(ws: WebSocket, data: string | ArrayBuffer): Promise<void> {
    try {
      if (typeof data !== "string") return sendError(ws, "BAD_REQUEST", "frames are JSON text");
      const cfg = this.config();
      if ("ok" in cfg) return sendError(ws, cfg.code, cfg.message);
      const maxChars = cfg.MAX_SEND_REQUEST_BYTES + CLIENT_FRAME_OVERHEAD_CHARS;
      if (data.length > maxChars)
        return sendError(
          ws,
          "PAYLOAD_TOO_LARGE",
          `a frame is at most ${maxChars} characters (MAX_SEND_REQUEST_BYTES + ${CLIENT_FRAME_OVERHEAD_CHARS})`,
        );
      let json: unknown;
      try {
        json = JSON.parse(data);
      } catch {
        return sendError(ws, "INVALID_JSON", "the frame is not JSON");
      }
      const parsed = ClientFrame.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        return sendError(ws, "BAD_REQUEST", `${issue?.path.join(".") || "frame"}: ${issue?.message ?? "invalid"}`);
      }
      const s = ws.deserializeAttachment() as SocketState;
      switch (parsed.data.type) {
        case "ack": {
          const deleted = store.ackMessages(this.sql, s, parsed.data.ids);
          if (deleted > 0) {
            this.totals.delete(s.d);
            this.earliest = undefined;
          }
          const state = this.live.get(s.c);
          if (state) state.inflight = Math.max(0, state.inflight - deleted);
          if (state?.caughtUp) return; // nothing waits: no need to look
          this.pump(ws, cfg, Date.now());
          return;
        }
        case "send":
        case "send_multi":
          return await this.socketSend(ws, s, cfg, parsed.data);
        case "ping":
          // A ping that is not byte-exact still counts as life, recorded on the socket for the idle check.
          ws.serializeAttachment({ ...s, t: Date.now() });
          ws.send(PONG_FRAME);
          return;
      }
    } catch (e) {
      log("error", { event: "ws_message_failed", error: String(e) });
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.forget(ws);
    // Answer the client's Close so it sees a clean close rather than 1006; unacked messages stay queued.
    closeQuietly(ws, code === 1005 || code === 1006 || code === 1015 ? CLOSE_CODES.normal : code, reason);
  }

  override async webSocketError(_ws: WebSocket, error: unknown): Promise<void> {
    log("warn", { event: "ws_error", error: String(error) });
  }

  /**
   * Sends the device's next messages not yet sent on this connection, oldest first, while fewer than
   * MAX_UNACKED_PER_CONNECTION are in flight; when none are left the first time, the queue-empty frame.
   */
  private pump(ws: WebSocket, cfg: Config, now: number): void {
    const s = ws.deserializeAttachment() as SocketState | null;
    if (!s || ws.readyState !== WebSocket.OPEN) return;
    const inflight = this.live.get(s.c)?.inflight ?? store.inFlight(this.sql, s);
    const room = cfg.MAX_UNACKED_PER_CONNECTION - inflight;
    if (room <= 0) {
      this.live.set(s.c, { inflight, caughtUp: false });
      return;
    }
    const rows = store.nextUnsent(this.sql, s, room, now);
    let sent = 0;
    for (const r of rows) {
      if (!safeSend(ws, r.frame)) break;
      sent++;
    }
    if (sent > 0) sentUpTo(ws, rows[sent - 1]!.seq);
    const caughtUp = sent === rows.length && rows.length < room;
    this.live.set(s.c, { inflight: inflight + sent, caughtUp });
    if (caughtUp && s.e === 0) {
      if (safeSend(ws, QUEUE_EMPTY_FRAME))
        ws.serializeAttachment({ ...(ws.deserializeAttachment() as SocketState), e: 1 });
    }
  }

  /** Drops what the object remembered about a connection that is closing. */
  private forget(ws: WebSocket): void {
    const s = ws.deserializeAttachment() as SocketState | null;
    if (s) this.live.delete(s.c);
  }

  private openSockets(deviceId: number): WebSocket[] {
    return this.ctx.getWebSockets(deviceTag(deviceId)).filter((ws) => ws.readyState === WebSocket.OPEN);
  }

  // ---------- hooks from the directory ----------

  protected override async onDeviceRemoved(deviceId: number): Promise<void> {
    store.dropDeviceQueue(this.sql, deviceId);
    this.pushEndpoints = undefined;
    this.lastPush.delete(deviceId);
    this.earliest = undefined;
    this.totals.delete(deviceId);
    for (const ws of this.ctx.getWebSockets(deviceTag(deviceId))) {
      this.forget(ws);
      closeQuietly(ws, CLOSE_CODES.deviceRemoved, "this device was removed");
    }
  }

  protected override async onPreKeysClaimed(
    remaining: { deviceId: number; count: number; pqCount: number }[],
  ): Promise<void> {
    const cfg = this.config();
    if ("ok" in cfg) return;
    const threshold = cfg.PREKEY_LOW_THRESHOLD;
    for (const r of remaining) {
      if (r.count >= threshold && r.pqCount >= threshold) continue;
      const frame = JSON.stringify({ type: FRAME_TYPES.keys_low, count: r.count, pqCount: r.pqCount, threshold });
      for (const ws of this.openSockets(r.deviceId)) safeSend(ws, frame);
    }
  }

  /**
   * Account deletion: sockets close and the mailbox goes first, before the directory's D1 rows, so a D1 outage
   * (which makes the outbox retry this whole step) never leaves a deleted account's sockets open or its
   * ciphertext stored. Both halves are idempotent.
   */
  protected override async purgeOwnedData(accountId: string, cfg: Config): Promise<void> {
    for (const ws of this.ctx.getWebSockets()) closeQuietly(ws, CLOSE_CODES.accountDeleted, "the account was deleted");
    this.live.clear();
    store.wipeMailbox(this.sql);
    this.pushEndpoints = undefined;
    this.lastPush.clear();
    this.earliest = undefined;
    this.totals.clear();
    this.nextSeq = 0;
    await super.purgeOwnedData(accountId, cfg);
  }

  /** The earliest of the directory's due time, the first message expiry, and the next idle check. */
  protected override nextAlarmAt(): number | null {
    if (!this.hasTables) return null;
    if (this.earliest === undefined) this.earliest = store.earliestExpiry(this.sql);
    const times = [super.nextAlarmAt(), this.earliest, this.nextIdleCheck()].filter((t): t is number => t !== null);
    return times.length ? Math.min(...times) : null;
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    if (this.hasTables) {
      // Expire first, so the directory's drain below schedules the next alarm from what is left, not from the
      // copies just deleted (which used to cost one extra alarm run 10 ms later). Expired copies may have been
      // in flight: recount from SQLite on the next event.
      this.earliest = undefined;
      if (store.expire(this.sql, now) > 0) {
        this.live.clear();
        this.totals.clear();
      }
    }
    await super.alarm();
    if (!this.hasTables) return; // the account was deleted: nothing left to expire or watch
    const cfg = this.config();
    if (!("ok" in cfg)) {
      const windows = Object.entries(cfg)
        .filter(([k]) => k.endsWith("_WINDOW_SECONDS"))
        .map(([, v]) => v as number);
      this.rates.prune(now - Math.max(...windows) * 1000);
      this.sendRates.prune(now - Math.max(...windows) * 1000);
      for (const ws of this.ctx.getWebSockets()) {
        const last = this.lastSign(ws);
        if (last !== null && now - last >= cfg.IDLE_TIMEOUT_SECONDS * 1000) {
          this.forget(ws);
          closeQuietly(ws, CLOSE_CODES.idle, "no ping for too long");
        }
      }
    }
    await this.scheduleAlarm();
  }

  /** When the socket last showed life: its last auto-answered ping, or a manual ping, or its opening. */
  private lastSign(ws: WebSocket): number | null {
    if (ws.readyState !== WebSocket.OPEN) return null;
    const s = ws.deserializeAttachment() as SocketState | null;
    const ping = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
    return Math.max(ping, s?.t ?? 0);
  }

  private nextIdleCheck(): number | null {
    const cfg = this.config();
    if ("ok" in cfg) return null;
    let next: number | null = null;
    for (const ws of this.ctx.getWebSockets()) {
      const last = this.lastSign(ws);
      if (last === null) continue;
      const due = last + cfg.IDLE_TIMEOUT_SECONDS * 1000;
      next = next === null ? due : Math.min(next, due);
    }
    return next;
  }

  /** Test and operations aid: queued copies per device. */
  async queueDepth(deviceId: number): Promise<{ messages: number; bytes: number }> {
    if (!this.hasTables) return { messages: 0, bytes: 0 };
    return this.queueTotals(deviceId);
  }

  /**
   * Queue sequence numbers only ever grow, even when the queue empties (SQLite would reuse rowids then, and a
   * connection's SocketState.h must stay meaningful). They are reserved in storage a thousand at a time, so a
   * message costs no extra row; after a restart numbering resumes above the last reservation. Call inside the
   * transaction that inserts the message.
   */
  private allocateSeq(): number {
    if (this.nextSeq === 0) {
      const reserved = store.reservedSeq(this.sql);
      this.nextSeq = reserved + 1;
      this.reservedSeq = reserved;
    }
    if (this.nextSeq > this.reservedSeq) {
      this.reservedSeq = this.nextSeq + 999;
      store.reserveSeq(this.sql, this.reservedSeq);
    }
    return this.nextSeq++;
  }

  private queueTotals(deviceId: number): { messages: number; bytes: number } {
    let t = this.totals.get(deviceId);
    if (!t) {
      t = store.queueTotals(this.sql, deviceId);
      this.totals.set(deviceId, t);
    }
    return t;
  }
}

/** Records on the socket that every copy of its device up to `seq` has gone out on it (SocketState.h). */
function sentUpTo(ws: WebSocket, seq: number): void {
  const s = ws.deserializeAttachment() as SocketState;
  if (seq > s.h) ws.serializeAttachment({ ...s, h: seq });
}

function safeSend(ws: WebSocket, frame: string): boolean {
  try {
    ws.send(frame);
    return true;
  } catch {
    return false; // closed meanwhile: whatever was not sent stays queued for the next connection
  }
}

function closeQuietly(ws: WebSocket, code: number, reason: string) {
  try {
    ws.close(code, reason);
  } catch {
    // already closed
  }
}

function sendError(ws: WebSocket, code: ErrorCode, message: string) {
  safeSend(ws, JSON.stringify({ type: FRAME_TYPES.error, code, message }));
}

/** A refusal of the upgrade as the Worker expects it: the Failure as JSON with its status. */
function failure(f: Failure): Response {
  return Response.json(f, { status: 400 });
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

async function sha256Hex(text: string): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return [...h].map((x) => x.toString(16).padStart(2, "0")).join("");
}
