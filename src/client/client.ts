// The cipherpost client: one device of one account. Registers or links, keeps its prekeys topped up, encrypts
// for every device of a recipient and every other device of its own account (refreshing the device set on
// 409/410), receives over one long-lived WebSocket with exactly-once storage, and moves attachments. Web-standard
// APIs only (fetch, WebSocket, WebCrypto, streams): runs in Node 20+, browsers and Workers.
import type { z } from "zod";
import { equalBytes, fromBase64, toBase64 } from "../crypto/bytes.ts";
import { CryptoError } from "../crypto/errors.ts";
import { ecPublicKeyFromPrivate, generateEcKeyPair } from "../crypto/keys.ts";
import { openLinkEnvelope, sealLinkEnvelope } from "../crypto/link-envelope.ts";
import { bundlesFromJson, type LocalIdentity } from "../crypto/pqxdh.ts";
import { encryptForDevices, initiateSession, SessionRecord, sessionDecrypt } from "../crypto/session-store.ts";
import { safetyNumber } from "../crypto/fingerprint.ts";
import { xeddsaSign } from "../crypto/xeddsa.ts";
import {
  AccountId,
  ChallengeResponse,
  CreateLinkResponse,
  DeviceListResponse,
  LinkDeviceResponse,
  LinkEnvelopeResponse,
  PreKeyBundleResponse,
  PreKeyCountResponse,
  RegistrationResponse,
  type DeviceInfo,
} from "../protocol/directory.ts";
import type { Envelope } from "../protocol/messages.ts";
import {
  MultiRecipientSendResponse,
  SendMessageResponse,
  CIPHERTEXT_TYPES,
  type MultiRecipientSendRequest,
  type OutgoingMessage,
  type RecipientResult,
  type SendMessageRequest,
} from "../protocol/messages.ts";
import { MAX_REGISTRATION_ID, MIN_REGISTRATION_ID, registrationProofMessage } from "../protocol/limits.ts";
import { PushEndpointRequest, VapidKeyResponse } from "../protocol/push.ts";
import { solvePow } from "../protocol/pow.ts";
import type { MessageFrame, ServerFrame } from "../protocol/frames.ts";
import { downloadAttachment, uploadAttachment, type DownloadOptions, type UploadOptions } from "./attachments.ts";
import {
  MailboxConnection,
  SendNotAnswered,
  type ConnectionEvent,
  type ConnectionOptions,
  type MailboxSocket,
  type WebSocketConstructor,
} from "./connection.ts";
import {
  decodeContent,
  encodeContent,
  MAX_CONTENT_BYTES,
  MAX_GROUP_MEMBERS,
  MAX_RECEIPT_IDS,
  MAX_TEXT_BYTES,
  type AttachmentPointer,
  type Content,
  type GroupContext,
  type MessageContent,
  type RetryContent,
  type SyncContent,
} from "./content.ts";
import { CipherpostError } from "./errors.ts";
import { errorFrom, errorFromResult, RelayHttp, type Credentials, type FetchLike } from "./http.ts";
import { decodeLinkCode, encodeLinkCode, LINK_SECRET_BYTES, LinkHandOver } from "./link-code.ts";
import { MessageStore, type MessageFilter, type StoredMessage } from "./message-store.ts";
import {
  DEFAULT_PREKEY_POLICY,
  generateKeys,
  rotationPlan,
  StoragePreKeyStore,
  usedPreKeyDeletions,
  type GeneratedKeys,
  type PreKeyPolicy,
} from "./prekeys.ts";
import type { Storage, StorageBatch } from "./storage.ts";

// ---------- options, results, events ----------

export interface ClientOptions {
  storage: Storage;
  /** WebSocket constructor; defaults to the global one (browsers, Workers, Node 22+). In Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** fetch; defaults to the global one. */
  fetch?: FetchLike;
  preKeys?: Partial<PreKeyPolicy>;
  connection?: ConnectionOptions;
  /** Send delivery receipts for received messages, coalesced per sender (default true). */
  deliveryReceipts?: boolean;
  /** HTTP timeout per request (ms); default 30 000. */
  timeoutMs?: number;
}

export interface RegisterOptions extends ClientOptions {
  server: string;
}

export interface LinkOptions extends ClientOptions {
  server: string;
  code: string;
}

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

export interface GroupSendResult extends SendResult {
  groupId: string;
  /** Members the message could not be delivered to, with the reason. Empty when all got it. */
  failed: { accountId: string; error: CipherpostError }[];
}

export interface ReceiptEvent {
  from: string;
  fromDevice: number;
  kind: "delivery" | "read";
  messageIds: string[];
}

export interface TypingEvent {
  from: string;
  fromDevice: number;
  action: "started" | "stopped";
  groupId?: string;
}

export interface DecryptionErrorEvent {
  /** The relay's id of the message (its client id is inside the ciphertext). */
  relayId: string;
  from: string;
  fromDevice: number;
  /** The envelope's sender timestamp. */
  timestamp: number;
  error: CipherpostError;
}

export interface ClientEvents {
  /** A message stored: incoming, or a sync copy of one sent from another of this account's devices. */
  message: StoredMessage;
  receipt: ReceiptEvent;
  typing: TypingEvent;
  /** A message that could not be decrypted; the sender has been sent a retry receipt. */
  decryptionError: DecryptionErrorEvent;
  /** Everything queued when the connection opened has been processed. */
  queueEmpty: void;
  connection: ConnectionEvent;
  /** Disappearing messages deleted from the store. */
  expired: StoredMessage[];
  /** A background failure (prekey upkeep, receipts, resends). The client carries on. */
  error: CipherpostError;
  /** The connection stopped for good: the device was removed, the account deleted, or another connection took over. */
  stopped: CipherpostError;
}

type Listener<T> = (value: T) => void | Promise<void>;

// ---------- stored device state ----------

interface DeviceRecord {
  version: 1;
  server: string;
  accountId: string;
  deviceId: number;
  password: string;
  registrationId: number;
  identityKey: string;
  identityPrivateKey: string;
  nextKeyId: number;
  created: number;
}

/** A relay's answer to a send: the parsed body, or the error it carried. */
type Answer<T> = { ok: true; response: T } | { ok: false; error: CipherpostError };

const DEVICE_KEY = "device";
const sessionKey = (account: string, device: number) => `s/${account}/${String(device).padStart(3, "0")}`;
const identityKeyOf = (account: string) => `id/${account}`;
const seenKey = (relayId: string) => `seen/${relayId}`;
const sentKey = (timestamp: number, id: string) => `sent/${String(timestamp).padStart(15, "0")}/${id}`;
/** How long sent messages are kept for resending after a retry receipt (Signal keeps its send log a day). */
const SENT_LOG_MS = 86_400_000;
const MAX_RESENDS = 2;
/** Group sends are split so each request stays under the relay's default 8 MiB MAX_SEND_REQUEST_BYTES. */
const MAX_GROUP_REQUEST_CHARS = 7 * 1024 * 1024;
const MAX_GROUP_RECIPIENTS_PER_REQUEST = 1000;

type Batch = StorageBatch & { set: Record<string, string>; delete: string[] };
const newBatch = (): Batch => ({ set: {}, delete: [] });

interface SentLogEntry {
  accounts: string[];
  content: Content;
  resends: number;
}

/** One mutex: sessions, keys and the message store change under it, so no two operations interleave their writes. */
class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => undefined);
    return next;
  }
}

function randomRegistrationId(): number {
  const v = new Uint32Array(1);
  crypto.getRandomValues(v);
  return MIN_REGISTRATION_ID + (v[0]! % (MAX_REGISTRATION_ID - MIN_REGISTRATION_ID + 1));
}

function newPassword(): string {
  return toBase64(crypto.getRandomValues(new Uint8Array(18)));
}

function randomKeyIdStart(): number {
  const v = new Uint32Array(1);
  crypto.getRandomValues(v);
  return 1 + (v[0]! % 0x7fff_ffff);
}

function checkAccountId(accountId: string, what = "account"): string {
  const parsed = AccountId.safeParse(accountId);
  if (!parsed.success) throw new CipherpostError("INVALID_ARGUMENT", `${what}: not an account id (UUID): ${accountId}`);
  return accountId.toLowerCase();
}

function asCipherpostError(e: unknown): CipherpostError {
  if (CipherpostError.is(e)) return e;
  if (CryptoError.is(e)) {
    if (e.code === "IDENTITY_CHANGED") {
      return new CipherpostError("IDENTITY_CHANGED", e.message, {
        extras: { trustedIdentityKey: e.extras.trustedIdentityKey, receivedIdentityKey: e.extras.receivedIdentityKey },
        cause: e,
      });
    }
    return new CipherpostError("DECRYPTION_FAILED", `${e.code}: ${e.message}`, {
      extras: { cryptoCode: e.code },
      cause: e,
    });
  }
  return new CipherpostError("INVALID_RESPONSE", e instanceof Error ? e.message : String(e), { cause: e });
}

function identityOf(d: DeviceRecord): LocalIdentity {
  return {
    identityKeyPair: { publicKey: fromBase64(d.identityKey), privateKey: fromBase64(d.identityPrivateKey) },
    registrationId: d.registrationId,
  };
}

/** A first batch of keys for a new device, its private halves and the fields the relay wants. */
function initialKeys(identityPrivateKey: Uint8Array, policy: PreKeyPolicy, now: number): GeneratedKeys {
  return generateKeys(
    identityPrivateKey,
    randomKeyIdStart(),
    { signed: true, lastResort: true, ec: policy.batch, kem: policy.batch },
    now,
  );
}

// ---------- the client ----------

/** How long close() waits for background sends before it returns anyway. */
const CLOSE_WAIT_MS = 10_000;
export class CipherpostClient {
  readonly accountId: string;
  readonly deviceId: number;
  readonly server: string;
  /** This account's identity key (33 bytes), the same on all its devices. */
  readonly identityKey: Uint8Array;
  /** The message history of this device. */
  readonly messages: {
    list(filter?: MessageFilter): StoredMessage[];
    get(id: string, from?: string): StoredMessage | undefined;
    delete(id: string, from?: string): Promise<boolean>;
  };

  readonly #storage: Storage;
  readonly #http: RelayHttp;
  readonly #options: ClientOptions;
  readonly #policy: PreKeyPolicy;
  readonly #preKeyStore: StoragePreKeyStore;
  readonly #store: MessageStore;
  readonly #mutex = new Mutex();
  readonly #keysMutex = new Mutex();
  readonly #records = new Map<string, SessionRecord>();
  readonly #listeners = new Map<keyof ClientEvents, Set<Listener<never>>>();
  readonly #background = new Set<Promise<unknown>>();
  readonly #pendingReceipts = new Map<string, string[]>();
  #device: DeviceRecord;
  #identity: LocalIdentity;
  #connection: MailboxConnection | null = null;
  #chain: Promise<void> = Promise.resolve();
  #queued = 0;
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #rotationTimer: ReturnType<typeof setInterval> | undefined;
  #receiptTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  readonly #stats = { processed: 0, duplicates: 0, decryptionErrors: 0 };

  private constructor(options: ClientOptions, device: DeviceRecord, store: MessageStore) {
    this.#options = options;
    this.#storage = options.storage;
    this.#device = device;
    this.#identity = identityOf(device);
    this.#http = new RelayHttp(device.server, options.fetch, options.timeoutMs);
    this.#policy = { ...DEFAULT_PREKEY_POLICY, ...(options.preKeys ?? {}) };
    this.#preKeyStore = new StoragePreKeyStore(this.#storage);
    this.#store = store;
    this.accountId = device.accountId;
    this.deviceId = device.deviceId;
    this.server = device.server;
    this.identityKey = this.#identity.identityKeyPair.publicKey;
    this.messages = {
      list: (filter) => store.list(filter),
      get: (id, from) => store.get(id, from),
      delete: (id, from) => store.delete(id, from),
    };
  }

  /**
   * Counters since this client was opened: queued messages processed, deliveries dropped as duplicates (a
   * relay redelivery after a lost ack, or a resend already stored), and messages that could not be decrypted.
   */
  get stats(): { processed: number; duplicates: number; decryptionErrors: number } {
    return { ...this.#stats };
  }

  // ---------- creating and opening ----------

  /** Opens the device stored in `options.storage`; throws NOT_REGISTERED when there is none. */
  static async open(options: ClientOptions): Promise<CipherpostClient> {
    const raw = await options.storage.get(DEVICE_KEY);
    if (!raw) throw new CipherpostError("NOT_REGISTERED", "this storage holds no device: register or link first");
    const device = JSON.parse(raw) as DeviceRecord;
    const client = new CipherpostClient(options, device, await MessageStore.load(options.storage));
    await client.#afterOpen();
    return client;
  }

  /** Creates an account and its first device (solving the relay's proof of work) and stores it. */
  static async register(options: RegisterOptions): Promise<CipherpostClient> {
    if (await options.storage.get(DEVICE_KEY))
      throw new CipherpostError("ALREADY_REGISTERED", "this storage already holds a device");
    const http = new RelayHttp(options.server, options.fetch, options.timeoutMs);
    const policy = { ...DEFAULT_PREKEY_POLICY, ...(options.preKeys ?? {}) };
    const identity = generateEcKeyPair();
    const now = Date.now();
    const keys = initialKeys(identity.privateKey, policy, now);
    const registrationId = randomRegistrationId();
    const password = newPassword();

    const ch = await http.json("POST", "/v1/challenges", ChallengeResponse);
    const challenge = fromBase64(ch.challenge);
    const nonce = await solvePow(challenge, ch.difficulty);
    const proofMessage = registrationProofMessage(challenge, identity.publicKey);

    // Private halves first: the relay must never hold a public key whose private half we could lose.
    await options.storage.write(keys.batch);
    let r: RegistrationResponse;
    try {
      r = await http.json("POST", "/v1/registration", RegistrationResponse, {
        body: {
          identityKey: toBase64(identity.publicKey),
          registrationId,
          password,
          signedPreKey: keys.signedPreKey!,
          pqLastResortPreKey: keys.pqLastResortPreKey!,
          preKeys: keys.preKeys,
          pqPreKeys: keys.pqPreKeys,
          pow: { challenge: ch.challenge, nonce: toBase64(nonce) },
          proof: toBase64(xeddsaSign(identity.privateKey, proofMessage)),
        },
      });
    } catch (e) {
      await options.storage.write({ delete: Object.keys(keys.batch.set) });
      throw e;
    }
    return CipherpostClient.#saveAndOpen(options, {
      server: http.server,
      accountId: r.accountId,
      deviceId: r.deviceId,
      password,
      registrationId,
      identityKey: toBase64(identity.publicKey),
      identityPrivateKey: toBase64(identity.privateKey),
      nextKeyId: keys.nextKeyId,
      created: now,
    });
  }

  /**
   * Links this storage as a new device of an existing account, given the link code another device of it showed
   * (createLinkCode): fetches and decrypts the hand-over, signs its own prekeys with the account identity key
   * and registers itself.
   */
  static async link(options: LinkOptions): Promise<CipherpostClient> {
    if (await options.storage.get(DEVICE_KEY))
      throw new CipherpostError("ALREADY_REGISTERED", "this storage already holds a device");
    const code = decodeLinkCode(options.code);
    const http = new RelayHttp(options.server, options.fetch, options.timeoutMs);
    const policy = { ...DEFAULT_PREKEY_POLICY, ...(options.preKeys ?? {}) };
    const linkToken = toBase64(code.linkToken);
    const { envelope } = await http.json("POST", "/v1/devices/link/envelope", LinkEnvelopeResponse, {
      body: { accountId: code.accountId, linkToken },
    });
    let handOver: LinkHandOver;
    try {
      const plain = openLinkEnvelope(code.secret, fromBase64(envelope));
      handOver = LinkHandOver.parse(JSON.parse(new TextDecoder().decode(plain)));
    } catch (e) {
      throw new CipherpostError(
        "INVALID_LINK_CODE",
        "the hand-over does not decrypt with this link code, or is malformed",
        { cause: e },
      );
    }
    const identityPrivateKey = fromBase64(handOver.identityPrivateKey);
    const identityKey = fromBase64(handOver.identityKey);
    if (
      handOver.accountId.toLowerCase() !== code.accountId ||
      !equalBytes(ecPublicKeyFromPrivate(identityPrivateKey), identityKey)
    )
      throw new CipherpostError(
        "INVALID_LINK_CODE",
        "the hand-over names another account or its identity key pair does not match",
      );

    const now = Date.now();
    const keys = initialKeys(identityPrivateKey, policy, now);
    await options.storage.write(keys.batch);
    const password = newPassword();
    let registrationId = randomRegistrationId();
    let r: RegistrationResponse | undefined;
    try {
      for (let attempt = 0; !r; attempt++) {
        try {
          r = await http.json("PUT", "/v1/devices/link", LinkDeviceResponse, {
            body: {
              accountId: code.accountId,
              linkToken,
              registrationId,
              password,
              signedPreKey: keys.signedPreKey!,
              pqLastResortPreKey: keys.pqLastResortPreKey!,
              preKeys: keys.preKeys,
              pqPreKeys: keys.pqPreKeys,
            },
          });
        } catch (e) {
          // Registration ids are random 14-bit numbers: on the rare collision with another device, draw again.
          if (!CipherpostError.is(e, "REGISTRATION_ID_TAKEN") || attempt >= 4) throw e;
          registrationId = randomRegistrationId();
        }
      }
    } catch (e) {
      await options.storage.write({ delete: Object.keys(keys.batch.set) });
      throw e;
    }
    return CipherpostClient.#saveAndOpen(options, {
      server: http.server,
      accountId: r.accountId,
      deviceId: r.deviceId,
      password,
      registrationId,
      identityKey: handOver.identityKey,
      identityPrivateKey: handOver.identityPrivateKey,
      nextKeyId: keys.nextKeyId,
      created: now,
    });
  }

  /** Stores a newly registered or linked device (and pins its own account's identity key), then opens it. */
  static async #saveAndOpen(options: ClientOptions, d: Omit<DeviceRecord, "version">): Promise<CipherpostClient> {
    const device: DeviceRecord = { version: 1, ...d, accountId: d.accountId.toLowerCase() };
    await options.storage.write({
      set: { [DEVICE_KEY]: JSON.stringify(device), [identityKeyOf(device.accountId)]: device.identityKey },
    });
    return CipherpostClient.open(options);
  }

  async #afterOpen(): Promise<void> {
    await this.#pruneLogs();
    await this.#expireMessages();
  }

  get #auth(): Credentials {
    return { accountId: this.#device.accountId, deviceId: this.#device.deviceId, password: this.#device.password };
  }

  // ---------- events ----------

  /** Subscribes; answers the function that unsubscribes. Listeners of one event run in order and are awaited. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  /** Resolves at the next `event`. */
  once<K extends keyof ClientEvents>(event: K): Promise<ClientEvents[K]> {
    return new Promise((resolve) => {
      const off = this.on(event, (v) => {
        off();
        resolve(v);
      });
    });
  }

  async #emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): Promise<void> {
    for (const l of [...(this.#listeners.get(event) ?? [])]) {
      try {
        await (l as Listener<ClientEvents[K]>)(value);
      } catch (e) {
        if (event !== "error") await this.#emit("error", asCipherpostError(e));
      }
    }
  }

  #runInBackground(what: string, task: () => Promise<unknown>): void {
    const p = task().catch((e: unknown) => {
      if (this.#closed && CipherpostError.is(e, "CLOSED")) return;
      const err = asCipherpostError(e);
      return this.#emit(
        "error",
        new CipherpostError(err.code, `${what}: ${err.message}`, { extras: err.extras, cause: err }),
      );
    });
    this.#background.add(p);
    void p.finally(() => this.#background.delete(p));
  }

  // ---------- the connection ----------

  /**
   * Opens the mailbox WebSocket and keeps it open (reconnecting with backoff) until `close()`. Resolves once the
   * first connection is open; queued messages then arrive as `message` events, followed by `queueEmpty`.
   * `failFast`: if the first attempt fails (relay unreachable), reject with that error instead of retrying;
   * for command-line tools that should say so and exit. Later drops are always retried.
   */
  connect(options: { failFast?: boolean } = {}): Promise<void> {
    this.#assertOpen();
    if (this.#connection?.running) return Promise.resolve();
    const WS = this.#options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS)
      throw new CipherpostError(
        "INVALID_ARGUMENT",
        "no WebSocket implementation: pass options.WebSocket (in Node 20, the `ws` package's WebSocket)",
      );
    this.#connection = new MailboxConnection(
      this.#http,
      this.#auth,
      WS,
      {
        frame: (socket, frame) => this.#onFrame(socket, frame),
        event: (e) => {
          void this.#emit("connection", e);
          if (e.state === "open") this.#runInBackground("prekey upkeep", () => this.refreshPreKeys());
        },
        fatal: (error) => void this.#emit("stopped", error),
        protocolError: (error) => void this.#emit("error", error),
      },
      this.#options.connection,
    );
    // Signed prekeys rotate on a schedule, checked hourly while connected.
    clearInterval(this.#rotationTimer);
    this.#rotationTimer = setInterval(
      () => this.#runInBackground("prekey rotation", () => this.refreshPreKeys()),
      3_600_000,
    );
    unref(this.#rotationTimer);
    return this.#connection.start(options);
  }

  /** Drops the current socket and connects again (after a network change; also how tests simulate a drop). */
  reconnect(): void {
    this.#connection?.reconnect();
  }

  /** Resolves when everything queued at the current connection's opening has been processed. */
  waitForQueueEmpty(): Promise<void> {
    return this.once("queueEmpty");
  }

  /** Stops the connection, lets queued work finish (acks, receipts, resends), clears timers. The storage stays open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#connection?.stop();
    this.#connection = null;
    await this.#chain;
    clearInterval(this.#rotationTimer);
    clearTimeout(this.#receiptTimer);
    if (this.#pendingReceipts.size) this.#runInBackground("delivery receipts", () => this.#flushReceipts());
    // Background sends (receipts, prekey upkeep) get a bounded time to finish: closing must not hang on a slow
    // or unreachable relay. A delivery receipt still unsent then is dropped (it is a courtesy, not a message);
    // prekey upkeep runs again on the next connect.
    const deadline = Date.now() + CLOSE_WAIT_MS;
    while (this.#background.size && Date.now() < deadline) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...this.#background]),
        new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now())))),
      ]);
      clearTimeout(timer);
    }
    clearTimeout(this.#expiryTimer);
    this.#closed = true;
  }

  #assertOpen(): void {
    if (this.#closed) throw new CipherpostError("CLOSED", "the client is closed");
  }

  #onFrame(socket: MailboxSocket, frame: ServerFrame): void {
    switch (frame.type) {
      case "message":
        this.#queued++;
        this.#chain = this.#chain.then(() => this.#process(socket, frame)).finally(() => this.#queued--);
        return;
      case "queue_empty":
        this.#chain = this.#chain.then(() => this.#emit("queueEmpty", undefined));
        return;
      case "keys_low":
        this.#runInBackground("prekey refill", () => this.refreshPreKeys());
        return;
      case "error":
        void this.#emit("error", new CipherpostError(frame.code, `the relay refused a frame: ${frame.message}`));
        return;
      case "pong":
        return;
    }
  }

  // ---------- receiving ----------

  async #process(socket: MailboxSocket, frame: MessageFrame): Promise<void> {
    const env = frame.envelope;
    try {
      if (env.online) {
        // Never stored and never acked: typing indicators and the like.
        const content = await this.#mutex.run(() => this.#decryptOnline(env));
        if (content?.type === "typing")
          await this.#emit("typing", {
            from: env.sourceAccountId,
            fromDevice: env.sourceDeviceId,
            action: content.action,
            ...(content.groupId ? { groupId: content.groupId } : {}),
          });
        return;
      }
      const outcome = await this.#mutex.run(() => this.#receive(frame));
      socket.ack([frame.id]);
      for (const emit of outcome) await emit();
      this.#scheduleReceipts();
    } catch (e) {
      // Storage failed: leave the message unacked; a new connection delivers it again.
      await this.#emit(
        "error",
        new CipherpostError(asCipherpostError(e).code, `processing message ${frame.id}: ${String(e)}`, { cause: e }),
      );
      this.reconnect();
    }
  }

  async #decryptOnline(env: Envelope): Promise<Content | undefined> {
    if (env.type !== CIPHERTEXT_TYPES.message && env.type !== CIPHERTEXT_TYPES.preKeyMessage) return undefined;
    const batch = newBatch();
    try {
      const r = await this.#decrypt(env, batch);
      await this.#storage.write(batch);
      return r;
    } catch {
      return undefined;
    }
  }

  /** Decrypts with the sender device's record; stages the record, a new identity and used prekeys into `batch`. */
  async #decrypt(env: Envelope, batch: Batch): Promise<Content | undefined> {
    const from = env.sourceAccountId;
    const record = await this.#record(from, env.sourceDeviceId);
    const trusted = await this.#trustedIdentity(from);
    const result = await sessionDecrypt(
      record,
      this.#identity,
      this.#preKeyStore,
      env.type,
      fromBase64(env.content),
      trusted ? { trustedIdentityKey: trusted } : {},
    );
    this.#records.set(sessionKey(from, env.sourceDeviceId), record);
    batch.set[sessionKey(from, env.sourceDeviceId)] = toBase64(record.serialize());
    if (!trusted) batch.set[identityKeyOf(from)] = toBase64(result.remoteIdentityKey);
    if (result.usedPreKeys) batch.delete.push(...usedPreKeyDeletions(result.usedPreKeys));
    return decodeContent(result.plaintext);
  }

  /** One queued message, exactly once: decrypt, stage everything it changes, write it in one batch. Answers the events to emit after the ack. */
  async #receive(frame: MessageFrame): Promise<(() => Promise<void>)[]> {
    const env = frame.envelope;
    const events: (() => Promise<void>)[] = [];
    this.#stats.processed++;
    if (await this.#storage.get(seenKey(frame.id))) {
      this.#stats.duplicates++;
      return events;
    }
    const batch = newBatch();
    batch.set[seenKey(frame.id)] = String(env.expiresAt);
    const commits: (() => void)[] = [];
    const from = env.sourceAccountId;

    if (env.type === CIPHERTEXT_TYPES.plaintext) {
      const content = decodeContent(fromBase64(env.content));
      if (content?.type === "retry" && content.targetDevice === this.deviceId)
        this.#runInBackground("resend after a retry receipt", () => this.#resend(env, content));
      await this.#storage.write(batch);
      return events;
    }

    let content: Content | undefined;
    try {
      if (env.type !== CIPHERTEXT_TYPES.message && env.type !== CIPHERTEXT_TYPES.preKeyMessage)
        throw new CryptoError("INVALID_MESSAGE", `ciphertext type ${env.type} is not supported`);
      content = await this.#decrypt(env, batch);
    } catch (e) {
      if (CryptoError.is(e, "DUPLICATE_MESSAGE")) {
        this.#stats.duplicates++;
        await this.#storage.write(batch);
        return events;
      }
      const error = asCipherpostError(e);
      this.#stats.decryptionErrors++;
      await this.#storage.write({ set: { [seenKey(frame.id)]: String(env.expiresAt) } });
      const event: DecryptionErrorEvent = {
        relayId: frame.id,
        from,
        fromDevice: env.sourceDeviceId,
        timestamp: env.timestamp,
        error,
      };
      events.push(() => this.#emit("decryptionError", event));
      // Signal's answer to an undecryptable message: ask the sender to start a new session and send it again.
      this.#runInBackground("retry receipt", () => this.#sendRetryReceipt(env));
      return events;
    }

    if (!content || content.type === "retry") {
      this.#stats.decryptionErrors++;
      await this.#storage.write(batch);
      const error = new CipherpostError("INVALID_CONTENT", "the message decrypted but its content does not parse");
      events.push(() =>
        this.#emit("decryptionError", {
          relayId: frame.id,
          from,
          fromDevice: env.sourceDeviceId,
          timestamp: env.timestamp,
          error,
        }),
      );
      return events;
    }

    const now = Date.now();
    switch (content.type) {
      case "message": {
        if (this.#store.has(from, content.id)) this.#stats.duplicates++;
        else {
          const stored = toStored(content, {
            direction: from === this.accountId ? "outgoing" : "incoming",
            from,
            fromDevice: env.sourceDeviceId,
            to: this.accountId,
            now,
          });
          commits.push(this.#store.stageAdd(stored, batch));
          events.push(() => this.#emit("message", stored));
          if (from !== this.accountId && this.#options.deliveryReceipts !== false)
            commits.push(() => this.#queueReceipt(from, content.id));
        }
        break;
      }
      case "sync": {
        // Only this account's own devices may say what this account sent.
        if (from !== this.accountId) break;
        if (this.#store.has(from, content.message.id)) {
          this.#stats.duplicates++;
          break;
        }
        const stored = toStored(content.message, {
          direction: "outgoing",
          from,
          fromDevice: env.sourceDeviceId,
          ...(content.destination ? { to: content.destination } : {}),
          now,
        });
        commits.push(this.#store.stageAdd(stored, batch));
        events.push(() => this.#emit("message", stored));
        break;
      }
      case "receipt": {
        for (const id of content.messageIds) {
          const commit = this.#store.stageUpdate(
            this.accountId,
            id,
            (m) => {
              const list = content.kind === "delivery" ? (m.delivered ?? []) : (m.read ?? []);
              if (list.includes(from)) return m;
              return { ...m, [content.kind === "delivery" ? "delivered" : "read"]: [...list, from] };
            },
            batch,
          );
          if (commit) commits.push(commit);
        }
        events.push(() =>
          this.#emit("receipt", {
            from,
            fromDevice: env.sourceDeviceId,
            kind: content.kind,
            messageIds: content.messageIds,
          }),
        );
        break;
      }
      case "typing":
        events.push(() =>
          this.#emit("typing", {
            from,
            fromDevice: env.sourceDeviceId,
            action: content.action,
            ...(content.groupId ? { groupId: content.groupId } : {}),
          }),
        );
        break;
    }
    await this.#storage.write(batch);
    for (const c of commits) c();
    this.#scheduleExpiry();
    return events;
  }

  // ---------- sessions ----------

  async #record(account: string, device: number): Promise<SessionRecord> {
    const key = sessionKey(account, device);
    const cached = this.#records.get(key);
    if (cached) return cached;
    const raw = await this.#storage.get(key);
    return raw ? SessionRecord.deserialize(fromBase64(raw)) : new SessionRecord();
  }

  /** The records of every known device of `account` (this device excluded). */
  async #recordsFor(account: string): Promise<Map<number, SessionRecord>> {
    const out = new Map<number, SessionRecord>();
    for (const [k, v] of await this.#storage.list(`s/${account}/`)) {
      const device = Number(k.slice(k.lastIndexOf("/") + 1));
      if (account === this.accountId && device === this.deviceId) continue;
      let record = this.#records.get(k);
      if (!record) {
        record = SessionRecord.deserialize(fromBase64(v));
        this.#records.set(k, record);
      }
      out.set(device, record);
    }
    return out;
  }

  async #trustedIdentity(account: string): Promise<Uint8Array | undefined> {
    const raw = await this.#storage.get(identityKeyOf(account));
    return raw ? fromBase64(raw) : undefined;
  }

  /**
   * Accepts a contact's new identity key after the user compared the new safety number. Sessions with the old
   * identity are dropped as new ones are made.
   */
  async trustIdentity(accountId: string, identityKey: Uint8Array): Promise<void> {
    await this.#storage.write({ set: { [identityKeyOf(checkAccountId(accountId))]: toBase64(identityKey) } });
  }

  /**
   * Claims bundles for `devices` of `account` (or all with "*") and starts a session with each. Returns the
   * device ids a session was made for.
   */
  async #fetchSessions(account: string, devices: number[] | "*"): Promise<number[]> {
    const wanted = devices === "*" ? null : new Set(devices);
    const paths = devices === "*" || devices.length > 2 ? ["*"] : devices.map(String);
    const bundles: { identityKey: string; devices: PreKeyBundleResponse["devices"] }[] = [];
    for (const p of paths) {
      try {
        bundles.push(
          await this.#http.json("GET", `/v2/keys/${account}/${p}`, PreKeyBundleResponse, { auth: this.#auth }),
        );
      } catch (e) {
        // A device that has not published keys yet (or was removed meanwhile): leave it; the relay's next answer says.
        if (!CipherpostError.is(e, "NOT_FOUND") || p === "*") throw e;
      }
    }
    const trusted = await this.#trustedIdentity(account);
    const batch = newBatch();
    const made: number[] = [];
    for (const b of bundles) {
      for (const bundle of bundlesFromJson({ identityKey: b.identityKey, devices: b.devices })) {
        if (wanted && !wanted.has(bundle.deviceId)) continue;
        if (account === this.accountId && bundle.deviceId === this.deviceId) continue;
        const record = await this.#record(account, bundle.deviceId);
        try {
          await initiateSession(this.#identity, bundle, {
            record,
            ...(trusted ? { trustedIdentityKey: trusted } : {}),
          });
        } catch (e) {
          throw asCipherpostError(e);
        }
        this.#records.set(sessionKey(account, bundle.deviceId), record);
        batch.set[sessionKey(account, bundle.deviceId)] = toBase64(record.serialize());
        made.push(bundle.deviceId);
      }
      if (!trusted) batch.set[identityKeyOf(account)] = b.identityKey;
    }
    await this.#storage.write(batch);
    return made;
  }

  /** Brings the known device set of `account` in line with the relay's 409/410 answer. */
  async #repair(account: string, error: CipherpostError): Promise<void> {
    const x = error.extras as { missingDevices?: number[]; extraDevices?: number[]; staleDevices?: number[] };
    const batch = newBatch();
    for (const d of x.extraDevices ?? []) {
      this.#records.delete(sessionKey(account, d));
      batch.delete.push(sessionKey(account, d));
    }
    for (const d of x.staleDevices ?? []) {
      // Sesame: a stale device was replaced (re-linked): stop sending on its session, keep it for in-flight messages.
      const record = await this.#record(account, d);
      record.archiveCurrentSession();
      batch.set[sessionKey(account, d)] = toBase64(record.serialize());
    }
    await this.#storage.write(batch);
    const fetch = [...(x.missingDevices ?? []), ...(x.staleDevices ?? [])];
    if (fetch.length) await this.#fetchSessions(account, fetch);
  }

  // ---------- sending ----------

  /**
   * Encrypts `plaintext` for every device of `account` we know a session with and sends it; on 409/410 brings
   * the device set up to date and tries once more. Runs under the mutex.
   */
  async #deliver(
    account: string,
    plaintext: Uint8Array,
    fields: { timestamp: number; online?: boolean; ttlSeconds?: number | undefined },
  ): Promise<SendMessageResponse> {
    const self = account === this.accountId;
    let records = await this.#recordsFor(account);
    if (!self && ![...records.values()].some((r) => r.hasCurrentSession())) {
      await this.#fetchSessions(account, "*");
      records = await this.#recordsFor(account);
    }
    for (let attempt = 0; ; attempt++) {
      const messages = encryptForDevices(records, plaintext);
      const batch = newBatch();
      for (const m of messages)
        batch.set[sessionKey(account, m.destinationDeviceId)] = toBase64(
          records.get(m.destinationDeviceId)!.serialize(),
        );
      // The ratchet has moved: store it before sending, so a crash can never make us reuse a message key.
      await this.#storage.write(batch);
      const body: SendMessageRequest = {
        messages: messages.map((m) => ({
          type: m.type,
          destinationDeviceId: m.destinationDeviceId,
          destinationRegistrationId: m.destinationRegistrationId,
          content: toBase64(m.body),
        })),
        timestamp: fields.timestamp,
        online: fields.online ?? false,
        urgent: !fields.online,
        ...(fields.ttlSeconds !== undefined ? { ttlSeconds: fields.ttlSeconds } : {}),
      };
      const answer = await this.#sendRequest(account, body);
      if (answer.ok) return answer.response;
      const err = answer.error;
      if (attempt >= 1 || (err.code !== "MISMATCHED_DEVICES" && err.code !== "STALE_DEVICES")) throw err;
      await this.#repair(account, err);
      records = await this.#recordsFor(account);
    }
  }

  /**
   * One send of already-encrypted copies: over the mailbox connection when it is open (one hop in the relay
   * instead of two), otherwise, or when the connection ends before answering, over HTTP. One idempotency key
   * covers both, so a send stored just before its connection dropped is answered, not stored again.
   */
  #sendRequest(account: string, body: SendMessageRequest): Promise<Answer<SendMessageResponse>> {
    return this.#sendEither(
      { type: "send", destination: account, message: body },
      `/v1/messages/${account}`,
      SendMessageResponse,
    );
  }

  /** A group send, the same way as #sendRequest; a refusal of the whole request throws. */
  async #sendMultiRequest(body: MultiRecipientSendRequest): Promise<MultiRecipientSendResponse> {
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
    const overSocket = this.#connection?.send({ ...frame, idempotencyKey });
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
    const res = await this.#http.raw("PUT", path, {
      auth: this.#auth,
      body: frame.message,
      headers: { "idempotency-key": idempotencyKey },
    });
    if (!res.ok) return { ok: false, error: await errorFrom(res) };
    return parse(await res.json().catch(() => undefined));
  }

  #messageContent(input: MessageInput | string, group?: GroupContext): MessageContent {
    const m: MessageInput = typeof input === "string" ? { text: input } : input;
    if (m.text !== undefined && new TextEncoder().encode(m.text).length > MAX_TEXT_BYTES)
      throw new CipherpostError("INVALID_ARGUMENT", `text: at most ${MAX_TEXT_BYTES} bytes of UTF-8`);
    if (m.expireSeconds !== undefined && (!Number.isInteger(m.expireSeconds) || m.expireSeconds < 1))
      throw new CipherpostError("INVALID_ARGUMENT", "expireSeconds: a positive whole number of seconds");
    if (m.text === undefined && !m.attachments?.length && m.data === undefined)
      throw new CipherpostError("INVALID_ARGUMENT", "a message needs text, attachments or data");
    return {
      type: "message",
      id: crypto.randomUUID(),
      timestamp: Date.now(),
      ...(m.text !== undefined ? { text: m.text } : {}),
      ...(m.attachments?.length ? { attachments: m.attachments } : {}),
      ...(m.data !== undefined ? { data: m.data } : {}),
      ...(m.expireSeconds !== undefined ? { expireSeconds: m.expireSeconds } : {}),
      ...(group ? { group } : {}),
    };
  }

  #encode(content: Content): Uint8Array {
    const bytes = encodeContent(content);
    if (bytes.length > MAX_CONTENT_BYTES)
      throw new CipherpostError(
        "INVALID_ARGUMENT",
        `the message is ${bytes.length} bytes; at most ${MAX_CONTENT_BYTES}`,
      );
    return bytes;
  }

  /** Sends a message to an account (all its devices) and a sync copy to this account's other devices; stores it. */
  async send(to: string, input: MessageInput | string): Promise<SendResult> {
    this.#assertOpen();
    const account = checkAccountId(to, "to");
    const content = this.#messageContent(input);
    const bytes = this.#encode(content);
    return this.#mutex.run(async () => {
      await this.#logSent(content, [account]);
      const r = await this.#deliver(account, bytes, {
        timestamp: content.timestamp,
        ttlSeconds: content.expireSeconds,
      });
      if (account !== this.accountId) await this.#sync(content, account, r.needsSync);
      await this.#storeOwn(content, account);
      return { id: content.id, timestamp: content.timestamp, serverTimestamp: r.serverTimestamp };
    });
  }

  /** Uploads `file` as an attachment and sends it in a message. */
  async sendFile(
    to: string,
    file: Blob,
    options: UploadOptions & { text?: string; expireSeconds?: number } = {},
  ): Promise<SendResult & { attachment: AttachmentPointer }> {
    const attachment = await this.uploadAttachment(file, options);
    const r = await this.send(to, {
      attachments: [attachment],
      ...(options.text !== undefined ? { text: options.text } : {}),
      ...(options.expireSeconds !== undefined ? { expireSeconds: options.expireSeconds } : {}),
    });
    return { ...r, attachment };
  }

  async #sync(content: MessageContent, destination: string | undefined, needsSync: boolean): Promise<void> {
    if (!needsSync && (await this.#recordsFor(this.accountId)).size === 0) return;
    const sync: SyncContent = {
      type: "sync",
      id: content.id,
      timestamp: content.timestamp,
      ...(destination ? { destination } : {}),
      message: content,
    };
    await this.#logSent(sync, [this.accountId], ".sync");
    await this.#deliver(this.accountId, this.#encode(sync), {
      timestamp: content.timestamp,
      ttlSeconds: content.expireSeconds,
    });
  }

  async #storeOwn(content: MessageContent, to: string | undefined): Promise<void> {
    const batch = newBatch();
    const stored = toStored(content, {
      direction: "outgoing",
      from: this.accountId,
      fromDevice: this.deviceId,
      ...(to ? { to } : {}),
      now: Date.now(),
    });
    const commit = this.#store.stageAdd(stored, batch);
    await this.#storage.write(batch);
    commit();
    this.#scheduleExpiry();
  }

  /**
   * Sends one message to a group's members through the relay's multi-recipient send (up to 1000 per request),
   * then retries members whose device set changed one by one, then syncs this account's other devices.
   * `members` may include this account; it is left out of the fan-out.
   */
  async sendGroup(
    members: string[],
    input: MessageInput | string,
    options: { groupId?: string } = {},
  ): Promise<GroupSendResult> {
    this.#assertOpen();
    const all = [...new Set(members.map((m) => checkAccountId(m, "member")))];
    if (!all.includes(this.accountId)) all.push(this.accountId);
    if (all.length > MAX_GROUP_MEMBERS)
      throw new CipherpostError("INVALID_ARGUMENT", `a group has at most ${MAX_GROUP_MEMBERS} members`);
    const groupId = options.groupId ?? crypto.randomUUID();
    const content = this.#messageContent(input, { id: groupId, members: all });
    const bytes = this.#encode(content);
    const recipients = all.filter((a) => a !== this.accountId);
    return this.#mutex.run(async () => {
      await this.#logSent(content, recipients);
      const failed: GroupSendResult["failed"] = [];
      const retry: string[] = [];
      let needsSync = false;
      let serverTimestamp = 0;

      // Sessions for members we have never written to: bundles claimed a few at a time.
      const fresh: string[] = [];
      for (const a of recipients)
        if (![...(await this.#recordsFor(a)).values()].some((r) => r.hasCurrentSession())) fresh.push(a);
      await pool(fresh, 8, async (a) => {
        try {
          await this.#fetchSessions(a, "*");
        } catch (e) {
          failed.push({ accountId: a, error: asCipherpostError(e) });
        }
      });
      const reachable = recipients.filter((a) => !failed.some((f) => f.accountId === a));

      // Encrypt for each recipient, cutting requests at the size and count limits.
      let batchEntries: { accountId: string; messages: OutgoingMessage[] }[] = [];
      let chars = 0;
      const flush = async () => {
        if (!batchEntries.length) return;
        const body = {
          recipients: batchEntries,
          timestamp: content.timestamp,
          online: false,
          urgent: true,
          ...(content.expireSeconds ? { ttlSeconds: content.expireSeconds } : {}),
        };
        batchEntries = [];
        chars = 0;
        const r = await this.#sendMultiRequest(body);
        needsSync ||= r.needsSync;
        for (const result of r.results) {
          if (result.status === 200) serverTimestamp = Math.max(serverTimestamp, result.serverTimestamp ?? 0);
          else if (result.code === "MISMATCHED_DEVICES" || result.code === "STALE_DEVICES")
            retry.push(result.accountId);
          else
            failed.push({
              accountId: result.accountId,
              error: errorFromResult(result as RecipientResult & Record<string, unknown>),
            });
        }
      };
      for (const account of reachable) {
        const records = await this.#recordsFor(account);
        const encrypted = encryptForDevices(records, bytes);
        const store = newBatch();
        for (const m of encrypted)
          store.set[sessionKey(account, m.destinationDeviceId)] = toBase64(
            records.get(m.destinationDeviceId)!.serialize(),
          );
        await this.#storage.write(store);
        const messages = encrypted.map((m) => ({
          type: m.type,
          destinationDeviceId: m.destinationDeviceId,
          destinationRegistrationId: m.destinationRegistrationId,
          content: toBase64(m.body),
        }));
        const size = messages.reduce((n, m) => n + m.content.length + 120, 80);
        if (batchEntries.length >= MAX_GROUP_RECIPIENTS_PER_REQUEST || chars + size > MAX_GROUP_REQUEST_CHARS)
          await flush();
        batchEntries.push({ accountId: account, messages });
        chars += size;
      }
      await flush();

      for (const account of retry) {
        try {
          const r = await this.#deliver(account, bytes, {
            timestamp: content.timestamp,
            ttlSeconds: content.expireSeconds,
          });
          needsSync ||= r.needsSync;
          serverTimestamp = Math.max(serverTimestamp, r.serverTimestamp);
        } catch (e) {
          failed.push({ accountId: account, error: asCipherpostError(e) });
        }
      }
      await this.#sync(content, undefined, needsSync);
      await this.#storeOwn(content, undefined);
      return { id: content.id, timestamp: content.timestamp, serverTimestamp, groupId, failed };
    });
  }

  /** A typing indicator: delivered only to devices connected now, never stored. */
  async sendTyping(to: string, action: "started" | "stopped", options: { groupId?: string } = {}): Promise<void> {
    this.#assertOpen();
    const account = checkAccountId(to, "to");
    const content: Content = {
      type: "typing",
      id: crypto.randomUUID(),
      timestamp: Date.now(),
      action,
      ...(options.groupId ? { groupId: options.groupId } : {}),
    };
    await this.#mutex.run(() =>
      this.#deliver(account, this.#encode(content), { timestamp: content.timestamp, online: true }),
    );
  }

  /** Tells `to` that its messages were delivered or read. */
  async sendReceipt(to: string, kind: "delivery" | "read", messageIds: string[]): Promise<void> {
    this.#assertOpen();
    const account = checkAccountId(to, "to");
    if (messageIds.length === 0) return;
    for (let i = 0; i < messageIds.length; i += MAX_RECEIPT_IDS) {
      const content: Content = {
        type: "receipt",
        id: crypto.randomUUID(),
        timestamp: Date.now(),
        kind,
        messageIds: messageIds.slice(i, i + MAX_RECEIPT_IDS),
      };
      await this.#mutex.run(() => this.#deliver(account, this.#encode(content), { timestamp: content.timestamp }));
    }
  }

  #queueReceipt(from: string, id: string): void {
    const list = this.#pendingReceipts.get(from) ?? [];
    list.push(id);
    this.#pendingReceipts.set(from, list);
  }

  /** Delivery receipts go out once the incoming queue is idle, one per sender, not one per message. */
  #scheduleReceipts(): void {
    if (this.#queued > 1 || this.#pendingReceipts.size === 0 || this.#receiptTimer) return;
    this.#receiptTimer = setTimeout(() => {
      this.#receiptTimer = undefined;
      this.#runInBackground("delivery receipts", () => this.#flushReceipts());
    }, 50);
  }

  async #flushReceipts(): Promise<void> {
    const pending = [...this.#pendingReceipts];
    this.#pendingReceipts.clear();
    for (const [account, ids] of pending) {
      for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
        const content: Content = {
          type: "receipt",
          id: crypto.randomUUID(),
          timestamp: Date.now(),
          kind: "delivery",
          messageIds: ids.slice(i, i + MAX_RECEIPT_IDS),
        };
        await this.#mutex.run(() => this.#deliver(account, this.#encode(content), { timestamp: content.timestamp }));
      }
    }
  }

  // ---------- retry receipts ----------

  async #logSent(content: Content, accounts: string[], suffix = ""): Promise<void> {
    const entry: SentLogEntry = { accounts, content, resends: 0 };
    await this.#storage.write({ set: { [sentKey(content.timestamp, content.id + suffix)]: JSON.stringify(entry) } });
  }

  async #pruneLogs(): Promise<void> {
    const now = Date.now();
    const del: string[] = [];
    for (const [k] of await this.#storage.list("sent/")) if (Number(k.split("/")[1]) < now - SENT_LOG_MS) del.push(k);
    for (const [k, v] of await this.#storage.list("seen/")) if (Number(v) < now) del.push(k);
    if (del.length) await this.#storage.write({ delete: del });
  }

  /** Asks the sender of an undecryptable message to resend it: plaintext (type 8), to every device of its account. */
  async #sendRetryReceipt(env: Envelope): Promise<void> {
    const content: RetryContent = {
      type: "retry",
      id: crypto.randomUUID(),
      timestamp: Date.now(),
      targetDevice: env.sourceDeviceId,
      originalTimestamp: env.timestamp,
    };
    const body = toBase64(encodeContent(content));
    const account = env.sourceAccountId;
    await this.#mutex.run(async () => {
      for (let attempt = 0; ; attempt++) {
        const records = await this.#recordsFor(account);
        const messages = [...records]
          .map(([deviceId, r]) => ({ deviceId, registrationId: r.remoteRegistrationId() }))
          .filter((d): d is { deviceId: number; registrationId: number } => d.registrationId !== undefined)
          .map((d) => ({
            type: CIPHERTEXT_TYPES.plaintext,
            destinationDeviceId: d.deviceId,
            destinationRegistrationId: d.registrationId,
            content: body,
          }));
        const answer = await this.#sendRequest(account, {
          messages,
          timestamp: content.timestamp,
          online: false,
          urgent: true,
        });
        if (answer.ok) return;
        const err = answer.error;
        if (attempt >= 1 || (err.code !== "MISMATCHED_DEVICES" && err.code !== "STALE_DEVICES")) throw err;
        await this.#repair(account, err);
      }
    });
  }

  /** A retry receipt from (account, device): start a fresh session with that device and send the message again. */
  async #resend(env: Envelope, retry: RetryContent): Promise<void> {
    const account = env.sourceAccountId;
    await this.#mutex.run(async () => {
      const entries = await this.#storage.list(`sent/${String(retry.originalTimestamp).padStart(15, "0")}/`);
      for (const [key, raw] of entries) {
        const entry = JSON.parse(raw) as SentLogEntry;
        if (!entry.accounts.includes(account) || entry.resends >= MAX_RESENDS) continue;
        await this.#storage.write({ set: { [key]: JSON.stringify({ ...entry, resends: entry.resends + 1 }) } });
        const record = await this.#record(account, env.sourceDeviceId);
        record.archiveCurrentSession();
        await this.#storage.write({ set: { [sessionKey(account, env.sourceDeviceId)]: toBase64(record.serialize()) } });
        const ttl =
          entry.content.type === "message"
            ? entry.content.expireSeconds
            : entry.content.type === "sync"
              ? entry.content.message.expireSeconds
              : undefined;
        await this.#deliver(account, this.#encode(entry.content), {
          timestamp: entry.content.timestamp,
          ttlSeconds: ttl,
        });
      }
    });
  }

  // ---------- disappearing messages ----------

  #scheduleExpiry(): void {
    const next = this.#store.nextExpiry();
    clearTimeout(this.#expiryTimer);
    if (next === undefined || this.#closed) return;
    this.#expiryTimer = setTimeout(
      () => void this.#expireMessages(),
      Math.max(0, Math.min(next - Date.now(), 2 ** 31 - 1)),
    );
    unref(this.#expiryTimer);
  }

  async #expireMessages(): Promise<void> {
    const gone = await this.#store.deleteExpired();
    if (gone.length) await this.#emit("expired", gone);
    this.#scheduleExpiry();
  }

  // ---------- prekeys ----------

  /**
   * Prekey upkeep: refills one-time keys below the threshold, replaces the signed and last-resort prekeys when
   * due, forgets replaced ones after the grace period. Runs after connecting, on keys_low, and hourly.
   */
  refreshPreKeys(): Promise<{ preKeys: number; pqPreKeys: number; signedPreKey: boolean; lastResort: boolean }> {
    return this.#keysMutex.run(async () => {
      const counts = await this.#http.json("GET", "/v2/keys", PreKeyCountResponse, { auth: this.#auth });
      const now = Date.now();
      const plan = await rotationPlan(this.#storage, this.#policy, now);
      const ec = counts.count < this.#policy.threshold ? this.#policy.batch - counts.count : 0;
      const kem = counts.pqCount < this.#policy.threshold ? this.#policy.batch - counts.pqCount : 0;
      const result = { preKeys: ec, pqPreKeys: kem, signedPreKey: plan.signed, lastResort: plan.lastResort };
      if (ec > 0 || kem > 0 || plan.signed || plan.lastResort) {
        const keys = generateKeys(
          this.#identity.identityKeyPair.privateKey,
          this.#device.nextKeyId,
          { signed: plan.signed, lastResort: plan.lastResort, ec, kem },
          now,
        );
        this.#device = { ...this.#device, nextKeyId: keys.nextKeyId };
        await this.#storage.write({ set: { ...keys.batch.set, [DEVICE_KEY]: JSON.stringify(this.#device) } });
        await this.#http.empty("PUT", "/v2/keys", {
          auth: this.#auth,
          body: {
            ...(keys.signedPreKey ? { signedPreKey: keys.signedPreKey } : {}),
            ...(keys.pqLastResortPreKey ? { pqLastResortPreKey: keys.pqLastResortPreKey } : {}),
            ...(keys.preKeys.length ? { preKeys: keys.preKeys } : {}),
            ...(keys.pqPreKeys.length ? { pqPreKeys: keys.pqPreKeys } : {}),
          },
        });
      }
      if (plan.expired.length) await this.#storage.write({ delete: plan.expired });
      return result;
    });
  }

  /** One-time prekeys this device has left on the relay. */
  preKeyCounts(): Promise<{ count: number; pqCount: number }> {
    return this.#http.json("GET", "/v2/keys", PreKeyCountResponse, { auth: this.#auth });
  }

  // ---------- attachments ----------

  /** Encrypts and uploads `file` (resumable: see UploadOptions.resume); answers the pointer to send. */
  uploadAttachment(file: Blob, options: UploadOptions = {}): Promise<AttachmentPointer> {
    this.#assertOpen();
    const name = options.name ?? (file as Blob & { name?: string }).name;
    const contentType = options.contentType ?? (file.type || undefined);
    return uploadAttachment(this.#http, this.#auth, file, {
      ...options,
      ...(name ? { name } : {}),
      ...(contentType ? { contentType } : {}),
    });
  }

  /** Downloads, checks and decrypts an attachment as a stream (see downloadAttachment). */
  downloadAttachment(pointer: AttachmentPointer, options: DownloadOptions = {}): Promise<ReadableStream<Uint8Array>> {
    return downloadAttachment(this.#http, pointer, options);
  }

  // ---------- devices and account ----------

  async devices(): Promise<DeviceInfo[]> {
    return (await this.#http.json("GET", "/v1/devices", DeviceListResponse, { auth: this.#auth })).devices;
  }

  async removeDevice(deviceId: number): Promise<void> {
    await this.#http.empty("DELETE", `/v1/devices/${deviceId}`, { auth: this.#auth });
  }

  // ---------- push wake-ups ----------

  /**
   * The relay's VAPID public key (base64url), for `PushManager.subscribe({ applicationServerKey })` in a browser.
   * Throws PUSH_NOT_CONFIGURED when the relay sends no pushes.
   */
  async vapidPublicKey(): Promise<string> {
    return (await this.#http.json("GET", "/v1/push/vapid-key", VapidKeyResponse)).publicKey;
  }

  /**
   * Registers this device's Web Push endpoint (a PushSubscription's `endpoint`): while it has no open connection,
   * a message for it makes the relay send an empty push, on which the application should `connect()`.
   */
  async setPushEndpoint(endpoint: string): Promise<void> {
    await this.#http.empty("PUT", "/v1/devices/push", { auth: this.#auth, body: { endpoint } });
  }

  /** The registered endpoint, or null when there is none (never set, removed, or ended by the push service: subscribe again). */
  async pushEndpoint(): Promise<string | null> {
    try {
      return (await this.#http.json("GET", "/v1/devices/push", PushEndpointRequest, { auth: this.#auth })).endpoint;
    } catch (e) {
      if (CipherpostError.is(e, "NOT_FOUND")) return null;
      throw e;
    }
  }

  async removePushEndpoint(): Promise<void> {
    await this.#http.empty("DELETE", "/v1/devices/push", { auth: this.#auth });
  }

  /** Deletes the account on the relay (all devices, queues, keys, attachments) and this device's storage entries. */
  async deleteAccount(): Promise<void> {
    await this.#http.empty("DELETE", "/v1/accounts/me", { auth: this.#auth });
    await this.close();
    const keys: string[] = [];
    for (const prefix of ["", "s/", "id/", "pk/", "m/", "seen/", "sent/"]) {
      if (prefix === "") keys.push(DEVICE_KEY);
      else for (const [k] of await this.#storage.list(prefix)) keys.push(k);
    }
    await this.#storage.write({ delete: keys });
  }

  /** A link code for a new device of this account (single use, valid LINK_TOKEN_TTL_SECONDS). Show it only to yourself. */
  async createLinkCode(): Promise<{ code: string; expiresAt: number }> {
    this.#assertOpen();
    const secret = crypto.getRandomValues(new Uint8Array(LINK_SECRET_BYTES));
    const handOver: LinkHandOver = {
      version: 1,
      accountId: this.accountId,
      identityKey: this.#device.identityKey,
      identityPrivateKey: this.#device.identityPrivateKey,
    };
    const envelope = sealLinkEnvelope(secret, new TextEncoder().encode(JSON.stringify(handOver)));
    const r = await this.#http.json("POST", "/v1/devices/link", CreateLinkResponse, {
      auth: this.#auth,
      body: { envelope: toBase64(envelope) },
    });
    return {
      code: encodeLinkCode({ accountId: this.accountId, linkToken: fromBase64(r.linkToken), secret }),
      expiresAt: r.expiresAt,
    };
  }

  /**
   * The safety number both people compare (60 digits in groups of five). Fetches the contact's keys (and starts
   * sessions with them) if this device has never exchanged a message with it.
   */
  async safetyNumber(accountId: string): Promise<string> {
    const account = checkAccountId(accountId);
    let remote = await this.#trustedIdentity(account);
    if (!remote) {
      await this.#mutex.run(() => this.#fetchSessions(account, "*"));
      remote = await this.#trustedIdentity(account);
    }
    if (!remote) throw new CipherpostError("NOT_FOUND", "the account has no identity key");
    return safetyNumber({
      localIdentifier: this.accountId,
      localIdentityKey: this.identityKey,
      remoteIdentifier: account,
      remoteIdentityKey: remote,
    }).display;
  }
}

function toStored(
  content: MessageContent,
  o: { direction: StoredMessage["direction"]; from: string; fromDevice: number; to?: string; now: number },
): StoredMessage {
  return {
    id: content.id,
    direction: o.direction,
    from: o.from,
    fromDevice: o.fromDevice,
    ...(o.to ? { to: o.to } : {}),
    ...(content.group ? { group: content.group } : {}),
    timestamp: content.timestamp,
    storedAt: o.now,
    ...(content.text !== undefined ? { text: content.text } : {}),
    ...(content.attachments ? { attachments: content.attachments } : {}),
    ...(content.data !== undefined ? { data: content.data } : {}),
    ...(content.expireSeconds !== undefined
      ? { expireSeconds: content.expireSeconds, expiresAt: o.now + content.expireSeconds * 1000 }
      : {}),
  };
}

async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) await fn(items[i]!);
    }),
  );
}

function unref(timer: unknown): void {
  (timer as { unref?: () => void } | undefined)?.unref?.();
}
