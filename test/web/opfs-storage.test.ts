// The web app's encrypted store (src/web/storage/opfs-storage.ts) on its own, in real Chromium: batches land whole
// and survive reopening; a replaced or deleted entry's file is removed before the write resolves; a profile of the
// earlier IndexedDB-record store is taken over once and its records cleared; a wrong key or a swapped file is
// STORAGE_UNREADABLE; leftovers of an interrupted write are swept.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import sparticuz from "@sparticuz/chromium";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";
import { type PageStores, storeBundle } from "./browser.ts";

let server: Server;
let origin: string;
let browser: Browser;
let bundle: string;

beforeAll(async () => {
  bundle = await storeBundle();
  // A blank page on a loopback origin (a secure context, so OPFS and WebCrypto are there).
  server = createServer((_, res) => res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html>"));
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: await sparticuz.executablePath(),
    args: ["--no-sandbox", "--no-zygote"],
    headless: true,
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((ok) => server?.close(ok));
});

async function blankPage(): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  await page.goto(origin);
  await page.evaluate(bundle);
  return page;
}

/** The OPFS folder's file names. */
const fileNames = (page: Page, name: string) =>
  page.evaluate(async (n) => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(n);
    const out: string[] = [];
    for await (const k of dir.keys()) out.push(k);
    return out.sort();
  }, name);

declare const stores: PageStores;

test("batches land whole, survive reopening, and a replaced or deleted entry's file is gone once the write resolves", async () => {
  const page = await blankPage();
  const result = await page.evaluate(async () => {
    const { EncryptedOpfsStorage } = stores;
    const s = await EncryptedOpfsStorage.open("t1");
    await s.write({ set: { "s/alice": "session 1", "m/1": "hello", "m/2": "world", device: "d" } });
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("t1");
    const names = async () => {
      const out: string[] = [];
      for await (const k of dir.keys()) out.push(k);
      return out.sort();
    };
    const first = await names();
    await s.write({ set: { "s/alice": "session 2" }, delete: ["m/1"] });
    const second = await names();
    await s.close();
    const again = await EncryptedOpfsStorage.open("t1");
    const entries = await again.list("");
    await again.close();
    return { first, second, entries };
  });
  // One file per shard plus the manifest; the second write replaced the files of the shards it changed.
  expect(result.first).toContain("manifest");
  const shardFiles = (names: string[]) => names.filter((n) => n !== "manifest");
  expect(shardFiles(result.first)).toHaveLength(4);
  const replaced = shardFiles(result.first).filter((n) => !result.second.includes(n));
  expect(replaced.length).toBeGreaterThanOrEqual(2); // the session's shard and the deleted message's
  expect(shardFiles(result.second).length).toBe(shardFiles(result.first).length - 1); // m/1's shard is now empty
  expect(result.entries).toEqual([
    ["device", "d"],
    ["m/2", "world"],
    ["s/alice", "session 2"],
  ]);
});

test("a profile of the IndexedDB-record store is taken over once, and its records are cleared", async () => {
  const page = await blankPage();
  const result = await page.evaluate(async () => {
    const { EncryptedIdbStorage, EncryptedOpfsStorage } = stores;
    const old = await EncryptedIdbStorage.open("t2");
    await old.write({ set: { device: "the device", "m/1": "an old message", "s/bob": "a session" } });
    await old.close();
    const s = await EncryptedOpfsStorage.open("t2");
    const taken = await s.list("");
    await s.write({ set: { "m/2": "a new message" } });
    await s.close();
    const left = await new Promise<number>((ok) => {
      const r = indexedDB.open("t2");
      r.onsuccess = () => {
        const c = r.result.transaction("data").objectStore("data").count();
        c.onsuccess = () => {
          r.result.close();
          ok(c.result);
        };
      };
    });
    // Opened again: the records are not taken over twice (they are gone), the file store is the truth.
    const again = await EncryptedOpfsStorage.open("t2");
    const now = await again.list("");
    await again.close();
    return { taken, left, now };
  });
  expect(result.taken).toEqual([
    ["device", "the device"],
    ["m/1", "an old message"],
    ["s/bob", "a session"],
  ]);
  expect(result.left).toBe(0);
  expect(result.now).toEqual([
    ["device", "the device"],
    ["m/1", "an old message"],
    ["m/2", "a new message"],
    ["s/bob", "a session"],
  ]);
});

test("a context that cannot write OPFS files uses IndexedDB records, but never beside an existing file store", async () => {
  const page = await blankPage();
  const result = await page.evaluate(async () => {
    const { openWebStorage } = stores;
    // What an older browser (no createWritable) would see.
    const proto = FileSystemFileHandle.prototype as unknown as Record<string, unknown>;
    const createWritable = proto.createWritable;
    delete proto.createWritable;
    const code = (e: unknown) => (e as { code?: string }).code;
    try {
      const fresh = await openWebStorage("t4-fresh");
      await fresh.write({ set: { device: "d" } });
      const freshEntries = await fresh.list("");
      await fresh.close();
      const idbRecords = await new Promise<number>((ok) => {
        const r = indexedDB.open("t4-fresh");
        r.onsuccess = () => {
          const c = r.result.transaction("data").objectStore("data").count();
          c.onsuccess = () => {
            r.result.close();
            ok(c.result);
          };
        };
      });
      proto.createWritable = createWritable;
      const files = await openWebStorage("t4-files");
      await files.write({ set: { device: "d" } });
      await files.close();
      delete proto.createWritable;
      const beside = await openWebStorage("t4-files").then(() => "opened", code);
      return { freshEntries, idbRecords, beside };
    } finally {
      proto.createWritable = createWritable;
    }
  });
  expect(result).toEqual({ freshEntries: [["device", "d"]], idbRecords: 1, beside: "STORAGE_UNREADABLE" });
});

test("a file under another name, or a store opened under other keys, is STORAGE_UNREADABLE; leftovers are swept", async () => {
  const page = await blankPage();
  const codes = await page.evaluate(async () => {
    const { EncryptedOpfsStorage } = stores;
    const s = await EncryptedOpfsStorage.open("t3");
    await s.write({ set: { "a/1": "x", "b/1": "y" } });
    await s.close();
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("t3");
    const names: string[] = [];
    for await (const k of dir.keys()) names.push(k);
    const [a, b] = names.filter((n) => n !== "manifest").sort();
    const read = async (n: string) => (await (await dir.getFileHandle(n)).getFile()).arrayBuffer();
    const put = async (n: string, bytes: ArrayBuffer) => {
      const w = await (await dir.getFileHandle(n, { create: true })).createWritable();
      await w.write(bytes);
      await w.close();
    };
    const code = (e: unknown) => (e as { code?: string }).code;
    const out: (string | undefined)[] = [];
    // Swap the two shard files' contents: each is bound to its own name.
    const [bytesA, bytesB] = [await read(a!), await read(b!)];
    await put(a!, bytesB);
    await put(b!, bytesA);
    out.push(await EncryptedOpfsStorage.open("t3").then(() => "opened", code));
    await put(a!, bytesA);
    await put(b!, bytesB);
    // A write that never committed: a newer shard file no manifest names. Swept at the next open.
    await put("a-0.999", bytesA);
    const ok = await EncryptedOpfsStorage.open("t3");
    out.push((await ok.get("a/1")) === "x" ? "read" : "wrong");
    await ok.close();
    const after: string[] = [];
    for await (const k of dir.keys()) after.push(k);
    out.push(after.includes("a-0.999") ? "leftover kept" : "swept");
    // Other keys: a new IndexedDB database (new keys) in front of the same files.
    await new Promise((done) => {
      const r = indexedDB.deleteDatabase("t3");
      r.onsuccess = done;
    });
    out.push(await EncryptedOpfsStorage.open("t3").then(() => "opened", code));
    return out;
  });
  expect(codes).toEqual(["STORAGE_UNREADABLE", "read", "swept", "STORAGE_UNREADABLE"]);
  expect(await fileNames(page, "t3")).toContain("manifest");
});
