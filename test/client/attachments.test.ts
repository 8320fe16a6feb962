// Attachments through the SDK and the locally started relay: a 20 MiB file read from disk as a streaming Blob,
// encrypted while uploading with tus, interrupted mid-upload, resumed from the relay's offset, sent, received,
// decrypted as a stream to disk and compared byte for byte; and an altered pointer refused with nothing kept.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CipherpostError,
  encryptedSize,
  paddedSize,
  type AttachmentPointer,
  type CipherpostClient,
  type UploadState,
} from "../../src/client/index.ts";
import { fileBlob, writeStreamToFile } from "../../src/client/node.ts";
import { startRelay, type Relay } from "../support/relay.ts";
import { nextEvent, register } from "./helpers.ts";

const MiB = 1024 * 1024;
let relay: Relay;
let dir: string;
let a: CipherpostClient;
let b: CipherpostClient;

beforeAll(async () => {
  relay = await startRelay();
  dir = mkdtempSync(join(tmpdir(), "cipherpost-attachments-"));
  [a, b] = await Promise.all([register(relay.url), register(relay.url)]);
  await b.connect();
}, 120_000);

afterAll(async () => {
  await Promise.allSettled([a?.close(), b?.close()]);
  await relay?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("a 20 MiB file", () => {
  it("is sent, interrupted mid-upload, resumed, received and byte-identical", async () => {
    const original = randomBytes(20 * MiB + 12_345); // not a multiple of any chunk or segment size
    const source = join(dir, "holiday.bin");
    writeFileSync(source, original);
    const file = await fileBlob(source);
    // The relay holds the padded ciphertext: the file's size bucket, not its size.
    const total = encryptedSize(paddedSize(file.size), 256 * 1024);
    expect(paddedSize(file.size)).toBeGreaterThan(file.size);

    // First attempt: cancelled once 8 MiB are on the relay.
    const stop = new AbortController();
    const first: number[] = [];
    let created: UploadState | undefined;
    const interrupted = await a
      .uploadAttachment(file, {
        chunkBytes: 4 * MiB,
        signal: stop.signal,
        onCreated: (s) => {
          created = s;
        },
        onProgress: (n) => {
          first.push(n);
          if (n >= 8 * MiB) stop.abort();
        },
      })
      .catch((e: unknown) => e);
    expect(CipherpostError.is(interrupted, "ABORTED")).toBe(true);
    const state = (interrupted as CipherpostError).extras.upload as UploadState;
    expect(state).toEqual(created);
    expect(Math.max(...first)).toBeGreaterThanOrEqual(8 * MiB);
    expect(Math.max(...first)).toBeLessThan(total);

    // Second attempt: resumes from the relay's offset instead of starting again.
    const second: number[] = [];
    const pointer = await a.uploadAttachment(file, {
      chunkBytes: 4 * MiB,
      resume: state,
      onProgress: (n) => void second.push(n),
    });
    expect(second[0]).toBeGreaterThanOrEqual(8 * MiB);
    expect(second.at(-1)).toBe(total);
    expect(pointer).toMatchObject({ size: original.length, name: "holiday.bin" });

    const arrived = nextEvent(b, "message");
    const sent = await a.send(b.accountId, { text: "the photos", attachments: [pointer] });
    const m = await arrived;
    expect(m).toMatchObject({ id: sent.id, text: "the photos" });
    const received = m.attachments![0]!;

    const target = join(dir, "received.bin");
    const progress: number[] = [];
    const written = await writeStreamToFile(
      await b.downloadAttachment(received, { onProgress: (n) => void progress.push(n) }),
      target,
    );
    expect(written.size).toBe(original.length);
    expect(written.sha256).toBe(createHash("sha256").update(original).digest("hex"));
    expect(readFileSync(target).equals(original)).toBe(true);
    expect(progress.at(-1)).toBe(total);
  }, 120_000);

  it("an altered pointer (wrong digest, or a key for other bytes) is refused and nothing is kept", async () => {
    const bytes = randomBytes(700_000);
    const pointer = await a.uploadAttachment(new Blob([bytes]));
    const flip = (b64: string) => {
      const raw = Buffer.from(b64, "base64");
      raw[0]! ^= 1;
      return raw.toString("base64");
    };
    for (const bad of [
      { ...pointer, digest: flip(pointer.digest) },
      { ...pointer, key: flip(pointer.key) },
      { ...pointer, size: pointer.size - 1 },
    ] satisfies AttachmentPointer[]) {
      const target = join(dir, `bad-${crypto.randomUUID()}.bin`);
      const err = await writeStreamToFile(await b.downloadAttachment(bad), target).catch((e: unknown) => e);
      expect(CipherpostError.is(err, "DIGEST_MISMATCH")).toBe(true);
      expect(existsSync(target)).toBe(false);
    }
    expect(readdirSync(dir).filter((f) => f.endsWith(".partial"))).toEqual([]);
    // The unaltered pointer still works.
    const good = join(dir, "good.bin");
    await writeStreamToFile(await b.downloadAttachment(pointer), good);
    expect(readFileSync(good).equals(bytes)).toBe(true);
  }, 60_000);

  it("an empty file round-trips, and an unknown attachment is NOT_FOUND", async () => {
    const pointer = await a.uploadAttachment(new Blob([]), { name: "empty.txt" });
    const chunks: Uint8Array[] = [];
    for await (const c of (await b.downloadAttachment(pointer)) as unknown as AsyncIterable<Uint8Array>) chunks.push(c);
    expect(Buffer.concat(chunks).length).toBe(0);
    const missing = await b.downloadAttachment({ ...pointer, id: "0".repeat(32) }).catch((e: unknown) => e);
    expect(CipherpostError.is(missing, "NOT_FOUND")).toBe(true);
  });
});
