// The device's one long-lived mailbox WebSocket: a single-use ticket per connection (browsers cannot set headers on
// a WebSocket), keep-alive pings the relay answers without waking the mailbox, and reconnection with capped backoff
// and full jitter (AWS Architecture Blog) until stopped or told the device is gone; every timer on the client's Clock.
import { fromUtf8 } from "../crypto/bytes.ts";
import { type Clock, systemClock, type TimerHandle } from "../protocol/clock.ts";
import {
  CLOSE_CODES,
  PING_FRAME,
  ServerFrame,
  type SendFrameInput,
  type SendMultiFrameInput,
  type SendResultFrame,
} from "../protocol/frames.ts";
import { WebSocketTicketResponse } from "../protocol/messages.ts";
import { CipherpostError } from "./errors.ts";
import type { Credentials, RelayHttp } from "./http.ts";

/** A WHATWG WebSocket constructor: the global one in browsers, Workers and Node 22+, `ws` or undici's in Node 20. */
export type WebSocketConstructor = new (url: string) => WebSocket;

export interface ConnectionOptions {
  /** First reconnect delay's upper bound (ms); doubles per failed attempt. Default 500. */
  initialDelayMs?: number;
  /** Cap of the reconnect delay (ms). Default 30 000. */
  maxDelayMs?: number;
  /** Keep-alive ping interval (ms); the relay closes a socket silent for IDLE_TIMEOUT_SECONDS (90). Default 30 000. */
  keepAliveMs?: number;
  /** Reconnect when a ping is not answered within this (ms). Default 10 000. */
  pongTimeoutMs?: number;
  /** Give up on an opening socket after this (ms). Default 15 000. */
  openTimeoutMs?: number;
  /** Give up waiting for a send frame's answer after this (ms); the caller then retries over HTTP. Default 10 000. */
  sendTimeoutMs?: number;
}

export type ConnectionEvent =
  | { state: "connecting"; attempt: number }
  | { state: "open" }
  | { state: "closed"; code: number; reason: string; reconnectInMs: number | null };

export interface MailboxSocket {
  /** Acks on the connection the messages came on (an ack on another deletes nothing). False if it has closed. */
  ack(ids: string[]): boolean;
  readonly open: boolean;
}

/** A send frame's answer did not come (the connection closed, or it took too long): retry with the same idempotency key. */
export class SendNotAnswered extends Error {}

export interface ConnectionHandlers {
  frame(socket: MailboxSocket, frame: ServerFrame): void;
  event(e: ConnectionEvent): void;
  /** The relay says this device is gone, or another connection displaced this one; no more reconnects. */
  fatal(error: CipherpostError): void;
  /** A frame that does not parse (logged by the application; the connection stays). */
  protocolError(error: CipherpostError): void;
}

const FATAL_CLOSES: Record<number, string> = {
  [CLOSE_CODES.displaced]: "another connection of this device replaced this one",
  [CLOSE_CODES.deviceRemoved]: "this device was removed from its account",
  [CLOSE_CODES.accountDeleted]: "the account was deleted",
};

/** Connections shorter than this do not reset the backoff, so a relay that accepts and drops at once is not hammered. */
const STABLE_MS = 5_000;

export class MailboxConnection {
  readonly #http: RelayHttp;
  readonly #auth: Credentials;
  readonly #WebSocket: WebSocketConstructor;
  readonly #handlers: ConnectionHandlers;
  readonly #o: Required<ConnectionOptions>;
  #running = false;
  #ws: WebSocket | null = null;
  /** Ends the current socket's session without waiting for its close event. */
  #forceFinish: (() => void) | null = null;
  #immediate = false;
  #failFast = false;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #firstOpen: { resolve: () => void; reject: (e: unknown) => void; promise: Promise<void> } | null = null;
  /** Send frames waiting for their send_result, by frame id; failed with SendNotAnswered when the socket ends. */
  readonly #pending = new Map<
    string,
    { resolve: (r: SendResultFrame) => void; reject: (e: unknown) => void; timer: TimerHandle }
  >();
  #nextSendId = 0;
  readonly #clock: Clock;

  constructor(
    http: RelayHttp,
    auth: Credentials,
    WebSocketImpl: WebSocketConstructor,
    handlers: ConnectionHandlers,
    options: ConnectionOptions = {},
    clock: Clock = systemClock,
  ) {
    this.#clock = clock;
    this.#http = http;
    this.#auth = auth;
    this.#WebSocket = WebSocketImpl;
    this.#handlers = handlers;
    this.#o = {
      initialDelayMs: options.initialDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      keepAliveMs: options.keepAliveMs ?? 30_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      openTimeoutMs: options.openTimeoutMs ?? 15_000,
      sendTimeoutMs: options.sendTimeoutMs ?? 10_000,
    };
  }

  get running(): boolean {
    return this.#running;
  }

  /**
   * Starts the loop; resolves when the first connection is open, rejects if the device is refused before that.
   * With `failFast`, a first attempt that fails (relay unreachable, refused) rejects and stops instead of retrying.
   */
  start(options: { failFast?: boolean } = {}): Promise<void> {
    if (this.#running && this.#firstOpen) return this.#firstOpen.promise;
    this.#running = true;
    this.#failFast = options.failFast ?? false;
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined);
    this.#firstOpen = { resolve, reject, promise };
    this.#loop = this.#run();
    return promise;
  }

  /**
   * Sends one message over the open socket (a send frame) and resolves with the relay's answer. Null when no
   * socket is open. Rejects with SendNotAnswered when the socket ends or the answer is late: the send may or may
   * not have been stored, so retry it (over HTTP) with the same idempotency key.
   */
  send(frame: Omit<SendFrameInput, "id"> | Omit<SendMultiFrameInput, "id">): Promise<SendResultFrame> | null {
    const ws = this.#ws;
    if (ws?.readyState !== 1) return null;
    const id = `s${++this.#nextSendId}`;
    return new Promise<SendResultFrame>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#pending.delete(id);
        reject(new SendNotAnswered(`no answer to send ${id} within ${this.#o.sendTimeoutMs} ms`));
      }, this.#o.sendTimeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      try {
        ws.send(JSON.stringify({ ...frame, id }));
      } catch (e) {
        this.#clock.clearTimeout(timer);
        this.#pending.delete(id);
        reject(new SendNotAnswered(`the connection refused the frame: ${String(e)}`));
      }
    });
  }

  #failPending(reason: string): void {
    for (const [id, p] of this.#pending) {
      this.#clock.clearTimeout(p.timer);
      p.reject(new SendNotAnswered(`send ${id}: ${reason}`));
    }
    this.#pending.clear();
  }

  /** Closes the socket and stops reconnecting. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    this.#closeSocket(CLOSE_CODES.normal, "client closing");
    await this.#loop;
    this.#loop = null;
  }

  /** Drops the current socket and connects again at once (after a network change, or to test recovery). */
  reconnect(): void {
    this.#immediate = true;
    this.#closeSocket(4000, "client reconnecting");
    this.#wake?.();
  }

  #closeSocket(code: number, reason: string): void {
    const ws = this.#ws;
    if (!ws) return;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    // A socket whose peer has vanished may never deliver its close event: stop waiting for it after a second.
    const force = this.#forceFinish;
    if (force) this.#clock.setTimeout(force, 1000);
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const clock = this.#clock;
      const t = clock.setTimeout(done, ms);
      function done() {
        clock.clearTimeout(t);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = null;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (this.#running) {
      this.#handlers.event({ state: "connecting", attempt });
      let openedAt: number | null = null;
      let closeCode = 1006;
      let closeReason = "";
      try {
        const { ticket } = await this.#http.json("POST", "/v1/websocket/ticket", WebSocketTicketResponse, {
          auth: this.#auth,
        });
        const result = await this.#session(ticket, () => {
          openedAt = this.#clock.now();
          this.#failFast = false;
          this.#handlers.event({ state: "open" });
          this.#firstOpen?.resolve();
        });
        closeCode = result.code;
        closeReason = result.reason;
      } catch (e) {
        const err = CipherpostError.is(e) ? e : new CipherpostError("UNREACHABLE", String(e), { cause: e });
        if (err.code === "UNAUTHORIZED" || err.code === "NOT_FOUND") {
          this.#fail(
            new CipherpostError("DEVICE_REMOVED", `the relay refused this device's credentials: ${err.message}`, {
              cause: err,
            }),
          );
          return;
        }
        closeReason = err.message;
        if (this.#failFast) {
          this.#running = false;
          this.#firstOpen?.reject(err);
          this.#handlers.event({ state: "closed", code: closeCode, reason: closeReason, reconnectInMs: null });
          return;
        }
      }
      const fatal = FATAL_CLOSES[closeCode];
      if (fatal) {
        this.#handlers.event({ state: "closed", code: closeCode, reason: closeReason, reconnectInMs: null });
        this.#fail(
          new CipherpostError(closeCode === CLOSE_CODES.displaced ? "CLOSED" : "DEVICE_REMOVED", fatal, {
            extras: { closeCode },
          }),
        );
        return;
      }
      if (!this.#running) {
        this.#handlers.event({ state: "closed", code: closeCode, reason: closeReason, reconnectInMs: null });
        break;
      }
      if (this.#failFast && openedAt === null) {
        this.#running = false;
        this.#firstOpen?.reject(
          new CipherpostError(
            "UNREACHABLE",
            `the mailbox connection did not open: ${closeReason || `closed with ${closeCode}`}`,
          ),
        );
        this.#handlers.event({ state: "closed", code: closeCode, reason: closeReason, reconnectInMs: null });
        return;
      }
      if (openedAt !== null && this.#clock.now() - openedAt >= STABLE_MS) attempt = 0;
      const delay = this.#immediate
        ? 0
        : Math.floor(Math.random() * Math.min(this.#o.maxDelayMs, this.#o.initialDelayMs * 2 ** attempt));
      this.#immediate = false;
      attempt = Math.min(attempt + 1, 30);
      this.#handlers.event({ state: "closed", code: closeCode, reason: closeReason, reconnectInMs: delay });
      if (delay > 0) await this.#sleep(delay);
    }
    this.#firstOpen?.reject(new CipherpostError("CLOSED", "the client was closed before it connected"));
  }

  #fail(error: CipherpostError): void {
    this.#running = false;
    this.#firstOpen?.reject(error);
    this.#handlers.fatal(error);
  }

  /** One socket's life: resolves with its close code once it is closed. */
  #session(ticket: string, onOpen: () => void): Promise<{ code: number; reason: string }> {
    const base = this.#http.server.replace(/^http/, "ws");
    const ws = new this.#WebSocket(`${base}/v1/websocket?ticket=${encodeURIComponent(ticket)}`);
    this.#ws = ws;
    const o = this.#o;
    const clock = this.#clock;
    return new Promise((resolve) => {
      let settled = false;
      let ping: TimerHandle | undefined;
      let pongDeadline: TimerHandle | undefined;
      const openTimer = clock.setTimeout(() => finish(1006, "the connection did not open in time"), o.openTimeoutMs);
      const socket: MailboxSocket = {
        ack: (ids) => {
          if (ws.readyState !== 1 || settled) return false;
          try {
            ws.send(JSON.stringify({ type: "ack", ids }));
            return true;
          } catch {
            return false;
          }
        },
        get open() {
          return ws.readyState === 1 && !settled;
        },
      };
      const finish = (code: number, reason: string) => {
        if (settled) return;
        settled = true;
        clock.clearTimeout(openTimer);
        clock.clearTimeout(ping);
        clock.clearTimeout(pongDeadline);
        if (this.#ws === ws) {
          this.#ws = null;
          this.#forceFinish = null;
          this.#failPending(`the connection closed before the answer (${code} ${reason})`);
        }
        if (ws.readyState === 0 || ws.readyState === 1) {
          try {
            ws.close(code >= 3000 && code < 5000 ? code : 1000);
          } catch {
            // ignore
          }
        }
        resolve({ code, reason });
      };
      this.#forceFinish = () => finish(4000, "closed by the client");
      // A ping every keepAliveMs; the pong deadline starts at the first unanswered one.
      const keepAlive = () => {
        ping = clock.setTimeout(() => {
          if (settled) return;
          keepAlive();
          try {
            ws.send(PING_FRAME);
          } catch {
            return;
          }
          if (pongDeadline === undefined)
            pongDeadline = clock.setTimeout(() => finish(4001, "keep-alive ping was not answered"), o.pongTimeoutMs);
        }, o.keepAliveMs);
      };
      ws.addEventListener("open", () => {
        clock.clearTimeout(openTimer);
        onOpen();
        keepAlive();
      });
      ws.addEventListener("message", (ev: MessageEvent) => {
        if (settled) return;
        let frame: ServerFrame;
        try {
          const text = typeof ev.data === "string" ? ev.data : fromUtf8(new Uint8Array(ev.data as ArrayBuffer));
          const parsed = ServerFrame.safeParse(JSON.parse(text));
          if (!parsed.success) throw new Error(parsed.error.issues[0]?.message ?? "invalid frame");
          frame = parsed.data;
        } catch (e) {
          this.#handlers.protocolError(
            new CipherpostError("INVALID_RESPONSE", `a frame from the relay does not parse: ${String(e)}`),
          );
          return;
        }
        if (frame.type === "pong") {
          clock.clearTimeout(pongDeadline);
          pongDeadline = undefined;
          return;
        }
        if (frame.type === "send_result") {
          const p = this.#pending.get(frame.id);
          if (p) {
            this.#pending.delete(frame.id);
            this.#clock.clearTimeout(p.timer);
            p.resolve(frame);
          }
          return;
        }
        this.#handlers.frame(socket, frame);
      });
      ws.addEventListener("close", (ev: CloseEvent) => finish(ev.code, ev.reason));
      ws.addEventListener("error", () => {
        // A close event follows an error in WHATWG WebSockets; if the implementation does not send one, end here.
        clock.setTimeout(() => finish(1006, "connection error"), 2000);
      });
    });
  }
}
