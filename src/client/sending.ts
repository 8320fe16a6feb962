// Sending: content checks and encoding, encrypting for every device of an account (repairing the known device set
// once on 409/410), the sync copy to this account's other devices, the sender's own stored copy, and the one
// socket-or-HTTP send that single and group sends share (one idempotency key covers both ways).
import type { z } from "zod";
import { toBase64, toHex, utf8 } from "../crypto/bytes.ts";
import { encryptForDevices } from "../crypto/session-store.ts";
import {
  type MultiRecipientSendRequest,
  MultiRecipientSendResponse,
  type OutgoingMessage,
  type SendMessageRequest,
  SendMessageResponse,
} from "../protocol/messages.ts";
import { SendNotAnswered } from "./connection.ts";
import {
  type AttachmentPointer,
  type Content,
  encodeContent,
  type GroupContext,
  MAX_CONTENT_BYTES,
  MAX_TEXT_BYTES,
  type MessageContent,
  type SyncContent,
} from "./content.ts";
import type { ClientContext } from "./context.ts";
import { CipherpostError } from "./errors.ts";
import type { Expiry } from "./expiry.ts";
import { errorFrom, errorFromResult } from "./http.ts";
import { type MessageStore, toStored } from "./message-store.ts";
import type { SentLog } from "./sent-log.ts";
import type { Sessions } from "./sessions.ts";
import { newBatch } from "./storage.ts";
import { sentRatchetKey } from "./storage-keys.ts";

/** What an application sends: text and/or attachments and/or structured data. */
export interface MessageInput {
  text?: string;
  attachments?: AttachmentPointer[];
  data?: unknown;
  /** Disappearing message: every holder deletes it this many seconds after storing it; the relay keeps queued copies no longer. */
  expireSeconds?: number;
}

export interface SendResult {
  /** The client message id. */
  id: string;
  /** The sender timestamp every copy carries. */
  timestamp: number;
  serverTimestamp: number;
}

/** A relay's answer to a send: the parsed body, or the error it carried. */
export type Answer<T> = { ok: true; response: T } | { ok: false; error: CipherpostError };

export interface DeliverFields {
  timestamp: number;
  online?: boolean;
  ttlSeconds?: number | undefined;
  /** The content is in the send log: remember each copy's ratchet key, which a retry receipt must name. */
  resendable?: boolean;
}

export class Sender {
  readonly #ctx: ClientContext;
  readonly #sessions: Sessions;
  readonly #store: MessageStore;
  readonly #expiry: Expiry;
  readonly #log: SentLog;

  constructor(ctx: ClientContext, sessions: Sessions, store: MessageStore, expiry: Expiry, log: SentLog) {
    this.#ctx = ctx;
    this.#sessions = sessions;
    this.#store = store;
    this.#expiry = expiry;
    this.#log = log;
  }

  /** Checks an application's input and makes the content to send (a fresh id, this clock's timestamp). */
  messageContent(input: MessageInput | string, group?: GroupContext): MessageContent {
    const m: MessageInput = typeof input === "string" ? { text: input } : input;
    if (m.text !== undefined && utf8(m.text).length > MAX_TEXT_BYTES)
      throw new CipherpostError("INVALID_ARGUMENT", `text: at most ${MAX_TEXT_BYTES} bytes of UTF-8`);
    if (m.expireSeconds !== undefined && (!Number.isInteger(m.expireSeconds) || m.expireSeconds < 1))
      throw new CipherpostError("INVALID_ARGUMENT", "expireSeconds: a positive whole number of seconds");
    if (m.text === undefined && !m.attachments?.length && m.data === undefined)
      throw new CipherpostError("INVALID_ARGUMENT", "a message needs text, attachments or data");
    return {
      type: "message",
      id: crypto.randomUUID(),
      timestamp: this.#ctx.clock.now(),
      ...(m.text !== undefined ? { text: m.text } : {}),
      ...(m.attachments?.length ? { attachments: m.attachments } : {}),
      ...(m.data !== undefined ? { data: m.data } : {}),
      ...(m.expireSeconds !== undefined ? { expireSeconds: m.expireSeconds } : {}),
      ...(group ? { group } : {}),
    };
  }

  encode(content: Content): Uint8Array {
    const bytes = encodeContent(content);
    if (bytes.length > MAX_CONTENT_BYTES)
      throw new CipherpostError(
        "INVALID_ARGUMENT",
        `the message is ${bytes.length} bytes; at most ${MAX_CONTENT_BYTES}`,
      );
    return bytes;
  }

  /** Logs a content about to be sent, for resending it after a retry receipt. */
  logSent(content: Content, accounts: string[]): Promise<void> {
    return this.#log.record(content, accounts);
  }

  /** Sends a message to `account` (all its devices), its sync copy to this account's other devices, and stores it. */
  async sendMessage(account: string, input: MessageInput | string): Promise<SendResult> {
    const content = this.messageContent(input);
    const bytes = this.encode(content);
    return this.#ctx.mutex.run(async () => {
      await this.logSent(content, [account]);
      const r = await this.deliver(account, bytes, {
        timestamp: content.timestamp,
        ttlSeconds: content.expireSeconds,
        resendable: true,
      });
      if (account !== this.#ctx.accountId) await this.sync(content, account, r.needsSync);
      await this.storeOwn(content, account);
      return { id: content.id, timestamp: content.timestamp, serverTimestamp: r.serverTimestamp };
    });
  }

  /** Sends a content that is not stored (a receipt, a typing indicator), under the mutex. */
  async sendContent(account: string, content: Content, online = false): Promise<void> {
    const bytes = this.encode(content);
    await this.#ctx.mutex.run(() =>
      this.deliver(account, bytes, { timestamp: content.timestamp, ...(online ? { online } : {}) }),
    );
  }

  /**
   * Encrypts `plaintext` for every known device of `account`, storing the moved ratchets before anything is sent;
   * with `loggedAt` (the sender timestamp of a content in the send log), also each copy's ratchet key.
   */
  async encryptFor(account: string, plaintext: Uint8Array, loggedAt?: number): Promise<OutgoingMessage[]> {
    const records = await this.#sessions.recordsFor(account);
    const encrypted = encryptForDevices(records, plaintext);
    const batch = newBatch();
    this.#sessions.stageAll(
      batch,
      account,
      records,
      encrypted.map((m) => m.destinationDeviceId),
    );
    if (loggedAt !== undefined)
      for (const m of encrypted) {
        const ratchetKey = records.get(m.destinationDeviceId)!.current!.sendingRatchet.publicKey;
        batch.set[sentRatchetKey(loggedAt, account, m.destinationDeviceId, toHex(ratchetKey))] = "1";
      }
    // The ratchet has moved: store it before sending, so a crash can never make us reuse a message key.
    await this.#ctx.storage.write(batch);
    return encrypted.map((m) => ({
      type: m.type,
      destinationDeviceId: m.destinationDeviceId,
      destinationRegistrationId: m.destinationRegistrationId,
      content: toBase64(m.body),
    }));
  }

  /**
   * Encrypts `plaintext` for every device of `account` we know a session with and sends it (claiming bundles
   * first when there is none); on 409/410 brings the device set up to date and tries once more. Under the mutex.
   */
  async deliver(account: string, plaintext: Uint8Array, fields: DeliverFields): Promise<SendMessageResponse> {
    if (account !== this.#ctx.accountId && !(await this.#sessions.hasCurrentSession(account)))
      await this.#sessions.fetch(account, "*");
    return this.sendWithRepair(account, async () => ({
      messages: await this.encryptFor(account, plaintext, fields.resendable ? fields.timestamp : undefined),
      timestamp: fields.timestamp,
      online: fields.online ?? false,
      urgent: !fields.online,
      ...(fields.ttlSeconds !== undefined ? { ttlSeconds: fields.ttlSeconds } : {}),
    }));
  }

  /** Sends the request `build` makes; on 409/410 repairs the device set and sends a rebuilt request once more. */
  async sendWithRepair(account: string, build: () => Promise<SendMessageRequest>): Promise<SendMessageResponse> {
    for (let attempt = 0; ; attempt++) {
      const answer = await this.sendRequest(account, await build());
      if (answer.ok) return answer.response;
      const err = answer.error;
      if (attempt >= 1 || (err.code !== "MISMATCHED_DEVICES" && err.code !== "STALE_DEVICES")) throw err;
      await this.#sessions.repair(account, err);
    }
  }

  /** A sync copy for this account's other devices, if the relay says there are any or this device knows one. */
  async sync(content: MessageContent, destination: string | undefined, needsSync: boolean): Promise<void> {
    const self = this.#ctx.accountId;
    if (!needsSync && (await this.#sessions.recordsFor(self)).size === 0) return;
    const sync: SyncContent = {
      type: "sync",
      id: content.id,
      timestamp: content.timestamp,
      ...(destination ? { destination } : {}),
      message: content,
    };
    await this.#log.record(sync, [self], ".sync");
    await this.deliver(self, this.encode(sync), {
      timestamp: content.timestamp,
      ttlSeconds: content.expireSeconds,
      resendable: true,
    });
  }

  /** Stores the sender's own copy of a message it sent. */
  async storeOwn(content: MessageContent, to: string | undefined): Promise<void> {
    const batch = newBatch();
    const stored = toStored(content, {
      direction: "outgoing",
      from: this.#ctx.accountId,
      fromDevice: this.#ctx.deviceId,
      ...(to ? { to } : {}),
      now: this.#ctx.clock.now(),
    });
    const commit = this.#store.stageAdd(stored, batch);
    await this.#ctx.storage.write(batch);
    commit();
    this.#expiry.schedule();
  }

  /**
   * One send of already-encrypted copies: over the mailbox connection when it is open (one hop in the relay
   * instead of two), otherwise, or when the connection ends before answering, over HTTP. One idempotency key
   * covers both, so a send stored just before its connection dropped is answered, not stored again.
   */
  sendRequest(account: string, body: SendMessageRequest): Promise<Answer<SendMessageResponse>> {
    return this.#sendEither(
      { type: "send", destination: account, message: body },
      `/v1/messages/${account}`,
      SendMessageResponse,
    );
  }

  /** A group send, the same way as sendRequest; a refusal of the whole request throws. */
  async sendMultiRequest(body: MultiRecipientSendRequest): Promise<MultiRecipientSendResponse> {
    const answer = await this.#sendEither(
      { type: "send_multi", message: body },
      "/v1/messages/multi",
      MultiRecipientSendResponse,
    );
    if (!answer.ok) throw answer.error;
    return answer.response;
  }

  async #sendEither<S extends z.ZodType>(
    frame:
      | { type: "send"; destination: string; message: SendMessageRequest }
      | { type: "send_multi"; message: MultiRecipientSendRequest },
    path: string,
    schema: S,
  ): Promise<Answer<z.infer<S>>> {
    const idempotencyKey = crypto.randomUUID();
    const parse = (data: unknown): Answer<z.infer<S>> => {
      const parsed = schema.safeParse(data);
      if (!parsed.success) throw new CipherpostError("INVALID_RESPONSE", `${path}: the send answer does not parse`);
      return { ok: true, response: parsed.data };
    };
    const overSocket = this.#ctx.connection()?.send({ ...frame, idempotencyKey });
    if (overSocket) {
      try {
        const r = await overSocket;
        if (r.status === 200) return parse(r.body);
        const { requestId: _r, ...rest } = r.body as Record<string, unknown>;
        return {
          ok: false,
          error: errorFromResult({
            status: r.status,
            ...rest,
            ...(r.retryAfterSeconds !== undefined ? { retryAfterSeconds: r.retryAfterSeconds } : {}),
          }),
        };
      } catch (e) {
        if (!(e instanceof SendNotAnswered)) throw e;
        // Not answered: the same send over HTTP, under the same key.
      }
    }
    const res = await this.#ctx.http.raw("PUT", path, {
      auth: this.#ctx.auth,
      body: frame.message,
      headers: { "idempotency-key": idempotencyKey },
    });
    if (!res.ok) return { ok: false, error: await errorFrom(res) };
    return parse(await res.json().catch(() => undefined));
  }
}
