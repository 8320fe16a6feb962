// Recovering messages a recipient could not decrypt (Signal's retry receipts): asking the sender of an
// undecryptable message to send it again, and, on a retry receipt from a contact's device, archiving the session
// with that device and sending the logged content again on a fresh one (at most MAX_RESENDS times).
import { toBase64 } from "../crypto/bytes.ts";
import type { Envelope } from "../protocol/messages.ts";
import { CIPHERTEXT_TYPES } from "../protocol/messages.ts";
import { encodeContent, type RetryContent } from "./content.ts";
import type { ClientContext } from "./context.ts";
import type { Sender } from "./sending.ts";
import type { SentLog } from "./sent-log.ts";
import type { Sessions } from "./sessions.ts";
import { newBatch } from "./storage.ts";

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
    const content: RetryContent = {
      type: "retry",
      id: crypto.randomUUID(),
      timestamp: this.#ctx.clock.now(),
      targetDevice: env.sourceDeviceId,
      originalTimestamp: env.timestamp,
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

  /** A retry receipt from (account, device): start a fresh session with that device and send the message again. */
  async resend(env: Envelope, retry: RetryContent): Promise<void> {
    const account = env.sourceAccountId;
    await this.#ctx.mutex.run(async () => {
      for (const [key, entry] of await this.#log.at(retry.originalTimestamp)) {
        if (!entry.accounts.includes(account) || entry.resends >= MAX_RESENDS) continue;
        await this.#log.countResend(key, entry);
        const batch = newBatch();
        await this.#sessions.archive(batch, account, env.sourceDeviceId);
        await this.#ctx.storage.write(batch);
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
        });
      }
    });
  }
}
