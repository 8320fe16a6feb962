// Prekey bundle claims against this account: an exact sliding window per requesting account, and a budget per
// target device across all requesters (past it, bundles carry no one-time keys), both kept in this object's
// SQLite so nothing approximate or per-requester lets throw-away accounts drain a device's one-time keys; then
// one D1 batch per claim; a device whose one-time keys run low is told so on its socket (the keys_low frame).
import type { PreKeyBundleResponse } from "../../protocol/directory.ts";
import { FRAME_TYPES } from "../../protocol/frames.ts";
import { claimBundles } from "../db/keys.ts";
import { shardFor } from "../db/shards.ts";
import { fail, type Failure } from "../errors.ts";
import type { PartContext } from "./context.ts";
import type { DeviceRegistry } from "./device-registry.ts";
import type { RateWindow } from "./rate-window.ts";

/** One-time keys left on a device after a claim. */
export interface Remaining {
  deviceId: number;
  count: number;
  pqCount: number;
}

export class PrekeyClaims {
  constructor(
    private readonly ctx: PartContext,
    private readonly devices: DeviceRegistry,
    private readonly rates: RateWindow,
    /** Sends a frame to the device's open connections, if it has any. */
    private readonly tellDevice: (deviceId: number, frame: string) => void,
  ) {}

  /** Claims a bundle for one device or all (`deviceId` null), counted against `requesterAccountId`. */
  async claim(
    requesterAccountId: string,
    deviceId: number | null,
  ): Promise<({ ok: true } & PreKeyBundleResponse) | Failure> {
    const cfg = this.ctx.config();
    if ("ok" in cfg) return cfg;
    const a = this.devices.liveAccount();
    if (!a) return fail("NOT_FOUND", "no such account");
    const targets = this.devices.devices().filter((d) => deviceId === null || d.device_id === deviceId);
    if (targets.length === 0) return fail("NOT_FOUND", `no device ${deviceId}`);
    const now = this.ctx.clock.now();
    const rate = this.rates.take(
      `claim:${requesterAccountId}`,
      cfg.PREKEY_CLAIMS_PER_PAIR_LIMIT,
      cfg.PREKEY_CLAIMS_PER_PAIR_WINDOW_SECONDS,
      now,
    );
    if (!rate.allowed)
      return fail("RATE_LIMITED", "too many prekey claims for this account", {}, rate.retryAfterSeconds);
    const env = this.ctx.env();
    const pending: Promise<unknown>[] = [];
    const claimed = await claimBundles(
      shardFor(env, cfg, a.account_id),
      env.KEY_PAGES,
      a.account_id,
      targets.map((d) => ({
        deviceId: d.device_id,
        deviceUid: d.device_uid,
        registrationId: d.registration_id,
        // The device's budget, whoever asks: past it the claim is still answered (sessions start with the
        // signed prekey and the last-resort KEM key) but takes no one-time key. Counted only while it lasts.
        oneTime: this.rates.take(
          `budget:${d.device_uid}`,
          cfg.PREKEY_CLAIMS_PER_DEVICE_LIMIT,
          cfg.PREKEY_CLAIMS_PER_DEVICE_WINDOW_SECONDS,
          now,
        ).allowed,
      })),
      (p) => pending.push(p),
    );
    this.ctx.waitUntil(Promise.all(pending));
    this.noticeLowKeys(
      claimed.map((c) => ({ deviceId: c.deviceId, ...c.remaining })),
      cfg.PREKEY_LOW_THRESHOLD,
    );
    return {
      ok: true,
      identityKey: a.identity_key,
      devices: claimed.map(({ remaining: _r, ...device }) => device),
    };
  }

  /** Tells each connected device whose one-time EC or KEM keys fell below `threshold` to upload more. */
  noticeLowKeys(remaining: Remaining[], threshold: number): void {
    for (const r of remaining) {
      if (r.count >= threshold && r.pqCount >= threshold) continue;
      this.tellDevice(
        r.deviceId,
        JSON.stringify({ type: FRAME_TYPES.keys_low, count: r.count, pqCount: r.pqCount, threshold }),
      );
    }
  }
}
