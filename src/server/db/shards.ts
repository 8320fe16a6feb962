// Which D1 database holds an account: the account id picks one of 4096 buckets and SHARD_MAP assigns bucket
// ranges to D1 bindings. Buckets never change for an account, so moving ranges to new shards keeps every id.
import { SHARD_BUCKETS, type Config } from "../config.ts";

/** The first 12 bits of a (random, version 4) UUID or of any hex id. */
export function bucketOf(id: string): number {
  const hex = id.replace(/-/g, "").slice(0, 3);
  const n = parseInt(hex, 16);
  return Number.isNaN(n) ? 0 : n % SHARD_BUCKETS;
}

export function shardBinding(config: Config, id: string): string {
  const b = bucketOf(id);
  for (const r of config.SHARD_MAP) if (b >= r.from && b <= r.to) return r.binding;
  // loadConfig proved the map covers every bucket; this line is unreachable with a parsed config.
  throw new Error(`bucket ${b} is not in SHARD_MAP`);
}

export function shardFor(env: object, config: Config, id: string): D1Database {
  return (env as Record<string, D1Database>)[shardBinding(config, id)]!;
}

/** Every distinct shard binding, for sweeps and health checks. */
export function allShards(env: object, config: Config): { binding: string; db: D1Database }[] {
  const names = [...new Set(config.SHARD_MAP.map((r) => r.binding))];
  return names.map((binding) => ({ binding, db: (env as Record<string, D1Database>)[binding]! }));
}
