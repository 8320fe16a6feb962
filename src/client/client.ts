// The cipherpost client, one device of one account: a facade over the parts that do the work (onboarding, sessions,
// sending, receiving, receipts, retries, prekey upkeep, expiry), which share one ClientContext. Web-standard APIs
// only (fetch, WebSocket, WebCrypto, streams): runs in Node 20+, browsers and Workers.
import type { IceServersResponse } from "../protocol/calls.ts";
import type { Call, CallSetup } from "./call.ts";
import { safetyNumber } from "../crypto/fingerprint.ts";
import { type DeviceInfo, DeviceListResponse } from "../protocol/directory.ts";
import { PushEndpointRequest, VapidKeyResponse } from "../protocol/push.ts";
import { type DownloadOptions, downloadAttachment, type UploadOptions, uploadAttachment } from "./attachments.ts";
import type { MailboxConnection, WebSocketConstructor } from "./connection.ts";
import type { AttachmentPointer, TypingContent } from "./content.ts";
import type { ClientContext, ClientOptions, DeviceRecord, LinkOptions, RegisterOptions } from "./context.ts";
import { CipherpostError } from "./errors.ts";
import type { ClientEvents, Listener } from "./events.ts";
import { type GroupSendResult, sendGroupMessage } from "./group-send.ts";
import { type MessageFilter, MessageStore, type StoredMessage } from "./message-store.ts";
import { issueLinkCode, type LinkCodeSession, linkDevice } from "./linking.ts";
import { loadDevice, registerDevice } from "./onboarding.ts";
import { assembleClient, type ClientParts, mailboxConnection } from "./parts.ts";
import type { UpkeepResult } from "./prekey-upkeep.ts";
import type { MessageInput, SendResult } from "./sending.ts";
import { DEVICE_KEY, SDK_PREFIXES } from "./storage-keys.ts";

export type { ClientOptions, LinkOptions, RegisterOptions } from "./context.ts";
export type { ClientEvents, DecryptionErrorEvent, ReceiptEvent, TypingEvent } from "./events.ts";
export type { GroupSendResult } from "./group-send.ts";
export type { MessageInput, SendResult } from "./sending.ts";

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

  readonly #options: ClientOptions;
  readonly #device: DeviceRecord;
  readonly #p: ClientParts;
  readonly #ctx: ClientContext;
  #connection: MailboxConnection | null = null;
  #closed = false;

  private constructor(options: ClientOptions, device: DeviceRecord, store: MessageStore) {
    this.#options = options;
    this.#device = device;
    this.#p = assembleClient(options, device, store, {
      connection: () => this.#connection,
      closed: () => this.#closed,
      reconnect: () => this.reconnect(),
    });
    this.#ctx = this.#p.ctx;
    const { clock, identity } = this.#ctx;
    this.accountId = device.accountId;
    this.deviceId = device.deviceId;
    this.server = device.server;
    this.identityKey = identity.identityKeyPair.publicKey;
    this.messages = {
      list: (filter = {}) => store.list(filter, clock.now()),
      get: (id, from) => store.get(id, from),
      delete: (id, from) => store.delete(id, from),
    };
  }

  /**
   * Counters since this client was opened: queued messages processed, deliveries dropped as duplicates (a
   * relay redelivery after a lost ack, or a resend already stored), and messages that could not be decrypted.
   */
  get stats(): { processed: number; duplicates: number; decryptionErrors: number } {
    return { ...this.#p.receiver.stats };
  }

  // ---------- creating and opening ----------

  /** Opens the device stored in `options.storage`; throws NOT_REGISTERED when there is none. */
  static async open(options: ClientOptions): Promise<CipherpostClient> {
    const device = await loadDevice(options.storage);
    const client = new CipherpostClient(options, device, await MessageStore.load(options.storage));
    await client.#p.log.prune();
    await client.#p.expiry.expire();
    return client;
  }

  /** Creates an account and its first device (solving the relay's proof of work) and stores it. */
  static async register(options: RegisterOptions): Promise<CipherpostClient> {
    await registerDevice(options);
    return CipherpostClient.open(options);
  }

  /**
   * Links this storage as a new device of an existing account, given the link code another device of it showed
   * (createLinkCode): answers it, reports the verification code to compare (`onVerificationCode`), waits for the
   * other device's approval, opens the hand-over, signs its own prekeys with the account identity key and
   * registers itself.
   */
  static async link(options: LinkOptions): Promise<CipherpostClient> {
    await linkDevice(options);
    return CipherpostClient.open(options);
  }

  // ---------- events ----------

  /** Subscribes; answers the function that unsubscribes. Listeners of one event run in order and are awaited. */
  on<K extends keyof ClientEvents>(event: K, listener: Listener<ClientEvents[K]>): () => void {
    return this.#p.events.on(event, listener);
  }

  /** Resolves at the next `event`. */
  once<K extends keyof ClientEvents>(event: K): Promise<ClientEvents[K]> {
    return this.#p.events.once(event);
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
    this.#connection = mailboxConnection(this.#p, WS, this.#options.connection);
    // Signed prekeys rotate on a schedule, checked hourly while connected.
    this.#p.upkeep.start();
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
    this.#p.calls.closeAll();
    await this.#connection?.stop();
    this.#connection = null;
    await this.#p.receiver.idle();
    this.#p.upkeep.stop();
    this.#p.receipts.flushNow();
    // Background sends (receipts, prekey upkeep) get a bounded time to finish: closing must not hang on a slow
    // or unreachable relay. A delivery receipt still unsent then is dropped (it is a courtesy, not a message);
    // prekey upkeep runs again on the next connect.
    await this.#p.background.settle(this.#ctx.clock, CLOSE_WAIT_MS);
    this.#p.expiry.stop();
    this.#closed = true;
  }

  #assertOpen(): void {
    if (this.#closed) throw new CipherpostError("CLOSED", "the client is closed");
  }

  // ---------- sending ----------

  /** Sends a message to an account (all its devices) and a sync copy to this account's other devices; stores it. */
  async send(to: string, input: MessageInput | string): Promise<SendResult> {
    this.#assertOpen();
    return this.#p.sender.sendMessage(await this.#account(to, "to"), input);
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
    const accounts = await Promise.all(members.map((m) => this.#account(m, "members")));
    return sendGroupMessage(this.#ctx, this.#p.sessions, this.#p.sender, accounts, input, options);
  }

  /** A typing indicator: delivered only to devices connected now, never stored. */
  async sendTyping(to: string, action: "started" | "stopped", options: { groupId?: string } = {}): Promise<void> {
    this.#assertOpen();
    const account = await this.#account(to, "to");
    const content: TypingContent = {
      type: "typing",
      id: crypto.randomUUID(),
      timestamp: this.#ctx.clock.now(),
      action,
      ...(options.groupId ? { groupId: options.groupId } : {}),
    };
    await this.#p.sender.sendContent(account, content, true);
  }

  /** Tells `to` that its messages were delivered or read. */
  async sendReceipt(to: string, kind: "delivery" | "read", messageIds: string[]): Promise<void> {
    this.#assertOpen();
    await this.#p.receipts.send(await this.#account(to, "to"), kind, messageIds);
  }

  // ---------- sessions and keys ----------

  /**
   * Accepts a contact's new identity key after the user compared the new safety number. Sessions with the old
   * identity are dropped as new ones are made.
   */
  async trustIdentity(accountId: string, identityKey: Uint8Array): Promise<void> {
    await this.#p.sessions.trust(await this.#account(accountId), identityKey);
  }

  /**
   * The safety number both people compare (60 digits in groups of five). Fetches the contact's keys (and starts
   * sessions with them) if this device has never exchanged a message with it.
   */
  async safetyNumber(accountId: string): Promise<string> {
    const account = await this.#account(accountId);
    let remote = await this.#p.sessions.trustedIdentity(account);
    if (!remote) {
      await this.#ctx.mutex.run(() => this.#p.sessions.fetch(account, "*"));
      remote = await this.#p.sessions.trustedIdentity(account);
    }
    if (!remote) throw new CipherpostError("NOT_FOUND", "the account has no identity key");
    return safetyNumber({
      localIdentifier: this.accountId,
      localIdentityKey: this.identityKey,
      remoteIdentifier: account,
      remoteIdentityKey: remote,
    }).display;
  }

  /**
   * Prekey upkeep: refills one-time keys below the threshold, replaces the signed and last-resort prekeys when
   * due, forgets replaced ones after the grace period. Runs after connecting, on keys_low, and hourly.
   */
  refreshPreKeys(): Promise<UpkeepResult> {
    return this.#p.upkeep.refresh();
  }

  /** One-time prekeys this device has left on the relay. */
  preKeyCounts(): Promise<{ count: number; pqCount: number }> {
    return this.#p.upkeep.counts();
  }

  // ---------- attachments ----------

  /** Encrypts and uploads `file` (resumable: see UploadOptions.resume); answers the pointer to send. */
  uploadAttachment(file: Blob, options: UploadOptions = {}): Promise<AttachmentPointer> {
    this.#assertOpen();
    const name = options.name ?? (file as Blob & { name?: string }).name;
    const contentType = options.contentType ?? (file.type || undefined);
    return uploadAttachment(this.#ctx.http, this.#ctx.auth, file, {
      ...options,
      ...(name ? { name } : {}),
      ...(contentType ? { contentType } : {}),
    });
  }

  /** Downloads, checks and decrypts an attachment as a stream (see downloadAttachment). */
  downloadAttachment(pointer: AttachmentPointer, options: DownloadOptions = {}): Promise<ReadableStream<Uint8Array>> {
    return downloadAttachment(this.#ctx.http, pointer, options);
  }

  // ---------- calls ----------

  /**
   * Calls `to` (an account id, username or username link): every device of it rings. `setup` runs on the call's
   * RTCPeerConnection before the offer (add the local tracks, listen for the remote ones). CALL_BUSY when this
   * device is in a call; CALLS_UNAVAILABLE without `calls.createPeerConnection`; CALLS_NOT_CONFIGURED when the
   * relay has no TURN service. An incoming call is the `call` event. docs/calls.md.
   */
  async call(to: string, options: { video?: boolean; setup?: CallSetup } = {}): Promise<Call> {
    this.#assertOpen();
    return this.#p.calls.place(await this.#account(to, "to"), options);
  }

  /**
   * The relay's ICE servers with fresh TURN credentials, as RTCPeerConnection takes them; CALLS_NOT_CONFIGURED
   * when the relay has no TURN service (an application then hides its call buttons).
   */
  iceServers(): Promise<IceServersResponse> {
    this.#assertOpen();
    return this.#p.calls.iceServers();
  }

  /** The call this device is in (connecting or connected), if any. */
  activeCall(): Call | undefined {
    return this.#p.calls.active();
  }

  // ---------- usernames ----------

  /**
   * An account id from an account id, a username (alice.42) or a username link: every method taking an account
   * accepts all three. A username or link costs one lookup, which the relay rate-limits.
   */
  resolveAccount(account: string): Promise<string> {
    return this.#account(account);
  }

  #account(text: string, what = "account"): Promise<string> {
    return this.#p.usernames.resolveAccount(text, what);
  }

  /**
   * Sets this account's username: `setUsername("alice")` answers "alice.42" with a discriminator picked here;
   * `setUsername("alice.42")` asks for exactly that. Only a hash of the name reaches the relay. Replaces the
   * previous username; its link stops working. USERNAME_INVALID / DISCRIMINATOR_INVALID name the broken rule;
   * USERNAME_TAKEN when every candidate is held.
   */
  setUsername(nickname: string): Promise<string> {
    this.#assertOpen();
    return this.#p.usernames.set(nickname);
  }

  /** The username this device set (null if none, or if it was set on another device). */
  username(): Promise<string | null> {
    return this.#p.usernames.current();
  }

  /** The account holding `username` (alice.42); NOT_FOUND when nobody does. */
  lookupUsername(username: string): Promise<string> {
    return this.#p.usernames.lookup(username);
  }

  /** This account's username link (https://<relay>/u#<handle>.<key>), made on first use. */
  usernameLink(): Promise<string> {
    return this.#p.usernames.link();
  }

  /** A new username link; the previous one answers NOT_FOUND from now on. */
  resetUsernameLink(): Promise<string> {
    return this.#p.usernames.resetLink();
  }

  /** The username and account a username link names. */
  resolveUsernameLink(url: string): Promise<{ username: string; accountId: string }> {
    return this.#p.usernames.resolveLink(url);
  }

  /** Deletes this account's username and link (others can take the name after the relay's hold). */
  deleteUsername(): Promise<void> {
    return this.#p.usernames.delete();
  }

  // ---------- devices, push wake-ups and the account ----------

  async devices(): Promise<DeviceInfo[]> {
    return (await this.#ctx.http.json("GET", "/v1/devices", DeviceListResponse, { auth: this.#ctx.auth })).devices;
  }

  async removeDevice(deviceId: number): Promise<void> {
    await this.#ctx.http.empty("DELETE", `/v1/devices/${deviceId}`, { auth: this.#ctx.auth });
  }

  /**
   * A link code for a new device of this account (single use, valid LINK_TOKEN_TTL_SECONDS). It releases nothing
   * on its own: `requests()` yields the device that answers it, with a verification code to compare with the
   * one that device shows, and only its `approve()` hands the identity key over.
   */
  async createLinkCode(): Promise<LinkCodeSession> {
    this.#assertOpen();
    return issueLinkCode(this.#ctx, this.#device);
  }

  /**
   * The relay's VAPID public key (base64url), for `PushManager.subscribe({ applicationServerKey })` in a browser.
   * Throws PUSH_NOT_CONFIGURED when the relay sends no pushes.
   */
  async vapidPublicKey(): Promise<string> {
    return (await this.#ctx.http.json("GET", "/v1/push/vapid-key", VapidKeyResponse)).publicKey;
  }

  /**
   * Registers this device's Web Push endpoint (a PushSubscription's `endpoint`): while it has no open connection,
   * a message for it makes the relay send an empty push, on which the application should `connect()`.
   */
  async setPushEndpoint(endpoint: string): Promise<void> {
    await this.#ctx.http.empty("PUT", "/v1/devices/push", { auth: this.#ctx.auth, body: { endpoint } });
  }

  /** The registered endpoint, or null when there is none (never set, removed, or ended by the push service: subscribe again). */
  async pushEndpoint(): Promise<string | null> {
    try {
      return (await this.#ctx.http.json("GET", "/v1/devices/push", PushEndpointRequest, { auth: this.#ctx.auth }))
        .endpoint;
    } catch (e) {
      if (CipherpostError.is(e, "NOT_FOUND")) return null;
      throw e;
    }
  }

  async removePushEndpoint(): Promise<void> {
    await this.#ctx.http.empty("DELETE", "/v1/devices/push", { auth: this.#ctx.auth });
  }

  /** Deletes the account on the relay (all devices, queues, keys, attachments) and this device's storage entries. */
  async deleteAccount(): Promise<void> {
    const { http, auth, storage } = this.#ctx;
    await http.empty("DELETE", "/v1/accounts/me", { auth });
    await this.close();
    const keys = [DEVICE_KEY];
    for (const prefix of SDK_PREFIXES) for (const [k] of await storage.list(prefix)) keys.push(k);
    await storage.write({ delete: keys });
  }
}
