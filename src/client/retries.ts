// Recovering messages a recipient could not decrypt (Signal's retry receipts): asking the sender of an
// undecryptable message to send it again, naming the ratchet key the message came under; and, on a retry receipt
// that names the key a logged message went to that device under, archiving the session it belongs to (if still
// current) and sending the logged content again on a fresh one (at most MAX_RESENDS times).
import { equalBytes, fromBase64, toBase64, toHex } from "../crypto/bytes.ts";
import { messageRatchetKey } from "../crypto/wire.ts";
import type { Envelope } from "../protocol/messages.ts";
import { CIPHERTEXT_TYPES } from "../protocol/messages.ts";
import { encodeContent, type RetryContent } from "./content.ts";
import type { ClientContext } from "./context.ts";
import type { Sender } from "./sending.ts";
import type { SentLog } from "./sent-log.ts";
import type { Sessions } from "./sessions.ts";
import { newBatch } from "./storage.ts";

/** Resends of one logged content after retry receipts (as many as before receipts carried a ratchet key). */
const MAX_RESENDS = 2;
export class Retries {
  readonly #ctx: ClientContext;
  readonly #sessions: Sessions;
  readonly #sender: Sender;
  readonly #log: SentLog;

  constructor(ctx: ClientContext, sessions: Sessions, sender: Sender, log: SentLog) {
    this.#ctx = ctx;
    this.#sessions = sessions;
    this.#sender = sender;
    this.#log = log;
  }

  /** Asks the sender of an undecryptable message to resend it: plaintext (type 8), to every device of its account. */
  async sendRetryReceipt(env: Envelope): Promise<void> {
    const ratchetKey = messageRatchetKey(env.type, fromBase64(env.content));
    const content: RetryContent = {
      type: "retry",
      id: crypto.randomUUID(),
      timestamp: this.#ctx.clock.now(),
      targetDevice: env.sourceDeviceId,
      originalTimestamp: env.timestamp,
      ...(ratchetKey ? { ratchetKey: toBase64(ratchetKey) } : {}),
    };
    const body = toBase64(encodeContent(content));
    const account = env.sourceAccountId;
    await this.#ctx.mutex.run(() =>
      // Unencrypted, because the session may be what is broken; addressed by the registration ids we know.
      this.#sender.sendWithRepair(account, async () => ({
        messages: [...(await this.#sessions.recordsFor(account))]
          .map(([deviceId, r]) => ({ deviceId, registrationId: r.remoteRegistrationId() }))
          .filter((d): d is { deviceId: number; registrationId: number } => d.registrationId !== undefined)
          .map((d) => ({
            type: CIPHERTEXT_TYPES.plaintext,
            destinationDeviceId: d.deviceId,
            destinationRegistrationId: d.registrationId,
            content: body,
          })),
        timestamp: content.timestamp,
        online: false,
        urgent: true,
      })),
    );
  }

  /**
   * A retry receipt from (account, device), acted on only when it names the ratchet key the message sent at
   * `originalTimestamp` went to that device under (libsignal's check: a receipt made up by anyone who never saw
   * that message changes nothing). The session with the device is archived only if that key is still its
   * current sending key; the logged content is then sent again, on a fresh session if one was archived.
   */
  async resend(env: Envelope, retry: RetryContent): Promise<void> {
    if (!retry.ratchetKey) return;
    const account = env.sourceAccountId;
    const device = env.sourceDeviceId;
    const ratchetKey = fromBase64(retry.ratchetKey);
    await this.#ctx.mutex.run(async () => {
      if (!(await this.#log.sentUnder(retry.originalTimestamp, account, device, toHex(ratchetKey)))) return;
      for (const [key, entry] of await this.#log.at(retry.originalTimestamp)) {
        if (!entry.accounts.includes(account) || entry.resends >= MAX_RESENDS) continue;
        await this.#log.countResend(key, entry);
        const current = (await this.#sessions.record(account, device)).current?.sendingRatchet.publicKey;
        if (current && equalBytes(current, ratchetKey)) {
          const batch = newBatch();
          await this.#sessions.archive(batch, account, device);
          await this.#ctx.storage.write(batch);
        }
        const { content } = entry;
        const ttl =
          content.type === "message"
            ? content.expireSeconds
            : content.type === "sync"
              ? content.message.expireSeconds
              : undefined;
        await this.#sender.deliver(account, this.#sender.encode(content), {
          timestamp: content.timestamp,
          ttlSeconds: ttl,
          resendable: true,
        });
      }
    });
  }
}
