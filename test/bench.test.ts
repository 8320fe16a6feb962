// The load benchmark's short mode, as a smoke test: both Workers start, every message sent is delivered
// exactly once, and the summary carries the figures. It asserts delivery, never a time.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

describe("npm run bench --short", () => {
  it("delivers every message through cipherpost and the baseline and prints the JSON summary last", () => {
    const r = spawnSync(process.execPath, ["node_modules/tsx/dist/cli.mjs", "bench/run.ts", "--short"], {
      encoding: "utf8",
      timeout: 240_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown> & {
      cipherpost: { delivered: number; sent: number; duplicates: number };
      baseline: { delivered: number; sent: number; duplicates: number };
      socket: { delivered: number; sent: number; duplicates: number };
    };
    expect(summary.allDelivered).toBe(true);
    expect(summary.cipherpost.delivered).toBe(summary.cipherpost.sent);
    expect(summary.baseline.delivered).toBe(summary.baseline.sent);
    expect(summary.cipherpost.duplicates).toBe(0);
    // The same load sent as send frames over the senders' own connections.
    expect(summary.socket.delivered).toBe(summary.socket.sent);
    expect(summary.socket.sent).toBe(summary.cipherpost.sent);
    expect(summary.socket.duplicates).toBe(0);
    for (const key of [
      "throughputRatio",
      "p99Ratio",
      "socketThroughputRatio",
      "socketP99Ratio",
      "registrationsPerSec",
      "claimsPerSec",
      "uploadMBps",
      "rawR2PutMBps",
    ])
      expect(typeof summary[key], key).toBe("number");
  }, 300_000);
});
