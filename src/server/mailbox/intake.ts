// The receiving end of a send, in the recipient's object: the idempotency answer, the device-set check, the
// per-pair limit, the sender's share of each queue and the quota; then each copy either stored (in one
// transaction before the answer; the output gate holds it until the write is durable) or, for a connected and
// caught-up device, pushed first and stored only if its ack is not back within MAX_ACK_WAIT_MS. A 200 always has,
// behind every copy, a durable row or the device's ack (which it sends once it has stored the message).
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
import type { CopyIdempotency, MessageQueues } from "./queues.ts";
import type { DeviceSockets, HandOff, PushedCopy, StoredAfterPush } from "./sockets.ts";

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
  /** Sends with an idempotency key whose answer is not settled yet (waiting for acks): a retry waits for it. */
  readonly #inProgress = new Map<string, { digest: string; done: Promise<Delivered | Failure> }>();

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
    const ttlMs = cfg.IDEMPOTENCY_TTL_SECONDS * 1000;
    const idemKey = req.idempotency ? `${req.sender.accountId}.${req.sender.deviceId}:${req.idempotency.key}` : null;
    if (idemKey) {
      const running = this.#inProgress.get(idemKey);
      if (running) {
        if (running.digest !== req.idempotency!.digest)
          return fail("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for a different request");
        const first = await running.done;
        // The first attempt failed: this one is a send of its own.
        return first.ok ? { ...first, replayed: true } : this.deliver(req);
      }
      const seen = queues.recall(idemKey, now, ttlMs);
      if (seen) {
        if (seen.digest !== req.idempotency!.digest)
          return fail("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for a different request");
        return { ok: true, serverTimestamp: seen.serverTimestamp, replayed: true };
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

    const idem: CopyIdempotency = idemKey
      ? { key: idemKey, record: { digest: req.idempotency!.digest, serverTimestamp: now } }
      : null;
    const sender = req.sender.accountId;
    const plan: HandOff = { direct: [], pumpAfter: [] };
    const asleep: number[] = []; // devices with no open connection: push wake-up candidates
    const pushed: PushedCopy[] = []; // copies for connected, caught-up devices: pushed first, stored if unacked
    const stored: { deviceId: number; bytes: number }[] = [];
    this.ctx.storage.transactionSync(() => {
      for (const m of req.messages) {
        const id = crypto.randomUUID();
        const frame = messageFrame(id, m, common);
        const deviceId = m.destinationDeviceId;
        const ws = cfg.MAX_ACK_WAIT_MS > 0 ? sockets.pushTarget(deviceId, cfg) : null;
        if (ws) {
          pushed.push({ id, frame, deviceId, ws });
          continue;
        }
        const seq = queues.insert(deviceId, id, frame, ciphertextBytes(m), expiresAt, sender, idem);
        stored.push({ deviceId, bytes: ciphertextBytes(m) });
        if (!sockets.handOff(plan, deviceId, frame, seq, cfg)) asleep.push(deviceId);
      }
    });
    for (const c of stored) queues.counted(c.deviceId, c.bytes, sender);
    sockets.flush(plan, cfg, now);
    for (const d of asleep) push.wake(d, req.urgent, cfg, now);

    let storedCount = stored.length;
    if (pushed.length > 0) {
      const bytesOf = new Map(req.messages.map((m) => [m.destinationDeviceId, ciphertextBytes(m)]));
      const waiting = this.#awaitAcks(pushed, bytesOf, expiresAt, sender, idem, cfg);
      if (idemKey) {
        // A retry meanwhile waits for this attempt: its answer, or, if storing failed, a send of its own.
        const done = waiting.then(
          () => answer,
          () => fail("UNAVAILABLE", "the first attempt under this key failed"),
        );
        this.#inProgress.set(idemKey, { digest: req.idempotency!.digest, done });
      }
      try {
        storedCount += await waiting;
      } finally {
        if (idemKey) this.#inProgress.delete(idemKey);
      }
    }
    if (idem) queues.remember(idem.key, idem.record, now + ttlMs, cfg.MAX_IDEMPOTENCY_ANSWERS, this.ctx.clock.now());
    // The alarm deletes the copies when they expire.
    if (storedCount > 0) await this.parts.alarmBy(expiresAt);
    return answer;
  }

  /**
   * Pushes the copies for connected, caught-up devices and waits for their acks (MAX_ACK_WAIT_MS); an acked copy is
   * never written (the device has stored it), the rest are stored in one transaction, as any copy is, before the
   * send is answered. Answers how many were stored.
   */
  async #awaitAcks(
    pushed: PushedCopy[],
    bytesOf: Map<number, number>,
    expiresAt: number,
    sender: string,
    idem: CopyIdempotency,
    cfg: Config,
  ): Promise<number> {
    const { devices, queues, sockets } = this.parts;
    const acked = await sockets.pushAwaitingAck(pushed, cfg.MAX_ACK_WAIT_MS);
    const unacked = pushed.filter((_, i) => !acked[i]);
    if (unacked.length === 0) return 0;
    const stored: StoredAfterPush[] = [];
    this.ctx.storage.transactionSync(() => {
      for (const c of unacked) {
        if (!devices.device(c.deviceId)) continue; // removed meanwhile: its queue is gone
        const seq = queues.insert(c.deviceId, c.id, c.frame, bytesOf.get(c.deviceId)!, expiresAt, sender, idem);
        stored.push({ ...c, seq });
      }
    });
    for (const c of stored) queues.counted(c.deviceId, bytesOf.get(c.deviceId)!, sender);
    sockets.storedAfterPush(stored, cfg, this.ctx.clock.now());
    return stored.length;
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
