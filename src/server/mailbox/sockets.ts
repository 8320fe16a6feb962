// The account's device connections on the Hibernation API: single-use tickets for browsers, one connection per
// device, the in-flight window that paces a queue onto a connection, acks, the idle close, and the frame
// plumbing (parse what arrives, never throw on what leaves). The queued copies themselves are in queues.ts.
import { randomBytes, toBase64Url, utf8 } from "../../crypto/bytes.ts";
import type { TimerHandle } from "../../protocol/clock.ts";
import type { ErrorCode } from "../../protocol/errors.ts";
import {
  CLIENT_FRAME_OVERHEAD_CHARS,
  CLOSE_CODES,
  ClientFrame,
  FRAME_TYPES,
  PONG_FRAME,
} from "../../protocol/frames.ts";
import type { PartContext } from "../account/context.ts";
import { sha256Hex } from "../account/credentials.ts";
import type { Config } from "../config.ts";
import type { Failure } from "../errors.ts";
import type { MessageQueues } from "./queues.ts";

const QUEUE_EMPTY_FRAME = `{"type":"${FRAME_TYPES.queue_empty}"}`;
const deviceTag = (deviceId: number) => `d${deviceId}`;

/** What each socket carries through hibernation (serializeAttachment): small, ids not data. */
export interface SocketState {
  /** Connection id, the key of what the object remembers about the connection while awake. */
  c: string;
  /**
   * The highest sequence number sent on this connection. A connection sends its device's queue in order from
   * the oldest copy, so every copy of the device with `seq <= h` went out on it: exactly the copies an ack on
   * this connection may delete. Kept on the socket (it survives hibernation) instead of in each row, which
   * would cost an index and an UPDATE per copy.
   */
  h: number;
  /** Device id. */
  d: number;
  /** When the connection opened (ms): the idle baseline until the first ping. */
  t: number;
  /** 1 once the queue-empty frame went out on this connection. */
  e: 0 | 1;
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

/** Copies of one send for connected devices, handed over after its transaction commits (see `handOff`). */
export interface HandOff {
  direct: { ws: WebSocket; frame: string; state: LiveState; seq: number }[];
  pumpAfter: WebSocket[];
}

/** A copy for a connected, caught-up device, pushed before it is stored (MAX_ACK_WAIT_MS; intake.ts). */
export interface PushedCopy {
  /** The copy's message id, which its ack names. */
  id: string;
  frame: string;
  deviceId: number;
  ws: WebSocket;
}

/** A pushed copy that was stored after all (no ack in time), with its sequence number. */
export interface StoredAfterPush extends PushedCopy {
  seq: number;
}

/** The Hibernation API calls this part makes on the object's state. */
export type WebSocketHost = Pick<
  DurableObjectState,
  "acceptWebSocket" | "getWebSockets" | "getWebSocketAutoResponseTimestamp"
>;

export class DeviceSockets {
  readonly #live = new Map<string, LiveState>();
  /** Connections whose device has a send of its own being handled here (send and send_multi frames). */
  readonly #sending = new Map<string, number>();
  /**
   * Copies pushed before they were stored, by message id, while their send waits for the ack: the connection
   * they went out on and what to call when it acks them (true) or closes (false). Memory only: if the object
   * goes, so does the send waiting on them, which then never answered 200.
   */
  readonly #awaiting = new Map<string, { conn: string; settle(acked: boolean): void }>();

  constructor(
    private readonly ctx: PartContext,
    private readonly host: WebSocketHost,
    private readonly queues: MessageQueues,
  ) {}

  createTables(): void {
    this.ctx.sql.exec(
      "CREATE TABLE IF NOT EXISTS mb_tickets (hash TEXT PRIMARY KEY, device_id INTEGER NOT NULL, expires_at INTEGER NOT NULL)",
    );
  }

  // ---------- tickets and connecting ----------

  /** A single-use ticket for browsers, which cannot set headers on a WebSocket; only its hash is stored. */
  async createTicket(accountId: string, deviceId: number, cfg: Config): Promise<{ ticket: string; expiresAt: number }> {
    const now = this.ctx.clock.now();
    const secret = toBase64Url(randomBytes(32));
    const expiresAt = now + cfg.WS_TICKET_TTL_SECONDS * 1000;
    this.ctx.sql.exec("DELETE FROM mb_tickets WHERE expires_at <= ?", now);
    this.ctx.sql.exec(
      "INSERT INTO mb_tickets (hash, device_id, expires_at) VALUES (?, ?, ?)",
      await sha256Hex(utf8(secret)),
      deviceId,
      expiresAt,
    );
    return { ticket: `${accountId}.${secret}`, expiresAt };
  }

  /** Uses up a live ticket; answers its device, or undefined for a ticket unknown, used or expired. */
  async redeemTicket(secret: string): Promise<number | undefined> {
    const hash = await sha256Hex(utf8(secret));
    return this.ctx.sql
      .exec<{ device_id: number }>(
        "DELETE FROM mb_tickets WHERE hash = ? AND expires_at > ? RETURNING device_id",
        hash,
        this.ctx.clock.now(),
      )
      .toArray()[0]?.device_id;
  }

  /**
   * Accepts a connection for the device and starts sending its queue; answers the client end. One connection
   * per device: the newer one wins (Signal closes the older with 4409).
   */
  accept(deviceId: number, cfg: Config): WebSocket {
    for (const old of this.host.getWebSockets(deviceTag(deviceId))) {
      this.forget(old);
      closeQuietly(old, CLOSE_CODES.displaced, "another connection of this device replaced this one");
    }
    const pair = new WebSocketPair();
    const server = pair[1];
    this.host.acceptWebSocket(server, [deviceTag(deviceId)]);
    const state: SocketState = { c: toBase64Url(randomBytes(9)), d: deviceId, t: this.ctx.clock.now(), e: 0, h: 0 };
    server.serializeAttachment(state);
    // Frames sent before the 101 goes out are buffered by the runtime and arrive in order after it.
    this.pump(server, cfg, this.ctx.clock.now());
    return pair[0];
  }

  // ---------- frames from the device ----------

  /** Parses a client frame; anything else is answered with an error frame (the socket stays open). */
  readFrame(ws: WebSocket, data: string | ArrayBuffer, cfg: Config | Failure): ClientFrame | undefined {
    if (typeof data !== "string") return sendError(ws, "BAD_REQUEST", "frames are JSON text");
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
    return parsed.data;
  }

  /**
   * An ack: settles the copies it names that were pushed on this connection before being stored (nothing to
   * delete: they were never written), deletes what it names among the copies sent on this connection, then
   * refills the window.
   */
  ack(ws: WebSocket, ids: string[], cfg: Config): void {
    const s = ws.deserializeAttachment() as SocketState;
    let settled = 0;
    let rest = ids;
    if (this.#awaiting.size > 0) {
      rest = [];
      for (const id of ids) {
        const waiting = this.#awaiting.get(id);
        if (waiting && waiting.conn === s.c) {
          waiting.settle(true);
          settled++;
        } else rest.push(id);
      }
    }
    const deleted = rest.length > 0 ? this.queues.ack(s.d, s.h, rest) : 0;
    const state = this.#live.get(s.c);
    if (state) state.inflight = Math.max(0, state.inflight - deleted - settled);
    if (state?.caughtUp) return; // nothing waits: no need to look
    this.pump(ws, cfg, this.ctx.clock.now());
  }

  /** A ping that is not byte-exact (the runtime answers those) still counts as life for the idle check. */
  ping(ws: WebSocket): void {
    ws.serializeAttachment({ ...(ws.deserializeAttachment() as SocketState), t: this.ctx.clock.now() });
    ws.send(PONG_FRAME);
  }

  /** The device closed: answer its Close so it sees a clean close rather than 1006; unacked copies stay queued. */
  closed(ws: WebSocket, code: number, reason: string): void {
    this.forget(ws);
    closeQuietly(ws, code === 1005 || code === 1006 || code === 1015 ? CLOSE_CODES.normal : code, reason);
  }

  // ---------- frames to the device ----------

  /**
   * Sends the device's next messages not yet sent on this connection, oldest first, while fewer than
   * MAX_UNACKED_PER_CONNECTION are in flight; when none are left the first time, the queue-empty frame.
   */
  pump(ws: WebSocket, cfg: Config, now: number): void {
    const s = ws.deserializeAttachment() as SocketState | null;
    if (!s || ws.readyState !== WebSocket.OPEN) return;
    const inflight = this.#live.get(s.c)?.inflight ?? this.queues.inFlight(s.d, s.h);
    const room = cfg.MAX_UNACKED_PER_CONNECTION - inflight;
    if (room <= 0) {
      this.#live.set(s.c, { inflight, caughtUp: false });
      return;
    }
    const rows = this.queues.nextUnsent(s.d, s.h, room, now);
    let sent = 0;
    for (const r of rows) {
      if (!safeSend(ws, r.frame)) break;
      sent++;
    }
    if (sent > 0) sentUpTo(ws, rows[sent - 1]!.seq);
    const caughtUp = sent === rows.length && rows.length < room;
    this.#live.set(s.c, { inflight: inflight + sent, caughtUp });
    if (caughtUp && s.e === 0) {
      if (safeSend(ws, QUEUE_EMPTY_FRAME))
        ws.serializeAttachment({ ...(ws.deserializeAttachment() as SocketState), e: 1 });
    }
  }

  /**
   * Plans how a copy just queued (inside the send's transaction) reaches the device's connections: one that
   * has sent everything and has room in its window gets it straight after the commit, already counted in
   * flight; any other is pumped from SQLite. Answers whether the device has a connection open at all.
   */
  handOff(plan: HandOff, deviceId: number, frame: string, seq: number, cfg: Config): boolean {
    const sockets = this.open(deviceId);
    for (const ws of sockets) {
      const s = ws.deserializeAttachment() as SocketState;
      const state = this.#live.get(s.c);
      if (state?.caughtUp && s.e === 1 && state.inflight < cfg.MAX_UNACKED_PER_CONNECTION)
        plan.direct.push({ ws, frame, state, seq });
      else plan.pumpAfter.push(ws);
    }
    return sockets.length > 0;
  }

  /** Sends what `handOff` planned, once the copies are durable. */
  flush(plan: HandOff, cfg: Config, now: number): void {
    for (const d of plan.direct) {
      if (safeSend(d.ws, d.frame)) {
        d.state.inflight++;
        sentUpTo(d.ws, d.seq);
      } else d.state.caughtUp = false; // stays queued for the next connection
    }
    for (const ws of plan.pumpAfter) this.pump(ws, cfg, now);
  }

  // ---------- copies pushed before they are stored (MAX_ACK_WAIT_MS) ----------

  /**
   * The connection a copy for the device may be pushed on before it is stored: the device's only open
   * connection, caught up (queue-empty sent, nothing of its queue unsent) with room in its window; else null.
   */
  pushTarget(deviceId: number, cfg: Config): WebSocket | null {
    const sockets = this.open(deviceId);
    if (sockets.length !== 1) return null;
    const ws = sockets[0]!;
    const s = ws.deserializeAttachment() as SocketState;
    const state = this.#live.get(s.c);
    // A device waiting on its own send may not ack until that send is answered (the SDK sends under one lock), and
    // that send may itself wait on an ack from this sender's device: crossing sends would each wait the whole
    // MAX_ACK_WAIT_MS. A copy for such a device is stored first instead.
    if (this.#sending.has(s.c)) return null;
    return state?.caughtUp && s.e === 1 && state.inflight < cfg.MAX_UNACKED_PER_CONNECTION ? ws : null;
  }

  /** Runs the handling of a send frame from `ws`'s device, marking the connection as sending meanwhile. */
  async sending<T>(ws: WebSocket, handle: () => Promise<T>): Promise<T> {
    const c = (ws.deserializeAttachment() as SocketState).c;
    this.#sending.set(c, (this.#sending.get(c) ?? 0) + 1);
    try {
      return await handle();
    } finally {
      const left = (this.#sending.get(c) ?? 1) - 1;
      if (left > 0) this.#sending.set(c, left);
      else this.#sending.delete(c);
    }
  }

  /**
   * Pushes copies that are not stored and waits, at most `waitMs`, for their acks; answers per copy whether it
   * was acked on the connection it went out on. A copy whose push failed, or whose connection closed, answers
   * false at once; so does every copy still unacked when the time is up (a later ack then goes to the queue).
   */
  pushAwaitingAck(copies: PushedCopy[], waitMs: number): Promise<boolean[]> {
    const acked = copies.map(() => false);
    return new Promise((resolve) => {
      let left = copies.length;
      let finished = false;
      let timer: TimerHandle | undefined;
      const finish = () => {
        if (finished) return;
        finished = true;
        if (timer !== undefined) this.ctx.clock.clearTimeout(timer);
        for (const c of copies) this.#awaiting.delete(c.id);
        resolve(acked);
      };
      copies.forEach((c, i) => {
        const s = c.ws.deserializeAttachment() as SocketState;
        const state = this.#live.get(s.c);
        if (!state || !safeSend(c.ws, c.frame)) {
          left--;
          return;
        }
        state.inflight++;
        this.#awaiting.set(c.id, {
          conn: s.c,
          settle: (yes) => {
            if (!this.#awaiting.delete(c.id)) return;
            acked[i] = yes;
            if (--left === 0) finish();
          },
        });
      });
      if (left === 0) finish();
      else timer = this.ctx.clock.setTimeout(finish, waitMs);
    });
  }

  /**
   * Pushed copies stored after all (call once their transaction committed): on the connection they went out on,
   * still caught up, each is in flight from here like any copy sent on it (its ack deletes it); any other open
   * connection of the device (or that one, if it fell behind meanwhile) sends it from the queue.
   */
  storedAfterPush(copies: StoredAfterPush[], cfg: Config, now: number): void {
    for (const c of copies) {
      const pushedOn = (c.ws.deserializeAttachment() as SocketState | null)?.c;
      for (const ws of this.open(c.deviceId)) {
        const s = ws.deserializeAttachment() as SocketState;
        const state = this.#live.get(s.c);
        if (s.c === pushedOn && state?.caughtUp) {
          sentUpTo(ws, c.seq);
          continue;
        }
        if (s.c === pushedOn && state) state.inflight = Math.max(0, state.inflight - 1);
        this.pump(ws, cfg, now);
      }
    }
  }

  /** Sends a frame that is never stored (online messages, keys_low) to the device's open connections. */
  tell(deviceId: number, frame: string): void {
    for (const ws of this.open(deviceId)) safeSend(ws, frame);
  }

  open(deviceId: number): WebSocket[] {
    return this.host.getWebSockets(deviceTag(deviceId)).filter((ws) => ws.readyState === WebSocket.OPEN);
  }

  // ---------- forgetting and closing ----------

  /**
   * Drops what the object remembered about a connection that is closing; copies pushed on it before being
   * stored stop waiting for their ack (their sends store them now).
   */
  forget(ws: WebSocket): void {
    const s = ws.deserializeAttachment() as SocketState | null;
    if (!s) return;
    this.#live.delete(s.c);
    for (const [, waiting] of this.#awaiting) if (waiting.conn === s.c) waiting.settle(false);
  }

  /** Forgets every connection's window (copies expired: the next event recounts from SQLite). */
  forgetAll(): void {
    this.#live.clear();
  }

  /** A removed device: its tickets go and its connection closes with 4410. */
  dropDevice(deviceId: number): void {
    this.ctx.sql.exec("DELETE FROM mb_tickets WHERE device_id = ?", deviceId);
    for (const ws of this.host.getWebSockets(deviceTag(deviceId))) {
      this.forget(ws);
      closeQuietly(ws, CLOSE_CODES.deviceRemoved, "this device was removed");
    }
  }

  /** The account is deleted: every connection closes with 4411 and every ticket goes. */
  wipe(): void {
    for (const ws of this.host.getWebSockets()) {
      this.forget(ws);
      closeQuietly(ws, CLOSE_CODES.accountDeleted, "the account was deleted");
    }
    this.#live.clear();
    this.ctx.sql.exec("DELETE FROM mb_tickets");
  }

  expireTickets(now: number): void {
    this.ctx.sql.exec("DELETE FROM mb_tickets WHERE expires_at <= ?", now);
  }

  /** Closes every connection that showed no life for IDLE_TIMEOUT_SECONDS. */
  closeIdle(cfg: Config, now: number): void {
    for (const ws of this.host.getWebSockets()) {
      const last = this.#lastSign(ws);
      if (last !== null && now - last >= cfg.IDLE_TIMEOUT_SECONDS * 1000) {
        this.forget(ws);
        closeQuietly(ws, CLOSE_CODES.idle, "no ping for too long");
      }
    }
  }

  /** When the next connection falls idle, if nothing is heard from it; null with none open. */
  nextIdleCheck(cfg: Config): number | null {
    let next: number | null = null;
    for (const ws of this.host.getWebSockets()) {
      const last = this.#lastSign(ws);
      if (last === null) continue;
      const due = last + cfg.IDLE_TIMEOUT_SECONDS * 1000;
      next = next === null ? due : Math.min(next, due);
    }
    return next;
  }

  /**
   * When the socket last showed life: its last auto-answered ping (stamped by the runtime, which answers
   * those without waking the object), a manual ping, or its opening.
   */
  #lastSign(ws: WebSocket): number | null {
    if (ws.readyState !== WebSocket.OPEN) return null;
    const s = ws.deserializeAttachment() as SocketState | null;
    const ping = this.host.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
    return Math.max(ping, s?.t ?? 0);
  }
}

/** Records on the socket that every copy of its device up to `seq` has gone out on it (SocketState.h). */
function sentUpTo(ws: WebSocket, seq: number): void {
  const s = ws.deserializeAttachment() as SocketState;
  if (seq > s.h) ws.serializeAttachment({ ...s, h: seq });
}

/** Sends a frame; false when the socket closed meanwhile (whatever was not sent stays queued). */
export function safeSend(ws: WebSocket, frame: string): boolean {
  try {
    ws.send(frame);
    return true;
  } catch {
    return false;
  }
}

function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    // already closed
  }
}

function sendError(ws: WebSocket, code: ErrorCode, message: string): undefined {
  safeSend(ws, JSON.stringify({ type: FRAME_TYPES.error, code, message }));
  return undefined;
}
