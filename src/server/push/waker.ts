// The push waker in the account object: the devices' Web Push endpoints (push_endpoints, one per device that
// registered one) and the wake-up sent when a copy is queued for a device with nothing open: at most once per
// PUSH_MIN_INTERVAL_SECONDS, in the background, so a sender's answer never waits for a push service.
import type { PartContext } from "../account/context.ts";
import type { Config } from "../config.ts";
import { log } from "../log.ts";
import { pushEndpointProblem } from "./endpoint-policy.ts";
import { sendPush, VapidSigner, type VapidKey } from "./webpush.ts";

export class PushWaker {
  /** Endpoints by device, read from SQLite once (this part is their only writer). */
  #endpoints: Map<number, string> | undefined;
  /** When each device was last sent a wake-up, in memory. */
  readonly #lastPush = new Map<number, number>();
  #vapid: { key: VapidKey; signer: VapidSigner } | undefined;

  constructor(private readonly ctx: PartContext) {}

  createTables(): void {
    this.ctx.sql.exec(
      "CREATE TABLE IF NOT EXISTS push_endpoints (device_id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL)",
    );
  }

  /** Registers (or with null, removes) the device's endpoint. */
  set(deviceId: number, endpoint: string | null): void {
    if (endpoint === null) this.ctx.sql.exec("DELETE FROM push_endpoints WHERE device_id = ?", deviceId);
    else
      this.ctx.sql.exec(
        "INSERT OR REPLACE INTO push_endpoints (device_id, endpoint) VALUES (?, ?)",
        deviceId,
        endpoint,
      );
    this.#endpoints = undefined;
    this.#lastPush.delete(deviceId);
  }

  /** The device's endpoint, if it still has one (a 404/410 from its push service removes it). */
  get(deviceId: number): string | undefined {
    if (!this.#endpoints) {
      this.#endpoints = new Map();
      for (const r of this.ctx.sql.exec<{ device_id: number; endpoint: string }>(
        "SELECT device_id, endpoint FROM push_endpoints",
      ))
        this.#endpoints.set(r.device_id, r.endpoint);
    }
    return this.#endpoints.get(deviceId);
  }

  /** A removed device's endpoint goes with it. */
  dropDevice(deviceId: number): void {
    this.ctx.sql.exec("DELETE FROM push_endpoints WHERE device_id = ?", deviceId);
    this.#endpoints = undefined;
    this.#lastPush.delete(deviceId);
  }

  /** Account deletion: every endpoint goes. */
  wipe(): void {
    this.ctx.sql.exec("DELETE FROM push_endpoints");
    this.#endpoints = undefined;
    this.#lastPush.clear();
  }

  /**
   * Asks the device's push service to wake it, if the relay has a VAPID key and the device an endpoint. A push
   * service that says the subscription is gone (404, 410) gets no more pushes: the endpoint is dropped until
   * the device registers one again.
   */
  wake(deviceId: number, urgent: boolean, cfg: Config, now: number): void {
    const key = cfg.VAPID_PRIVATE_KEY_JWK;
    if (!key) return;
    const endpoint = this.get(deviceId);
    if (!endpoint) return;
    // Checked again at each push: an endpoint registered under an older, looser policy is never called.
    if (pushEndpointProblem(endpoint, cfg)) {
      this.#forget(deviceId, endpoint);
      log("warn", { event: "push_endpoint_refused" });
      return;
    }
    const last = this.#lastPush.get(deviceId);
    if (last !== undefined && now - last < cfg.PUSH_MIN_INTERVAL_SECONDS * 1000) return;
    this.#lastPush.set(deviceId, now);
    if (this.#vapid?.key !== key) this.#vapid = { key, signer: new VapidSigner(key) };
    const pushed = sendPush(
      this.#vapid.signer,
      endpoint,
      { ttlSeconds: cfg.PUSH_TTL_SECONDS, urgent, subject: cfg.VAPID_SUBJECT },
      now,
    ).then(
      (status) => {
        if (status === 404 || status === 410) {
          this.#forget(deviceId, endpoint);
          log("info", { event: "push_endpoint_gone", status });
        } else if (status >= 300 && status < 400) log("warn", { event: "push_redirect_not_followed", status });
        else if (status >= 300) log("warn", { event: "push_refused", status });
      },
      (e: unknown) => log("warn", { event: "push_failed", error: String(e) }),
    );
    this.ctx.waitUntil(pushed);
  }

  /** Drops the device's endpoint if it is still `endpoint` (the device may have registered another meanwhile). */
  #forget(deviceId: number, endpoint: string): void {
    this.ctx.sql.exec("DELETE FROM push_endpoints WHERE device_id = ? AND endpoint = ?", deviceId, endpoint);
    this.#endpoints = undefined;
  }
}
