// Resumed uploads are bound to the file's content (src/client/attachments.ts): a resume goes on under the saved
// key only for the same bytes; an edited file of the same size, or a state saved before the check, starts over
// under a fresh key. The relay is a fake tus server in `fetch` that keeps every upload's bytes.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { uploadAttachment } from "../../src/client/attachments.ts";
import { RelayHttp } from "../../src/client/http.ts";
import { CipherpostError, type UploadState } from "../../src/client/index.ts";
import { fileBlob } from "../../src/client/node.ts";
import { randomBytes } from "../../src/crypto/bytes.ts";

const KiB = 1024;
const dir = mkdtempSync(join(tmpdir(), "cipherpost-resume-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A tus relay in memory: POST creates, PATCH appends at the offset, HEAD answers it. */
function fakeTus() {
  const uploads = new Map<string, { bytes: Uint8Array[]; offset: number }>();
  const patchedAfterCreate: string[] = [];
  const fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    const method = init?.method ?? "GET";
    if (method === "POST") {
      const id = crypto.randomUUID().replaceAll("-", "");
      uploads.set(`http://relay.test/v1/attachments/tus/${id}`, { bytes: [], offset: 0 });
      return new Response(null, { status: 201, headers: { location: `/v1/attachments/tus/${id}` } });
    }
    const upload = uploads.get(url);
    if (!upload) return new Response(null, { status: 404 });
    if (method === "HEAD")
      return new Response(null, { status: 200, headers: { "upload-offset": String(upload.offset) } });
    if (method === "PATCH") {
      const body = init!.body as Uint8Array;
      upload.bytes.push(body.slice());
      upload.offset += body.length;
      patchedAfterCreate.push(url);
      return new Response(null, { status: 204, headers: { "upload-offset": String(upload.offset) } });
    }
    return new Response(null, { status: 500 });
  };
  return { http: new RelayHttp("http://relay.test", fetch), uploads, patched: patchedAfterCreate };
}

const auth = { accountId: crypto.randomUUID(), deviceId: 1, password: "x".repeat(24) };

/** Starts an upload of `path` and stops it after its first chunk: answers the saved state. */
async function interruptedUpload(http: RelayHttp, path: string): Promise<UploadState> {
  const stop = new AbortController();
  const err = await uploadAttachment(http, auth, await fileBlob(path), {
    chunkBytes: 64 * KiB,
    signal: stop.signal,
    onProgress: (n) => n > 0 && stop.abort(),
  }).catch((e: unknown) => e);
  expect(CipherpostError.is(err, "ABORTED")).toBe(true);
  const state = (err as CipherpostError).extras.upload as UploadState;
  expect(state.contentDigest).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  return state;
}

describe("a resumed upload is bound to the file's content", () => {
  it("the same file resumes under its key from the relay's offset", async () => {
    const { http, uploads } = fakeTus();
    const path = join(dir, "same.bin");
    writeFileSync(path, randomBytes(300 * KiB));
    const state = await interruptedUpload(http, path);
    let createdAgain = false;
    const pointer = await uploadAttachment(http, auth, await fileBlob(path), {
      chunkBytes: 64 * KiB,
      resume: state,
      onCreated: () => {
        createdAgain = true;
      },
    });
    expect(createdAgain).toBe(false);
    expect(pointer.key).toBe(state.key);
    expect(uploads.size).toBe(1);
  });

  it("an edited file of the same size is not encrypted again under the same key: the upload starts over", async () => {
    const { http, uploads, patched } = fakeTus();
    const path = join(dir, "edited.bin");
    const original = randomBytes(300 * KiB);
    writeFileSync(path, original);
    const state = await interruptedUpload(http, path);
    const patchesBefore = patched.length;
    const edited = original.slice();
    edited[200 * KiB]! ^= 0xff; // after the relay's offset: the bytes a resume would encrypt under the old key
    writeFileSync(path, edited);

    let fresh: UploadState | undefined;
    const pointer = await uploadAttachment(http, auth, await fileBlob(path), {
      chunkBytes: 64 * KiB,
      resume: state,
      onCreated: (s) => {
        fresh = s;
      },
    });
    expect(fresh).toBeDefined();
    expect(fresh!.key).not.toBe(state.key);
    expect(fresh!.url).not.toBe(state.url);
    expect(pointer.key).toBe(fresh!.key);
    expect(pointer.id).toBe(fresh!.url.split("/").at(-1));
    // Nothing more went to the upload made under the old key.
    expect(patched.slice(patchesBefore).every((url) => url === fresh!.url)).toBe(true);
    expect(uploads.size).toBe(2);
  });

  it("a state saved before the content check (no digest) starts over too", async () => {
    const { http } = fakeTus();
    const path = join(dir, "old-state.bin");
    writeFileSync(path, randomBytes(600 * KiB));
    const { contentDigest: _, ...old } = await interruptedUpload(http, path);
    const pointer = await uploadAttachment(http, auth, await fileBlob(path), { chunkBytes: 64 * KiB, resume: old });
    expect(pointer.key).not.toBe(old.key);
  });
});
