// The load generator: a separate process that drives one target (cipherpost or the baseline) the same way and
// prints one JSON line of results. R recipient devices connected over WebSocket, S sending devices, M messages
// of B bytes of ciphertext at concurrency C. cipherpost's messages are acked as its protocol requires; the
// baseline has no acks. Latency is send-to-delivery, measured in this one process with performance.now().
import { randomBytes } from "node:crypto";
import { WebSocket } from "undici";
import { fromBase64, toBase64 } from "../src/crypto/bytes.ts";
import { generateEcKeyPair, generateKemKeyPair } from "../src/crypto/keys.ts";
import { xeddsaSign } from "../src/crypto/xeddsa.ts";
import { registrationProofMessage } from "../src/protocol/limits.ts";
import { solvePow } from "../src/protocol/pow.ts";

export interface LoadOptions {
  target: "cipherpost" | "baseline";
  url: string;
  recipients: number;
  senders: number;
  messages: number;
  concurrency: number;
  messageBytes: number;
  /** cipherpost only: accounts registered for the registration figure, and one-time keys of each kind per account. */
  registrations: number;
  keysPerRegistration: number;
  claims: number;
  uploadBytes: number;
  timeoutMs: number;
  /**
   * cipherpost only: how senders send. "http" (the default, as the baseline is driven): PUT /v1/messages per
   * message. "socket": send frames over each sender's own mailbox connection, awaiting each send_result.
   */
  sendOver?: "http" | "socket";
}

export interface LatencyStats {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export interface LoadResult {
  target: string;
  sent: number;
  delivered: number;
  duplicates: number;
  messagesPerSec: number;
  latencyMs: LatencyStats;
  /** Sorted latency sample (at most 2,000 points) for the chart. */
  latencySample: number[];
  registrationsPerSec?: number;
  claimsPerSec?: number;
  uploadMBps?: number;
  networkRetries?: number;
  /**
   * cipherpost only: send-to-answer latency (the 200 or send_result the sender waits for), which includes the
   * wait for a connected recipient's ack (MAX_ACK_WAIT_MS, docs/mailbox.md).
   */
  answerMs?: LatencyStats;
}

const now = () => performance.now();

/**
 * fetch, tried again when the connection itself failed before an answer (a pooled keep-alive connection the
 * server had just closed: "other side closed"). Counted, and printed with the results; HTTP errors are not retried.
 */
let networkRetries = 0;
async function fetchRetry(input: string, init?: RequestInit): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetch(input, init);
    } catch (e) {
      if (attempt >= 2 || !(e instanceof TypeError)) throw e;
      networkRetries++;
      if (process.env.BENCH_DEBUG)
        process.stderr.write(
          `retry ${init?.method ?? "GET"} ${new URL(input).pathname.slice(0, 20)}: ${String((e as { cause?: unknown }).cause)}\n`,
        );
    }
  }
}

function stats(values: number[]): LatencyStats {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return {
    p50: at(0.5),
    p95: at(0.95),
    p99: at(0.99),
    max: s[s.length - 1] ?? 0,
    mean: s.reduce((x, y) => x + y, 0) / Math.max(1, s.length),
  };
}

function sample(values: number[], n = 2000): number[] {
  const s = [...values].sort((a, b) => a - b);
  if (s.length <= n) return s;
  return Array.from({ length: n }, (_, i) => s[Math.floor((i * s.length) / n)]!);
}

/** Runs `count` jobs with at most `concurrency` in flight. */
async function pool(count: number, concurrency: number, job: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      for (let i = next++; i < count; i = next++) await job(i);
    }),
  );
}

/** Send times and deliveries of one run, shared by both targets so they are measured the same way. */
class Deliveries {
  readonly sentAt: Float64Array;
  readonly latencies: number[] = [];
  readonly seen = new Set<number>();
  duplicates = 0;
  lastDelivery = 0;
  private done: () => void = () => {};
  readonly all: Promise<void>;

  constructor(readonly total: number) {
    this.sentAt = new Float64Array(total);
    this.all = new Promise<void>((r) => (this.done = r));
  }

  /** Message `i` arrived: a latency sample the first time, a duplicate after that. */
  record(i: number) {
    if (this.seen.has(i)) {
      this.duplicates++;
      return;
    }
    this.seen.add(i);
    this.lastDelivery = now();
    this.latencies.push(this.lastDelivery - this.sentAt[i]!);
    if (this.seen.size === this.total) this.done();
  }

  /** Waits for every message or the timeout; answers the result fields for `target`. */
  async finish(target: string, start: number, timeoutMs: number) {
    await Promise.race([this.all, new Promise((r) => setTimeout(r, timeoutMs))]);
    return {
      target,
      sent: this.total,
      delivered: this.seen.size,
      duplicates: this.duplicates,
      messagesPerSec: this.seen.size / ((this.lastDelivery - start) / 1000),
      latencyMs: stats(this.latencies),
      latencySample: sample(this.latencies),
    };
  }
}

async function must(res: Response, what: string): Promise<Response> {
  if (!res.ok) throw new Error(`${what} → ${res.status} ${await res.text()}`);
  return res;
}

/** The message body: 4 bytes of index then random bytes, so the receiver can find the send time. */
function payload(i: number, bytes: number): Uint8Array {
  const b = randomBytes(bytes);
  new DataView(b.buffer, b.byteOffset).setUint32(0, i);
  return b;
}

// ---------------- cipherpost ----------------

interface Account {
  accountId: string;
  registrationId: number;
  auth: string;
}

function registrationBody(keys: number, challenge: string, nonce: Uint8Array) {
  const identity = generateEcKeyPair();
  const sign = (b: Uint8Array) => toBase64(xeddsaSign(identity.privateKey, b));
  const spk = generateEcKeyPair().publicKey;
  const lr = generateKemKeyPair().publicKey;
  const password = toBase64(randomBytes(18));
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const kem = Array.from({ length: keys }, (_, i) => {
    const k = generateKemKeyPair().publicKey;
    return { keyId: 100 + i, publicKey: toBase64(k), signature: sign(k) };
  });
  const ch = fromBase64(challenge);
  const proof = sign(registrationProofMessage(ch, identity.publicKey));
  return {
    password,
    registrationId,
    body: {
      identityKey: toBase64(identity.publicKey),
      registrationId,
      password,
      signedPreKey: { keyId: 1, publicKey: toBase64(spk), signature: sign(spk) },
      pqLastResortPreKey: { keyId: 2, publicKey: toBase64(lr), signature: sign(lr) },
      preKeys: Array.from({ length: keys }, (_, i) => ({
        keyId: 100 + i,
        publicKey: toBase64(generateEcKeyPair().publicKey),
      })),
      pqPreKeys: kem,
      pow: { challenge, nonce: toBase64(nonce) },
      proof,
    },
  };
}

async function prepareRegistration(url: string, keys: number) {
  const ch = (await (await must(await fetchRetry(`${url}/v1/challenges`, { method: "POST" }), "challenge")).json()) as {
    challenge: string;
    difficulty: number;
  };
  const nonce = await solvePow(fromBase64(ch.challenge), ch.difficulty);
  return registrationBody(keys, ch.challenge, nonce);
}

async function register(url: string, prepared: Awaited<ReturnType<typeof prepareRegistration>>): Promise<Account> {
  const res = await must(
    await fetchRetry(`${url}/v1/registration`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(prepared.body),
    }),
    "registration",
  );
  const r = (await res.json()) as { accountId: string };
  return {
    accountId: r.accountId,
    registrationId: prepared.registrationId,
    auth: `Basic ${btoa(`${r.accountId}.1:${prepared.password}`)}`,
  };
}

async function connectCipherpost(
  url: string,
  a: Account,
  onMessage: (ws: WebSocket, frame: { type: string; id?: string; envelope?: { content: string } }) => void,
) {
  const t = (await (
    await must(
      await fetchRetry(`${url}/v1/websocket/ticket`, { method: "POST", headers: { authorization: a.auth } }),
      "ticket",
    )
  ).json()) as { ticket: string };
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/websocket?ticket=${encodeURIComponent(t.ticket)}`);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("error", () => reject(new Error("websocket failed")));
    ws.addEventListener("message", (e) => {
      const frame = JSON.parse(String(e.data)) as { type: string };
      if (frame.type === "queue_empty") resolve();
      onMessage(ws, frame);
    });
  });
  return ws;
}

/** A sender's mailbox connection used for send frames: each send resolves when its send_result arrives. */
async function senderSocket(url: string, a: Account) {
  const waiting = new Map<string, (status: number, body: unknown) => void>();
  let next = 0;
  const ws = await connectCipherpost(url, a, (_ws, frame) => {
    const f = frame as { type: string; id?: string; status?: number; body?: unknown };
    if (f.type !== "send_result" || !f.id) return;
    waiting.get(f.id)?.(f.status!, f.body);
    waiting.delete(f.id);
  });
  return {
    ws,
    send(destination: string, message: unknown): Promise<void> {
      const id = String(++next);
      return new Promise<void>((resolve, reject) => {
        waiting.set(id, (status, body) =>
          status === 200 ? resolve() : reject(new Error(`send frame → ${status} ${JSON.stringify(body)}`)),
        );
        ws.send(JSON.stringify({ type: "send", id, destination, message }));
      });
    },
  };
}

async function runCipherpost(o: LoadOptions): Promise<LoadResult> {
  // Registrations: bodies (keys, signatures, proofs of work) are made first, so the timed part is the relay's.
  const prepared = await Promise.all(
    Array.from({ length: o.registrations }, () => prepareRegistration(o.url, o.keysPerRegistration)),
  );
  const t0 = now();
  const registered: Account[] = [];
  await pool(prepared.length, o.concurrency, async (i) => {
    registered.push(await register(o.url, prepared[i]!));
  });
  const registrationsPerSec = prepared.length / ((now() - t0) / 1000);

  const accounts = await Promise.all(
    Array.from({ length: o.recipients + o.senders }, async () => register(o.url, await prepareRegistration(o.url, 0))),
  );
  const recipients = accounts.slice(0, o.recipients);
  const senders = accounts.slice(o.recipients);

  // Deliveries, acked in batches as a client would (one ack frame per burst of frames).
  const d = new Deliveries(o.messages);
  const pendingAcks = new Map<WebSocket, string[]>();
  const flush = (ws: WebSocket) => {
    const ids = pendingAcks.get(ws);
    if (ids?.length) ws.send(JSON.stringify({ type: "ack", ids: ids.splice(0) }));
  };
  const sockets = await Promise.all(
    recipients.map((r) =>
      connectCipherpost(o.url, r, (ws, frame) => {
        if (frame.type !== "message" || !frame.id || !frame.envelope) return;
        const i = new DataView(fromBase64(frame.envelope.content).buffer).getUint32(0);
        const list = pendingAcks.get(ws) ?? [];
        if (list.length === 0) setImmediate(() => flush(ws));
        list.push(frame.id);
        pendingAcks.set(ws, list);
        d.record(i);
      }),
    ),
  );

  const overSocket = o.sendOver === "socket";
  const senderSockets = overSocket ? await Promise.all(senders.map((s) => senderSocket(o.url, s))) : [];

  const start = now();
  const answered: number[] = [];
  await pool(o.messages, o.concurrency, async (i) => {
    const to = recipients[i % recipients.length]!;
    const from = senders[i % senders.length]!;
    const message = {
      messages: [
        {
          type: 2,
          destinationDeviceId: 1,
          destinationRegistrationId: to.registrationId,
          content: toBase64(payload(i, o.messageBytes)),
        },
      ],
      timestamp: Date.now(),
      online: false,
      urgent: true,
    };
    d.sentAt[i] = now();
    if (overSocket) await senderSockets[i % senders.length]!.send(to.accountId, message);
    else
      await must(
        await fetchRetry(`${o.url}/v1/messages/${to.accountId}`, {
          method: "PUT",
          headers: { authorization: from.auth, "content-type": "application/json" },
          body: JSON.stringify(message),
        }),
        "send",
      );
    answered.push(now() - d.sentAt[i]!);
  });
  const delivered = await d.finish(overSocket ? "cipherpost-socket" : "cipherpost", start, o.timeoutMs);
  for (const ws of sockets) ws.close(1000);
  for (const s of senderSockets) s.ws.close(1000);

  // Prekey claims: one target with keys to spare, claimed by the senders in turn.
  let claimsPerSec: number | undefined;
  if (o.claims > 0) {
    const target = registered[0] ?? recipients[0]!;
    const c0 = now();
    await pool(o.claims, o.concurrency, async (i) => {
      const by = senders[i % senders.length]!;
      await (
        await must(
          await fetchRetry(`${o.url}/v2/keys/${target.accountId}/1`, { headers: { authorization: by.auth } }),
          "claim",
        )
      ).arrayBuffer();
    });
    claimsPerSec = o.claims / ((now() - c0) / 1000);
  }

  // An attachment upload through tus, in MAX_PATCH_BYTES-sized PATCHes.
  let uploadMBps: number | undefined;
  if (o.uploadBytes > 0) {
    const bytes = randomBytes(o.uploadBytes);
    const who = senders[0]!;
    const u0 = now();
    const created = await must(
      await fetchRetry(`${o.url}/v1/attachments/tus/`, {
        method: "POST",
        headers: { authorization: who.auth, "tus-resumable": "1.0.0", "upload-length": String(bytes.length) },
      }),
      "tus create",
    );
    const location = new URL(created.headers.get("location")!, o.url).toString();
    const chunk = 16 * 1024 * 1024;
    for (let off = 0; off < bytes.length; off += chunk) {
      const part = bytes.subarray(off, Math.min(bytes.length, off + chunk));
      await must(
        await fetchRetry(location, {
          method: "PATCH",
          headers: {
            authorization: who.auth,
            "tus-resumable": "1.0.0",
            "upload-offset": String(off),
            "content-type": "application/offset+octet-stream",
          },
          body: part,
        }),
        "tus patch",
      );
    }
    uploadMBps = bytes.length / 1e6 / ((now() - u0) / 1000);
  }

  return {
    ...delivered,
    answerMs: stats(answered),
    registrationsPerSec,
    ...(claimsPerSec !== undefined ? { claimsPerSec } : {}),
    ...(uploadMBps !== undefined ? { uploadMBps } : {}),
  };
}

// ---------------- baseline ----------------

async function runBaseline(o: LoadOptions): Promise<LoadResult> {
  const d = new Deliveries(o.messages);
  const names = Array.from({ length: o.recipients }, (_, i) => `r${i}-${Math.random().toString(36).slice(2)}`);
  const sockets = await Promise.all(
    names.map(
      (n) =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(`${o.url.replace(/^http/, "ws")}/ws/${n}`);
          ws.addEventListener("open", () => resolve(ws));
          ws.addEventListener("error", () => reject(new Error("websocket failed")));
          ws.addEventListener("message", (e) => d.record((JSON.parse(String(e.data)) as { i: number }).i));
        }),
    ),
  );
  const start = now();
  await pool(o.messages, o.concurrency, async (i) => {
    const body = JSON.stringify({ i, content: toBase64(payload(i, o.messageBytes)) });
    d.sentAt[i] = now();
    await must(await fetchRetry(`${o.url}/send/${names[i % names.length]}`, { method: "POST", body }), "send");
  });
  const delivered = await d.finish("baseline", start, o.timeoutMs);
  for (const ws of sockets) ws.close(1000);

  let uploadMBps: number | undefined;
  if (o.uploadBytes > 0) {
    const bytes = randomBytes(o.uploadBytes);
    const u0 = now();
    await must(await fetchRetry(`${o.url}/r2/blob-${Date.now()}`, { method: "PUT", body: bytes }), "r2 put");
    uploadMBps = bytes.length / 1e6 / ((now() - u0) / 1000);
  }
  return {
    ...delivered,
    ...(uploadMBps !== undefined ? { uploadMBps } : {}),
  };
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  return o.target === "cipherpost" ? runCipherpost(o) : runBaseline(o);
}

// As a child process: options as JSON in argv[2]; the result as the last line of stdout.
if (import.meta.url === `file://${process.argv[1]}`) {
  const o = JSON.parse(process.argv[2] ?? "{}") as LoadOptions;
  runLoad(o).then(
    (r) => {
      process.stdout.write(`${JSON.stringify({ ...r, networkRetries })}\n`);
      process.exit(0);
    },
    (e) => {
      process.stderr.write(
        `load generator failed: ${(e as Error).stack ?? e}\ncause: ${String((e as { cause?: unknown }).cause ?? "none")}\n`,
      );
      process.exit(1);
    },
  );
}
