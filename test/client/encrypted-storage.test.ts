// The encrypted file storage (src/client/encrypted-storage.ts) without a relay: batches survive reopening, files and
// key have owner-only modes, a batch rewrites only its shards and deletes the files they replace before it resolves,
// no file holds plaintext and no file (even decrypted) holds a replaced value, leftovers of an interrupted write are
// swept, a wrong key or a damaged or swapped file is STORAGE_UNREADABLE, and a plaintext journal is taken over.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CipherpostError } from "../../src/client/index.ts";
import { EncryptedFileStorage, openProfileStorage, STORAGE_KEY_BYTES, storageKeyFile } from "../../src/client/node.ts";
import { randomBytes } from "../../src/crypto/bytes.ts";
import { decryptedFiles, rawFiles } from "./storage-scan.ts";

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "cipherpost-store-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const open = (dir: string, key: Uint8Array) => EncryptedFileStorage.open(dir, { key });

describe("the encrypted file storage", () => {
  it("keeps batches across reopening, in 0600 files of a 0700 directory; the key file is 0600 and made once", async () => {
    const profile = tempDir();
    const s = await openProfileStorage(profile);
    await s.write({ set: { a: "1", b: "2", "m/2": "x", "m/1": "y" } });
    await s.write({ set: { a: "3" }, delete: ["b"] });
    await s.close();
    const keyPath = join(profile, "storage.key");
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyPath).length).toBe(STORAGE_KEY_BYTES);
    expect(statSync(join(profile, "state")).mode & 0o777).toBe(0o700);
    for (const f of readdirSync(join(profile, "state")))
      expect(statSync(join(profile, "state", f)).mode & 0o777).toBe(0o600);
    const key = readFileSync(keyPath);
    const again = await openProfileStorage(profile);
    expect(readFileSync(keyPath).equals(key)).toBe(true);
    expect(await again.get("a")).toBe("3");
    expect(await again.get("b")).toBeUndefined();
    expect(await again.list("m/")).toEqual([
      ["m/1", "y"],
      ["m/2", "x"],
    ]);
    await again.close();
  });

  it("a batch rewrites only the shards its keys fall in, and the files it replaces are gone when it resolves", async () => {
    const dir = tempDir();
    const key = randomBytes(32);
    const s = await open(dir, key);
    const set: Record<string, string> = {};
    for (let i = 0; i < 200; i++) set[`${["s", "m", "pk", "seen"][i % 4]}/${i}`] = `value ${i}`;
    await s.write({ set });
    const before = new Set(readdirSync(dir));
    await s.write({ set: { "s/7": "changed" } });
    const after = new Set(readdirSync(dir));
    const gone = [...before].filter((f) => !after.has(f));
    const made = [...after].filter((f) => !before.has(f));
    expect(gone).toHaveLength(1); // the one shard of "s/7" (the manifest was renamed over, so it keeps its name)
    expect(made).toHaveLength(1);
    expect(made[0]!.split(".")[0]).toBe(gone[0]!.split(".")[0]);
    // Nothing changes, nothing is written.
    await s.write({ set: { "s/7": "changed" }, delete: ["no/such/key"] });
    expect(new Set(readdirSync(dir))).toEqual(after);
    await s.close();
  });

  it("no file holds plaintext, and a replaced or deleted value is in no file even decrypted", async () => {
    const dir = tempDir();
    const key = randomBytes(32);
    const s = await open(dir, key);
    await s.write({ set: { "s/alice/001": "OLD-CHAIN-KEY", "m/1": "a secret message", other: "kept" } });
    expect(rawFiles(dir).some((f) => f.includes("OLD-CHAIN-KEY") || f.includes("a secret message"))).toBe(false);
    expect(decryptedFiles(dir, key).join()).toContain("OLD-CHAIN-KEY");
    await s.write({ set: { "s/alice/001": "NEW-CHAIN-KEY" }, delete: ["m/1"] });
    const plain = decryptedFiles(dir, key).join();
    expect(plain).not.toContain("OLD-CHAIN-KEY");
    expect(plain).not.toContain("a secret message");
    expect(plain).toContain("NEW-CHAIN-KEY");
    await s.close();
  });

  it("an interrupted write leaves the last committed state; its leftover files are swept on open", async () => {
    const dir = tempDir();
    const key = randomBytes(32);
    const s = await open(dir, key);
    await s.write({ set: { a: "committed" } });
    await s.close();
    // A crash between writing a shard and renaming the manifest: a newer shard file and a manifest.tmp.
    const shard = readdirSync(dir).find((f) => f !== "manifest")!;
    copyFileSync(join(dir, shard), join(dir, `${shard.split(".")[0]}.999`));
    writeFileSync(join(dir, "manifest.tmp"), "half");
    const again = await open(dir, key);
    expect(await again.get("a")).toBe("committed");
    expect(readdirSync(dir).sort()).toEqual(["manifest", shard].sort());
    await again.close();
  });

  it("a wrong key, a damaged file or a file moved under another name is STORAGE_UNREADABLE", async () => {
    const dir = tempDir();
    const key = randomBytes(32);
    const s = await open(dir, key);
    await s.write({ set: { "a/1": "x", "b/1": "y" } });
    await s.close();
    const unreadable = async (k: Uint8Array) => {
      const e = await open(dir, k).catch((x: unknown) => x);
      expect(CipherpostError.is(e, "STORAGE_UNREADABLE")).toBe(true);
    };
    await unreadable(randomBytes(32));
    const [a, b] = readdirSync(dir).filter((f) => f !== "manifest");
    const aBytes = readFileSync(join(dir, a!));
    writeFileSync(join(dir, a!), readFileSync(join(dir, b!))); // b's contents under a's name
    await unreadable(key);
    const damaged = Buffer.from(aBytes);
    damaged[damaged.length - 1]! ^= 1;
    writeFileSync(join(dir, a!), damaged);
    await unreadable(key);
    const e = await open(dir, new Uint8Array(16)).catch((x: unknown) => x);
    expect(CipherpostError.is(e, "INVALID_ARGUMENT")).toBe(true);
  });

  it("takes over a plaintext journal of an earlier version (a torn last batch dropped) and scrubs it", async () => {
    const profile = tempDir();
    const journal = join(profile, "state.log");
    writeFileSync(
      journal,
      `${JSON.stringify({ set: { device: "{}", "m/1": "old plaintext" } })}\n${JSON.stringify({ delete: ["m/1"], set: { "s/x": "session" } })}\n{"set":{"s/x":"torn`,
    );
    writeFileSync(`${journal}.tmp`, "a compaction that never finished");
    const s = await openProfileStorage(profile);
    expect(await s.get("device")).toBe("{}");
    expect(await s.get("s/x")).toBe("session");
    expect(await s.get("m/1")).toBeUndefined();
    expect(readdirSync(profile).sort()).toEqual(["state", "storage.key"]);
    const key = storageKeyFile(join(profile, "storage.key"));
    expect(decryptedFiles(join(profile, "state"), key).join()).not.toContain("old plaintext");
    await s.close();
  });

  it("a journal beside an existing store is scrubbed only if it is the one the store was made from", async () => {
    const profile = tempDir();
    const journal = join(profile, "state.log");
    const text = `${JSON.stringify({ set: { device: "{}" } })}\n`;
    writeFileSync(journal, text);
    await (await openProfileStorage(profile)).close();
    // The migration committed but the process died before the scrub: the same journal is found again.
    writeFileSync(journal, text);
    await (await openProfileStorage(profile)).close();
    expect(readdirSync(profile)).not.toContain("state.log");
    // Another journal (say, an older version run on the profile since) is not the store's to destroy.
    writeFileSync(journal, `${JSON.stringify({ set: { device: "other" } })}\n`);
    const s = await openProfileStorage(profile);
    expect(readdirSync(profile)).toContain("state.log");
    expect(await s.get("device")).toBe("{}");
    await s.close();
  });
});
