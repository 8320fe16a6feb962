// The outbox to the D1 key directory: each device change is recorded here in the SQLite transaction that makes
// it, then applied to D1 and R2 in order, at once and again from the alarm with backoff until it holds. Every
// op is idempotent; account deletion is the last one and removes everything the account owns elsewhere.
import { deleteAccountAttachments } from "../db/attachments.ts";
import {
  deleteAccountRows,
  deleteDeviceKeys,
  deviceRowStatements,
  putDeviceKeys,
  type DeviceKeysInput,
} from "../db/keys.ts";
import { shardFor } from "../db/shards.ts";
import { log } from "../log.ts";
import type { PartContext } from "./context.ts";

/** A device added: its D1 rows (the fields deviceRowStatements writes) and its keys. */
type DeviceAdded = { op: "device_added"; keys: DeviceKeysInput } & Parameters<typeof deviceRowStatements>[1];

export type OutboxOp =
  | DeviceAdded
  | { op: "device_removed"; accountId: string; deviceId: number; deviceUid: number }
  | { op: "account_deleted"; accountId: string };

/** The wait before retrying the op at the head after its 1st, 2nd, … failure; the last one repeats. */
const OUTBOX_RETRY_MS = [1_000, 5_000, 30_000, 120_000, 600_000] as const;

export interface OutboxCallbacks {
  /** Whether the object has its tables: false for an id nobody registered, and after the account is gone. */
  hasTables(): boolean;
  /** The first step of an account deletion: what the object itself holds for the account (sockets, queues). */
  purgeLocal(): void;
  /** The end of every drain, with the count of ops still waiting: schedule the retry, or finish a deletion. */
  drained(left: number): Promise<void>;
}

export class DirectoryOutbox {
  #draining: Promise<void> | undefined;

  constructor(
    private readonly ctx: PartContext,
    private readonly callbacks: OutboxCallbacks,
  ) {}

  createTables(): void {
    this.ctx.sql.exec(`CREATE TABLE IF NOT EXISTS outbox (
      seq INTEGER PRIMARY KEY, body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, not_before INTEGER NOT NULL DEFAULT 0)`);
  }

  /** Queues `op`; call inside the transaction that makes the change it reflects. */
  record(op: OutboxOp): void {
    this.ctx.sql.exec("INSERT INTO outbox (body) VALUES (?)", JSON.stringify(op));
  }

  /** Applies the waiting ops in order; on the first failure, stops and leaves the rest to the alarm. */
  drain(): Promise<void> {
    this.#draining ??= this.#drainOnce().finally(() => {
      this.#draining = undefined;
    });
    return this.#draining;
  }

  /** When the op at the head may be tried again (0: now); null when nothing waits. */
  nextDueAt(): number | null {
    if (!this.callbacks.hasTables()) return null;
    return this.ctx.sql.exec<{ t: number | null }>("SELECT min(not_before) AS t FROM outbox").one().t;
  }

  /** How many directory changes wait to reach D1. */
  pending(): number {
    if (!this.callbacks.hasTables()) return 0;
    return this.ctx.sql.exec<{ n: number }>("SELECT count(*) AS n FROM outbox").one().n;
  }

  async #drainOnce(): Promise<void> {
    if (!this.callbacks.hasTables()) return;
    const sql = this.ctx.sql;
    for (;;) {
      const row = sql
        .exec<{ seq: number; body: string; attempts: number }>(
          "SELECT seq, body, attempts FROM outbox ORDER BY seq LIMIT 1",
        )
        .toArray()[0];
      if (!row) break;
      const op = JSON.parse(row.body) as OutboxOp;
      try {
        await this.#apply(op);
        sql.exec("DELETE FROM outbox WHERE seq = ?", row.seq);
      } catch (e) {
        const delay = OUTBOX_RETRY_MS[Math.min(row.attempts, OUTBOX_RETRY_MS.length - 1)]!;
        sql.exec(
          "UPDATE outbox SET attempts = attempts + 1, not_before = ? WHERE seq = ?",
          this.ctx.clock.now() + delay,
          row.seq,
        );
        log("warn", { event: "outbox_retry", op: op.op, attempts: row.attempts + 1, error: String(e) });
        break;
      }
    }
    await this.callbacks.drained(this.pending());
  }

  async #apply(op: OutboxOp): Promise<void> {
    const cfg = this.ctx.config();
    if ("ok" in cfg) throw new Error(cfg.message);
    const env = this.ctx.env();
    const db = shardFor(env, cfg, op.accountId);
    switch (op.op) {
      case "device_added":
        // The device's rows are written under its fresh uid, so a retry or a late write can never attach keys
        // to another device that later gets the same device id.
        await putDeviceKeys(db, env.KEY_PAGES, op.accountId, op.deviceUid, op.keys, deviceRowStatements(db, op));
        return;
      case "device_removed":
        await deleteDeviceKeys(db, env.KEY_PAGES, op.accountId, op.deviceId, op.deviceUid);
        return;
      case "account_deleted":
        // The object's own copies go first, so a D1 outage (which makes this whole step retry) never leaves a
        // deleted account's sockets open or its ciphertext stored.
        this.callbacks.purgeLocal();
        await deleteAccountRows(db, env.KEY_PAGES, op.accountId);
        await deleteAccountAttachments(env, cfg, op.accountId);
        return;
    }
  }
}
