// The directory half of the account's Durable Object: the authority for the account's devices, their
// registration ids and credential hashes, and its link tokens. Authentication asks it and never D1. Device changes are made here first and then
// reflected into the D1 directory through an outbox drained at once and retried from the alarm until it holds.
import { DurableObject } from "cloudflare:workers";
import type {
  DeviceInfo,
  ECPreKey,
  ECSignedPreKey,
  KEMSignedPreKey,
  PreKeyBundleResponse,
} from "../../protocol/directory.ts";
import { toBase64, fromBase64 } from "../../crypto/bytes.ts";
import { MAX_DEVICE_ID, PRIMARY_DEVICE_ID } from "../../protocol/limits.ts";
import { loadConfig, type Config } from "../config.ts";
import { deleteAccountAttachments } from "../db/attachments.ts";
import {
  claimBundles,
  deleteAccountRows,
  deleteDeviceKeys,
  deviceRowStatements,
  putDeviceKeys,
  type DeviceKeysInput,
} from "../db/keys.ts";
import { shardFor } from "../db/shards.ts";
import { fail, type Failure } from "../errors.ts";
import { RateWindow } from "./rate-window.ts";
import { hashPassword, verifyPassword } from "./credentials.ts";
import { log } from "../log.ts";

export interface NewDevice {
  registrationId: number;
  password: string;
  signedPreKey: ECSignedPreKey;
  pqLastResortPreKey: KEMSignedPreKey;
  preKeys: ECPreKey[];
  pqPreKeys: KEMSignedPreKey[];
}

export interface AuthenticatedDevice {
  ok: true;
  accountId: string;
  deviceId: number;
  deviceUid: number;
  registrationId: number;
  identityKey: string;
}

type OutboxOp =
  | {
      op: "device_added";
      accountId: string;
      identityKey: string;
      deviceId: number;
      deviceUid: number;
      registrationId: number;
      createdAt: number;
      keys: DeviceKeysInput;
    }
  | { op: "device_removed"; accountId: string; deviceId: number; deviceUid: number }
  | { op: "account_deleted"; accountId: string };

const DAY_MS = 86_400_000;
const OUTBOX_RETRY_MS = [1_000, 5_000, 30_000, 120_000, 600_000];

interface AccountRowValue extends Record<string, SqlStorageValue> {
  account_id: string;
  identity_key: string;
  created_at: number;
  deleting: number;
}

interface DeviceRow extends Record<string, SqlStorageValue> {
  device_id: number;
  device_uid: number;
  registration_id: number;
  salt: ArrayBuffer;
  cred_hash: ArrayBuffer;
  created_at: number;
  last_seen: number;
}

/**
 * The account object's directory duties. `Account` (account.ts) extends it with the mailbox; the protected
 * hooks (`migrate`, `onDeviceRemoved`, `onPreKeysClaimed`, `purgeOwnedData`, `nextAlarmAt`, `alarm`) are
 * where the layers meet.
 */
export class AccountDirectory extends DurableObject<Cloudflare.Env> {
  protected readonly sql: SqlStorage;
  protected readonly rates: RateWindow;
  private draining: Promise<void> | undefined;
  private tablesReady = false;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.rates = new RateWindow(this.sql);
    // An object nobody registered stays empty. Creating tables here would store (and bill) a database for every
    // random account id anyone authenticates as or sends to; so tables exist only once an account does.
    if (this.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'account'").toArray().length)
      this.migrate();
  }

  /** Whether this object holds (or held) an account: false for an id nobody registered. */
  protected get hasTables(): boolean {
    return this.tablesReady;
  }

  /** Creates this object's tables; run at start and again after an account deletion empties storage. */
  protected migrate(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS account (
      id INTEGER PRIMARY KEY CHECK (id = 1), account_id TEXT NOT NULL, identity_key TEXT NOT NULL,
      created_at INTEGER NOT NULL, deleting INTEGER NOT NULL DEFAULT 0)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS devices (
      device_id INTEGER PRIMARY KEY, device_uid INTEGER NOT NULL, registration_id INTEGER NOT NULL,
      salt BLOB NOT NULL, cred_hash BLOB NOT NULL, created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS link_tokens (
      token_hash TEXT PRIMARY KEY, envelope TEXT NOT NULL, expires_at INTEGER NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS outbox (
      seq INTEGER PRIMARY KEY, body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, not_before INTEGER NOT NULL DEFAULT 0)`);
    this.rates.migrate();
    this.tablesReady = true;
  }

  // ---------- account ----------

  /**
   * The account row and the device rows, read from SQLite once and kept in memory: every authentication and
   * every send asks for them (they were an eighth of the relay's CPU in the load benchmark's profile). This
   * object is their only writer, so each write path below drops the copy after it commits.
   */
  private cached: { account: AccountRowValue | undefined; devices: DeviceRow[] } | undefined;

  private state() {
    if (this.cached) return this.cached;
    if (!this.tablesReady) return { account: undefined, devices: [] as DeviceRow[] };
    this.cached = {
      account: this.sql
        .exec<AccountRowValue>("SELECT account_id, identity_key, created_at, deleting FROM account WHERE id = 1")
        .toArray()[0],
      devices: this.sql.exec<DeviceRow>("SELECT * FROM devices ORDER BY device_id").toArray(),
    };
    return this.cached;
  }

  /** Called after every write to `account` or `devices`. */
  private forgetState() {
    this.cached = undefined;
  }

  protected accountRow(): AccountRowValue | undefined {
    return this.state().account;
  }

  protected config(): Config | Failure {
    const c = loadConfig(this.env);
    return c.ok ? c.config : fail("MISCONFIGURED", c.error.message);
  }

  /** Creates the account with its primary device. The caller has checked the challenge and every signature. */
  async register(
    accountId: string,
    identityKey: string,
    device: NewDevice,
  ): Promise<{ ok: true; deviceId: number } | Failure> {
    if (this.accountRow()) return fail("FORBIDDEN", "account already exists");
    this.migrate();
    this.forgetState();
    const now = Date.now();
    const cred = await hashPassword(device.password);
    const deviceUid = newDeviceUid();
    this.ctx.storage.transactionSync(() => {
      this.sql.exec(
        "INSERT INTO account (id, account_id, identity_key, created_at) VALUES (1, ?, ?, ?)",
        accountId,
        identityKey,
        now,
      );
      this.insertDevice(PRIMARY_DEVICE_ID, deviceUid, device.registrationId, cred, now);
      this.enqueue({
        op: "device_added",
        accountId,
        identityKey,
        deviceId: PRIMARY_DEVICE_ID,
        deviceUid,
        registrationId: device.registrationId,
        createdAt: now,
        keys: pickKeys(device),
      });
    });
    this.forgetState();
    await this.drain();
    return { ok: true, deviceId: PRIMARY_DEVICE_ID };
  }

  /** The public identity key, for checking signatures on keys a device links or uploads. */
  async identity(): Promise<{ ok: true; identityKey: string } | Failure> {
    const a = this.accountRow();
    if (!a || a.deleting) return fail("NOT_FOUND", "no such account");
    return { ok: true, identityKey: a.identity_key };
  }

  /**
   * Checks `password` for `deviceId`. An unknown account or device costs the same HMAC as a known one and
   * answers the same failure, so neither the answer nor its timing tells whether the account exists.
   */
  async authenticate(deviceId: number, password: string): Promise<AuthenticatedDevice | Failure> {
    const a = this.accountRow();
    const d = a && !a.deleting ? this.deviceRow(deviceId) : undefined;
    const ok = await verifyPassword(
      password,
      d ? { salt: new Uint8Array(d.salt), hash: new Uint8Array(d.cred_hash) } : undefined,
    );
    if (!ok || !a || !d) return fail("UNAUTHORIZED", "wrong credentials");
    const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
    if (d.last_seen < today) {
      this.sql.exec("UPDATE devices SET last_seen = ? WHERE device_id = ?", today, deviceId);
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

  protected deviceRow(deviceId: number): DeviceRow | undefined {
    return this.state().devices.find((d) => d.device_id === deviceId);
  }

  protected deviceRows(): DeviceRow[] {
    return this.state().devices;
  }

  private insertDevice(
    deviceId: number,
    deviceUid: number,
    registrationId: number,
    cred: { salt: Uint8Array; hash: Uint8Array },
    now: number,
  ) {
    const today = Math.floor(now / DAY_MS) * DAY_MS;
    this.sql.exec(
      "INSERT INTO devices (device_id, device_uid, registration_id, salt, cred_hash, created_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
      deviceId,
      deviceUid,
      registrationId,
      cred.salt,
      cred.hash,
      now,
      today,
    );
  }

  // ---------- devices ----------

  async listDevices(): Promise<{ ok: true; devices: DeviceInfo[] } | Failure> {
    if (!this.accountRow()) return fail("NOT_FOUND", "no such account");
    return {
      ok: true,
      devices: this.deviceRows().map((d) => ({
        deviceId: d.device_id,
        registrationId: d.registration_id,
        created: d.created_at,
        lastSeen: d.last_seen,
      })),
    };
  }

  /** A single-use link token for a new device, with the encrypted hand-over the new device will fetch. */
  async createLinkToken(envelope: string): Promise<{ ok: true; linkToken: string; expiresAt: number } | Failure> {
    const cfg = this.config();
    if ("ok" in cfg) return cfg;
    const now = Date.now();
    const rate = this.rates.take(
      "link",
      cfg.LINK_TOKENS_PER_ACCOUNT_LIMIT,
      cfg.LINK_TOKENS_PER_ACCOUNT_WINDOW_SECONDS,
      now,
    );
    if (!rate.allowed) return fail("RATE_LIMITED", "too many link tokens for this account", {}, rate.retryAfterSeconds);
    const token = crypto.getRandomValues(new Uint8Array(32));
    const expiresAt = now + cfg.LINK_TOKEN_TTL_SECONDS * 1000;
    this.sql.exec("DELETE FROM link_tokens WHERE expires_at <= ?", now);
    this.sql.exec(
      "INSERT INTO link_tokens (token_hash, envelope, expires_at) VALUES (?, ?, ?)",
      await sha256Hex(token),
      envelope,
      expiresAt,
    );
    return { ok: true, linkToken: toBase64(token), expiresAt };
  }

  private async liveToken(linkToken: string): Promise<{ hash: string; envelope: string } | undefined> {
    if (!this.accountRow()) return undefined;
    const hash = await sha256Hex(fromBase64(linkToken));
    const row = this.sql
      .exec<{ envelope: string }>(
        "SELECT envelope FROM link_tokens WHERE token_hash = ? AND expires_at > ?",
        hash,
        Date.now(),
      )
      .toArray()[0];
    return row && !this.accountRow()?.deleting ? { hash, envelope: row.envelope } : undefined;
  }

  async linkEnvelope(linkToken: string): Promise<{ ok: true; envelope: string; identityKey: string } | Failure> {
    const t = await this.liveToken(linkToken);
    const a = this.accountRow();
    if (!t || !a) return fail("LINK_TOKEN_INVALID", "the link token is unknown, used or expired");
    return { ok: true, envelope: t.envelope, identityKey: a.identity_key };
  }

  /** Adds a device with a live link token (consumed); the caller has checked its keys' signatures. */
  async linkDevice(linkToken: string, device: NewDevice): Promise<{ ok: true; deviceId: number } | Failure> {
    const cfg = this.config();
    if ("ok" in cfg) return cfg;
    const a = this.accountRow();
    const t = await this.liveToken(linkToken);
    if (!a || !t) return fail("LINK_TOKEN_INVALID", "the link token is unknown, used or expired");
    const cred = await hashPassword(device.password);
    // Re-read after the await: another link may have used the token or taken an id meanwhile.
    if (!(await this.liveToken(linkToken)))
      return fail("LINK_TOKEN_INVALID", "the link token is unknown, used or expired");
    const devices = this.deviceRows();
    if (devices.length >= cfg.MAX_DEVICES)
      return fail("TOO_MANY_DEVICES", `the account already has ${devices.length} devices`);
    if (devices.some((d) => d.registration_id === device.registrationId))
      return fail("REGISTRATION_ID_TAKEN", "another device of this account has that registration id");
    const used = new Set(devices.map((d) => d.device_id));
    let deviceId = PRIMARY_DEVICE_ID;
    while (used.has(deviceId)) deviceId++;
    if (deviceId > MAX_DEVICE_ID) return fail("TOO_MANY_DEVICES", "no free device id");
    const now = Date.now();
    const deviceUid = newDeviceUid();
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM link_tokens WHERE token_hash = ?", t.hash);
      this.insertDevice(deviceId, deviceUid, device.registrationId, cred, now);
      this.enqueue({
        op: "device_added",
        accountId: a.account_id,
        identityKey: a.identity_key,
        deviceId,
        deviceUid,
        registrationId: device.registrationId,
        createdAt: now,
        keys: pickKeys(device),
      });
    });
    this.forgetState();
    await this.drain();
    return { ok: true, deviceId };
  }

  /** The primary device removes any linked device; a linked device may remove itself. Device 1 never goes. */
  async removeDevice(byDeviceId: number, deviceId: number): Promise<{ ok: true } | Failure> {
    const a = this.accountRow();
    if (!a) return fail("NOT_FOUND", "no such account");
    if (deviceId === PRIMARY_DEVICE_ID)
      return fail("PRIMARY_DEVICE", "device 1 cannot be removed; delete the account instead");
    if (byDeviceId !== PRIMARY_DEVICE_ID && byDeviceId !== deviceId)
      return fail("FORBIDDEN", "only the primary device removes other devices");
    const d = this.deviceRow(deviceId);
    if (!d) return fail("NOT_FOUND", `no device ${deviceId}`);
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("DELETE FROM devices WHERE device_id = ?", deviceId);
      this.enqueue({ op: "device_removed", accountId: a.account_id, deviceId, deviceUid: d.device_uid });
    });
    this.forgetState();
    await this.onDeviceRemoved(deviceId);
    await this.drain();
    return { ok: true };
  }

  /** Where the mailbox drops a removed device's queue and closes its socket. */
  protected async onDeviceRemoved(_deviceId: number): Promise<void> {}

  /**
   * Deletes the account: credentials go at once (every later request is 401), then everything the account owns
   * elsewhere is removed through the outbox (`purgeOwnedData`), and finally this object's own storage.
   */
  async deleteAccount(): Promise<{ ok: true } | Failure> {
    const a = this.accountRow();
    if (!a) return fail("NOT_FOUND", "no such account");
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("UPDATE account SET deleting = 1");
      this.sql.exec("DELETE FROM devices");
      this.sql.exec("DELETE FROM link_tokens");
      this.enqueue({ op: "account_deleted", accountId: a.account_id });
    });
    this.forgetState();
    await this.drain();
    return { ok: true };
  }

  /**
   * Everything the account owns outside this object, removed when the account is deleted. Each step is
   * idempotent (the outbox retries the whole op until it succeeds). The mailbox and attachments add theirs here.
   */
  protected async purgeOwnedData(accountId: string, cfg: Config): Promise<void> {
    await deleteAccountRows(shardFor(this.env, cfg, accountId), this.env.KEY_PAGES, accountId);
    await deleteAccountAttachments(this.env, cfg, accountId);
  }

  // ---------- prekey bundles ----------

  /**
   * Claims a bundle for one device or all (`deviceId` null), limited exactly per requesting account: the count
   * lives here, in the target's own object, so no approximation lets anyone drain this account's one-time keys.
   */
  async claimBundle(
    requesterAccountId: string,
    deviceId: number | null,
  ): Promise<({ ok: true } & PreKeyBundleResponse) | Failure> {
    const cfg = this.config();
    if ("ok" in cfg) return cfg;
    const a = this.accountRow();
    if (!a || a.deleting) return fail("NOT_FOUND", "no such account");
    const targets = this.deviceRows().filter((d) => deviceId === null || d.device_id === deviceId);
    if (targets.length === 0) return fail("NOT_FOUND", `no device ${deviceId}`);
    const rate = this.rates.take(
      `claim:${requesterAccountId}`,
      cfg.PREKEY_CLAIMS_PER_PAIR_LIMIT,
      cfg.PREKEY_CLAIMS_PER_PAIR_WINDOW_SECONDS,
    );
    if (!rate.allowed)
      return fail("RATE_LIMITED", "too many prekey claims for this account", {}, rate.retryAfterSeconds);
    const pending: Promise<unknown>[] = [];
    const claimed = await claimBundles(
      shardFor(this.env, cfg, a.account_id),
      this.env.KEY_PAGES,
      a.account_id,
      targets.map((d) => ({ deviceId: d.device_id, deviceUid: d.device_uid, registrationId: d.registration_id })),
      (p) => pending.push(p),
    );
    this.ctx.waitUntil(Promise.all(pending));
    await this.onPreKeysClaimed(claimed.map((c) => ({ deviceId: c.deviceId, ...c.remaining })));
    return {
      ok: true,
      identityKey: a.identity_key,
      devices: claimed.map(({ remaining: _r, ...device }) => device),
    };
  }

  /** Where the mailbox tells a device its one-time keys are running low. */
  protected async onPreKeysClaimed(_remaining: { deviceId: number; count: number; pqCount: number }[]): Promise<void> {}

  // ---------- outbox to D1 ----------

  private enqueue(op: OutboxOp) {
    this.sql.exec("INSERT INTO outbox (body) VALUES (?)", JSON.stringify(op));
  }

  /** Applies queued directory changes in order; on the first failure, stops and retries from the alarm. */
  protected drain(): Promise<void> {
    this.draining ??= this.drainOnce().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  private async drainOnce(): Promise<void> {
    if (!this.tablesReady) return;
    for (;;) {
      const row = this.sql
        .exec<{ seq: number; body: string; attempts: number }>(
          "SELECT seq, body, attempts FROM outbox ORDER BY seq LIMIT 1",
        )
        .toArray()[0];
      if (!row) break;
      const op = JSON.parse(row.body) as OutboxOp;
      try {
        await this.apply(op);
        this.sql.exec("DELETE FROM outbox WHERE seq = ?", row.seq);
      } catch (e) {
        const delay = OUTBOX_RETRY_MS[Math.min(row.attempts, OUTBOX_RETRY_MS.length - 1)]!;
        this.sql.exec(
          "UPDATE outbox SET attempts = attempts + 1, not_before = ? WHERE seq = ?",
          Date.now() + delay,
          row.seq,
        );
        log("warn", { event: "outbox_retry", op: op.op, attempts: row.attempts + 1, error: String(e) });
        break;
      }
    }
    const a = this.accountRow();
    const left = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM outbox").one().n;
    if (a?.deleting && left === 0) {
      // Everything the account owned elsewhere is gone; now this object's own storage goes too.
      await this.ctx.storage.deleteAlarm();
      await this.ctx.storage.deleteAll();
      // Empty again, like an id nobody registered: no tables until someone registers here.
      this.tablesReady = false;
      this.forgetState();
      return;
    }
    await this.scheduleAlarm();
  }

  private async apply(op: OutboxOp): Promise<void> {
    const cfg = this.config();
    if ("ok" in cfg) throw new Error(cfg.message);
    const db = shardFor(this.env, cfg, op.accountId);
    switch (op.op) {
      case "device_added":
        // The device's rows are written under its fresh uid, so a retry or a late write can never attach keys
        // to another device that later gets the same device id.
        await putDeviceKeys(db, this.env.KEY_PAGES, op.accountId, op.deviceUid, op.keys, deviceRowStatements(db, op));
        return;
      case "device_removed":
        await deleteDeviceKeys(db, this.env.KEY_PAGES, op.accountId, op.deviceId, op.deviceUid);
        return;
      case "account_deleted":
        await this.purgeOwnedData(op.accountId, cfg);
        return;
    }
  }

  /** The single alarm serves every timed duty; each contributes its next due time here. */
  protected nextAlarmAt(): number | null {
    if (!this.tablesReady) return null;
    const r = this.sql.exec<{ t: number | null }>("SELECT min(not_before) AS t FROM outbox").one();
    return r.t;
  }

  protected async scheduleAlarm(): Promise<void> {
    const at = this.nextAlarmAt();
    if (at === null) {
      await this.ctx.storage.deleteAlarm();
      return;
    }
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at || current < Date.now())
      await this.ctx.storage.setAlarm(Math.max(at, Date.now() + 10));
  }

  override async alarm(): Promise<void> {
    await this.drain();
  }

  /** Test and operations aid: how many directory changes wait to reach D1. */
  async pendingOutbox(): Promise<number> {
    if (!this.tablesReady) return 0;
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM outbox").one().n;
  }
}

function pickKeys(d: NewDevice): DeviceKeysInput {
  return {
    signedPreKey: d.signedPreKey,
    pqLastResortPreKey: d.pqLastResortPreKey,
    preKeys: d.preKeys,
    pqPreKeys: d.pqPreKeys,
  };
}

/** A random positive 48-bit integer: fits SQLite INTEGER and JSON numbers exactly. */
function newDeviceUid(): number {
  const b = crypto.getRandomValues(new Uint8Array(6));
  return b.reduce((n, x) => n * 256 + x, 0) + 1;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...h].map((x) => x.toString(16).padStart(2, "0")).join("");
}
