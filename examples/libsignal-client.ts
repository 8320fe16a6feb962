// A cipherpost client on Signal's libsignal (@signalapp/libsignal-client) and no cipherpost code at run time: the
// docs/api.md walk-through as a program, which docs/api.md quotes region by region (test/examples/docs-snippets.test.ts).
// Run it against any relay: `npx tsx examples/libsignal-client.ts [relay URL]` (default http://127.0.0.1:8787).
import { createHash, hkdfSync, randomBytes, randomInt, randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import {
  CiphertextMessageType,
  type Direction,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMKeyPair,
  KEMPublicKey,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  processPreKeyBundle,
  SessionRecord,
  SessionStore,
  SignalMessage,
  SignedPreKeyRecord,
  SignedPreKeyStore,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from "@signalapp/libsignal-client";
// Types only (erased at run time), so the compiler holds this file to the relay's wire shapes. A client
// elsewhere writes them from /v1/openapi.json and /v1/asyncapi.json.
import type {
  ChallengeResponse,
  CreateLinkResponse,
  LinkDeviceRequest,
  LinkEnvelopeResponse,
  LinkPendingResponse,
  PreKeyBundleResponse,
  RegistrationRequest,
  RegistrationResponse,
} from "../src/protocol/directory.ts";
import type { ErrorBody } from "../src/protocol/errors.ts";
import type { MessageFrame, SendFrameInput, ServerFrame } from "../src/protocol/frames.ts";
import type {
  OutgoingMessage,
  SendMessageRequest,
  SendMessageResponse,
  WebSocketTicketResponse,
} from "../src/protocol/messages.ts";

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const fromB64 = (text: string) => Buffer.from(text, "base64");

// ---------- HTTP ----------

export interface Answer<T = unknown> {
  status: number;
  body: T;
  /** Retry-After (HTTP) or retryAfterSeconds (a send_result frame), on 429 and 503. */
  retryAfterSeconds?: number;
}

/** One JSON request to the relay; answers the status and the parsed body, whatever the status. */
export async function request<T = unknown>(
  relay: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer<T>> {
  const res = await fetch(`${relay}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  const retryAfter = res.headers.get("retry-after");
  return {
    status: res.status,
    body: (text ? JSON.parse(text) : null) as T,
    ...(retryAfter ? { retryAfterSeconds: Number(retryAfter) } : {}),
  };
}

/** A request that must succeed: throws with the relay's error body otherwise. */
export async function call<T>(relay: string, method: string, path: string, body?: unknown, headers = {}): Promise<T> {
  const a = await request<T>(relay, method, path, body, headers);
  if (a.status >= 300) throw new Error(`${method} ${path} → ${a.status} ${JSON.stringify(a.body)}`);
  return a.body;
}

// ---------- libsignal's stores, in memory ----------
// A real client persists every record (encrypted at rest): losing one loses the sessions or keys it held.

const addressKey = (a: ProtocolAddress) => `${a.name()}.${a.deviceId()}`;

class Sessions extends SessionStore {
  readonly #records = new Map<string, Uint8Array<ArrayBuffer>>();
  async saveSession(address: ProtocolAddress, record: SessionRecord) {
    this.#records.set(addressKey(address), record.serialize());
  }
  async getSession(address: ProtocolAddress) {
    const r = this.#records.get(addressKey(address));
    return r ? SessionRecord.deserialize(r) : null;
  }
  async getExistingSessions(addresses: ProtocolAddress[]) {
    const out: SessionRecord[] = [];
    for (const a of addresses) {
      const r = await this.getSession(a);
      if (!r) throw new Error(`no session with ${addressKey(a)}`);
      out.push(r);
    }
    return out;
  }
  /** The device ids of an account this device holds a session with. */
  devicesOf(accountId: string): number[] {
    return [...this.#records.keys()].filter((k) => k.startsWith(`${accountId}.`)).map((k) => Number(k.split(".")[1]));
  }
  remove(accountId: string, deviceId: number) {
    this.#records.delete(`${accountId}.${deviceId}`);
  }
}

/** Identity keys by account: every device of a cipherpost account shares the account's identity key. */
class Identities extends IdentityKeyStore {
  readonly #known = new Map<string, PublicKey>();
  constructor(
    readonly identity: IdentityKeyPair,
    readonly registrationId: number,
  ) {
    super();
  }
  async getIdentityKey() {
    return this.identity.privateKey;
  }
  async getLocalRegistrationId() {
    return this.registrationId;
  }
  async saveIdentity(address: ProtocolAddress, key: PublicKey) {
    const known = this.#known.get(address.name());
    this.#known.set(address.name(), key);
    return known && !known.equals(key) ? IdentityChange.ReplacedExisting : IdentityChange.NewOrUnchanged;
  }
  // Trust on first use; a real client shows a changed key to its user (safety numbers) before trusting it.
  async isTrustedIdentity(address: ProtocolAddress, key: PublicKey, _direction: Direction) {
    const known = this.#known.get(address.name());
    return !known || known.equals(key);
  }
  async getIdentity(address: ProtocolAddress) {
    return this.#known.get(address.name()) ?? null;
  }
}

class PreKeys extends PreKeyStore {
  readonly #records = new Map<number, Uint8Array<ArrayBuffer>>();
  async savePreKey(id: number, record: PreKeyRecord) {
    this.#records.set(id, record.serialize());
  }
  async getPreKey(id: number) {
    const r = this.#records.get(id);
    if (!r) throw new Error(`no prekey ${id}`);
    return PreKeyRecord.deserialize(r);
  }
  async removePreKey(id: number) {
    this.#records.delete(id);
  }
}

class SignedPreKeys extends SignedPreKeyStore {
  readonly #records = new Map<number, Uint8Array<ArrayBuffer>>();
  async saveSignedPreKey(id: number, record: SignedPreKeyRecord) {
    this.#records.set(id, record.serialize());
  }
  async getSignedPreKey(id: number) {
    const r = this.#records.get(id);
    if (!r) throw new Error(`no signed prekey ${id}`);
    return SignedPreKeyRecord.deserialize(r);
  }
}

class KyberPreKeys extends KyberPreKeyStore {
  readonly #records = new Map<number, Uint8Array<ArrayBuffer>>();
  /** Last-resort keys stay after use; one-time keys go. */
  readonly lastResort = new Set<number>();
  async saveKyberPreKey(id: number, record: KyberPreKeyRecord) {
    this.#records.set(id, record.serialize());
  }
  async getKyberPreKey(id: number) {
    const r = this.#records.get(id);
    if (!r) throw new Error(`no KEM prekey ${id}`);
    return KyberPreKeyRecord.deserialize(r);
  }
  async markKyberPreKeyUsed(id: number, _signedPreKeyId: number, _baseKey: PublicKey) {
    if (!this.lastResort.has(id)) this.#records.delete(id);
  }
}

/** Everything libsignal keeps for one device. */
export class SignalStore {
  readonly sessions = new Sessions();
  readonly identities: Identities;
  readonly preKeys = new PreKeys();
  readonly signedPreKeys = new SignedPreKeys();
  readonly kyberPreKeys = new KyberPreKeys();
  /** The next id for a one-time key of either kind. */
  nextKeyId = 100;
  constructor(
    readonly identity: IdentityKeyPair,
    readonly registrationId: number,
  ) {
    this.identities = new Identities(identity, registrationId);
  }
}

// #region keys
/**
 * A new device's keys: the private halves kept in its libsignal store, the public halves signed by the account
 * identity key over their full serialisation (type byte included), as the JSON the relay takes. libsignal's KEM
 * keys are Kyber1024 (type byte 0x08), which the relay accepts as it does ML-KEM-1024 (0x0A).
 */
export async function newDeviceKeys(store: SignalStore) {
  const identityKey = store.identity.privateKey;
  const ec = PrivateKey.generate();
  const spk = ec.getPublicKey().serialize();
  const spkSignature = identityKey.sign(spk);
  // Key id 1 here; a real client rotates the signed prekey (a new id) every few weeks with PUT /v2/keys.
  const spkRecord = SignedPreKeyRecord.new(1, Date.now(), ec.getPublicKey(), ec, spkSignature);
  await store.signedPreKeys.saveSignedPreKey(1, spkRecord);
  const kem = KEMKeyPair.generate();
  const lastResort = kem.getPublicKey().serialize();
  const lastResortSignature = identityKey.sign(lastResort);
  await store.kyberPreKeys.saveKyberPreKey(1, KyberPreKeyRecord.new(1, Date.now(), kem, lastResortSignature));
  store.kyberPreKeys.lastResort.add(1); // kept after use, unlike one-time keys
  return {
    signedPreKey: { keyId: 1, publicKey: b64(spk), signature: b64(spkSignature) },
    pqLastResortPreKey: { keyId: 1, publicKey: b64(lastResort), signature: b64(lastResortSignature) },
    ...(await newOneTimeKeys(store, 10)),
  };
}

/** One-time EC and KEM prekeys (at most 100 of each per request), kept in the store like the others. */
export async function newOneTimeKeys(store: SignalStore, count: number) {
  const preKeys = [];
  const pqPreKeys = [];
  for (let i = 0; i < count; i++) {
    const keyId = store.nextKeyId++;
    const ec = PrivateKey.generate();
    await store.preKeys.savePreKey(keyId, PreKeyRecord.new(keyId, ec.getPublicKey(), ec));
    preKeys.push({ keyId, publicKey: b64(ec.getPublicKey().serialize()) });
    const kem = KEMKeyPair.generate();
    const publicKey = kem.getPublicKey().serialize();
    const signature = store.identity.privateKey.sign(publicKey);
    await store.kyberPreKeys.saveKyberPreKey(keyId, KyberPreKeyRecord.new(keyId, Date.now(), kem, signature));
    pqPreKeys.push({ keyId, publicKey: b64(publicKey), signature: b64(signature) });
  }
  return { preKeys, pqPreKeys };
}
// #endregion keys

// #region register
/** Creates an account and its first device: a proof of work, the device's keys, a proof of possession. */
export async function register(relay: string): Promise<Device> {
  const identity = IdentityKeyPair.generate();
  const store = new SignalStore(identity, randomInt(1, 16384)); // registration ids are 1..16383
  // 1. A challenge, and its proof of work. Read `difficulty` from each challenge: it rises while many accounts
  //    are being created relay-wide (one bit per doubling of the rate), so show progress while solving.
  const ch = await call<ChallengeResponse>(relay, "POST", "/v1/challenges");
  const challenge = fromB64(ch.challenge);
  const nonce = solveProofOfWork(challenge, ch.difficulty);
  // 2. Keys: their private halves stay in `store`. Without them no message to this device can be decrypted.
  const identityKey = identity.publicKey.serialize();
  const password = randomBytes(18).toString("base64"); // at least 16 random bytes
  const body: RegistrationRequest = {
    identityKey: b64(identityKey),
    registrationId: store.registrationId,
    password,
    ...(await newDeviceKeys(store)),
    pow: { challenge: ch.challenge, nonce: b64(nonce) },
    // 3. Proof of possession, domain-separated so it can never pass for a prekey signature.
    proof: b64(identity.privateKey.sign(registrationProof(challenge, identityKey))),
  };
  const { accountId, deviceId } = await call<RegistrationResponse>(relay, "POST", "/v1/registration", body);
  return new Device(relay, accountId, deviceId, password, store);
}

/**
 * A nonce (8 bytes, counting up) for which SHA-256("cipherpost-pow-v1" ‖ challenge ‖ nonce) has `difficulty`
 * leading zero bits: 2^difficulty hashes on average.
 */
export function solveProofOfWork(challenge: Uint8Array, difficulty: number): Buffer<ArrayBuffer> {
  const nonce = Buffer.alloc(8);
  for (let i = 0; ; i++) {
    nonce.writeUIntBE(i, 2, 6);
    const hash = createHash("sha256").update("cipherpost-pow-v1").update(challenge).update(nonce).digest();
    if (leadingZeroBits(hash) >= difficulty) return nonce;
  }
}

export function leadingZeroBits(bytes: Uint8Array): number {
  let bits = 0;
  for (const byte of bytes) {
    if (byte !== 0) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
}

/** What the registration's `proof` signs: UTF-8 "cipherpost-register-v1" ‖ challenge (32) ‖ identity key (33 bytes). */
export function registrationProof(challenge: Uint8Array, identityKey: Uint8Array): Buffer<ArrayBuffer> {
  return Buffer.concat([Buffer.from("cipherpost-register-v1"), challenge, identityKey]);
}
// #endregion register

// ---------- a device: its credentials, its store and its mailbox socket ----------

/** A decrypted message. */
export interface Received {
  id: string;
  fromAccountId: string;
  fromDeviceId: number;
  /** libsignal's CiphertextMessageType: 3 for the prekey message that starts a session, 2 after. */
  type: number;
  text: string;
  serverTimestamp: number;
}

type WebSocketLike = Pick<WebSocket, "send" | "close" | "addEventListener" | "readyState">;

/** The WHATWG WebSocket: the global one (browsers, Node 22+) or undici's on Node 20. */
async function webSocketClass(): Promise<new (url: string) => WebSocketLike> {
  const global = (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  return global ?? ((await import("undici")).WebSocket as unknown as new (url: string) => WebSocketLike);
}

export class Device {
  readonly address: ProtocolAddress;
  readonly auth: string;
  /** Decrypted messages not yet taken by `nextMessage`. */
  readonly inbox: Received[] = [];
  /** Ids of messages already decrypted: delivery is at least once, so the same id can come again. */
  readonly #seen = new Set<string>();
  /** What went wrong while handling frames (decryption failures, error frames). */
  readonly problems: string[] = [];
  /** How often a keys_low frame made this device upload more one-time keys. */
  refills = 0;
  /** Message frames received on the current connection, new or not. */
  messageFrames = 0;
  /** The close code and reason of the last socket, once it closed. */
  closed: Promise<{ code: number; reason: string }> = Promise.resolve({ code: 0, reason: "never connected" });
  #socket: WebSocketLike | null = null;
  #ping: ReturnType<typeof setInterval> | undefined;
  #queueEmpty: Promise<void> = Promise.resolve();
  #backlogDone: () => void = () => {};
  #serial: Promise<unknown> = Promise.resolve();
  #waiting: (() => void) | null = null;
  readonly #pending = new Map<string, (a: Answer) => void>();

  constructor(
    readonly relay: string,
    readonly accountId: string,
    readonly deviceId: number,
    password: string,
    readonly store: SignalStore,
  ) {
    // The address libsignal knows this device by: the relay's account id and device id.
    this.address = ProtocolAddress.new(accountId, deviceId);
    this.auth = `Basic ${Buffer.from(`${accountId}.${deviceId}:${password}`).toString("base64")}`;
  }

  request<T = unknown>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    return request<T>(this.relay, method, path, body, { authorization: this.auth, ...headers });
  }

  call<T>(method: string, path: string, body?: unknown) {
    return call<T>(this.relay, method, path, body, { authorization: this.auth });
  }

  /**
   * Runs `fn` after everything queued before it. libsignal's stores are read and written by every encryption and
   * decryption: two at once on one device would each write back a session state the other did not see.
   */
  serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(fn);
    this.#serial = run.catch(() => undefined);
    return run;
  }

  // #region receive
  /** Opens the mailbox socket with a single-use ticket (browsers must; elsewhere HTTP Basic on the upgrade works). */
  async connect(): Promise<void> {
    const { ticket } = await this.call<WebSocketTicketResponse>("POST", "/v1/websocket/ticket");
    const ws = new (await webSocketClass())(
      `${this.relay.replace(/^http/, "ws")}/v1/websocket?ticket=${encodeURIComponent(ticket)}`,
    );
    this.#socket = ws;
    this.messageFrames = 0;
    this.#queueEmpty = new Promise((resolve) => (this.#backlogDone = resolve));
    ws.addEventListener("message", (e) => {
      const frame = JSON.parse(String(e.data)) as ServerFrame;
      // A send_result answers a send waiting for it; every other frame is handled in arrival order.
      if (frame.type === "send_result") this.#pending.get(frame.id)?.(frame);
      else void this.serially(() => this.#onFrame(frame)).catch((err) => this.problems.push(String(err)));
    });
    this.closed = new Promise((resolve) =>
      ws.addEventListener("close", (e) => {
        clearInterval(this.#ping);
        resolve({ code: e.code, reason: e.reason });
      }),
    );
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve());
      ws.addEventListener("error", () => reject(new Error(`the mailbox socket of ${this.address} failed`)));
    });
    // Keep-alive: exactly this text, about every 30 s (the relay closes a silent socket with 4408).
    this.#ping = setInterval(() => ws.send('{"type":"ping"}'), 30_000);
    this.#ping.unref?.();
  }

  /** Resolves once the backlog queued when the socket opened has been handled (the queue_empty frame). */
  queueEmpty(): Promise<void> {
    return this.#queueEmpty;
  }

  /**
   * Handles one frame, one at a time in arrival order (`serially`). A message is decrypted with the sender's
   * address (its envelope's sourceAccountId and sourceDeviceId), kept, and then acked by id. Delivery is at least
   * once: an id seen before is acked again and dropped.
   */
  async #onFrame(frame: ServerFrame): Promise<void> {
    if (frame.type === "message") {
      this.messageFrames++;
      if (!this.#seen.has(frame.id))
        await this.#decrypt(frame).catch((e) => {
          // A real client asks the sender to resend: a DecryptionErrorMessage in a plaintext message (type 8).
          this.problems.push(`message ${frame.id}: ${e}`);
        });
      // Acked once kept (or given up on), so it is deleted; an unacked one comes again on the next connection.
      // Online-only messages (typing, calls) were never stored: there is nothing to ack.
      if (!frame.envelope.online) this.#socket?.send(JSON.stringify({ type: "ack", ids: [frame.id] }));
    } else if (frame.type === "queue_empty") {
      this.#backlogDone();
    } else if (frame.type === "keys_low") {
      // A bundle claim left fewer than `threshold` one-time keys: upload more.
      await this.call("PUT", "/v2/keys", await newOneTimeKeys(this.store, 10));
      this.refills++;
    } else if (frame.type === "error") {
      this.problems.push(`${frame.code}: ${frame.message}`);
    }
  }

  async #decrypt({ id, envelope }: MessageFrame): Promise<void> {
    const s = this.store;
    const from = ProtocolAddress.new(envelope.sourceAccountId, envelope.sourceDeviceId);
    const bytes = fromB64(envelope.content);
    let plaintext: Uint8Array;
    if (envelope.type === CiphertextMessageType.PreKey) {
      const message = PreKeySignalMessage.deserialize(bytes);
      plaintext = await signalDecryptPreKey(
        message,
        from,
        this.address,
        s.sessions,
        s.identities,
        s.preKeys,
        s.signedPreKeys,
        s.kyberPreKeys,
      );
    } else if (envelope.type === CiphertextMessageType.Whisper) {
      plaintext = await signalDecrypt(SignalMessage.deserialize(bytes), from, this.address, s.sessions, s.identities);
    } else throw new Error(`message ${id}: type ${envelope.type} is not handled here`);
    this.#seen.add(id);
    this.inbox.push({
      id,
      fromAccountId: envelope.sourceAccountId,
      fromDeviceId: envelope.sourceDeviceId,
      type: envelope.type,
      text: new TextDecoder().decode(plaintext),
      serverTimestamp: envelope.serverTimestamp,
    });
    this.#waiting?.();
  }
  // #endregion receive

  /** The next decrypted message; throws after `timeoutMs` with what arrived instead. */
  async nextMessage(timeoutMs = 15_000): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    while (this.inbox.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`${this.address}: no message within ${timeoutMs} ms (problems: ${this.problems.join("; ")})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiting = null;
    }
    return this.inbox.shift()!;
  }

  /** Sends a send frame and waits for its send_result (matched by `id`). */
  sendFrame(frame: Omit<SendFrameInput, "id">, timeoutMs = 10_000): Promise<Answer> {
    const id = randomUUID();
    const socket = this.#socket;
    if (!socket) throw new Error(`${this.address} has no socket`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        // The SDK then retries over HTTP with the same idempotency key: the relay answers a retry only once.
        reject(new Error(`no send_result for ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, (answer) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(answer);
      });
      socket.send(JSON.stringify({ ...frame, id }));
    });
  }

  /** Closes the socket (1000) once the frames already received are handled. */
  async close(): Promise<void> {
    await this.#serial;
    clearInterval(this.#ping);
    if (this.#socket?.readyState === 1) {
      this.#socket.close(1000, "done");
      await this.closed;
    }
    this.#socket = null;
  }
}

// #region session
/**
 * Claims a bundle and starts a PQXDH session with each device in it: every device of `accountId`, or only
 * `deviceIds`. libsignal keys sessions by ProtocolAddress: name = the relay's account id, deviceId = the relay's
 * device id, the same pair a message's envelope names as sourceAccountId and sourceDeviceId.
 */
export async function startSessions(me: Device, accountId: string, deviceIds?: number[]): Promise<void> {
  const which = deviceIds?.length === 1 ? String(deviceIds[0]) : "*";
  const bundle = await me.call<PreKeyBundleResponse>("GET", `/v2/keys/${accountId}/${which}`);
  const identityKey = PublicKey.deserialize(fromB64(bundle.identityKey));
  await me.serially(async () => {
    for (const d of bundle.devices) {
      if (deviceIds && !deviceIds.includes(d.deviceId)) continue;
      const preKeyBundle = PreKeyBundle.new(
        d.registrationId,
        d.deviceId,
        d.preKey?.keyId ?? null,
        d.preKey ? PublicKey.deserialize(fromB64(d.preKey.publicKey)) : null,
        d.signedPreKey.keyId,
        PublicKey.deserialize(fromB64(d.signedPreKey.publicKey)),
        fromB64(d.signedPreKey.signature),
        identityKey,
        d.pqPreKey.keyId,
        KEMPublicKey.deserialize(fromB64(d.pqPreKey.publicKey)),
        fromB64(d.pqPreKey.signature),
      );
      const address = ProtocolAddress.new(accountId, d.deviceId);
      await processPreKeyBundle(preKeyBundle, address, me.address, me.store.sessions, me.store.identities);
    }
  });
}
// #endregion session

// #region send
/**
 * Encrypts `text` once per device of `accountId` this device has a session with (never for itself) and sends it
 * over HTTP or over this device's socket (a send frame). The relay checks the device set: 409 names the devices
 * missing (start sessions with them) and extra (drop their sessions); 410 names devices replaced under the same
 * id, whose registration id changed (drop the session, claim a new bundle). Then encrypt again and resend.
 */
export async function send(me: Device, accountId: string, text: string, via: "http" | "socket" = "http") {
  const refusals: number[] = [];
  if (accountId !== me.accountId && me.store.sessions.devicesOf(accountId).length === 0)
    await startSessions(me, accountId);
  for (let attempt = 1; attempt <= 3; attempt++) {
    // `online` (default false) and `urgent` (default true) may be left out, as may `ttlSeconds`.
    const message: SendMessageRequest = { messages: await encrypt(me, accountId, text), timestamp: Date.now() };
    // One key per body: a retry of this same body after a lost answer or a 429/503 uses it again.
    const idempotencyKey = randomUUID();
    let answer: Answer;
    for (let retry = 0; ; retry++) {
      answer =
        via === "http"
          ? await me.request("PUT", `/v1/messages/${accountId}`, message, { "idempotency-key": idempotencyKey })
          : await me.sendFrame({ type: "send", destination: accountId, idempotencyKey, message });
      if ((answer.status !== 429 && answer.status !== 503) || retry === 2) break;
      await new Promise((r) => setTimeout(r, (answer.retryAfterSeconds ?? 1) * 1000));
    }
    if (answer.status === 200) return { ...(answer.body as SendMessageResponse), refusals };
    refusals.push(answer.status);
    const body = answer.body as ErrorBody & {
      missingDevices?: number[];
      extraDevices?: number[];
      staleDevices?: number[];
    };
    if (answer.status === 409 && body.code === "MISMATCHED_DEVICES") {
      for (const d of body.extraDevices ?? []) me.store.sessions.remove(accountId, d);
      if (body.missingDevices?.length) await startSessions(me, accountId, body.missingDevices);
    } else if (answer.status === 410 && body.code === "STALE_DEVICES") {
      for (const d of body.staleDevices ?? []) me.store.sessions.remove(accountId, d);
      await startSessions(me, accountId, body.staleDevices);
    } else throw new Error(`send to ${accountId} → ${answer.status} ${JSON.stringify(body)}`);
  }
  throw new Error(`send to ${accountId}: the device set kept changing (${refusals.join(", ")})`);
}

async function encrypt(me: Device, accountId: string, text: string): Promise<OutgoingMessage[]> {
  return me.serially(async () => {
    const out: OutgoingMessage[] = [];
    for (const deviceId of me.store.sessions.devicesOf(accountId)) {
      if (accountId === me.accountId && deviceId === me.deviceId) continue;
      const address = ProtocolAddress.new(accountId, deviceId);
      const ciphertext = await signalEncrypt(
        Buffer.from(text),
        address,
        me.address,
        me.store.sessions,
        me.store.identities,
      );
      // The registration id the relay checks (410 when it no longer matches) is the one the session was built
      // with: the bundle's, or for a session the other side started, the one in its prekey message.
      const session = await me.store.sessions.getSession(address);
      out.push({
        // 3 (a prekey message, which starts the session) until the other side has answered, then 2.
        type: ciphertext.type() as OutgoingMessage["type"],
        destinationDeviceId: deviceId,
        destinationRegistrationId: session!.remoteRegistrationId(),
        content: b64(ciphertext.serialize()),
      });
    }
    return out;
  });
}
// #endregion send

// #region link
/**
 * Linking, on the existing device (1): a link token, and an ephemeral key pair for this link. The link code (a QR
 * code, in practice) carries the account id, the token and the ephemeral public key to the new device; no secret.
 */
export async function offerLink(me: Device): Promise<LinkOffer> {
  const ephemeral = PrivateKey.generate();
  const { linkToken } = await me.call<CreateLinkResponse>("POST", "/v1/devices/link");
  const raw = Buffer.concat([
    uuidBytes(me.accountId),
    fromB64(linkToken),
    ephemeral.getPublicKey().getPublicKeyBytes(),
  ]);
  return { code: `cplink2.${raw.toString("base64url")}`, linkToken, ephemeral };
}

/**
 * Linking, on the existing device (2): waits for the new device's request, shows the verification code (the
 * person checks that the new device shows the same) and, if `confirm` says so, approves the request by leaving
 * the hand-over (the account identity key pair) sealed to it.
 */
export async function approveLink(me: Device, offer: LinkOffer, confirm: (code: string) => Promise<boolean>) {
  const ask = () => me.call<LinkPendingResponse>("POST", "/v1/devices/link/pending", { linkToken: offer.linkToken });
  const pending = await pollUntil(ask, (p) => p.publicKey !== null);
  const theirs = fromB64(pending.publicKey!);
  const transcript = linkTranscript(me.accountId, offer.linkToken, offer.ephemeral.getPublicKey().serialize(), theirs);
  const { key, verificationCode } = linkSecrets(offer.ephemeral, theirs, transcript);
  if (!(await confirm(verificationCode))) {
    await me.call("POST", "/v1/devices/link/reject", { linkToken: offer.linkToken });
    throw new Error("the verification codes differ: linking refused");
  }
  const handOver = JSON.stringify({
    version: 1,
    accountId: me.accountId,
    identityKey: b64(me.store.identity.publicKey.serialize()),
    identityPrivateKey: b64(me.store.identity.privateKey.serialize()),
  });
  const envelope = b64(sealHandOver(key, transcript, Buffer.from(handOver)));
  await me.call("POST", "/v1/devices/link/approve", {
    linkToken: offer.linkToken,
    publicKey: pending.publicKey!,
    envelope,
  });
}

/**
 * Linking, on the new device: answers the link code with its own ephemeral key, shows the verification code,
 * waits for the approval, opens the hand-over, then registers with its own keys signed by the account identity key.
 */
export async function joinWithLinkCode(relay: string, code: string, show: (code: string) => void): Promise<Device> {
  const raw = Buffer.from(code.slice("cplink2.".length), "base64url");
  const hex = raw.subarray(0, 16).toString("hex");
  const accountId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  const linkToken = b64(raw.subarray(16, 48));
  const theirs = PublicKey.deserialize(Buffer.concat([Buffer.of(5), raw.subarray(48, 80)])).serialize();
  const ephemeral = PrivateKey.generate();
  const request = { accountId, linkToken, publicKey: b64(ephemeral.getPublicKey().serialize()) };
  await call(relay, "PUT", "/v1/devices/link/request", request);
  const transcript = linkTranscript(accountId, linkToken, theirs, ephemeral.getPublicKey().serialize());
  const { key, verificationCode } = linkSecrets(ephemeral, theirs, transcript);
  show(verificationCode);
  const ask = () => call<LinkEnvelopeResponse>(relay, "POST", "/v1/devices/link/envelope", request);
  const sealed = await pollUntil(ask, (e) => e.envelope !== null);
  const opened = openHandOver(key, transcript, fromB64(sealed.envelope!));
  const handOver = JSON.parse(Buffer.from(opened).toString());
  const identity = new IdentityKeyPair(
    PublicKey.deserialize(fromB64(handOver.identityKey)),
    PrivateKey.deserialize(fromB64(handOver.identityPrivateKey)),
  );
  // Its own registration id, different from every other device's (409 REGISTRATION_ID_TAKEN: pick another).
  const store = new SignalStore(identity, randomInt(1, 16384));
  const password = randomBytes(18).toString("base64");
  const body: LinkDeviceRequest = {
    accountId,
    linkToken,
    registrationId: store.registrationId,
    password,
    ...(await newDeviceKeys(store)),
  };
  const { deviceId } = await call<RegistrationResponse>(relay, "PUT", "/v1/devices/link", body);
  return new Device(relay, accountId, deviceId, password, store);
}

/** "cipherpost-link-v2" ‖ account id (16 bytes) ‖ link token (32) ‖ existing device's key (33) ‖ new device's key (33). */
export function linkTranscript(accountId: string, linkToken: string, existing: Uint8Array, joining: Uint8Array) {
  return Buffer.concat([
    Buffer.from("cipherpost-link-v2"),
    uuidBytes(accountId),
    fromB64(linkToken),
    existing,
    joining,
  ]);
}

/**
 * HKDF-SHA-256(X25519 of the two ephemeral keys, salt SHA-256(transcript), info "cipherpost-link-v2", 37 bytes):
 * 32 bytes of key for the hand-over, then 5 whose big-endian value mod 10^6 is the verification code.
 */
export function linkSecrets(ours: PrivateKey, theirs: Uint8Array<ArrayBuffer>, transcript: Uint8Array) {
  const salt = createHash("sha256").update(transcript).digest();
  const okm = Buffer.from(
    hkdfSync("sha256", ours.agree(PublicKey.deserialize(theirs)), salt, "cipherpost-link-v2", 37),
  );
  const verificationCode = String(okm.readUIntBE(32, 5) % 1_000_000).padStart(6, "0");
  return { key: okm.subarray(0, 32), verificationCode };
}

/** 0x02 ‖ 24-byte random nonce ‖ XChaCha20-Poly1305(key, nonce, associated data = 0x02 ‖ transcript). */
export function sealHandOver(key: Uint8Array, transcript: Uint8Array, plaintext: Uint8Array) {
  const nonce = randomBytes(24);
  const aad = Buffer.concat([Buffer.of(2), transcript]);
  return Buffer.concat([Buffer.of(2), nonce, xchacha20poly1305(key, nonce, aad).encrypt(plaintext)]);
}

export function openHandOver(key: Uint8Array, transcript: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (sealed[0] !== 2) throw new Error(`unknown hand-over version ${sealed[0]}`);
  const aad = Buffer.concat([Buffer.of(2), transcript]);
  return xchacha20poly1305(key, sealed.subarray(1, 25), aad).decrypt(sealed.subarray(25));
}
/** Asks until the answer is ready. A real client stops when the link token expires or the person cancels. */
async function pollUntil<T>(ask: () => Promise<T>, ready: (answer: T) => boolean): Promise<T> {
  for (;;) {
    const answer = await ask();
    if (ready(answer)) return answer;
    await new Promise((r) => setTimeout(r, LINK_POLL_MS));
  }
}
// #endregion link

export interface LinkOffer {
  code: string;
  linkToken: string;
  ephemeral: PrivateKey;
}
/** How often linking asks the relay again; an app would ask every second or two. */
const LINK_POLL_MS = 200;
const uuidBytes = (uuid: string) => Buffer.from(uuid.replaceAll("-", ""), "hex");

// ---------- the walk-through ----------

/** One step of the walk-through, as the test checks it. */
export interface Step {
  what: string;
  via?: "http" | "socket";
  /** Refusals the send went through before its 200 (409, 410). */
  refusals?: number[];
  /** The 200's needsSync: the sender has other devices to send a transcript to. */
  needsSync?: boolean;
  /** Messages received for the step: the receiving device, the sending device, the message type, the text. */
  received: { to: string; from: string; type: number; text: string }[];
}

/**
 * Two accounts register, start PQXDH sessions, exchange messages both ways over HTTP and over the socket, link a
 * device, and repair the device set after 409 and 410. Answers every step; `log` prints them as they happen.
 */
export async function walkThrough(relay: string, log: (line: string) => void = () => {}): Promise<Step[]> {
  const steps: Step[] = [];
  const name = new Map<string, string>();
  const label = (d: Device) => name.get(`${d.accountId}.${d.deviceId}`) ?? String(d.address);
  const devices: Device[] = [];
  const online = async (d: Device, who: string) => {
    name.set(`${d.accountId}.${d.deviceId}`, who);
    await d.connect();
    await d.queueEmpty();
    devices.push(d);
    return d;
  };
  /** Sends, then waits for the message on every receiving device. */
  const exchange = async (what: string, from: Device, to: Device[], text: string, via: "http" | "socket") => {
    const answer = await send(from, to[0]!.accountId, text, via);
    const received = [];
    for (const d of to) {
      const m = await d.nextMessage();
      if (m.text !== text) throw new Error(`${label(d)} got "${m.text}", expected "${text}"`);
      received.push({
        to: label(d),
        from: name.get(`${m.fromAccountId}.${m.fromDeviceId}`) ?? "?",
        type: m.type,
        text,
      });
    }
    steps.push({ what, via, refusals: answer.refusals, needsSync: answer.needsSync, received });
    log(
      `${what} (${via}${answer.refusals.length ? `, after ${answer.refusals.join(", ")}` : ""}): ${received.map((r) => `${r.to} got type ${r.type}`).join(", ")}`,
    );
  };

  /** Both sides of linking at once, as two devices would run them; the person compares the two codes. */
  const link = async (existing: Device) => {
    const offer = await offerLink(existing);
    let shown: (code: string) => void = () => {};
    const onNewDevice = new Promise<string>((resolve) => (shown = resolve));
    const [joined] = await Promise.all([
      joinWithLinkCode(relay, offer.code, shown),
      approveLink(existing, offer, async (code) => code === (await onNewDevice)),
    ]);
    steps.push({ what: `linked device ${joined.deviceId} after both showed ${await onNewDevice}`, received: [] });
    log(`${existing.address} linked device ${joined.deviceId}; both screens showed ${await onNewDevice}`);
    return joined;
  };

  try {
    const alice = await online(await register(relay), "alice.1");
    const bob = await online(await register(relay), "bob.1");
    log(`registered alice ${alice.accountId} and bob ${bob.accountId}`);

    await exchange("alice starts a session and writes to bob", alice, [bob], "Hello Bob", "http");
    await exchange("bob answers over his socket", bob, [alice], "Hi Alice", "socket");
    await exchange("alice writes over her socket", alice, [bob], "How are you?", "socket");
    await exchange("bob answers over HTTP", bob, [alice], "Fine, thanks", "http");

    const alice2 = await online(await link(alice), "alice.2");
    await exchange("bob writes to both of alice's devices", bob, [alice, alice2], "To both of you", "http");
    await exchange("alice's new device answers bob", alice2, [bob], "From my new device", "socket");

    // Device 2 goes and another takes its id: bob's session with the old one is stale (410).
    await alice.call("DELETE", `/v1/devices/${alice2.deviceId}`);
    const removed = await alice2.closed;
    log(`alice removed device 2: its socket closed with ${removed.code}`);
    steps.push({ what: `removed device's socket closed with ${removed.code}`, received: [] });
    const alice3 = await online(await link(alice), "alice.2 (new)");
    await exchange("bob writes to alice's replaced device", bob, [alice, alice3], "Who is there?", "socket");

    // Device 2 goes for good: it is an extra device in bob's next send (409).
    await alice.call("DELETE", `/v1/devices/${alice3.deviceId}`);
    await alice3.closed;
    await exchange("bob writes after alice removed device 2", bob, [alice], "Just you now", "http");

    // Everything was acked: a new connection gets no message before queue_empty.
    await alice.close();
    await alice.connect();
    await alice.queueEmpty();
    await bob.close();
    steps.push({ what: `after reconnecting alice got ${alice.messageFrames} message frames`, received: [] });
    steps.push({ what: `bob refilled his one-time keys ${bob.refills} times`, received: [] });
    const problems = devices.flatMap((d) => d.problems.map((p) => `${label(d)}: ${p}`));
    if (problems.length) throw new Error(`problems while handling frames: ${problems.join("; ")}`);
    log("done");
    return steps;
  } finally {
    await Promise.all(devices.map((d) => d.close()));
  }
}

// `npx tsx examples/libsignal-client.ts [relay URL]`
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const relay = (process.argv[2] ?? "http://127.0.0.1:8787").replace(/\/$/, "");
  walkThrough(relay, console.log).catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
