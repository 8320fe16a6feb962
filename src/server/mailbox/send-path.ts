// The sender's side of a send, in the sender's own object: the per-device send window (for HTTP sends and
// frames alike), and the send and send_multi frames of a connected device, answered by send_result frames with
// the status and body HTTP would have had. The recipient's side is intake.ts.
import { statusOf } from "../../protocol/errors.ts";
import { FRAME_TYPES, type SendFrame, type SendMultiFrame, type SendResultFrame } from "../../protocol/frames.ts";
import type { PartContext } from "../account/context.ts";
import type { DeviceRegistry } from "../account/device-registry.ts";
import type { MemoryRateWindow } from "../account/rate-window.ts";
import type { Config } from "../config.ts";
import { fail, type Failure } from "../errors.ts";
import { log } from "../log.ts";
import { checkSizes, requestDigest, type DeliverRequest, type Delivered, type Mailbox } from "./delivery.ts";
import { checkGroupSend, fanOut } from "./fanout.ts";
import { safeSend, type SocketState } from "./sockets.ts";

type FrameAnswer = { status: 200; body: SendResultFrame["body"]; replayed?: boolean } | Failure;

export class SendPath {
  constructor(
    private readonly ctx: PartContext,
    private readonly devices: DeviceRegistry,
    private readonly sendRates: MemoryRateWindow,
    /** This account's own mailbox, for a send to the sender's other devices (no RPC to itself). */
    private readonly ownMailbox: Mailbox,
  ) {}

  /**
   * The per-device send window, shared by HTTP sends (authorizeSend) and frames: a Failure when it is spent.
   * `deliveries` is how many recipient accounts the send reaches: a group send counts each, since each is an
   * object call; a send that does not fit whole counts nothing.
   */
  takeSend(deviceId: number, cfg: Config, deliveries = 1): Failure | null {
    const rate = this.sendRates.take(
      `send:${deviceId}`,
      cfg.SENDS_PER_DEVICE_LIMIT,
      cfg.SENDS_PER_DEVICE_WINDOW_SECONDS,
      this.ctx.clock.now(),
      deliveries,
    );
    return rate.allowed
      ? null
      : fail(
          "RATE_LIMITED",
          `this device is sending too fast (${cfg.SENDS_PER_DEVICE_LIMIT} deliveries per ${cfg.SENDS_PER_DEVICE_WINDOW_SECONDS} s, a group send counting each recipient)`,
          {},
          rate.retryAfterSeconds,
        );
  }

  /**
   * A send or send_multi frame: the same send as PUT /v1/messages/{accountId} or /v1/messages/multi, from the
   * device this connection authenticated at its upgrade. No password check: the connection is the credential,
   * and removing the device or deleting the account closes it (4410, 4411), so access still ends at once. The
   * device limit counts the frame as HTTP counts the request (a group once per recipient, after the checks that
   * refuse it whole), then the same checks run.
   */
  async handle(ws: WebSocket, cfg: Config, f: SendFrame | SendMultiFrame): Promise<void> {
    const s = ws.deserializeAttachment() as SocketState;
    const me = this.devices.liveAccount();
    const out: FrameAnswer =
      !me || !this.devices.device(s.d)
        ? fail("UNAUTHORIZED", "this device is no longer registered")
        : f.type === "send"
          ? (this.takeSend(s.d, cfg) ?? (await this.#send(me.account_id, s.d, cfg, f)))
          : (checkGroupSend(cfg, f.message) ??
            this.takeSend(s.d, cfg, f.message.recipients.length) ??
            (await this.#sendMulti(me.account_id, s.d, f)));
    let status = 200;
    let body: SendResultFrame["body"];
    const extra: Partial<SendResultFrame> = {};
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

  async #send(accountId: string, deviceId: number, cfg: Config, f: SendFrame): Promise<FrameAnswer> {
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
      out = self
        ? await this.ownMailbox.deliver(req)
        : await this.ctx.env().ACCOUNT.getByName(destination).deliver(req);
    } catch (e) {
      log("error", { event: "storage_error", what: "mailbox", error: String(e) });
      out = fail("UNAVAILABLE", "mailbox did not answer; try again", {}, 1);
    }
    if (!out.ok) return out;
    const linked = this.devices.devices().length - 1;
    return {
      status: 200,
      body: { needsSync: !self && linked > 0, serverTimestamp: out.serverTimestamp },
      replayed: out.replayed,
    };
  }

  async #sendMulti(accountId: string, deviceId: number, f: SendMultiFrame): Promise<FrameAnswer> {
    const results = await fanOut(this.ctx.env().ACCOUNT, { accountId, deviceId }, f.message, f.idempotencyKey, (e) =>
      log("error", { event: "fan_out_failed", error: String(e) }),
    );
    return { status: 200, body: { needsSync: this.devices.devices().length > 1, results } };
  }
}
