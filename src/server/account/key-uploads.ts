// Prekey uploads by this account's devices (PUT /v2/keys): an exact window per device, and a cap on the one-time
// keys a device holds, checked against D1 and written one upload at a time in this object, so concurrent uploads
// cannot pass the cap together and a refused upload stores nothing.
import { Mutex } from "../../protocol/concurrency.ts";
import { countAfterUpload, type DeviceKeysInput, putDeviceKeys } from "../db/keys.ts";
import { shardFor } from "../db/shards.ts";
import { fail, type Failure } from "../errors.ts";
import type { PartContext } from "./context.ts";
import type { DeviceRegistry } from "./device-registry.ts";
import type { AuthenticatedDevice } from "./directory.ts";
import type { RateWindow } from "./rate-window.ts";

export class KeyUploads {
  /** One upload at a time: the count and the write must not interleave with another upload's. */
  readonly #mutex = new Mutex();

  constructor(
    private readonly ctx: PartContext,
    private readonly devices: DeviceRegistry,
    private readonly rates: RateWindow,
  ) {}

  /**
   * Authentication for an upload and the device's upload window, in one call. Counted in SQLite (one row per
   * upload, exact across evictions): uploads are rare, and each one writes to D1 and R2.
   */
  async authorize(deviceId: number, password: string): Promise<AuthenticatedDevice | Failure> {
    const auth = await this.devices.authenticate(deviceId, password);
    if (!auth.ok) return auth;
    const cfg = this.ctx.config();
    if ("ok" in cfg) return cfg;
    const rate = this.rates.take(
      `keys:${auth.deviceUid}`,
      cfg.KEY_UPLOADS_PER_DEVICE_LIMIT,
      cfg.KEY_UPLOADS_PER_DEVICE_WINDOW_SECONDS,
      this.ctx.clock.now(),
    );
    if (!rate.allowed)
      return fail(
        "RATE_LIMITED",
        `this device uploads keys too often (${cfg.KEY_UPLOADS_PER_DEVICE_LIMIT} per ${cfg.KEY_UPLOADS_PER_DEVICE_WINDOW_SECONDS} s)`,
        {},
        rate.retryAfterSeconds,
      );
    return auth;
  }

  /**
   * Stores keys whose signatures the Worker has checked, for the device `deviceUid` names (a device removed
   * meanwhile gets nothing), unless the device would then hold more than MAX_ONE_TIME_PREKEYS_PER_DEVICE one-time
   * keys of either kind: then nothing is stored.
   */
  async publish(deviceId: number, deviceUid: number, keys: DeviceKeysInput): Promise<{ ok: true } | Failure> {
    return this.#mutex.run(async () => {
      const cfg = this.ctx.config();
      if ("ok" in cfg) return cfg;
      const a = this.devices.liveAccount();
      if (!a || this.devices.device(deviceId)?.device_uid !== deviceUid)
        return fail("UNAUTHORIZED", "wrong credentials");
      const env = this.ctx.env();
      const db = shardFor(env, cfg, a.account_id);
      const cap = cfg.MAX_ONE_TIME_PREKEYS_PER_DEVICE;
      const after = await countAfterUpload(db, a.account_id, deviceUid, keys);
      if (after.count > cap || after.pqCount > cap)
        return fail(
          "TOO_MANY_KEYS",
          `a device holds at most ${cap} one-time keys of each kind; this upload would make ${after.count} EC and ${after.pqCount} KEM`,
          { limit: cap, count: after.count, pqCount: after.pqCount },
        );
      await putDeviceKeys(db, env.KEY_PAGES, a.account_id, deviceUid, keys);
      return { ok: true } as const;
    });
  }
}
