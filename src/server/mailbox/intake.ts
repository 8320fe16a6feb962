// The receiving end of a send, in the recipient's object: the idempotency record, the device-set check, the
// per-pair limit, the sender's share of each queue and the quota, then every copy stored in one transaction before
// the answer (the output gate holds it until the write is durable), then live delivery and wake-ups.
import type { DeviceRegistry } from "../account/device-registry.ts";
import type { PartContext } from "../account/context.ts";
import type { MemoryRateWindow } from "../account/rate-window.ts";
import type { Config } from "../config.ts";
import { fail, type Failure } from "../errors.ts";
import type { PushWaker } from "../push/waker.ts";
import {
  checkDeviceSet,
  ciphertextBytes,
  commonEnvelopeFields,
  messageFrame,
  type DeliverRequest,
  type Delivered,
  type Mailbox,
} from "./delivery.ts";
import type { MessageQueues } from "./queues.ts";
import type { DeviceSockets, HandOff } from "./sockets.ts";

export interface IntakeParts {
  devices: DeviceRegistry;
  queues: MessageQueues;
  sockets: DeviceSockets;
  push: PushWaker;
  /** The send limits counted in memory (per sending device, per sender and recipient pair). */
  sendRates: MemoryRateWindow;
  /** Makes sure the object's alarm fires by `at` (the expiry of copies just stored). */
  alarmBy(at: number): Promise<void>;
}

export class MessageIntake implements Mailbox {
  constructor(
    private readonly ctx: PartContext,
    private readonly parts: IntakeParts,
  ) {}

  /** Accepts one send for this account. Online messages skip storage and reach only devices connected now. */
  async deliver(req: DeliverRequest): Promise<Delivered | Failure> {
    const cfg = this.ctx.config();
    if ("ok" in cfg) return cfg;
    const { devices, queues, sockets, push } = this.parts;
    const a = devices.liveAccount();
    if (!a) return fail("NOT_FOUND", "no such account");
    const now = this.ctx.clock.now();
    const idemKey = req.idempotency ? `${req.sender.accountId}.${req.sender.deviceId}:${req.idempotency.key}` : null;
    if (idemKey) {
      const seen = queues.recall(idemKey, now);
      if (seen) {
        if (seen.digest !== req.idempotency!.digest)
          return fail("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for a different request");
        return { ...(JSON.parse(seen.answer) as Delivered), replayed: true };
      }
    }
    const self = req.sender.accountId === a.account_id;
    const mismatch = checkDeviceSet(devices.devices(), req.messages, self ? req.sender.deviceId : null);
    if (mismatch) return mismatch;
    if (!self) {
      const rate = this.parts.sendRates.take(
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
      for (const m of req.messages) sockets.tell(m.destinationDeviceId, messageFrame(crypto.randomUUID(), m, common));
      return answer;
    }

    const refused = this.#checkQuotas(req, self ? null : req.sender.accountId, cfg);
    if (refused) return refused;

    const rememberedUntil = now + cfg.IDEMPOTENCY_TTL_SECONDS * 1000;
    const plan: HandOff = { direct: [], pumpAfter: [] };
    const asleep: number[] = []; // devices with no open connection: push wake-up candidates
    this.ctx.storage.transactionSync(() => {
      for (const m of req.messages) {
        const id = crypto.randomUUID();
        const frame = messageFrame(id, m, common);
        const seq = queues.insert(
          m.destinationDeviceId,
          id,
          frame,
          ciphertextBytes(m),
          expiresAt,
          req.sender.accountId,
        );
        if (!sockets.handOff(plan, m.destinationDeviceId, frame, seq, cfg)) asleep.push(m.destinationDeviceId);
      }
      if (idemKey)
        queues.remember(idemKey, { digest: req.idempotency!.digest, answer: JSON.stringify(answer) }, rememberedUntil);
    });
    for (const m of req.messages) queues.counted(m.destinationDeviceId, ciphertextBytes(m), req.sender.accountId);
    sockets.flush(plan, cfg, now);
    for (const d of asleep) push.wake(d, req.urgent, cfg, now);
    // The alarm deletes the copies when they expire and the idempotency record when its window ends.
    await this.parts.alarmBy(idemKey ? Math.min(expiresAt, rememberedUntil) : expiresAt);
    return answer;
  }

  /**
   * The sender's share of each addressed queue, then each queue's quota; the whole send is refused if one copy
   * does not fit, and nothing is stored. A sender past its share gets 429 while everyone else still gets through,
   * so strangers cannot fill a person's queue against their friends. `sender` is null on a send to your own
   * account: your own devices have no share, only the quota.
   */
  #checkQuotas(req: DeliverRequest, sender: string | null, cfg: Config): Failure | null {
    const { queues } = this.parts;
    const overShare: number[] = [];
    const full: number[] = [];
    for (const m of req.messages) {
      const d = m.destinationDeviceId;
      const bytes = ciphertextBytes(m);
      const mine = sender === null ? null : queues.senderTotals(d, sender);
      if (
        mine &&
        (mine.messages + 1 > cfg.QUEUE_SENDER_MAX_MESSAGES || mine.bytes + bytes > cfg.QUEUE_SENDER_MAX_BYTES)
      )
        overShare.push(d);
      const q = queues.totals(d);
      if (q.messages + 1 > cfg.QUEUE_MAX_MESSAGES || q.bytes + bytes > cfg.QUEUE_MAX_BYTES) full.push(d);
    }
    if (overShare.length)
      return fail(
        "SENDER_QUEUE_SHARE_EXCEEDED",
        `your share of the queue of device ${overShare.join(", ")} is used up (${cfg.QUEUE_SENDER_MAX_MESSAGES} messages, ${cfg.QUEUE_SENDER_MAX_BYTES} bytes per sender); try again once the recipient has fetched them`,
        { devices: overShare, limitMessages: cfg.QUEUE_SENDER_MAX_MESSAGES, limitBytes: cfg.QUEUE_SENDER_MAX_BYTES },
        60,
      );
    if (full.length)
      return fail(
        "QUEUE_FULL",
        `the queue of device ${full.join(", ")} is at its quota (${cfg.QUEUE_MAX_MESSAGES} messages, ${cfg.QUEUE_MAX_BYTES} bytes)`,
        { devices: full },
        60,
      );
    return null;
  }
}
