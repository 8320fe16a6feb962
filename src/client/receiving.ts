// Receiving: frames from the mailbox connection, processed one at a time in arrival order. A message is decrypted
// and everything it changes (session, trusted identity, used prekeys, the stored message, receipts on stored ones,
// its seen marker) is written in one batch; only then is it acked, and only then are its events emitted.
import { fromBase64, toBase64 } from "../crypto/bytes.ts";
import { CryptoError } from "../crypto/errors.ts";
import { type DecryptResult, sessionDecrypt } from "../crypto/session-store.ts";
import type { MessageFrame, ServerFrame } from "../protocol/frames.ts";
import { CIPHERTEXT_TYPES, type Envelope } from "../protocol/messages.ts";
import type { MailboxSocket } from "./connection.ts";
import { type CallContent, type Content, decodeContent } from "./content.ts";
import type { ClientContext } from "./context.ts";
import { asCipherpostError, CipherpostError } from "./errors.ts";
import type { DecryptionErrorEvent } from "./events.ts";
import type { Expiry } from "./expiry.ts";
import { type MessageStore, toStored } from "./message-store.ts";
import { StoragePreKeyStore, stageUsedPreKeys } from "./prekeys.ts";
import type { Receipts } from "./receipts.ts";
import type { Retries } from "./retries.ts";
import { SenderBudgets } from "./sender-budget.ts";
import type { Sessions } from "./sessions.ts";
import { newBatch, type WriteBatch } from "./storage.ts";
import { seenKey } from "./storage-keys.ts";

export interface ReceiverParts {
  sessions: Sessions;
  store: MessageStore;
  receipts: Receipts;
  retries: Retries;
  expiry: Expiry;
  /** Queue delivery receipts for received messages. */
  deliveryReceipts: boolean;
  /** Prekey upkeep, on a keys_low frame. */
  refreshPreKeys: () => Promise<unknown>;
  /** Drops the connection (after a storage failure: the unacked message comes again on the next one). */
  reconnect: () => void;
  /** A call signal (online, never stored): to the calls part. */
  callSignal: (from: string, fromDevice: number, content: CallContent) => Promise<void>;
}

type Emit = () => Promise<void>;

export class Receiver {
  /** Counters since the client was opened. */
  readonly stats = { processed: 0, duplicates: 0, decryptionErrors: 0 };
  readonly #ctx: ClientContext;
  readonly #p: ReceiverParts;
  readonly #preKeys: StoragePreKeyStore;
  readonly #budgets: SenderBudgets;
  #chain: Promise<void> = Promise.resolve();
  #queued = 0;

  constructor(ctx: ClientContext, parts: ReceiverParts) {
    this.#ctx = ctx;
    this.#p = parts;
    this.#preKeys = new StoragePreKeyStore(ctx.storage);
    this.#budgets = new SenderBudgets(ctx.clock);
  }

  /** Settles once every frame received so far has been processed. */
  idle(): Promise<void> {
    return this.#chain;
  }

  onFrame(socket: MailboxSocket, frame: ServerFrame): void {
    switch (frame.type) {
      case "message":
        this.#queued++;
        this.#chain = this.#chain.then(() => this.#process(socket, frame)).finally(() => this.#queued--);
        return;
      case "queue_empty":
        this.#chain = this.#chain.then(() => this.#ctx.events.emit("queueEmpty", undefined));
        return;
      case "keys_low":
        this.#ctx.runInBackground("prekey refill", this.#p.refreshPreKeys);
        return;
      case "error":
        void this.#ctx.events.emit(
          "error",
          new CipherpostError(frame.code, `the relay refused a frame: ${frame.message}`),
        );
        return;
      case "pong":
        return;
    }
  }

  async #process(socket: MailboxSocket, frame: MessageFrame): Promise<void> {
    const env = frame.envelope;
    const { events, mutex } = this.#ctx;
    try {
      if (env.online) {
        // Never stored and never acked: typing indicators and the like.
        const content = await mutex.run(() => this.#decryptOnline(env));
        if (content?.type === "typing") await this.#typing(env, content.action, content.groupId)();
        else if (content?.type === "call") await this.#p.callSignal(env.sourceAccountId, env.sourceDeviceId, content);
        return;
      }
      const outcome = await mutex.run(() => this.#receive(frame));
      socket.ack([frame.id]);
      for (const emit of outcome) await emit();
      this.#p.receipts.schedule(this.#queued);
    } catch (e) {
      // Storage failed: leave the message unacked; a new connection delivers it again.
      await events.emit(
        "error",
        new CipherpostError(asCipherpostError(e).code, `processing message ${frame.id}: ${String(e)}`, { cause: e }),
      );
      this.#p.reconnect();
    }
  }

  #typing(env: Envelope, action: "started" | "stopped", groupId: string | undefined): Emit {
    return () =>
      this.#ctx.events.emit("typing", {
        from: env.sourceAccountId,
        fromDevice: env.sourceDeviceId,
        action,
        ...(groupId ? { groupId } : {}),
      });
  }

  async #decryptOnline(env: Envelope): Promise<Content | undefined> {
    if (env.type !== CIPHERTEXT_TYPES.message && env.type !== CIPHERTEXT_TYPES.preKeyMessage) return undefined;
    const batch = newBatch();
    try {
      const r = await this.#decrypt(env, batch);
      await this.#ctx.storage.write(batch);
      return r;
    } catch {
      return undefined;
    }
  }

  /**
   * Decrypts with the sender device's record, within what is left of that device's work budget for the minute;
   * stages the record, a new identity and used prekeys into `batch`.
   */
  async #decrypt(env: Envelope, batch: WriteBatch): Promise<Content | undefined> {
    const { sessions } = this.#p;
    const from = env.sourceAccountId;
    const record = await sessions.record(from, env.sourceDeviceId);
    const trusted = await sessions.trustedIdentity(from);
    const work = this.#budgets.work(from, env.sourceDeviceId);
    let result: DecryptResult;
    try {
      result = await sessionDecrypt(record, this.#ctx.identity, this.#preKeys, env.type, fromBase64(env.content), {
        work,
        ...(trusted ? { trustedIdentityKey: trusted } : {}),
      });
    } finally {
      this.#budgets.spent(from, env.sourceDeviceId, work);
    }
    sessions.stage(batch, from, env.sourceDeviceId, record);
    if (!trusted) sessions.stageFirstIdentity(batch, from, toBase64(result.remoteIdentityKey));
    if (result.usedPreKeys) stageUsedPreKeys(batch, result.usedPreKeys);
    return decodeContent(result.plaintext);
  }

  #decryptionError(frame: MessageFrame, error: CipherpostError): Emit {
    const env = frame.envelope;
    const event: DecryptionErrorEvent = {
      relayId: frame.id,
      from: env.sourceAccountId,
      fromDevice: env.sourceDeviceId,
      timestamp: env.timestamp,
      error,
    };
    return () => this.#ctx.events.emit("decryptionError", event);
  }

  /** One queued message, exactly once: decrypt, stage everything it changes, write it in one batch. Answers the events to emit after the ack. */
  async #receive(frame: MessageFrame): Promise<Emit[]> {
    const { storage, events, accountId } = this.#ctx;
    const { store } = this.#p;
    const env = frame.envelope;
    const emits: Emit[] = [];
    this.stats.processed++;
    if (await storage.get(seenKey(frame.id))) {
      this.stats.duplicates++;
      return emits;
    }
    const batch = newBatch();
    batch.set[seenKey(frame.id)] = String(env.expiresAt);
    const commits: (() => void)[] = [];
    const from = env.sourceAccountId;

    if (env.type === CIPHERTEXT_TYPES.plaintext) {
      const content = decodeContent(fromBase64(env.content));
      if (content?.type === "retry" && content.targetDevice === this.#ctx.deviceId)
        this.#ctx.runInBackground("resend after a retry receipt", () => this.#p.retries.resend(env, content));
      await storage.write(batch);
      return emits;
    }

    let content: Content | undefined;
    try {
      if (env.type !== CIPHERTEXT_TYPES.message && env.type !== CIPHERTEXT_TYPES.preKeyMessage)
        throw new CryptoError("INVALID_MESSAGE", `ciphertext type ${env.type} is not supported`);
      content = await this.#decrypt(env, batch);
    } catch (e) {
      if (CryptoError.is(e, "DUPLICATE_MESSAGE")) {
        this.stats.duplicates++;
        await storage.write(batch);
        return emits;
      }
      this.stats.decryptionErrors++;
      await storage.write({ set: { [seenKey(frame.id)]: String(env.expiresAt) } });
      emits.push(this.#decryptionError(frame, asCipherpostError(e)));
      // Signal's answer to an undecryptable message: ask the sender to start a new session and send it again
      // (a few times a minute per sender at most: each forged message would otherwise cost a request).
      if (this.#budgets.takeRetryReceipt(from, env.sourceDeviceId))
        this.#ctx.runInBackground("retry receipt", () => this.#p.retries.sendRetryReceipt(env));
      return emits;
    }

    if (!content || content.type === "retry") {
      this.stats.decryptionErrors++;
      await storage.write(batch);
      const error = new CipherpostError("INVALID_CONTENT", "the message decrypted but its content does not parse");
      emits.push(this.#decryptionError(frame, error));
      return emits;
    }

    const now = this.#ctx.clock.now();
    switch (content.type) {
      case "message": {
        if (store.has(from, content.id)) this.stats.duplicates++;
        else {
          const stored = toStored(content, {
            direction: from === accountId ? "outgoing" : "incoming",
            from,
            fromDevice: env.sourceDeviceId,
            to: accountId,
            now,
          });
          commits.push(store.stageAdd(stored, batch));
          emits.push(() => events.emit("message", stored));
          if (from !== accountId && this.#p.deliveryReceipts)
            commits.push(() => this.#p.receipts.queue(from, content.id));
        }
        break;
      }
      case "sync": {
        // Only this account's own devices may say what this account sent.
        if (from !== accountId) break;
        if (store.has(from, content.message.id)) {
          this.stats.duplicates++;
          break;
        }
        const stored = toStored(content.message, {
          direction: "outgoing",
          from,
          fromDevice: env.sourceDeviceId,
          ...(content.destination ? { to: content.destination } : {}),
          now,
        });
        commits.push(store.stageAdd(stored, batch));
        emits.push(() => events.emit("message", stored));
        break;
      }
      case "receipt": {
        const field = content.kind === "delivery" ? "delivered" : "read";
        for (const id of content.messageIds) {
          const commit = store.stageUpdate(
            accountId,
            id,
            (m) => {
              const list = m[field] ?? [];
              return list.includes(from) ? m : { ...m, [field]: [...list, from] };
            },
            batch,
          );
          if (commit) commits.push(commit);
        }
        const receipt = { from, fromDevice: env.sourceDeviceId, kind: content.kind, messageIds: content.messageIds };
        emits.push(() => events.emit("receipt", receipt));
        break;
      }
      case "typing":
        emits.push(this.#typing(env, content.action, content.groupId));
        break;
    }
    await storage.write(batch);
    for (const c of commits) c();
    this.#p.expiry.schedule();
    return emits;
  }
}
