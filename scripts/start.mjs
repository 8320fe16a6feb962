// `npm start`: applies schema.sql to every local D1 shard named in wrangler.toml (idempotent), then runs the
// relay with wrangler dev on http://127.0.0.1:8787 with local D1, R2 and Durable Objects.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= "false";
process.env.WRANGLER_SEND_METRICS ??= "false";
const port = process.env.PORT ?? "8787";
const toml = readFileSync(new URL("../wrangler.toml", import.meta.url), "utf8");
const bindings = [...toml.matchAll(/\[\[d1_databases\]\][^[]*?binding\s*=\s*"([^"]+)"/g)].map((m) => m[1]);
const wrangler = new URL("../node_modules/wrangler/bin/wrangler.js", import.meta.url).pathname;

for (const binding of bindings) {
  process.stderr.write(`applying schema.sql to local ${binding}\n`);
  const r = spawnSync(process.execPath, [wrangler, "d1", "execute", binding, "--local", "--file", "schema.sql"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const dev = spawn(process.execPath, [wrangler, "dev", "--ip", "127.0.0.1", "--port", port, ...process.argv.slice(2)], {
  stdio: "inherit",
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => dev.kill(sig));
dev.on("exit", (code) => process.exit(code ?? 0));
