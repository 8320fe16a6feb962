// The SDK's parts that need no relay: the error class and its codes, link codes, the attachment format (segment
// boundaries, reordering, truncation, tampering), content parsing, prekey
// rotation, timers on an injected clock (disappearing messages, reconnect backoff), and the CLI's argument grammar.
import { closeSync, mkdtempSync, openAsBlob, openSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseCommandLine, UsageError } from "../../src/cli/args.ts";
import {
  decryptStream,
  encryptBlob,
  encryptedSize,
  GCM_TAG_BYTES,
  importAttachmentKey,
  paddedSize,
  SegmentDigest,
} from "../../src/client/attachment-crypto.ts";
import { downloadAttachment, uploadAttachment } from "../../src/client/attachments.ts";
import { decodeContent, encodeContent, MAX_CALL_CANDIDATES, MAX_SDP_CHARS } from "../../src/client/content.ts";
import { RelayHttp } from "../../src/client/http.ts";
import {
  CIPHERPOST_ERROR_CODES,
  CipherpostError,
  decodeLinkCode,
  encodeLinkCode,
  MemoryStorage,
} from "../../src/client/index.ts";
import { type ConnectionEvent, MailboxConnection, type WebSocketConstructor } from "../../src/client/connection.ts";
import { Emitter } from "../../src/client/events.ts";
import { Expiry } from "../../src/client/expiry.ts";
import { MessageStore, toStored } from "../../src/client/message-store.ts";
import { newBatch } from "../../src/client/storage.ts";
import { DEFAULT_PREKEY_POLICY, generateKeys, rotationPlan } from "../../src/client/prekeys.ts";
import { MESSAGE_PREFIX, PREKEY_PREFIXES } from "../../src/client/storage-keys.ts";
import { generateEcKeyPair } from "../../src/crypto/keys.ts";
import { xeddsaVerify } from "../../src/crypto/xeddsa.ts";
import { fromBase64 } from "../../src/crypto/bytes.ts";
import { ERRORS } from "../../src/protocol/errors.ts";
import { ManualClock } from "../support/manual-clock.ts";

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "cipherpost-units-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("CipherpostError", () => {
  it("carries every relay code with the relay's retry advice, plus the client's own codes", () => {
    for (const code of Object.keys(ERRORS) as (keyof typeof ERRORS)[]) {
      expect(CIPHERPOST_ERROR_CODES).toContain(code);
      expect(new CipherpostError(code, "x").retryable).toBe(ERRORS[code].retry);
    }
    expect(new CipherpostError("UNREACHABLE", "x").retryable).toBe(true);
    expect(new CipherpostError("DIGEST_MISMATCH", "x").retryable).toBe(false);
    const e = new CipherpostError("RATE_LIMITED", "slow down", { status: 429, retryAfterSeconds: 7 });
    expect(CipherpostError.is(e)).toBe(true);
    expect(CipherpostError.is(e, "RATE_LIMITED")).toBe(true);
    expect(CipherpostError.is(e, "NOT_FOUND")).toBe(false);
    expect(CipherpostError.is(new Error("x"))).toBe(false);
    expect(JSON.parse(JSON.stringify(e))).toEqual({ code: "RATE_LIMITED", message: "slow down" });
  });
});

describe("link codes", () => {
  it("round-trip the account id, token and ephemeral key (no secret) in the documented form", () => {
    const code = {
      accountId: crypto.randomUUID(),
      linkToken: crypto.getRandomValues(new Uint8Array(32)),
      existingKey: Uint8Array.of(5, ...crypto.getRandomValues(new Uint8Array(32))),
    };
    const text = encodeLinkCode(code);
    expect(text).toMatch(/^cplink2\.[A-Za-z0-9_-]{107}$/); // 80 bytes of unpadded base64url
    expect(decodeLinkCode(text)).toEqual(code);
    expect(decodeLinkCode(`  ${text}\n`)).toEqual(code);
  });

  it("refuse anything else as INVALID_LINK_CODE", () => {
    const good = encodeLinkCode({
      accountId: crypto.randomUUID(),
      linkToken: new Uint8Array(32),
      existingKey: Uint8Array.of(5, ...new Uint8Array(32)),
    });
    for (const bad of [
      "",
      "cplink2.",
      good.slice(0, -1),
      `${good}AA`,
      good.replace("cplink2.", "cplink1."), // the old kind, which carried the identity key's secret
      good.replace("cplink2.", "cplink3."),
      `${good.slice(0, 20)}+${good.slice(21)}`,
    ]) {
      expect(() => decodeLinkCode(bad), bad).toThrow(expect.objectContaining({ code: "INVALID_LINK_CODE" }));
    }
  });
});

async function encryptToBytes(data: Uint8Array, segmentBytes: number, key: Uint8Array, length = data.length) {
  const k = await importAttachmentKey(key);
  const digest = new SegmentDigest();
  const parts: Uint8Array[] = [];
  for await (const { sealed } of encryptBlob(new Blob([new Uint8Array(data)]), k, segmentBytes, 0, length)) {
    await digest.add(sealed);
    parts.push(sealed);
  }
  return { parts, blob: Buffer.concat(parts), digest: digest.finish() };
}

async function decryptBytes(
  blob: Uint8Array,
  o: { key: Uint8Array; digest: Uint8Array; size: number; paddedSize?: number; segmentBytes: number },
  chunk = 1000,
) {
  const input = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < blob.length; i += chunk) c.enqueue(blob.subarray(i, i + chunk));
      c.close();
    },
  });
  const out: Uint8Array[] = [];
  for await (const c of input.pipeThrough(decryptStream(o)) as unknown as AsyncIterable<Uint8Array>) out.push(c);
  return Buffer.concat(out);
}

describe("the attachment format", () => {
  const seg = 4096;
  it("round-trips every size around segment boundaries, whatever the network's chunking", async () => {
    for (const size of [0, 1, seg - 1, seg, seg + 1, 3 * seg, 3 * seg + 5]) {
      const data = crypto.getRandomValues(new Uint8Array(size));
      const key = crypto.getRandomValues(new Uint8Array(32));
      const { blob, digest } = await encryptToBytes(data, seg, key);
      expect(blob.length).toBe(encryptedSize(size, seg));
      for (const chunk of [1, 777, seg + GCM_TAG_BYTES, 1 << 20]) {
        expect(
          (await decryptBytes(blob, { key, digest, size, segmentBytes: seg }, chunk)).equals(Buffer.from(data)),
          `size ${size} chunk ${chunk}`,
        ).toBe(true);
      }
    }
  });

  it("pads to size buckets about 5% apart, at least 541 bytes, never below the size", () => {
    let last = 0;
    for (let size = 0; size < 50_000_000; size = Math.floor(size * 1.37) + 1) {
      const p = paddedSize(size);
      expect(p, String(size)).toBeGreaterThanOrEqual(Math.max(size, 541));
      expect(p, String(size)).toBeLessThanOrEqual(Math.max(541, Math.ceil(size * 1.05)));
      expect(p).toBeGreaterThanOrEqual(last);
      last = p;
    }
    // Nearby sizes share a bucket, so the relay cannot tell them apart.
    expect(paddedSize(1_000_000)).toBe(paddedSize(1_000_100));
    expect(paddedSize(0)).toBe(541);
    expect(new Set(Array.from({ length: 1000 }, (_, i) => paddedSize(5_000_000 + i * 200))).size).toBeLessThanOrEqual(
      2,
    );
  });

  it("a padded attachment decrypts to the file alone; padding that is not zeros is refused", async () => {
    for (const size of [0, 700, seg - 3, 5 * seg + 17]) {
      const data = crypto.getRandomValues(new Uint8Array(size));
      const key = crypto.getRandomValues(new Uint8Array(32));
      const padded = paddedSize(size);
      const { blob, digest } = await encryptToBytes(data, seg, key, padded);
      expect(blob.length).toBe(encryptedSize(padded, seg));
      for (const chunk of [333, seg + GCM_TAG_BYTES]) {
        expect(
          (await decryptBytes(blob, { key, digest, size, paddedSize: padded, segmentBytes: seg }, chunk)).equals(
            Buffer.from(data),
          ),
          `size ${size}`,
        ).toBe(true);
      }
    }
    // A sender whose "padding" carries data: the bytes past the file are not zeros.
    const data = crypto.getRandomValues(new Uint8Array(2000));
    const key = crypto.getRandomValues(new Uint8Array(32));
    const { blob, digest } = await encryptToBytes(data, seg, key, paddedSize(1500));
    await expect(
      decryptBytes(blob, { key, digest, size: 1500, paddedSize: paddedSize(1500), segmentBytes: seg }),
    ).rejects.toMatchObject({ code: "DIGEST_MISMATCH" });
  });

  it("refuses reordered, truncated, extended or altered blobs with DIGEST_MISMATCH", async () => {
    const data = crypto.getRandomValues(new Uint8Array(3 * seg + 10));
    const key = crypto.getRandomValues(new Uint8Array(32));
    const { parts, blob, digest } = await encryptToBytes(data, seg, key);
    const o = { key, digest, size: data.length, segmentBytes: seg };
    const flipped = Buffer.from(blob);
    flipped[5000]! ^= 1;
    const cases: [string, Uint8Array, typeof o][] = [
      ["reordered", Buffer.concat([parts[1]!, parts[0]!, parts[2]!, parts[3]!]), o],
      ["last segment dropped", Buffer.concat(parts.slice(0, 3)), { ...o, size: 3 * seg }],
      ["truncated", blob.subarray(0, blob.length - 1), o],
      ["extended", Buffer.concat([blob, Buffer.from([0])]), o],
      ["altered", flipped, o],
      ["wrong digest", blob, { ...o, digest: new Uint8Array(32) }],
    ];
    for (const [what, bytes, opts] of cases) {
      await expect(decryptBytes(bytes, opts), what).rejects.toMatchObject({ code: "DIGEST_MISMATCH" });
    }
  });
});

describe("attachments stream both ways", () => {
  it("a 256 MiB file goes up and comes back through the SDK without ever being held in memory", {
    tags: ["slow"],
    timeout: 60_000,
  }, async () => {
    // A fake relay in fetch: PATCH bodies are hashed and dropped, the download is generated again on demand.
    const path = join(tempDir(), "big.bin");
    closeSync(openSync(path, "w"));
    truncateSync(path, 256 * 1024 * 1024); // sparse: zeros, read from disk as the SDK consumes it
    const file = await openAsBlob(path);
    let offset = 0;
    let uploaded = 0;
    const fakeFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const method = init?.method ?? "GET";
      if (method === "POST")
        return new Response(null, { status: 201, headers: { location: `/v1/attachments/tus/${"a".repeat(32)}` } });
      if (method === "PATCH") {
        const body = init!.body as Uint8Array;
        uploaded += body.length;
        offset += body.length;
        return new Response(null, { status: 204, headers: { "upload-offset": String(offset) } });
      }
      void input;
      return new Response(null, { status: 500 });
    };
    const http = new RelayHttp("http://relay.test", fakeFetch);
    const auth = { accountId: crypto.randomUUID(), deviceId: 1, password: "x".repeat(24) };
    const base = process.memoryUsage().rss;
    let peak = 0;
    const sample = () => {
      peak = Math.max(peak, process.memoryUsage().rss - base);
    };
    const pointer = await uploadAttachment(http, auth, file, { onProgress: sample });
    expect(pointer.paddedSize).toBe(paddedSize(file.size));
    expect(uploaded).toBe(encryptedSize(paddedSize(file.size), pointer.segmentBytes));

    const key = await importAttachmentKey(fromBase64(pointer.key));
    const download = new RelayHttp("http://relay.test", async () => {
      const segments = encryptBlob(file, key, pointer.segmentBytes, 0, pointer.paddedSize);
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(c) {
            const next = await segments.next();
            if (next.done) c.close();
            else c.enqueue(next.value.sealed);
          },
        }),
        { status: 200 },
      );
    });
    let received = 0;
    for await (const chunk of (await downloadAttachment(download, pointer)) as unknown as AsyncIterable<Uint8Array>) {
      received += chunk.length;
      if (received % (16 * 1024 * 1024) < chunk.length) sample();
    }
    expect(received).toBe(file.size);
    console.log(
      JSON.stringify({
        event: "sdk_attachment_memory",
        fileMiB: 256,
        peakRssGrowthMiB: Math.round(peak / 1024 / 1024),
      }),
    );
    // One 20 MiB PATCH buffer, a 4 MiB read window and garbage not yet collected; the file itself is 256 MiB.
    expect(peak).toBeLessThan(160 * 1024 * 1024);
  });
});

describe("content", () => {
  it("parses what the SDK encodes and refuses anything else", () => {
    const m = { type: "message" as const, id: crypto.randomUUID(), timestamp: 1, text: "hi", expireSeconds: 5 };
    expect(decodeContent(encodeContent(m))).toEqual(m);
    for (const bad of [
      '{"type":"message"}',
      '{"type":"message","id":"x","timestamp":1}',
      "not json",
      `{"type":"unknown","id":"${crypto.randomUUID()}","timestamp":1}`,
    ]) {
      expect(decodeContent(new TextEncoder().encode(bad))).toBeUndefined();
    }
    expect(decodeContent(new Uint8Array([0xff, 0xfe]))).toBeUndefined();
  });

  it("bounds call signals: an SDP past 32 KiB, more than 64 candidates or an unknown signal is refused", () => {
    const call = { type: "call" as const, id: crypto.randomUUID(), timestamp: 1, callId: crypto.randomUUID() };
    const offer = { ...call, signal: "offer" as const, video: true, sdp: "v=0" };
    expect(decodeContent(encodeContent(offer))).toEqual(offer);
    const candidate = { candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ relay", sdpMid: "0", sdpMLineIndex: 0 };
    const ice = { ...call, signal: "ice" as const, candidates: Array(MAX_CALL_CANDIDATES).fill(candidate) };
    expect(decodeContent(encodeContent(ice))).toEqual(ice);
    const bytes = (x: unknown) => new TextEncoder().encode(JSON.stringify(x));
    expect(decodeContent(bytes({ ...offer, sdp: "x".repeat(MAX_SDP_CHARS + 1) }))).toBeUndefined();
    expect(decodeContent(bytes({ ...ice, candidates: [...ice.candidates, candidate] }))).toBeUndefined();
    expect(decodeContent(bytes({ ...call, signal: "transfer" }))).toBeUndefined();
    expect(decodeContent(bytes({ ...call, signal: "answer", toDevice: 0 }))).toBeUndefined();
  });
});

describe("prekeys", () => {
  it("are signed by the identity key over their full serialisation, with ids that count on", () => {
    const identity = generateEcKeyPair();
    const keys = generateKeys(
      identity.privateKey,
      0xffff_fffe,
      { signed: true, lastResort: true, ec: 2, kem: 1 },
      1000,
    );
    expect([
      keys.signedPreKey!.keyId,
      keys.pqLastResortPreKey!.keyId,
      ...keys.preKeys.map((k) => k.keyId),
      keys.pqPreKeys[0]!.keyId,
    ]).toEqual([0xffff_fffe, 0xffff_ffff, 1, 2, 3]);
    for (const k of [keys.signedPreKey!, keys.pqLastResortPreKey!, keys.pqPreKeys[0]!]) {
      expect(xeddsaVerify(identity.publicKey, fromBase64(k.publicKey), fromBase64(k.signature))).toBe(true);
    }
    expect(Object.keys(keys.batch.set)).toHaveLength(5);
  });

  it("rotate when the newest signed key is older than the period, and forget replaced ones after the grace period", async () => {
    const storage = new MemoryStorage();
    const policy = { ...DEFAULT_PREKEY_POLICY, rotationMs: 100, graceMs: 1000 };
    expect(await rotationPlan(storage, policy, 0)).toEqual({ signed: true, lastResort: true, expired: [] });
    const identity = generateEcKeyPair();
    await storage.write(generateKeys(identity.privateKey, 1, { signed: true, lastResort: true }, 0).batch);
    expect(await rotationPlan(storage, policy, 50)).toEqual({ signed: false, lastResort: false, expired: [] });
    await storage.write(generateKeys(identity.privateKey, 10, { signed: true }, 200).batch);
    expect((await rotationPlan(storage, policy, 300)).expired).toEqual([]);
    const later = await rotationPlan(storage, policy, 1201);
    expect(later.expired).toEqual([`${PREKEY_PREFIXES.signed}${"1".padStart(10, "0")}`]);
    expect(later.signed).toBe(true);
  });
});

describe("the client's clock", () => {
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  it("a disappearing message goes at its deadline on the injected clock, not before", async () => {
    const clock = new ManualClock(1_000_000);
    const storage = new MemoryStorage();
    const store = await MessageStore.load(storage);
    const events = new Emitter();
    const expired: string[][] = [];
    events.on("expired", (gone) => void expired.push(gone.map((m) => m.id)));
    const expiry = new Expiry(store, clock, events);
    const content = {
      type: "message",
      id: crypto.randomUUID(),
      timestamp: clock.now(),
      text: "soon gone",
      expireSeconds: 5,
    } as const;
    const from = crypto.randomUUID();
    const batch = newBatch();
    const commit = store.stageAdd(
      toStored(content, { direction: "incoming", from, fromDevice: 1, now: clock.now() }),
      batch,
    );
    await storage.write(batch);
    commit();
    expiry.schedule();
    clock.advance(4_999);
    await settle();
    expect(store.list({}, clock.now()).map((m) => m.id)).toEqual([content.id]);
    expect(expired).toEqual([]);
    clock.advance(1);
    await expect.poll(() => expired).toEqual([[content.id]]);
    expect(await storage.list(MESSAGE_PREFIX)).toEqual([]);
    expect(clock.pending).toBe(0);
  });

  it("the connection's reconnect backoff waits on the injected clock", async () => {
    const clock = new ManualClock();
    const down = {
      server: "http://127.0.0.1:9",
      json: async () => {
        throw new CipherpostError("UNREACHABLE", "the relay is down");
      },
    } as unknown as RelayHttp;
    const seen: ConnectionEvent[] = [];
    const connection = new MailboxConnection(
      down,
      { accountId: crypto.randomUUID(), deviceId: 1, password: "unused" },
      class {} as unknown as WebSocketConstructor,
      {
        frame: () => undefined,
        event: (e) => void seen.push(e),
        fatal: () => undefined,
        protocolError: () => undefined,
      },
      { initialDelayMs: 60_000, maxDelayMs: 60_000 },
      clock,
    );
    void connection.start();
    await expect.poll(() => seen.length).toBe(2);
    expect(seen[0]).toEqual({ state: "connecting", attempt: 0 });
    const closed = seen[1] as Extract<ConnectionEvent, { state: "closed" }>;
    expect(closed.state).toBe("closed");
    const delay = closed.reconnectInMs!;
    // Full jitter: anywhere in [0, initialDelayMs); 0 would reconnect at once (1 chance in 60 000).
    expect(delay).toBeGreaterThan(0);
    expect(delay).toBeLessThan(60_000);
    clock.advance(delay - 1);
    await settle();
    expect(seen).toHaveLength(2);
    clock.advance(1);
    await expect.poll(() => seen[2]).toEqual({ state: "connecting", attempt: 1 });
    await connection.stop();
  });
});

describe("the CLI's arguments", () => {
  it("parse every command of the issue", () => {
    const id = crypto.randomUUID();
    expect(parseCommandLine(["--profile", "p", "register", "--server", "http://x"])).toEqual({
      name: "register",
      profile: "p",
      server: "http://x",
    });
    expect(parseCommandLine(["--profile", "p", "send", id, "hi there", "--expire-seconds", "30"])).toEqual({
      name: "send",
      profile: "p",
      account: id,
      text: "hi there",
      expireSeconds: 30,
    });
    expect(parseCommandLine(["receive", "--profile", "p"])).toEqual({ name: "receive", profile: "p", waitMs: 0 });
    expect(parseCommandLine(["--profile", "p", "receive", "--wait-ms", "250"])).toEqual({
      name: "receive",
      profile: "p",
      waitMs: 250,
    });
    expect(parseCommandLine(["--profile", "p", "link", "--server", "http://x", "--code", "c"])).toEqual({
      name: "link",
      profile: "p",
      server: "http://x",
      code: "c",
    });
    expect(parseCommandLine(["--help"])).toEqual({ name: "help" });
  });

  it("refuse wrong command lines", () => {
    for (const argv of [
      [],
      ["--profile", "p"],
      ["--profile", "p", "send", "a"],
      ["--profile", "p", "link", "--server", "x"],
      ["--profile", "p", "devices", "extra"],
      ["--profile", "p", "receive", "--wait-ms", "-1"],
    ]) {
      expect(() => parseCommandLine(argv), argv.join(" ")).toThrow(UsageError);
    }
  });
});
