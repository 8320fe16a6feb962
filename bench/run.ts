// `npm run bench`: starts, one after the other on this machine and the same local runtime, cipherpost's Worker and
// the baseline Worker (bench/baseline), drives each with the same load generator in a separate process, and
// prints the figures and their ratios; the last line is one JSON object. `--short` is the smoke test `npm test`
// runs (it checks delivery, never a time); the full run also writes bench/results/*.json, the latency chart,
// and the table in docs/performance.md.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import type { LoadOptions, LoadResult } from "./load.ts";
import { startWorker } from "./lib/worker-host.ts";
import { latencyChart } from "./lib/chart.ts";
import { BRAKES_OFF_VARS } from "./lib/brakes-off.ts";

const root = resolve(new URL("../", import.meta.url).pathname);
const short = process.argv.includes("--short");

const preset = short
  ? {
      recipients: 3,
      senders: 3,
      messages: 150,
      concurrency: 8,
      messageBytes: 1024,
      registrations: 4,
      keysPerRegistration: 5,
      claims: 20,
      uploadBytes: 6 * 1024 * 1024,
      timeoutMs: 60_000,
    }
  : {
      recipients: 50,
      senders: 50,
      messages: 5000,
      concurrency: 32,
      messageBytes: 1024,
      registrations: 50,
      keysPerRegistration: 100,
      claims: 1000,
      uploadBytes: 64 * 1024 * 1024,
      timeoutMs: 300_000,
    };

/** `--messages=N` and the like override one figure of the preset, for exploring. */
const common = { ...preset };
/**
 * `MAX_ACK_WAIT_MS=0 npm run bench` runs cipherpost with another MAX_ACK_WAIT_MS (docs/mailbox.md), to see what pushing
 * copies before storing them does to latency and throughput; unset, wrangler.toml's value.
 */
const ackWaitMs = process.env.MAX_ACK_WAIT_MS;
for (const arg of process.argv.slice(2)) {
  const m = /^--(\w+)=(\d+)$/.exec(arg);
  if (m && m[1]! in common) (common as Record<string, number>)[m[1]!] = Number(m[2]);
}

function runGenerator(options: LoadOptions): Promise<LoadResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      process.execPath,
      [join(root, "node_modules/tsx/dist/cli.mjs"), join(root, "bench/load.ts"), JSON.stringify(options)],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", (code) => {
      const last = out.trim().split("\n").pop() ?? "";
      if (code !== 0) return reject(new Error(`load generator for ${options.target} exited ${code}`));
      resolvePromise(JSON.parse(last) as LoadResult);
    });
  });
}

async function measure(target: "cipherpost" | "baseline", sendOver: "http" | "socket" = "http"): Promise<LoadResult> {
  const host =
    target === "cipherpost"
      ? await startWorker({
          config: "wrangler.toml",
          vars: { ...BRAKES_OFF_VARS, ...(ackWaitMs !== undefined ? { MAX_ACK_WAIT_MS: ackWaitMs } : {}) },
        })
      : await startWorker({ config: "bench/baseline/wrangler.toml" });
  try {
    const options: LoadOptions =
      target === "baseline"
        ? { target, url: host.url, ...common, registrations: 0, claims: 0 }
        : sendOver === "socket"
          ? { target, url: host.url, ...common, registrations: 0, claims: 0, uploadBytes: 0, sendOver }
          : { target, url: host.url, ...common };
    return await runGenerator(options);
  } finally {
    await host.stop();
  }
}

const round = (n: number | undefined, d = 1) => (n === undefined ? undefined : Math.round(n * 10 ** d) / 10 ** d);

async function main() {
  const cipherpost = await measure("cipherpost");
  // The same messages sent as send frames over each sender's own connection (docs/mailbox.md): one object hop
  // per send instead of two. Reported beside the HTTP figures, which stay the headline because the baseline is
  // driven over HTTP too.
  const socket = await measure("cipherpost", "socket");
  const baseline = await measure("baseline");
  for (const r of [cipherpost, socket, baseline]) {
    process.stderr.write(
      `${r.target.padEnd(10)} delivered ${r.delivered}/${r.sent} (dups ${r.duplicates})  ${round(r.messagesPerSec)} msg/s  p50 ${round(r.latencyMs.p50)} ms  p95 ${round(r.latencyMs.p95)} ms  p99 ${round(r.latencyMs.p99)} ms${r.answerMs ? `  answer p50 ${round(r.answerMs.p50)} ms  p99 ${round(r.answerMs.p99)} ms` : ""}\n`,
    );
  }
  const summary = {
    mode: short ? "short" : "full",
    machine: `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    load: common,
    ackWaitMs: ackWaitMs ?? "wrangler.toml",
    throughputRatio: round(cipherpost.messagesPerSec / baseline.messagesPerSec, 3),
    p99Ratio: round(cipherpost.latencyMs.p99 / baseline.latencyMs.p99, 3),
    p50Ratio: round(cipherpost.latencyMs.p50 / baseline.latencyMs.p50, 3),
    socketThroughputRatio: round(socket.messagesPerSec / baseline.messagesPerSec, 3),
    socketP99Ratio: round(socket.latencyMs.p99 / baseline.latencyMs.p99, 3),
    socketP50Ratio: round(socket.latencyMs.p50 / baseline.latencyMs.p50, 3),
    socket: {
      messagesPerSec: round(socket.messagesPerSec),
      latencyMs: roundAll(socket.latencyMs),
      answerMs: socket.answerMs ? roundAll(socket.answerMs) : undefined,
      delivered: socket.delivered,
      sent: socket.sent,
      duplicates: socket.duplicates,
    },
    cipherpost: {
      messagesPerSec: round(cipherpost.messagesPerSec),
      latencyMs: roundAll(cipherpost.latencyMs),
      answerMs: cipherpost.answerMs ? roundAll(cipherpost.answerMs) : undefined,
      delivered: cipherpost.delivered,
      sent: cipherpost.sent,
      duplicates: cipherpost.duplicates,
      networkRetries: cipherpost.networkRetries ?? 0,
    },
    baseline: {
      messagesPerSec: round(baseline.messagesPerSec),
      latencyMs: roundAll(baseline.latencyMs),
      delivered: baseline.delivered,
      sent: baseline.sent,
      duplicates: baseline.duplicates,
      networkRetries: baseline.networkRetries ?? 0,
    },
    registrationsPerSec: round(cipherpost.registrationsPerSec),
    keysPerRegistration: common.keysPerRegistration,
    claimsPerSec: round(cipherpost.claimsPerSec),
    uploadMBps: round(cipherpost.uploadMBps),
    rawR2PutMBps: round(baseline.uploadMBps),
    uploadRatio: round((cipherpost.uploadMBps ?? 0) / (baseline.uploadMBps ?? 1), 3),
  };
  if (!short) {
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    mkdirSync(join(root, "bench/results"), { recursive: true });
    writeFileSync(
      join(root, `bench/results/${stamp}.json`),
      `${JSON.stringify({ ...summary, samples: { cipherpost: cipherpost.latencySample, socket: socket.latencySample, baseline: baseline.latencySample } }, null, 2)}\n`,
    );
    writeFileSync(
      join(root, "docs/latency.svg"),
      latencyChart({
        cipherpost: cipherpost.latencySample,
        "cipherpost, socket sends": socket.latencySample,
        baseline: baseline.latencySample,
      }),
    );
    updatePerformanceDoc(summary);
  }
  const ok =
    cipherpost.delivered === cipherpost.sent &&
    socket.delivered === socket.sent &&
    baseline.delivered === baseline.sent;
  process.stdout.write(`${JSON.stringify({ ...summary, allDelivered: ok })}\n`);
  process.exit(ok ? 0 : 1);
}

function roundAll(l: LoadResult["latencyMs"]) {
  return Object.fromEntries(Object.entries(l).map(([k, v]) => [k, round(v, 2)]));
}

type Figures = { messagesPerSec?: number; latencyMs: Record<string, unknown> };
function updatePerformanceDoc(
  s: Record<string, unknown> & { cipherpost: Figures; socket: Figures; baseline: Figures },
) {
  const path = join(root, "docs/performance.md");
  const doc = readFileSync(path, "utf8");
  const l = (x: Record<string, unknown>, k: string) => x[k];
  const answer = (f: Figures) => {
    const a = (f as { answerMs?: Record<string, unknown> }).answerMs;
    return a ? `${l(a, "p50")} / ${l(a, "p99")}` : "n/a";
  };
  const table = [
    "<!-- bench:start (written by npm run bench) -->",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${s.machine as string}; load: ${JSON.stringify(s.load)}; MAX_ACK_WAIT_MS: ${String(s.ackWaitMs)}.`,
    "",
    "| figure | cipherpost | baseline | ratio |",
    "|---|---|---|---|",
    `| delivered messages per second | ${s.cipherpost.messagesPerSec} | ${s.baseline.messagesPerSec} | ${s.throughputRatio} |`,
    `| send-to-delivery p50 (ms) | ${l(s.cipherpost.latencyMs, "p50")} | ${l(s.baseline.latencyMs, "p50")} | ${s.p50Ratio} |`,
    `| send-to-delivery p95 (ms) | ${l(s.cipherpost.latencyMs, "p95")} | ${l(s.baseline.latencyMs, "p95")} | |`,
    `| send-to-delivery p99 (ms) | ${l(s.cipherpost.latencyMs, "p99")} | ${l(s.baseline.latencyMs, "p99")} | ${s.p99Ratio} |`,
    `| the same, sent over each sender's connection: messages per second | ${s.socket.messagesPerSec} | ${s.baseline.messagesPerSec} | ${s.socketThroughputRatio} |`,
    `| the same, sent over each sender's connection: p50 / p99 (ms) | ${l(s.socket.latencyMs, "p50")} / ${l(s.socket.latencyMs, "p99")} | ${l(s.baseline.latencyMs, "p50")} / ${l(s.baseline.latencyMs, "p99")} | ${s.socketP50Ratio} / ${s.socketP99Ratio} |`,
    `| send-to-answer p50 / p99 (ms), HTTP; over the connection (includes the wait for the recipient's ack) | ${answer(s.cipherpost)}; ${answer(s.socket)} | | |`,
    `| registrations per second (${s.keysPerRegistration} one-time keys of each kind) | ${s.registrationsPerSec} | | |`,
    `| prekey bundle claims per second | ${s.claimsPerSec} | | |`,
    `| attachment upload MB/s (tus) vs raw R2 put | ${s.uploadMBps} | ${s.rawR2PutMBps} | ${s.uploadRatio} |`,
    "",
    "![send-to-delivery latency, cipherpost and baseline](latency.svg)",
    "<!-- bench:end -->",
  ].join("\n");
  const next = doc.includes("<!-- bench:start")
    ? doc.replace(/<!-- bench:start[\s\S]*?<!-- bench:end -->/, table)
    : `${doc.trimEnd()}\n\n## Relay load, against the platform's floor\n\n${table}\n`;
  writeFileSync(path, next);
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
