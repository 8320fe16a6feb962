// The account's own record of itself and its devices, the authority authentication asks (never D1): the account
// row, device rows with registration ids and password HMACs, and link tokens with the request answering each. Each change is written together
// with its outbox op (outbox.ts), which later reflects it into the public key directory in D1.
import { fromBase64, randomBytes, toBase64 } from "../../crypto/bytes.ts";
import type { DeviceInfo } from "../../protocol/directory.ts";
import { MAX_DEVICE_ID, PRIMARY_DEVICE_ID } from "../../protocol/limits.ts";
import type { Config } from "../config.ts";
import type { DeviceKeysInput } from "../db/keys.ts";
import { fail, type Failure } from "../errors.ts";
import type { PartContext } from "./context.ts";
import { hashPassword, sha256Hex, verifyPassword } from "./credentials.ts";
import type { AuthenticatedDevice, NewDevice } from "./directory.ts";
import type { DirectoryOutbox } from "./outbox.ts";
import type { RateWindow } from "./rate-window.ts";

const DAY_MS = 86_400_000;

export interface AccountRow extends Record<string, SqlStorageValue> {
  account_id: string;
  identity_key: string;
  created_at: number;
  deleting: number;
}

export interface DeviceRow extends Record<string, SqlStorageValue> {
  device_id: number;
  device_uid: number;
  registration_id: number;
  salt: ArrayBuffer;
  cred_hash: ArrayBuffer;
  created_at: number;
  last_seen: number;
}

const TOKEN_INVALID = () => fail("LINK_TOKEN_INVALID", "the link token is unknown, used or expired");
const NOT_APPROVED = () =>
  fail("LINK_TOKEN_INVALID", "the existing device has not approved this link: compare the codes and approve there");

interface LiveToken {
  hash: string;
  /** The requesting device's key; null while none asked. */
  publicKey: string | null;
  /** The sealed hand-over; null until the existing device approved. */
  envelope: string | null;
}

export class DeviceRegistry {
  #hasTables = false;
  /**
   * The account row and the device rows, read from SQLite once and kept in memory: every authentication and
   * every send asks for them (they were an eighth of the relay's CPU in the load benchmark's profile). This
   * part is their only writer, so each write below drops the copy after it commits.
   */
  #cached: { account: AccountRow | undefined; devices: DeviceRow[] } | undefined;

  constructor(
    private readonly ctx: PartContext,
    private readonly outbox: DirectoryOutbox,
    private readonly rates: RateWindow,
  ) {}

  /**
   * Whether storage holds (or held) an account. An object nobody registered stays empty: creating tables for
   * every random id anyone authenticates as or sends to would store (and bill) a database each.
   */
  holdsAccount(): boolean {
    return (
      this.ctx.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'account'").toArray().length > 0
    );
  }

  get hasTables(): boolean {
    return this.#hasTables;
  }

  createTables(): void {
    const sql = this.ctx.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS account (
      id INTEGER PRIMARY KEY CHECK (id = 1), account_id TEXT NOT NULL, identity_key TEXT NOT NULL,
      created_at INTEGER NOT NULL, deleting INTEGER NOT NULL DEFAULT 0)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS devices (
      device_id INTEGER PRIMARY KEY, device_uid INTEGER NOT NULL, registration_id INTEGER NOT NULL,
      salt BLOB NOT NULL, cred_hash BLOB NOT NULL, created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL)`);
    sql.exec(`CREATE TABLE IF NOT EXISTS link_tokens (
      token_hash TEXT PRIMARY KEY, envelope TEXT NOT NULL, expires_at INTEGER NOT NULL)`);
    // The new device's answer to a token (at most one) and, once the existing device approved it, the hand-over
    // sealed to it. Its own table, so link_tokens keeps its layout (its envelope column is '' for new tokens).
    sql.exec(`CREATE TABLE IF NOT EXISTS link_requests (
      token_hash TEXT PRIMARY KEY, public_key TEXT NOT NULL, requested_at INTEGER NOT NULL, envelope TEXT)`);
    this.#hasTables = true;
  }

  /** After the object's storage was deleted: empty again, like an id nobody registered. */
  dropped(): void {
    this.#hasTables = false;
    this.#cached = undefined;
  }

  #state() {
    if (this.#cached) return this.#cached;
    if (!this.#hasTables) return { account: undefined, devices: [] as DeviceRow[] };
    const sql = this.ctx.sql;
    this.#cached = {
      account: sql
        .exec<AccountRow>("SELECT account_id, identity_key, created_at, deleting FROM account WHERE id = 1")
        .toArray()[0],
      devices: sql.exec<DeviceRow>("SELECT * FROM devices ORDER BY device_id").toArray(),
    };
    return this.#cached;
  }

  account(): AccountRow | undefined {
    return this.#state().account;
  }

  /** The account, unless there is none or it is being deleted. */
  liveAccount(): AccountRow | undefined {
    const a = this.account();
    return a && !a.deleting ? a : undefined;
  }

  device(deviceId: number): DeviceRow | undefined {
    return this.#state().devices.find((d) => d.device_id === deviceId);
  }

  /** The device, if it and its account still exist (not being deleted). */
  liveDevice(deviceId: number): DeviceRow | undefined {
    return this.liveAccount() ? this.device(deviceId) : undefined;
  }

  devices(): DeviceRow[] {
    return this.#state().devices;
  }

  /** Creates the account with its primary device; the caller has created the tables and checked every key. */
  async createAccount(
    accountId: string,
    identityKey: string,
    device: NewDevice,
  ): Promise<{ ok: true; deviceId: number }> {
    this.#cached = undefined;
    const now = this.ctx.clock.now();
    const cred = await hashPassword(device.password);
    const deviceUid = newDeviceUid();
    this.ctx.storage.transactionSync(() => {
      this.ctx.sql.exec(
        "INSERT INTO account (id, account_id, identity_key, created_at) VALUES (1, ?, ?, ?)",
        accountId,
        identityKey,
        now,
      );
      this.#insertDevice(PRIMARY_DEVICE_ID, deviceUid, device.registrationId, cred, now);
      this.outbox.record(deviceAdded(accountId, identityKey, PRIMARY_DEVICE_ID, deviceUid, device, now));
    });
    this.#cached = undefined;
    return { ok: true, deviceId: PRIMARY_DEVICE_ID };
  }

  /**
   * Checks `password` for `deviceId`. An unknown account or device costs the same HMAC as a known one and
   * answers the same failure, so neither the answer nor its timing tells whether the account exists.
   */
  async authenticate(deviceId: number, password: string): Promise<AuthenticatedDevice | Failure> {
    const a = this.liveAccount();
    const d = a ? this.device(deviceId) : undefined;
    const ok = await verifyPassword(
      password,
      d ? { salt: new Uint8Array(d.salt), hash: new Uint8Array(d.cred_hash) } : undefined,
    );
    if (!ok || !a || !d) return fail("UNAUTHORIZED", "wrong credentials");
    const today = startOfDay(this.ctx.clock.now());
    if (d.last_seen < today) {
      this.ctx.sql.exec("UPDATE devices SET last_seen = ? WHERE device_id = ?", today, deviceId);
      d.last_seen = today; // the cached row, kept in step with the one just written
    }
    return {
      ok: true,
      accountId: a.account_id,
      deviceId,
      deviceUid: d.device_uid,
      registrationId: d.registration_id,
      identityKey: a.identity_key,
    };
  }

  list(): DeviceInfo[] {
    return this.devices().map((d) => ({
      deviceId: d.device_id,
      registrationId: d.registration_id,
      created: d.created_at,
      lastSeen: d.last_seen,
    }));
  }

  /** A single-use link token for a new device; the hand-over comes only with the approval of a request. */
  async createLinkToken(cfg: Config): Promise<{ ok: true; linkToken: string; expiresAt: number } | Failure> {
    const now = this.ctx.clock.now();
    const rate = this.rates.take(
      "link",
      cfg.LINK_TOKENS_PER_ACCOUNT_LIMIT,
      cfg.LINK_TOKENS_PER_ACCOUNT_WINDOW_SECONDS,
      now,
    );
    if (!rate.allowed) return fail("RATE_LIMITED", "too many link tokens for this account", {}, rate.retryAfterSeconds);
    const token = randomBytes(32);
    const expiresAt = now + cfg.LINK_TOKEN_TTL_SECONDS * 1000;
    this.ctx.sql.exec("DELETE FROM link_tokens WHERE expires_at <= ?", now);
    this.ctx.sql.exec("DELETE FROM link_requests WHERE token_hash NOT IN (SELECT token_hash FROM link_tokens)");
    this.ctx.sql.exec(
      "INSERT INTO link_tokens (token_hash, envelope, expires_at) VALUES (?, '', ?)",
      await sha256Hex(token),
      expiresAt,
    );
    return { ok: true, linkToken: toBase64(token), expiresAt };
  }

  /** A live token of a live account, with the request answering it if any (public key, and envelope once approved). */
  async #liveToken(linkToken: string): Promise<LiveToken | undefined> {
    if (!this.account()) return undefined;
    const hash = await sha256Hex(fromBase64(linkToken));
    const row = this.ctx.sql
      .exec<{ public_key: string | null; envelope: string | null }>(
        `SELECT r.public_key, r.envelope FROM link_tokens t LEFT JOIN link_requests r ON r.token_hash = t.token_hash
         WHERE t.token_hash = ? AND t.expires_at > ?`,
        hash,
        this.ctx.clock.now(),
      )
      .toArray()[0];
    if (!row || !this.liveAccount()) return undefined;
    return { hash, publicKey: row.public_key, envelope: row.envelope };
  }

  /** The new device's answer to a link code: its ephemeral key. The first answer stays; a second is refused. */
  async requestLink(linkToken: string, publicKey: string): Promise<{ ok: true } | Failure> {
    const t = await this.#liveToken(linkToken);
    if (!t) return TOKEN_INVALID();
    if (t.publicKey !== null)
      return fail("LINK_TOKEN_INVALID", "another device already answered this link code: make a new one");
    this.ctx.sql.exec(
      "INSERT INTO link_requests (token_hash, public_key, requested_at) VALUES (?, ?, ?)",
      t.hash,
      publicKey,
      this.ctx.clock.now(),
    );
    return { ok: true };
  }

  /** For the existing device: the key of the request answering its token, null while there is none. */
  async pendingLink(linkToken: string): Promise<{ ok: true; publicKey: string | null } | Failure> {
    const t = await this.#liveToken(linkToken);
    return t ? { ok: true, publicKey: t.publicKey } : TOKEN_INVALID();
  }

  /** Stores the hand-over sealed to the request with `publicKey`, which must be the one the token holds. */
  async approveLink(linkToken: string, publicKey: string, envelope: string): Promise<{ ok: true } | Failure> {
    const t = await this.#liveToken(linkToken);
    if (!t) return TOKEN_INVALID();
    if (t.publicKey !== publicKey || t.envelope !== null)
      return fail("LINK_TOKEN_INVALID", "no such request waits for approval under this link token");
    this.ctx.sql.exec("UPDATE link_requests SET envelope = ? WHERE token_hash = ?", envelope, t.hash);
    return { ok: true };
  }

  /** The existing device refuses: the token and its request go. */
  async rejectLink(linkToken: string): Promise<{ ok: true } | Failure> {
    const t = await this.#liveToken(linkToken);
    if (!t) return TOKEN_INVALID();
    this.#deleteToken(t.hash);
    return { ok: true };
  }

  /** For the requesting device (named by its key): the sealed hand-over once approved, null until then. */
  async linkEnvelope(linkToken: string, publicKey: string): Promise<{ ok: true; envelope: string | null } | Failure> {
    const t = await this.#liveToken(linkToken);
    if (!t || t.publicKey !== publicKey) return TOKEN_INVALID();
    return { ok: true, envelope: t.envelope };
  }

  /** The identity key a linking device's keys must be signed with, once its request was approved. */
  async approvedLinkIdentity(linkToken: string): Promise<{ ok: true; identityKey: string } | Failure> {
    const t = await this.#liveToken(linkToken);
    const a = this.liveAccount();
    if (!t || !a) return TOKEN_INVALID();
    if (t.envelope === null) return NOT_APPROVED();
    return { ok: true, identityKey: a.identity_key };
  }

  #deleteToken(hash: string): void {
    this.ctx.sql.exec("DELETE FROM link_tokens WHERE token_hash = ?", hash);
    this.ctx.sql.exec("DELETE FROM link_requests WHERE token_hash = ?", hash);
  }

  /** Adds a device with a live, approved link token (consumed); the caller has checked its keys' signatures. */
  async linkDevice(
    linkToken: string,
    device: NewDevice,
    cfg: Config,
  ): Promise<{ ok: true; deviceId: number } | Failure> {
    const a = this.account();
    const t = await this.#liveToken(linkToken);
    if (!a || !t) return TOKEN_INVALID();
    if (t.envelope === null) return NOT_APPROVED();
    const cred = await hashPassword(device.password);
    // Re-read after the await: another link may have used the token or taken an id meanwhile.
    if (!(await this.#liveToken(linkToken))) return TOKEN_INVALID();
    const devices = this.devices();
    if (devices.length >= cfg.MAX_DEVICES)
      return fail("TOO_MANY_DEVICES", `the account already has ${devices.length} devices`);
    if (devices.some((d) => d.registration_id === device.registrationId))
      return fail("REGISTRATION_ID_TAKEN", "another device of this account has that registration id");
    const used = new Set(devices.map((d) => d.device_id));
    let deviceId = PRIMARY_DEVICE_ID;
    while (used.has(deviceId)) deviceId++;
    if (deviceId > MAX_DEVICE_ID) return fail("TOO_MANY_DEVICES", "no free device id");
    const now = this.ctx.clock.now();
    const deviceUid = newDeviceUid();
    this.ctx.storage.transactionSync(() => {
      this.#deleteToken(t.hash);
      this.#insertDevice(deviceId, deviceUid, device.registrationId, cred, now);
      this.outbox.record(deviceAdded(a.account_id, a.identity_key, deviceId, deviceUid, device, now));
    });
    this.#cached = undefined;
    return { ok: true, deviceId };
  }

  /** The primary device removes any linked device; a linked device may remove itself. Device 1 never goes. */
  removeDevice(byDeviceId: number, deviceId: number): { ok: true } | Failure {
    const a = this.account();
    if (!a) return fail("NOT_FOUND", "no such account");
    if (deviceId === PRIMARY_DEVICE_ID)
      return fail("PRIMARY_DEVICE", "device 1 cannot be removed; delete the account instead");
    if (byDeviceId !== PRIMARY_DEVICE_ID && byDeviceId !== deviceId)
      return fail("FORBIDDEN", "only the primary device removes other devices");
    const d = this.device(deviceId);
    if (!d) return fail("NOT_FOUND", `no device ${deviceId}`);
    this.ctx.storage.transactionSync(() => {
      this.ctx.sql.exec("DELETE FROM devices WHERE device_id = ?", deviceId);
      this.outbox.record({ op: "device_removed", accountId: a.account_id, deviceId, deviceUid: d.device_uid });
    });
    this.#cached = undefined;
    return { ok: true };
  }

  /**
   * The first step of deleting the account: credentials and link tokens go at once (every later request is
   * 401); the outbox then removes what the account owns elsewhere, and last the object's own storage.
   */
  markDeleted(): { ok: true } | Failure {
    const a = this.account();
    if (!a) return fail("NOT_FOUND", "no such account");
    this.ctx.storage.transactionSync(() => {
      this.ctx.sql.exec("UPDATE account SET deleting = 1");
      this.ctx.sql.exec("DELETE FROM devices");
      this.ctx.sql.exec("DELETE FROM link_tokens");
      this.ctx.sql.exec("DELETE FROM link_requests");
      this.outbox.record({ op: "account_deleted", accountId: a.account_id });
    });
    this.#cached = undefined;
    return { ok: true };
  }

  #insertDevice(
    deviceId: number,
    deviceUid: number,
    registrationId: number,
    cred: { salt: Uint8Array; hash: Uint8Array },
    now: number,
  ) {
    this.ctx.sql.exec(
      "INSERT INTO devices (device_id, device_uid, registration_id, salt, cred_hash, created_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
      deviceId,
      deviceUid,
      registrationId,
      cred.salt,
      cred.hash,
      now,
      startOfDay(now),
    );
  }
}

const startOfDay = (t: number) => Math.floor(t / DAY_MS) * DAY_MS;

function deviceAdded(
  accountId: string,
  identityKey: string,
  deviceId: number,
  deviceUid: number,
  d: NewDevice,
  createdAt: number,
) {
  const keys: DeviceKeysInput = {
    signedPreKey: d.signedPreKey,
    pqLastResortPreKey: d.pqLastResortPreKey,
    preKeys: d.preKeys,
    pqPreKeys: d.pqPreKeys,
  };
  return {
    op: "device_added" as const,
    accountId,
    identityKey,
    deviceId,
    deviceUid,
    registrationId: d.registrationId,
    createdAt,
    keys,
  };
}

/** A random positive 48-bit integer: fits SQLite INTEGER and JSON numbers exactly. */
function newDeviceUid(): number {
  return randomBytes(6).reduce((n, x) => n * 256 + x, 0) + 1;
}
