// What every part of the account's Durable Object is built with: its SQLite, its storage (transactions, the
// alarm), the clock, and getters for the env and the parsed config. Getters, not values: tests swap the
// object's `env` and `clock` while it runs, and every part must see the swap at its next call.
import type { Clock } from "../../protocol/clock.ts";
import { loadConfig, type Config } from "../config.ts";
import { fail, type Failure } from "../errors.ts";

export interface PartContext {
  readonly sql: SqlStorage;
  readonly storage: DurableObjectStorage;
  /** Reads the object's current clock at every call (see Account.clock). */
  readonly clock: Clock;
  env(): Cloudflare.Env;
  /** The vars parsed (once per env object), or MISCONFIGURED naming the bad one. */
  config(): Config | Failure;
  waitUntil(promise: Promise<unknown>): void;
}

/** The parsed config of `env`, or the MISCONFIGURED failure every method answers with. */
export function configOf(env: object): Config | Failure {
  const c = loadConfig(env);
  return c.ok ? c.config : fail("MISCONFIGURED", c.error.message);
}
