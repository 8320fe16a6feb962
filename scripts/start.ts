// `npm start`: applies the D1 migrations to every local shard wrangler.toml declares (wrangler records what each
// shard has, so a restart applies only new ones and a new shard gets them all), then serves the relay with
// wrangler dev on http://127.0.0.1:8787 with local D1, R2 and Durable Objects. Arguments go to wrangler dev.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { applyMigrationsWithWrangler, d1Shards, WRANGLER } from "./d1-migrations.ts";

process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
process.env.WRANGLER_SEND_METRICS ??= "false";
const port = process.env.PORT ?? "8787";
const args = process.argv.slice(2);

// `npm start -- --persist-to DIR` keeps the state elsewhere: the migrations must land in that same place.
const persistAt = args.findIndex((a) => a === "--persist-to" || a.startsWith("--persist-to="));
const persist =
  persistAt < 0 ? [] : args[persistAt]!.includes("=") ? [args[persistAt]!] : args.slice(persistAt, persistAt + 2);

const shards = d1Shards(readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8"));
applyMigrationsWithWrangler(
  shards.map((s) => s.binding),
  ["--local", ...persist],
  true,
);

// Push endpoints on this machine (a local push service while developing) are allowed here and refused by a deploy.
const devVars = ["--var", "PUSH_ALLOW_LOOPBACK:true"];
const dev = spawn(process.execPath, [WRANGLER, "dev", "--ip", "127.0.0.1", "--port", port, ...devVars, ...args], {
  stdio: "inherit",
});
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => dev.kill(sig));
dev.on("exit", (code) => process.exit(code ?? 0));
