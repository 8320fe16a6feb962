// The app's state around one open CipherpostClient: contacts, groups, per-conversation settings and the offline
// outbox (all kept in the same encrypted storage under "web/"), typing indicators, uploads in progress, and the
// SDK's events turned into one change signal the screens re-render on.
import {
  type CipherpostClient,
  CipherpostError,
  type StoredMessage,
  type Storage,
  type UploadState,
} from "../../client/index.ts";
import { fromBase64, toBase64 } from "../../crypto/bytes.ts";
import { CallController } from "./calls.ts";
import {
  type AppData,
  type Contact,
  type ConversationPrefs,
  type ConversationSummary,
  conversationOf,
  GROUP_PREFIX,
  type Group,
  isGroupConversation,
  summarize,
  appData,
} from "./conversations.ts";

const K = {
  profile: "web/profile",
  contact: (id: string) => `web/contact/${id}`,
  group: (id: string) => `web/group/${id}`,
  conv: (id: string) => `web/conv/${id}`,
  outbox: (id: string) => `web/outbox/${id}`,
  upload: (id: string) => `web/upload/${id}`,
};

/** Bytes per upload request: small enough for a progress bar that moves, large enough to stay fast. */
const UPLOAD_CHUNK_BYTES = 1024 * 1024;

export interface Profile {
  name: string;
}

/** A message written but not yet accepted by the relay (offline, or the relay unreachable). */
export interface Pending {
  id: string;
  conversation: string;
  text: string;
  createdAt: number;
}

export interface Upload {
  id: string;
  conversation: string;
  name: string;
  size: number;
  type: string;
  sent: number;
  total: number;
  /** The relay's upload, once created: what resuming needs (kept in the encrypted storage). */
  state?: UploadState;
  /** Interrupted (a reload): the person picks the same file again to resume it. */
  paused?: boolean;
  error?: string;
}

const TYPING_SHOWN_MS = 6_000;

export class Messenger {
  readonly client: CipherpostClient;
  readonly storage: Storage;
  profile: Profile;
  readonly contacts = new Map<string, Contact>();
  readonly groups = new Map<string, Group>();
  readonly prefs = new Map<string, ConversationPrefs>();
  readonly outbox = new Map<string, Pending>();
  readonly uploads = new Map<string, Upload>();
  /** conversation id → until when its typing indicator shows. */
  readonly typing = new Map<string, number>();
  online = false;
  /** Set when the device stopped for good (removed, or another connection took over). */
  stopped: string | undefined;
  /** Bumped on every change; screens re-render when it moves. */
  version = 0;
  readonly #listeners = new Set<() => void>();
  #flushing = false;
  #flushAgain = false;

  /** Calls: the one on screen, its media, whether the relay can connect calls. */
  readonly calls: CallController;

  private constructor(client: CipherpostClient, storage: Storage, profile: Profile) {
    this.client = client;
    this.storage = storage;
    this.profile = profile;
    this.calls = new CallController(client, () => this.changed());
  }

  static async open(client: CipherpostClient, storage: Storage): Promise<Messenger> {
    const profile = JSON.parse((await storage.get(K.profile)) ?? '{"name":""}') as Profile;
    const m = new Messenger(client, storage, profile);
    for (const [, v] of await storage.list("web/contact/")) {
      const c = JSON.parse(v) as Contact;
      m.contacts.set(c.id, c);
    }
    for (const [, v] of await storage.list("web/group/")) {
      const g = JSON.parse(v) as Group;
      m.groups.set(g.id, g);
    }
    for (const [k, v] of await storage.list("web/conv/")) m.prefs.set(k.slice(K.conv("").length), JSON.parse(v));
    for (const [, v] of await storage.list("web/upload/")) {
      const u = JSON.parse(v) as Upload;
      m.uploads.set(u.id, { ...u, paused: true });
    }
    for (const [, v] of await storage.list("web/outbox/")) {
      const p = JSON.parse(v) as Pending;
      m.outbox.set(p.id, p);
    }
    m.#listen();
    if (typeof RTCPeerConnection !== "undefined") void m.calls.probe();
    return m;
  }

  subscribe(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  changed(): void {
    this.version++;
    for (const fn of this.#listeners) fn();
  }

  #listen(): void {
    const c = this.client;
    // Back online: reconnect now rather than at the end of the backoff, then send what waited. Gone offline:
    // drop the socket, which may look open for a long while after the network went away.
    globalThis.addEventListener?.("online", () => {
      c.reconnect();
      void this.flushOutbox();
    });
    // The service worker relays the relay's wake-up push: the socket may have gone quiet, so reconnect.
    navigator.serviceWorker?.addEventListener("message", (e: MessageEvent<{ type?: string }>) => {
      if (e.data?.type === "cipherpost-push" && !this.online) c.reconnect();
    });
    globalThis.addEventListener?.("offline", () => {
      this.online = false;
      c.reconnect();
      this.changed();
    });
    c.on("message", (m) => this.#onMessage(m));
    c.on("receipt", () => this.changed());
    c.on("expired", () => this.changed());
    c.on("typing", (t) => {
      const conv = t.groupId ? GROUP_PREFIX + t.groupId : t.from;
      if (t.action === "started") this.typing.set(conv, Date.now() + TYPING_SHOWN_MS);
      else this.typing.delete(conv);
      this.changed();
      if (t.action === "started") setTimeout(() => this.changed(), TYPING_SHOWN_MS + 50);
    });
    c.on("connection", (e) => {
      this.online = e.state === "open" && navigator.onLine !== false;
      this.changed();
      if (this.online) void this.flushOutbox();
      if (this.online && this.calls.available === undefined && typeof RTCPeerConnection !== "undefined")
        void this.calls.probe();
    });
    c.on("decryptionError", async (e) => {
      console.warn("cipherpost: could not read a message", e.from, e.error.code);
      await this.#identityChanged(e.from, e.error);
    });
    c.on("stopped", (e) => {
      this.stopped = e.code === "DEVICE_REMOVED" ? "This device was removed from the account." : e.message;
      this.changed();
    });
  }

  /** A stored message: learn the sender's name, a group's name and members, a timer change; then re-render. */
  async #onMessage(m: StoredMessage): Promise<void> {
    const d = appData(m);
    const conv = conversationOf(m);
    const set: Record<string, string> = {};
    if (m.direction === "incoming" && d.name && this.contacts.get(m.from)?.name !== d.name) {
      const contact = { id: m.from, name: d.name };
      this.contacts.set(m.from, contact);
      set[K.contact(m.from)] = JSON.stringify(contact);
    }
    if (m.group) {
      const known = this.groups.get(m.group.id);
      const group: Group = { id: m.group.id, name: d.groupName ?? known?.name ?? "Group", members: m.group.members };
      this.groups.set(group.id, group);
      set[K.group(group.id)] = JSON.stringify(group);
    }
    if (conv && d.timer !== undefined) {
      const prefs = { ...this.prefsOf(conv), timer: d.timer };
      this.prefs.set(conv, prefs);
      set[K.conv(conv)] = JSON.stringify(prefs);
    }
    if (conv && m.direction === "incoming") this.typing.delete(conv);
    if (Object.keys(set).length) await this.storage.write({ set });
    this.changed();
  }

  // ---------- reading ----------

  conversations(): ConversationSummary[] {
    return summarize(this.client.messages.list(), this.client.accountId, this.contacts, this.groups, this.prefs);
  }

  messagesOf(conv: string): StoredMessage[] {
    return isGroupConversation(conv)
      ? this.client.messages.list({ groupId: conv.slice(GROUP_PREFIX.length) })
      : this.client.messages.list({ with: conv });
  }

  prefsOf(conv: string): ConversationPrefs {
    return this.prefs.get(conv) ?? { lastRead: 0 };
  }

  nameOf(conv: string): string {
    if (isGroupConversation(conv)) return this.groups.get(conv.slice(GROUP_PREFIX.length))?.name ?? "Group";
    return this.contacts.get(conv)?.name ?? conv.slice(0, 8);
  }

  isTyping(conv: string): boolean {
    return (this.typing.get(conv) ?? 0) > Date.now();
  }

  // ---------- changing ----------

  async setProfile(profile: Profile): Promise<void> {
    this.profile = profile;
    await this.storage.write({ set: { [K.profile]: JSON.stringify(profile) } });
    this.changed();
  }

  async addContact(id: string, name: string | undefined): Promise<void> {
    const existing = this.contacts.get(id);
    const contact = { id, name: name ?? existing?.name ?? id.slice(0, 8) };
    this.contacts.set(id, contact);
    await this.storage.write({ set: { [K.contact(id)]: JSON.stringify(contact) } });
    this.changed();
  }

  async createGroup(name: string, members: string[]): Promise<string> {
    const group: Group = { id: crypto.randomUUID(), name, members: [...members, this.client.accountId] };
    this.groups.set(group.id, group);
    await this.storage.write({ set: { [K.group(group.id)]: JSON.stringify(group) } });
    this.changed();
    return GROUP_PREFIX + group.id;
  }

  async #setPrefs(conv: string, prefs: ConversationPrefs): Promise<void> {
    this.prefs.set(conv, prefs);
    await this.storage.write({ set: { [K.conv(conv)]: JSON.stringify(prefs) } });
  }

  /** A contact presents another identity key than the one trusted: hold the chat behind a banner. */
  async #identityChanged(contact: string, error: CipherpostError): Promise<boolean> {
    if (error.code !== "IDENTITY_CHANGED") return false;
    const received = (error.extras as { receivedIdentityKey?: Uint8Array }).receivedIdentityKey;
    if (!received) return false;
    await this.#setPrefs(contact, { ...this.prefsOf(contact), identityChanged: toBase64(received) });
    this.changed();
    return true;
  }

  /** The person compared the new safety number and accepts the contact's new identity key. */
  async acceptIdentity(contact: string): Promise<void> {
    const { identityChanged, ...prefs } = this.prefsOf(contact);
    if (identityChanged) await this.client.trustIdentity(contact, fromBase64(identityChanged));
    await this.#setPrefs(contact, prefs);
    this.changed();
    await this.flushOutbox();
  }

  /** Marks the conversation read up to its newest message and tells the senders (read receipts). */
  async markRead(conv: string): Promise<void> {
    const prefs = this.prefsOf(conv);
    const unread = this.messagesOf(conv).filter((m) => m.direction === "incoming" && m.storedAt > prefs.lastRead);
    if (!unread.length) return;
    await this.#setPrefs(conv, { ...prefs, lastRead: Math.max(...unread.map((m) => m.storedAt)) });
    this.changed();
    const bySender = new Map<string, string[]>();
    for (const m of unread) bySender.set(m.from, [...(bySender.get(m.from) ?? []), m.id]);
    for (const [from, ids] of bySender) await this.client.sendReceipt(from, "read", ids).catch(() => undefined);
  }

  /** The message input's typing indicator; errors are ignored (it is a courtesy, delivered only if online). */
  sendTyping(conv: string, action: "started" | "stopped"): void {
    if (!this.online) return;
    const group = isGroupConversation(conv) ? this.groups.get(conv.slice(GROUP_PREFIX.length)) : undefined;
    const targets = group ? group.members.filter((a) => a !== this.client.accountId) : [conv];
    for (const to of targets)
      void this.client.sendTyping(to, action, group ? { groupId: group.id } : {}).catch(() => undefined);
  }

  /** Deletes this device's copy of a message: gone from the store's files once this resolves. */
  async deleteMessage(message: StoredMessage): Promise<void> {
    await this.client.messages.delete(message.id, message.from);
    this.changed();
  }

  /** Writes a message: into the outbox first (kept across reloads), then out as soon as the relay takes it. */
  async sendText(conv: string, text: string): Promise<void> {
    const pending: Pending = { id: crypto.randomUUID(), conversation: conv, text, createdAt: Date.now() };
    this.outbox.set(pending.id, pending);
    await this.storage.write({ set: { [K.outbox(pending.id)]: JSON.stringify(pending) } });
    this.changed();
    await this.flushOutbox();
  }

  /**
   * Sends what the outbox holds, oldest first; stops at the first failure that waiting can fix. A message written
   * while a flush is under way is sent by that flush, in another pass, rather than left waiting for a reconnect.
   */
  async flushOutbox(): Promise<void> {
    if (this.#flushing) {
      this.#flushAgain = true;
      return;
    }
    this.#flushing = true;
    try {
      do {
        this.#flushAgain = false;
        await this.#flushPass();
      } while (this.#flushAgain);
    } finally {
      this.#flushing = false;
    }
  }

  async #flushPass(): Promise<void> {
    for (const p of [...this.outbox.values()].sort((a, b) => a.createdAt - b.createdAt)) {
      if (this.prefsOf(p.conversation).identityChanged) continue;
      try {
        await this.send(p.conversation, { text: p.text });
      } catch (e) {
        if (CipherpostError.is(e) && e.retryable) return;
        // Held until the person accepts the contact's new identity key.
        if (CipherpostError.is(e) && (await this.#identityChanged(p.conversation, e))) continue;
        // Refused for good (e.g. the contact's account is gone): keep it visible as failed, out of the queue.
        console.warn("cipherpost: message refused", e);
      }
      // Out of the outbox before the screen re-renders, so the message never shows twice (queued and sent).
      this.outbox.delete(p.id);
      this.changed();
      await this.storage.write({ delete: [K.outbox(p.id)] });
    }
  }

  /** One message to a conversation, with this person's name and the conversation's timer (callers re-render). */
  async send(
    conv: string,
    input: { text?: string; attachments?: StoredMessage["attachments"]; data?: AppData; lasting?: boolean },
  ) {
    // A timer change itself never disappears: both sides keep the notice of who set what.
    const timer = input.lasting ? undefined : this.prefsOf(conv).timer;
    const group = isGroupConversation(conv) ? this.groups.get(conv.slice(GROUP_PREFIX.length)) : undefined;
    const data: AppData = { name: this.profile.name, ...(group ? { groupName: group.name } : {}), ...input.data };
    const message = {
      ...(input.text !== undefined ? { text: input.text } : {}),
      ...(input.attachments ? { attachments: input.attachments } : {}),
      data,
      ...(timer ? { expireSeconds: timer } : {}),
    };
    if (group) await this.client.sendGroup(group.members, message, { groupId: group.id });
    else await this.client.send(conv, message);
  }

  /** Sets the conversation's disappearing timer here and tells the other side (a notice in the chat). */
  async setTimer(conv: string, seconds: number): Promise<void> {
    await this.#setPrefs(conv, { ...this.prefsOf(conv), timer: seconds });
    this.changed();
    await this.send(conv, { data: { timer: seconds }, lasting: true });
    this.changed();
  }

  /** Uploads a file (progress shown in the chat) and sends it; the upload is recorded so a reload can resume it. */
  async sendFile(conv: string, file: File): Promise<void> {
    const upload: Upload = {
      id: crypto.randomUUID(),
      conversation: conv,
      name: file.name,
      size: file.size,
      type: file.type,
      sent: 0,
      total: file.size,
    };
    await this.#runUpload(upload, file);
  }

  /** Resumes an upload interrupted by a reload, with the same file picked again. */
  async resumeUpload(id: string, file: File): Promise<void> {
    const upload = this.uploads.get(id);
    if (!upload) return;
    if (file.size !== upload.size || file.name !== upload.name) {
      upload.error = `That is not ${upload.name}: pick the same file to resume.`;
      this.changed();
      return;
    }
    await this.#runUpload({ ...upload, paused: false }, file);
  }

  async #runUpload(upload: Upload, file: File): Promise<void> {
    const { error: _error, ...rest } = upload;
    const clean: Upload = rest;
    this.uploads.set(upload.id, clean);
    const record = () => {
      const { paused: _p, error: _e, ...kept } = this.uploads.get(upload.id) ?? clean;
      return JSON.stringify(kept);
    };
    await this.storage.write({ set: { [K.upload(upload.id)]: record() } });
    this.changed();
    try {
      const pointer = await this.client.uploadAttachment(file, {
        chunkBytes: UPLOAD_CHUNK_BYTES,
        ...(clean.state ? { resume: clean.state } : {}),
        onCreated: async (state) => {
          clean.state = state;
          await this.storage.write({ set: { [K.upload(upload.id)]: record() } });
        },
        onProgress: (sent, total) => {
          clean.sent = sent;
          clean.total = total;
          this.changed();
        },
      });
      await this.send(upload.conversation, { attachments: [pointer] });
      this.uploads.delete(upload.id);
      this.changed();
      await this.storage.write({ delete: [K.upload(upload.id)] });
    } catch (e) {
      clean.error = e instanceof Error ? e.message : String(e);
    }
    this.changed();
  }
}
