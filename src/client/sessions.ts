// Sessions with other devices: session records cached over Storage, bundles claimed and sessions started, each
// account's trusted identity key (pinned on first sight), and bringing the known device set of an account in line
// with the relay's 409/410 answer (Sesame). Callers hold the client's mutex.
import { fromBase64, toBase64 } from "../crypto/bytes.ts";
import { bundlesFromJson } from "../crypto/pqxdh.ts";
import { SessionRecord } from "../crypto/session-record.ts";
import { initiateSession } from "../crypto/session-store.ts";
import { PreKeyBundleResponse } from "../protocol/directory.ts";
import type { ClientContext } from "./context.ts";
import { asCipherpostError, CipherpostError } from "./errors.ts";
import { newBatch, type WriteBatch } from "./storage.ts";
import { deviceOfSessionKey, sessionKey, sessionPrefix, trustedIdentityKey } from "./storage-keys.ts";

export class Sessions {
  readonly #ctx: ClientContext;
  readonly #records = new Map<string, SessionRecord>();

  constructor(ctx: ClientContext) {
    this.#ctx = ctx;
  }

  /** The record of one remote device: cached, stored, or a new empty one. */
  async record(account: string, device: number): Promise<SessionRecord> {
    const key = sessionKey(account, device);
    const cached = this.#records.get(key);
    if (cached) return cached;
    const raw = await this.#ctx.storage.get(key);
    return raw ? SessionRecord.deserialize(fromBase64(raw)) : new SessionRecord();
  }

  /** Caches `record` and stages it into `batch` (the caller writes the batch). */
  stage(batch: WriteBatch, account: string, device: number, record: SessionRecord): void {
    const key = sessionKey(account, device);
    this.#records.set(key, record);
    batch.set[key] = toBase64(record.serialize());
  }

  /** Stages the records of the devices named, after encrypting for them moved their ratchets. */
  stageAll(batch: WriteBatch, account: string, records: ReadonlyMap<number, SessionRecord>, devices: number[]): void {
    for (const d of devices) this.stage(batch, account, d, records.get(d)!);
  }

  /** The records of every known device of `account` (this device excluded). */
  async recordsFor(account: string): Promise<Map<number, SessionRecord>> {
    const out = new Map<number, SessionRecord>();
    for (const [k, v] of await this.#ctx.storage.list(sessionPrefix(account))) {
      const device = deviceOfSessionKey(k);
      if (account === this.#ctx.accountId && device === this.#ctx.deviceId) continue;
      let record = this.#records.get(k);
      if (!record) {
        record = SessionRecord.deserialize(fromBase64(v));
        this.#records.set(k, record);
      }
      out.set(device, record);
    }
    return out;
  }

  /** Whether any device of `account` has a session to send on. */
  async hasCurrentSession(account: string): Promise<boolean> {
    return [...(await this.recordsFor(account)).values()].some((r) => r.hasCurrentSession());
  }

  async trustedIdentity(account: string): Promise<Uint8Array | undefined> {
    const raw = await this.#ctx.storage.get(trustedIdentityKey(account));
    return raw ? fromBase64(raw) : undefined;
  }

  /** Pins `identityKey` as `account`'s: after the user compared a changed safety number. */
  async trust(account: string, identityKey: Uint8Array): Promise<void> {
    await this.#ctx.storage.write({ set: { [trustedIdentityKey(account)]: toBase64(identityKey) } });
  }

  /** Stages `identityKey` as the trusted key of `account` seen for the first time. */
  stageFirstIdentity(batch: WriteBatch, account: string, identityKey: string): void {
    batch.set[trustedIdentityKey(account)] = identityKey;
  }

  /** Stops sending on the current session with one device (it was replaced or asked for a fresh one). */
  async archive(batch: WriteBatch, account: string, device: number): Promise<void> {
    const record = await this.record(account, device);
    record.archiveCurrentSession();
    this.stage(batch, account, device, record);
  }

  /**
   * Claims bundles for `devices` of `account` (or all with "*") and starts a session with each. Returns the
   * device ids a session was made for.
   */
  async fetch(account: string, devices: number[] | "*"): Promise<number[]> {
    const { http, auth } = this.#ctx;
    const wanted = devices === "*" ? null : new Set(devices);
    const paths = devices === "*" || devices.length > 2 ? ["*"] : devices.map(String);
    const bundles: { identityKey: string; devices: PreKeyBundleResponse["devices"] }[] = [];
    for (const p of paths) {
      try {
        bundles.push(await http.json("GET", `/v2/keys/${account}/${p}`, PreKeyBundleResponse, { auth }));
      } catch (e) {
        // A device that has not published keys yet (or was removed meanwhile): leave it; the relay's next answer says.
        if (!CipherpostError.is(e, "NOT_FOUND") || p === "*") throw e;
      }
    }
    const trusted = await this.trustedIdentity(account);
    const batch = newBatch();
    const made: number[] = [];
    for (const b of bundles) {
      for (const bundle of bundlesFromJson({ identityKey: b.identityKey, devices: b.devices })) {
        if (wanted && !wanted.has(bundle.deviceId)) continue;
        if (account === this.#ctx.accountId && bundle.deviceId === this.#ctx.deviceId) continue;
        const record = await this.record(account, bundle.deviceId);
        try {
          await initiateSession(this.#ctx.identity, bundle, {
            record,
            ...(trusted ? { trustedIdentityKey: trusted } : {}),
          });
        } catch (e) {
          throw asCipherpostError(e);
        }
        this.stage(batch, account, bundle.deviceId, record);
        made.push(bundle.deviceId);
      }
      if (!trusted) this.stageFirstIdentity(batch, account, b.identityKey);
    }
    await this.#ctx.storage.write(batch);
    return made;
  }

  /** Brings the known device set of `account` in line with the relay's 409/410 answer. */
  async repair(account: string, error: CipherpostError): Promise<void> {
    const x = error.extras as { missingDevices?: number[]; extraDevices?: number[]; staleDevices?: number[] };
    const batch = newBatch();
    for (const d of x.extraDevices ?? []) {
      const key = sessionKey(account, d);
      this.#records.delete(key);
      batch.delete.push(key);
    }
    // Sesame: a stale device was replaced (re-linked): stop sending on its session, keep it for in-flight messages.
    for (const d of x.staleDevices ?? []) await this.archive(batch, account, d);
    await this.#ctx.storage.write(batch);
    const fetch = [...(x.missingDevices ?? []), ...(x.staleDevices ?? [])];
    if (fetch.length) await this.fetch(account, fetch);
  }
}
