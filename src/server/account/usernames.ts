// The account's side of its username: which hash it holds (at most one), its live reservation, its link handle,
// and the D1 clean-ups still owed (a freed name's tombstone, a replaced link). Held here, in the account's own
// object, and run one operation at a time, so reserve → confirm → free the old name never interleaves for one
// account. The names themselves live in D1 (db/usernames.ts), where the primary key decides races between accounts.
import { randomBytes, toHex } from "../../crypto/bytes.ts";
import { Mutex } from "../../protocol/concurrency.ts";
import { USERNAME_LINK_HANDLE_CHARS } from "../../protocol/usernames.ts";
import type { Config } from "../config.ts";
import {
  confirmUsername,
  deleteUsernameLink,
  putUsernameLink,
  releaseUsername,
  reserveUsername,
} from "../db/usernames.ts";
import { fail, type Failure } from "../errors.ts";
import type { PartContext } from "./context.ts";
import type { RateWindow } from "./rate-window.ts";

type Slot = "confirmed" | "reserved" | "link";

/** How long after a D1 failure the alarm tries the owed clean-ups again (and again, while D1 fails). */
export const USERNAME_CLEANUP_RETRY_MS = 30_000;
type Result<T> = Promise<({ ok: true } & T) | Failure>;

export class UsernameRecord {
  readonly #mutex = new Mutex();

  constructor(
    private readonly ctx: PartContext,
    private readonly rates: RateWindow,
  ) {}

  createTables(): void {
    // slot: confirmed | reserved | link. cleanup: D1 work owed, "name:<hash>" (release) or "link" (delete).
    this.ctx.sql.exec("CREATE TABLE IF NOT EXISTS username_slots (slot TEXT PRIMARY KEY, value TEXT NOT NULL)");
    this.ctx.sql.exec("CREATE TABLE IF NOT EXISTS username_cleanup (what TEXT PRIMARY KEY)");
  }

  #get(slot: Slot): string | null {
    return (
      this.ctx.sql.exec<{ value: string }>("SELECT value FROM username_slots WHERE slot = ?", slot).toArray()[0]
        ?.value ?? null
    );
  }

  #set(slot: Slot, value: string | null): void {
    if (value === null) this.ctx.sql.exec("DELETE FROM username_slots WHERE slot = ?", slot);
    else this.ctx.sql.exec("INSERT OR REPLACE INTO username_slots (slot, value) VALUES (?, ?)", slot, value);
  }

  #owe(what: string): void {
    this.ctx.sql.exec("INSERT OR IGNORE INTO username_cleanup (what) VALUES (?)", what);
  }

  /** Does the D1 work owed; answers how much is still owed (a D1 failure leaves it for the next call). */
  async #settle(accountId: string, cfg: Config): Promise<number> {
    const owed = this.ctx.sql.exec<{ what: string }>("SELECT what FROM username_cleanup").toArray();
    const env = this.ctx.env();
    let left = 0;
    const held = new Set([this.#get("confirmed"), this.#get("reserved")].map((h) => `name:${h}`));
    for (const { what } of owed) {
      try {
        // A name freed and then taken back before its release reached D1 is this account's again: keep it.
        if (held.has(what)) {
          this.ctx.sql.exec("DELETE FROM username_cleanup WHERE what = ?", what);
          continue;
        }
        if (what === "link") await deleteUsernameLink(env, cfg, accountId);
        else {
          const holdUntil = this.ctx.clock.now() + cfg.USERNAME_RELEASE_TTL_SECONDS * 1000;
          await releaseUsername(env, cfg, what.slice("name:".length), accountId, holdUntil);
        }
        this.ctx.sql.exec("DELETE FROM username_cleanup WHERE what = ?", what);
      } catch {
        left++;
      }
    }
    return left;
  }

  /** When the alarm should try the owed D1 clean-ups again; null when nothing is owed. */
  nextDueAt(): number | null {
    const n = this.ctx.sql.exec<{ n: number }>("SELECT count(*) AS n FROM username_cleanup").one().n;
    return n > 0 ? this.ctx.clock.now() + USERNAME_CLEANUP_RETRY_MS : null;
  }

  /** From the alarm: the owed clean-ups (a freed name's release, a replaced link's removal). */
  retry(accountId: string, cfg: Config): Promise<number> {
    return this.#mutex.run(() => this.#settle(accountId, cfg));
  }

  /** Reserves the first free hash of `hashes` for this account; an earlier reservation of another hash goes. */
  reserve(accountId: string, hashes: string[], cfg: Config): Result<{ usernameHash: string; expiresAt: number }> {
    return this.#mutex.run(async () => {
      const now = this.ctx.clock.now();
      const rate = this.rates.take(
        "username_reserve",
        cfg.USERNAME_RESERVATIONS_PER_ACCOUNT_LIMIT,
        cfg.USERNAME_RESERVATIONS_PER_ACCOUNT_WINDOW_SECONDS,
        now,
      );
      if (!rate.allowed)
        return fail("RATE_LIMITED", "too many username reservations by this account", {}, rate.retryAfterSeconds);
      await this.#settle(accountId, cfg);
      const expiresAt = now + cfg.USERNAME_RESERVATION_TTL_SECONDS * 1000;
      const env = this.ctx.env();
      for (const hash of hashes) {
        if (hash === this.#get("confirmed")) continue; // already this account's name: nothing to reserve
        if (!(await reserveUsername(env, cfg, hash, accountId, now, expiresAt))) continue;
        const previous = this.#get("reserved");
        this.#set("reserved", hash);
        if (previous !== null && previous !== hash) {
          this.#owe(`name:${previous}`);
          await this.#settle(accountId, cfg);
        }
        return { ok: true, usernameHash: hash, expiresAt };
      }
      return fail("USERNAME_TAKEN", "every username offered is taken");
    });
  }

  /**
   * Makes this account's live reservation its name. The previous name becomes a tombstone (takeable by others
   * after USERNAME_RELEASE_TTL_SECONDS) and the link, which named the previous name, goes.
   */
  confirm(accountId: string, hash: string, cfg: Config): Result<{ usernameHash: string }> {
    return this.#mutex.run(async () => {
      await this.#settle(accountId, cfg);
      const env = this.ctx.env();
      if (!(await confirmUsername(env, cfg, hash, accountId, this.ctx.clock.now())))
        return fail("USERNAME_NOT_RESERVED", "this account holds no live reservation of that username");
      const previous = this.#get("confirmed");
      this.ctx.storage.transactionSync(() => {
        this.#set("confirmed", hash);
        if (this.#get("reserved") === hash) this.#set("reserved", null);
        if (previous !== null && previous !== hash) {
          this.#owe(`name:${previous}`);
          if (this.#get("link") !== null) {
            this.#set("link", null);
            this.#owe("link");
          }
        }
      });
      await this.#settle(accountId, cfg);
      return { ok: true, usernameHash: hash };
    });
  }

  /** Frees the name, the reservation and the link. UNAVAILABLE when D1 did not take it all (a retry finishes). */
  delete(accountId: string, cfg: Config): Result<object> {
    return this.#mutex.run(async () => {
      this.#forgetAll();
      return (await this.#settle(accountId, cfg)) === 0
        ? { ok: true }
        : fail("UNAVAILABLE", "the directory did not answer; try again", {}, 1);
    });
  }

  /** Stores a new link (a new handle: any earlier link stops working). Needs a confirmed name. */
  setLink(accountId: string, ciphertext: string, cfg: Config): Result<{ handle: string }> {
    return this.#mutex.run(async () => {
      if (this.#get("confirmed") === null) return fail("NOT_FOUND", "this account has no username: set one first");
      // The owner's bucket digits first (GET finds the shard from the handle), then 116 random bits.
      const handle = `${accountId.slice(0, 3)}${toHex(randomBytes(15))}`.slice(0, USERNAME_LINK_HANDLE_CHARS);
      await putUsernameLink(this.ctx.env(), cfg, accountId, handle, ciphertext);
      this.#set("link", handle);
      return { ok: true, handle };
    });
  }

  /** Counts one lookup by this account; RATE_LIMITED past USERNAME_LOOKUPS_PER_ACCOUNT_LIMIT per window. */
  takeLookup(cfg: Config): ({ ok: true } & object) | Failure {
    const rate = this.rates.take(
      "username_lookup",
      cfg.USERNAME_LOOKUPS_PER_ACCOUNT_LIMIT,
      cfg.USERNAME_LOOKUPS_PER_ACCOUNT_WINDOW_SECONDS,
      this.ctx.clock.now(),
    );
    return rate.allowed
      ? { ok: true }
      : fail("RATE_LIMITED", "too many username lookups by this account", {}, rate.retryAfterSeconds);
  }

  /** Account deletion's first step: everything the account holds in the username tables goes, or UNAVAILABLE. */
  purge(accountId: string, cfg: Config): Result<object> {
    return this.delete(accountId, cfg);
  }

  #forgetAll(): void {
    this.ctx.storage.transactionSync(() => {
      for (const slot of ["confirmed", "reserved"] as const) {
        const hash = this.#get(slot);
        if (hash !== null) this.#owe(`name:${hash}`);
        this.#set(slot, null);
      }
      if (this.#get("link") !== null) this.#owe("link");
      this.#set("link", null);
    });
  }
}
