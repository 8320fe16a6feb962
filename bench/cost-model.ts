// The cost model behind docs/cost.md: Cloudflare's published Workers Paid prices, the per-operation counts
// cipherpost measures or its code fixes, and stated usage assumptions, multiplied out for 1, 10 and 100 million
// monthly users. `npm run cost` prints the tables; `--write` puts them into docs/cost.md between its markers.
import { readFileSync, writeFileSync } from "node:fs";

/** Workers Paid plan prices (developers.cloudflare.com: workers/platform/pricing, durable-objects/platform/pricing, d1/platform/pricing, r2/pricing). */
export const PRICES = {
  base: 5, // $ per month
  workerRequests: { included: 10e6, perMillion: 0.3 },
  workerCpuMs: { included: 30e6, perMillion: 0.02 },
  doRequests: { included: 1e6, perMillion: 0.15 }, // incoming WebSocket messages count 1/20
  doGbSeconds: { included: 400_000, perMillion: 12.5 },
  doRowsRead: { included: 25e9, perMillion: 0.001 },
  doRowsWritten: { included: 50e6, perMillion: 1.0 },
  doStorageGb: { included: 5, perGbMonth: 0.2 },
  d1RowsRead: { included: 25e9, perMillion: 0.001 },
  d1RowsWritten: { included: 50e6, perMillion: 1.0 },
  d1StorageGb: { included: 5, perGbMonth: 0.75 },
  r2ClassA: { included: 1e6, perMillion: 4.5 },
  r2ClassB: { included: 10e6, perMillion: 0.36 },
  r2StorageGb: { included: 10, perGbMonth: 0.015 },
};

/**
 * Per-operation counts, each with how it was obtained (`SOURCES`): *measured* by the test or benchmark named,
 * *derived* from the code, or *assumed* (a usage or platform figure no local measurement can give).
 */
export const UNIT = {
  // Rows written in the account objects per message copy, from the SDK's own traffic (idempotency keys on every
  // send, sync copies, receipts, group sends): 0 for a copy pushed to a connected, caught-up device and acked
  // within MAX_ACK_WAIT_MS; 2 for one that waits in the queue (one WITHOUT ROWID row, its delete on ack).
  doRowsWrittenPerCopyLive: 0,
  doRowsWrittenPerCopyQueued: 2,
  // Rows written per send beyond its copies: the idempotency answer rides in the queued rows and in memory.
  doRowsWrittenPerSend: 0,
  // D1 rows written per send (every shard's total_changes() around the SDK conversation).
  d1RowsWrittenPerSend: 0,
  doRowsReadPerCopy: 6,
  // Copies for a connected device whose ack does not come back within MAX_ACK_WAIT_MS (stored after all, 2 rows).
  lateAckShare: 0.05,
  // How long a send waits for a connected device's ack: its round trip plus the device decrypting and storing.
  ackRoundTripMs: 150,
  // A send: one Worker request, one RPC to the sender's object (authentication, device limit), one per recipient object.
  doRpcPerSend: 1,
  // CPU per Worker request, an assumption bounded by the load benchmark (both Workers and objects share one process there).
  workerCpuMsPerRequest: 2,
  // Active object time per RPC (wall clock while handling it), an assumption; hibernated sockets cost none.
  doActiveMsPerRpc: 2,
  // A fully stocked registration (100 one-time keys of each kind): docs/scaling.md and the schema.
  d1RowsWrittenPerRegistration: 314,
  doRowsWrittenPerRegistration: 20,
  doRpcPerRegistration: 3, // two per-IP limiter calls, one account object
  r2PutsPerRegistration: 1, // the KEM key page
  cpuMsPerRegistration: 40, // 102 native signature checks at about 0.33 ms, plus the rest
  kemPageBytes: 100 * 1637,
  d1BytesPerDevice: 27_310, // docs/scaling.md, measured with dbstat
  // A prekey claim for one device: exact claim window in the target's object, one D1 batch, one ranged R2 read.
  doRowsWrittenPerClaim: 4,
  d1RowsWrittenPerClaim: 3,
  // An attachment of one part or less: create + PATCH (+ final part) + completion through the upload object.
  workerRequestsPerUpload: 2,
  doRpcPerUpload: 3,
  doRowsWrittenPerUpload: 8,
  d1RowsWrittenPerUpload: 9, // index insert, completion, sweep delete, with their indexes
  r2ClassAPerUpload: 3, // create multipart, upload part, complete
};

export type Unit = typeof UNIT;

/** How each count in UNIT was obtained. */
export const SOURCES: Record<keyof Unit, string> = {
  doRowsWrittenPerCopyLive:
    "measured: test/server/storage-cost-sdk.test.ts (SDK send to a connected device), storage-cost.test.ts",
  doRowsWrittenPerCopyQueued:
    "measured: test/server/storage-cost-sdk.test.ts (SDK send to an offline device), storage-cost.test.ts",
  doRowsWrittenPerSend:
    "measured: test/server/storage-cost-sdk.test.ts (the conversation: 48 rows = its 24 queued copies × 2)",
  d1RowsWrittenPerSend: "measured: test/server/storage-cost-sdk.test.ts (total_changes() of every shard)",
  doRowsReadPerCopy: "measured: test/server/storage-cost.test.ts (6.15 for a queued copy, rounded)",
  lateAckShare: "assumed (a connected device that is busy, or whose connection is half-open)",
  ackRoundTripMs: "assumed (a phone's round trip plus decrypt and store; the local benchmark's is a few ms)",
  doRpcPerSend: "derived: src/server/routes/messages.ts",
  workerCpuMsPerRequest: "assumed, bounded by npm run bench",
  doActiveMsPerRpc: "assumed",
  d1RowsWrittenPerRegistration: "derived: docs/scaling.md and schema.sql",
  doRowsWrittenPerRegistration: "derived: src/server/account",
  doRpcPerRegistration: "derived: src/server/routes",
  r2PutsPerRegistration: "derived: the KEM key page",
  cpuMsPerRegistration: "measured: docs/performance.md (102 signature checks at 0.33 ms, plus the rest)",
  kemPageBytes: "derived: 100 KEM keys of 1,637 bytes",
  d1BytesPerDevice: "measured: docs/scaling.md (dbstat)",
  doRowsWrittenPerClaim: "derived: src/server/account/prekey-claims.ts",
  d1RowsWrittenPerClaim: "derived: src/server/db",
  workerRequestsPerUpload: "derived: the tus flow",
  doRpcPerUpload: "derived: src/server/uploads",
  doRowsWrittenPerUpload: "derived: src/server/uploads",
  d1RowsWrittenPerUpload: "derived: src/server/db/attachments.ts",
  r2ClassAPerUpload: "derived: R2 multipart",
};

/**
 * The counts before issue #16, measured the same way (test/server/storage-cost-sdk.test.ts on the earlier
 * code): every copy stored first in a rowid queue with its (device, seq) index (3 rows), and an idempotency
 * record per send with its key and expiry index rows and the alarm's delete (4.05 rows). For comparison only.
 */
export const UNIT_BEFORE_16: Unit = {
  ...UNIT,
  doRowsWrittenPerCopyLive: 3,
  doRowsWrittenPerCopyQueued: 3,
  doRowsWrittenPerSend: 4,
  lateAckShare: 0,
  ackRoundTripMs: 0,
};

export interface Assumptions {
  users: number;
  devicesPerUser: number;
  sendsPerUserPerDay: number;
  groupShare: number;
  groupSize: number;
  queuedShare: number;
  attachmentShare: number;
  attachmentMb: number;
  newUserShare: number;
  claimsPerUserPerMonth: number;
  socketSendShare: number;
  onlineShare: number;
}

export const DEFAULTS: Omit<Assumptions, "users"> = {
  devicesPerUser: 1.3, // a phone, and for some a desktop or tablet
  sendsPerUserPerDay: 45, // 30 messages and 15 receipt or typing sends a day
  // Of those 15, 5 typing indicators: `online` sends, pushed to devices connected now and never stored or acked
  // (src/client/client.ts sendTyping; mailbox-delivery "online messages never stored"); 10 receipts are stored.
  onlineShare: 5 / 45,
  groupShare: 0.25, // a quarter of sends go to groups
  groupSize: 8,
  queuedShare: 0.5, // half the copies wait for a device that is offline
  attachmentShare: 0.05, // one send in twenty carries an attachment
  attachmentMb: 1, // photos and voice notes, after client compression
  newUserShare: 0.1, // a tenth of monthly users register that month (a signup surge is far above this for a day)
  claimsPerUserPerMonth: 10, // new sessions: new contacts, new devices, session resets
  // Sends made while the app is open go over its connection (docs/mailbox.md): no Worker request, and the hop
  // into the sender's own object is an incoming WebSocket message (billed 1/20). The rest are HTTP requests.
  socketSendShare: 0.8,
};

const bill = (used: number, p: { included: number; perMillion: number }) =>
  (Math.max(0, used - p.included) / 1e6) * p.perMillion;
const billGb = (gb: number, p: { included: number; perGbMonth: number }) => Math.max(0, gb - p.included) * p.perGbMonth;

export function month(a: Assumptions, unit: Unit = UNIT) {
  const UNIT = unit;
  const sends = a.users * a.sendsPerUserPerDay * 30;
  const storedSends = sends * (1 - a.onlineShare); // typing indicators are never stored
  const ownOther = a.devicesPerUser - 1; // sync copies to the sender's other devices
  const copiesPerSend =
    (1 - a.groupShare) * (a.devicesPerUser + ownOther) + a.groupShare * (a.groupSize * a.devicesPerUser + ownOther);
  const objectsPerSend =
    (1 - a.groupShare) * (1 + Math.min(1, ownOther)) + a.groupShare * (a.groupSize + Math.min(1, ownOther));
  // Copies for connected devices: pushed first; most are acked in time and never written.
  const liveShare = (1 - a.queuedShare) * (1 - UNIT.lateAckShare);
  const storedSendCopies = storedSends * copiesPerSend; // copies that are queued or pushed and acked
  const copies = sends * copiesPerSend;
  const uploads = sends * a.attachmentShare;
  const downloads = uploads * copiesPerSend;
  const registrations = a.users * a.newUserShare;
  const claims = a.users * a.claimsPerUserPerMonth;
  const devices = a.users * a.devicesPerUser;

  const httpSends = sends * (1 - a.socketSendShare);
  const socketSends = sends * a.socketSendShare;
  const workerRequests =
    httpSends * (1 + ownOther) + uploads * UNIT.workerRequestsPerUpload + downloads + registrations * 2 + claims;
  const workerCpuMs = workerRequests * UNIT.workerCpuMsPerRequest + registrations * UNIT.cpuMsPerRegistration;
  const otherRpc =
    sends * objectsPerSend + uploads * UNIT.doRpcPerUpload + registrations * UNIT.doRpcPerRegistration + claims * 2;
  const doRpc = httpSends * UNIT.doRpcPerSend + socketSends / 20 + copies / 20 + otherRpc;
  // Active time is per activation, whatever the billing ratio: every send frame wakes the sender's object.
  const doActivations = httpSends * UNIT.doRpcPerSend + socketSends + copies / 20 + otherRpc;
  const doRowsWritten =
    storedSendCopies * (liveShare * UNIT.doRowsWrittenPerCopyLive + (1 - liveShare) * UNIT.doRowsWrittenPerCopyQueued) +
    storedSends * objectsPerSend * UNIT.doRowsWrittenPerSend +
    uploads * UNIT.doRowsWrittenPerUpload +
    registrations * UNIT.doRowsWrittenPerRegistration +
    claims * UNIT.doRowsWrittenPerClaim;
  const doRowsRead = storedSendCopies * UNIT.doRowsReadPerCopy;
  // The wait for a connected device's ack keeps the recipient's object active (one wait per recipient account
  // with a device connected: its copies share it), and the sender's too when it sent over its connection.
  const ackWaitMs = storedSends * (objectsPerSend * (1 - a.queuedShare) + a.socketSendShare) * UNIT.ackRoundTripMs;
  const doGbSeconds = ((doActivations * UNIT.doActiveMsPerRpc + ackWaitMs) / 1000) * 0.128;
  const doStorageGb = (devices * 20 * 1.2e3 + a.users * 16e3) / 1e9; // 20 queued copies of 1.2 KB per device, 16 KB per account object
  const d1RowsWritten =
    sends * UNIT.d1RowsWrittenPerSend +
    registrations * UNIT.d1RowsWrittenPerRegistration +
    claims * (UNIT.d1RowsWrittenPerClaim + 3) +
    uploads * UNIT.d1RowsWrittenPerUpload;
  const d1StorageGb = (devices * UNIT.d1BytesPerDevice) / 1e9 + (uploads * 150) / 1e9;
  const r2ClassA = uploads * UNIT.r2ClassAPerUpload + registrations + claims / 100;
  const r2ClassB = downloads + claims;
  const r2StorageGb = (uploads * a.attachmentMb) / 1e3 + (devices * UNIT.kemPageBytes) / 1e9;

  const lines: [string, number, string][] = [
    ["Workers requests", bill(workerRequests, PRICES.workerRequests), `${fmt(workerRequests)} requests`],
    ["Workers CPU", bill(workerCpuMs, PRICES.workerCpuMs), `${fmt(workerCpuMs)} CPU ms`],
    ["Durable Object requests", bill(doRpc, PRICES.doRequests), `${fmt(doRpc)} billed requests`],
    ["Durable Object duration", bill(doGbSeconds, PRICES.doGbSeconds), `${fmt(doGbSeconds)} GB-s`],
    ["Durable Object rows written", bill(doRowsWritten, PRICES.doRowsWritten), `${fmt(doRowsWritten)} rows`],
    ["Durable Object rows read", bill(doRowsRead, PRICES.doRowsRead), `${fmt(doRowsRead)} rows`],
    ["Durable Object storage", billGb(doStorageGb, PRICES.doStorageGb), `${fmt(doStorageGb)} GB-month`],
    ["D1 rows written", bill(d1RowsWritten, PRICES.d1RowsWritten), `${fmt(d1RowsWritten)} rows`],
    ["D1 storage", billGb(d1StorageGb, PRICES.d1StorageGb), `${fmt(d1StorageGb)} GB-month`],
    ["R2 Class A", bill(r2ClassA, PRICES.r2ClassA), `${fmt(r2ClassA)} operations`],
    ["R2 Class B", bill(r2ClassB, PRICES.r2ClassB), `${fmt(r2ClassB)} operations`],
    ["R2 storage", billGb(r2StorageGb, PRICES.r2StorageGb), `${fmt(r2StorageGb)} GB-month`],
    ["Workers Paid plan", PRICES.base, "subscription"],
  ];
  const total = lines.reduce((s, l) => s + l[1], 0);
  return { lines, total, perUser: total / a.users, sends, copies, copiesPerSend };
}

function fmt(n: number): string {
  if (n >= 1e12) return `${(n / 1e12).toFixed(2)} T`;
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return n.toFixed(1);
}
const usd = (n: number) => `$${n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(2)}`;

export function tables(): string {
  const out: string[] = [];
  const runs = [1e6, 10e6, 100e6].map((users) => ({ users, m: month({ users, ...DEFAULTS }) }));
  out.push("| line | 1 M users | 10 M users | 100 M users | what is counted (100 M) |", "|---|---|---|---|---|");
  runs[0]!.m.lines.forEach((l, i) => {
    out.push(`| ${l[0]} | ${runs.map((r) => usd(r.m.lines[i]![1])).join(" | ")} | ${runs[2]!.m.lines[i]![2]} |`);
  });
  out.push(`| **total per month** | ${runs.map((r) => `**${usd(r.m.total)}**`).join(" | ")} | |`);
  out.push(`| per user per month | ${runs.map((r) => `$${r.m.perUser.toFixed(4)}`).join(" | ")} | |`);
  const before = month({ users: 1e6, ...DEFAULTS }, UNIT_BEFORE_16);
  out.push(
    "",
    `Copies delivered per send: ${runs[0]!.m.copiesPerSend.toFixed(2)}; sends a month at 1 M users: ${fmt(runs[0]!.m.sends)}. ` +
      `At the counts measured before issue #16 (3 rows per copy, 4 per send for idempotency) the same month cost ` +
      `$${before.perUser.toFixed(4)} per user.`,
  );
  return out.join("\n");
}

/** The message-path counts the month uses, each with how it was obtained. */
export function countsTable(): string {
  const keys: (keyof Unit)[] = [
    "doRowsWrittenPerCopyLive",
    "doRowsWrittenPerCopyQueued",
    "doRowsWrittenPerSend",
    "d1RowsWrittenPerSend",
    "doRowsReadPerCopy",
    "lateAckShare",
    "ackRoundTripMs",
    "workerCpuMsPerRequest",
    "doActiveMsPerRpc",
  ];
  const out = ["| count | value | before #16 | how obtained |", "|---|---|---|---|"];
  for (const k of keys) out.push(`| \`${k}\` | ${UNIT[k]} | ${UNIT_BEFORE_16[k]} | ${SOURCES[k]} |`);
  return out.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const t = tables();
  const c = countsTable();
  if (process.argv.includes("--write")) {
    const path = new URL("../docs/cost.md", import.meta.url);
    const doc = readFileSync(path, "utf8");
    writeFileSync(
      path,
      doc
        .replace(/<!-- cost:start -->[\s\S]*?<!-- cost:end -->/, `<!-- cost:start -->\n${t}\n<!-- cost:end -->`)
        .replace(
          /<!-- counts:start -->[\s\S]*?<!-- counts:end -->/,
          `<!-- counts:start -->\n${c}\n<!-- counts:end -->`,
        ),
    );
  }
  process.stdout.write(`${t}\n\n${c}\n`);
}
