// Prekey upkeep: refills one-time keys below the policy's threshold, replaces the signed and last-resort prekeys
// when due and forgets replaced ones after the grace period. Runs after each connection opens, on keys_low, and
// hourly while connected (a timer on the client's clock); one run at a time.
import type { TimerHandle } from "../protocol/clock.ts";
import { Mutex } from "../protocol/concurrency.ts";
import { PreKeyCountResponse } from "../protocol/directory.ts";
import { type ClientContext, type DeviceRecord, unref } from "./context.ts";
import { generateKeys, type PreKeyPolicy, rotationPlan } from "./prekeys.ts";
import { DEVICE_KEY } from "./storage-keys.ts";

/** How often the rotation schedule is checked while connected. */
const CHECK_EVERY_MS = 3_600_000;

export interface UpkeepResult {
  preKeys: number;
  pqPreKeys: number;
  signedPreKey: boolean;
  lastResort: boolean;
}

export class PreKeyUpkeep {
  readonly #ctx: ClientContext;
  readonly #policy: PreKeyPolicy;
  readonly #mutex = new Mutex();
  /** The stored device record: upkeep is what advances its nextKeyId. */
  #device: DeviceRecord;
  #timer: TimerHandle | undefined;

  constructor(ctx: ClientContext, device: DeviceRecord, policy: PreKeyPolicy) {
    this.#ctx = ctx;
    this.#device = device;
    this.#policy = policy;
  }

  /** One-time prekeys this device has left on the relay. */
  counts(): Promise<{ count: number; pqCount: number }> {
    return this.#ctx.http.json("GET", "/v2/keys", PreKeyCountResponse, { auth: this.#ctx.auth });
  }

  /** One round of upkeep; answers what it uploaded. */
  refresh(): Promise<UpkeepResult> {
    return this.#mutex.run(async () => {
      const { storage, http, auth } = this.#ctx;
      const policy = this.#policy;
      const counts = await this.counts();
      const now = this.#ctx.clock.now();
      const plan = await rotationPlan(storage, policy, now);
      const ec = counts.count < policy.threshold ? policy.batch - counts.count : 0;
      const kem = counts.pqCount < policy.threshold ? policy.batch - counts.pqCount : 0;
      const result = { preKeys: ec, pqPreKeys: kem, signedPreKey: plan.signed, lastResort: plan.lastResort };
      if (ec > 0 || kem > 0 || plan.signed || plan.lastResort) {
        const keys = generateKeys(
          this.#ctx.identity.identityKeyPair.privateKey,
          this.#device.nextKeyId,
          { signed: plan.signed, lastResort: plan.lastResort, ec, kem },
          now,
        );
        this.#device = { ...this.#device, nextKeyId: keys.nextKeyId };
        // Private halves (and the advanced key id) first, as at registration.
        await storage.write({ set: { ...keys.batch.set, [DEVICE_KEY]: JSON.stringify(this.#device) } });
        await http.empty("PUT", "/v2/keys", {
          auth,
          body: {
            ...(keys.signedPreKey ? { signedPreKey: keys.signedPreKey } : {}),
            ...(keys.pqLastResortPreKey ? { pqLastResortPreKey: keys.pqLastResortPreKey } : {}),
            ...(keys.preKeys.length ? { preKeys: keys.preKeys } : {}),
            ...(keys.pqPreKeys.length ? { pqPreKeys: keys.pqPreKeys } : {}),
          },
        });
      }
      if (plan.expired.length) await storage.write({ delete: plan.expired });
      return result;
    });
  }

  /** Checks the rotation schedule hourly from now on, until stop(). */
  start(): void {
    this.stop();
    const check = () => {
      this.#timer = this.#ctx.clock.setTimeout(() => {
        check();
        this.#ctx.runInBackground("prekey rotation", () => this.refresh());
      }, CHECK_EVERY_MS);
      unref(this.#timer);
    };
    check();
  }

  stop(): void {
    this.#ctx.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
