// `npm run bench:profile`: where cipherpost's Worker and objects spend CPU under the load benchmark's message
// traffic. Starts the relay as the benchmark does (bench/lib/worker-host.ts) with the V8 inspector open, samples
// a CPU profile while the load generator sends, and prints the functions with the most self time. The line
// numbers refer to the bundle wrangler builds (`npx wrangler deploy --dry-run --outdir dist`).
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { WebSocket } from "undici";
import type { LoadOptions } from "./load.ts";
import { startWorker } from "./lib/worker-host.ts";
import { BRAKES_OFF_VARS } from "./lib/brakes-off.ts";

const root = resolve(new URL("../", import.meta.url).pathname);
const INSPECTOR_PORT = 9333;

interface ProfileNode {
  id: number;
  hitCount?: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

async function main() {
  const host = await startWorker({
    config: "wrangler.toml",
    inspectorPort: INSPECTOR_PORT,
    vars: { ...BRAKES_OFF_VARS },
  });
  const targets = (await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json`)).json()) as {
    webSocketDebuggerUrl: string;
    title?: string;
  }[];
  const target =
    targets.find((t) => /core:user:cipherpost/.test(t.title ?? "")) ??
    targets.find((t) => /cipherpost/.test(t.title ?? "")) ??
    targets[0]!;
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((r) => ws.addEventListener("open", r));
  let next = 0;
  const pending = new Map<number, (v: unknown) => void>();
  ws.addEventListener("message", (e) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: unknown };
    if (m.id !== undefined) pending.get(m.id)?.(m.result);
  });
  const call = <T>(method: string, params: object = {}) =>
    new Promise<T>((r) => {
      const id = ++next;
      pending.set(id, r as (v: unknown) => void);
      ws.send(JSON.stringify({ id, method, params }));
    });

  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 200 });
  await call("Profiler.start");
  const options: LoadOptions = {
    target: "cipherpost",
    url: host.url,
    recipients: 20,
    senders: 20,
    messages: 3000,
    concurrency: 32,
    messageBytes: 1024,
    registrations: 0,
    keysPerRegistration: 0,
    claims: 0,
    uploadBytes: 0,
    timeoutMs: 120_000,
  };
  const result = await new Promise<string>((done) => {
    const child = spawn(
      process.execPath,
      [join(root, "node_modules/tsx/dist/cli.mjs"), join(root, "bench/load.ts"), JSON.stringify(options)],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", () => done(out.trim().split("\n").pop() ?? ""));
  });
  const { profile } = await call<{ profile: { nodes: ProfileNode[] } }>("Profiler.stop");
  const self = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const where = `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.split("/").pop() ?? ""}:${n.callFrame.lineNumber + 1}`;
    self.set(where, (self.get(where) ?? 0) + (n.hitCount ?? 0));
    total += n.hitCount ?? 0;
  }
  const r = JSON.parse(result) as { messagesPerSec: number; delivered: number; sent: number };
  process.stdout.write(
    `${r.delivered}/${r.sent} delivered, ${Math.round(r.messagesPerSec)} msg/s while profiling\nself time:\n`,
  );
  for (const [where, hits] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30))
    process.stdout.write(`${((100 * hits) / total).toFixed(1).padStart(6)}%  ${where}\n`);
  ws.close();
  await host.stop();
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`profile failed: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
