// The `cipherpost` command driven as a user would: `node bin/cipherpost.mjs …` in a temporary directory against
// the relay started locally, checking stdout's JSON, stderr and exit codes of every command in the issue.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decryptedFiles, rawFiles } from "../client/storage-scan.ts";
import { startRelay, type Relay } from "../support/relay.ts";
import { BIN, type CliRun, startCli } from "./run.ts";

let relay: Relay;
let cwd: string;

beforeAll(async () => {
  relay = await startRelay();
  cwd = mkdtempSync(join(tmpdir(), "cipherpost-cli-"));
}, 120_000);

afterAll(async () => {
  await relay?.stop();
  rmSync(cwd, { recursive: true, force: true });
});

type Run = CliRun;

/** Starts a command; `done` answers once it has exited. */
function start(args: string[], env: Record<string, string> = {}) {
  return startCli(cwd, args, env);
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return start(args, env).done;
}

/**
 * Waits until `child` holds the profile's lock: the lock file (src/cli/profile.ts) names its pid. CLI start-up
 * under the tsx loader takes seconds on a loaded machine, so the tests wait for this instead of guessing a time.
 */
async function holdsLock(profile: string, child: ChildProcess, withinMs = 30_000): Promise<void> {
  const path = join(cwd, profile, "lock");
  const deadline = Date.now() + withinMs;
  for (;;) {
    let holder: unknown = "none (no lock file)";
    try {
      holder = (JSON.parse(readFileSync(path, "utf8")) as { pid?: unknown }).pid;
    } catch (e) {
      // Absent, or being written right now: look again shortly.
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") holder = "unreadable (being written?)";
    }
    if (holder === child.pid) return;
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(
        `process ${child.pid} exited (${child.exitCode ?? child.signalCode}) before it held the lock of the profile ${profile}`,
      );
    if (Date.now() >= deadline)
      throw new Error(
        `process ${child.pid} did not take the lock of the profile ${profile} within ${withinMs} ms; holder of ${path}: ${String(holder)}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Ends `child` if it still runs (a failed assertion must not leave it holding a profile). */
function stop(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
}

/**
 * Starts a command whose stdout is read while it runs: `line(key)` answers the first JSON line holding `key`,
 * as soon as it is printed (linking's two sides wait for each other's lines).
 */
function interactive(args: string[]) {
  const started = start(args);
  let seen = "";
  const waiting: { key: string; resolve: (l: Record<string, unknown>) => void }[] = [];
  const lines = () =>
    seen
      .split("\n")
      .filter((l) => l.startsWith("{") && l.endsWith("}"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const check = () => {
    for (const w of [...waiting]) {
      const found = lines().find((l) => w.key in l);
      if (found) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(found);
      }
    }
  };
  started.child.stdout!.on("data", (chunk: Buffer) => {
    seen += chunk.toString();
    check();
  });
  const line = (key: string) =>
    Promise.race([
      new Promise<Record<string, unknown>>((resolve) => {
        waiting.push({ key, resolve });
        check();
      }),
      started.done.then((r) => {
        throw new Error(`exited (${r.code}) before printing ${key}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
      }),
    ]);
  return { ...started, line };
}

async function ok(args: string[]): Promise<Record<string, unknown>> {
  const r = await cli(args);
  expect(r.code, `cipherpost ${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return r.json;
}

describe("the cipherpost command", () => {
  let alice: string;
  let bob: string;

  it("register and whoami: each profile is a device, created with mode 0700", async () => {
    const a = await ok(["--profile", "alice", "register", "--server", relay.url]);
    expect(a).toEqual({ accountId: expect.stringMatching(/^[0-9a-f-]{36}$/), deviceId: 1 });
    alice = a.accountId as string;
    bob = (await ok(["--profile", "bob", "register", "--server", relay.url])).accountId as string;
    expect(await ok(["--profile", "alice", "whoami"])).toEqual({ accountId: alice, deviceId: 1, server: relay.url });
    expect(statSync(join(cwd, "alice")).mode & 0o777).toBe(0o700);
    // The state is encrypted (state/, mode 0700, files 0600) under a key only the user can read (storage.key).
    expect(statSync(join(cwd, "alice", "storage.key")).mode & 0o777).toBe(0o600);
    expect(statSync(join(cwd, "alice", "state")).mode & 0o777).toBe(0o700);
    for (const f of readdirSync(join(cwd, "alice", "state")))
      expect(statSync(join(cwd, "alice", "state", f)).mode & 0o777).toBe(0o600);
    expect(rawFiles(join(cwd, "alice")).some((f) => f.includes(alice))).toBe(false); // not even the account id
    const again = await cli(["--profile", "alice", "register", "--server", relay.url]);
    expect(again.code).toBe(1);
    expect(again.json).toEqual({ error: { code: "ALREADY_REGISTERED", message: expect.any(String) } });
  });

  it("send and receive text both ways, with the issue's line format", async () => {
    const sent = await ok(["--profile", "alice", "send", bob, "hello bob"]);
    expect(sent).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    const r = await cli(["--profile", "bob", "receive"]);
    expect(r.code).toBe(0);
    expect(r.lines).toEqual([
      { id: sent.id, from: alice, fromDevice: 1, to: bob, timestamp: expect.any(Number), text: "hello bob" },
    ]);
    expect(Math.abs((r.json.timestamp as number) - Date.now())).toBeLessThan(60_000);

    const back = await ok(["--profile", "bob", "send", alice, "hello alice"]);
    const r2 = await cli(["--profile", "alice", "receive", "--wait-ms", "200"]);
    expect(r2.lines).toEqual([
      { id: back.id, from: bob, fromDevice: 1, to: alice, timestamp: expect.any(Number), text: "hello alice" },
    ]);
    // Nothing is printed twice.
    expect((await cli(["--profile", "bob", "receive"])).lines).toEqual([]);
  });

  it("receive stays --wait-ms after the queue is empty and prints what arrives meanwhile", async () => {
    // receive always stays the full --wait-ms (there is no "exit after N messages"), so this test takes about
    // 15 s; the margin is for alice's send, whose start-up and crypto can take several seconds under load.
    const waiting = start(["--profile", "bob", "receive", "--wait-ms", "15000"]);
    try {
      // Alice sends once bob's receive is running (it holds bob's profile), not after a guessed delay.
      await holdsLock("bob", waiting.child);
      const live = await ok(["--profile", "alice", "send", bob, "while you wait"]);
      const r = await waiting.done;
      expect(r.code).toBe(0);
      expect(r.lines.map((l) => [l.id, l.text])).toEqual([[live.id, "while you wait"]]);
    } finally {
      stop(waiting.child);
    }
  }, 60_000);

  it("safety-number is the same on both sides", async () => {
    const a = await ok(["--profile", "alice", "safety-number", bob]);
    const b = await ok(["--profile", "bob", "safety-number", alice]);
    expect(a.safetyNumber).toMatch(/^(\d{5} ){11}\d{5}$/);
    expect(a).toEqual(b);
  });

  it("link-code and link: a second device of alice's sees both sides of the conversation", async () => {
    const issuing = interactive(["--profile", "alice", "link-code"]);
    const { code } = await issuing.line("code");
    expect(code).toMatch(/^cplink2\./);
    const newDevice = interactive(["--profile", "alice2", "link", "--server", relay.url, "--code", code as string]);
    try {
      const shown = (await newDevice.line("verificationCode")).verificationCode;
      expect(shown).toMatch(/^\d{6}$/);
      expect((await issuing.line("verificationCode")).verificationCode).toBe(shown);
      issuing.child.stdin!.end("y\n");
      const issued = await issuing.done;
      expect(issued.code).toBe(0);
      expect(issued.lines).toEqual([
        { code, expiresAt: expect.any(Number) },
        { verificationCode: shown },
        { approved: true },
      ]);
      expect(issued.stderr).toContain(`Does the new device show ${shown}?`);
      const linked = await newDevice.done;
      expect(linked.code, linked.stderr).toBe(0);
      expect(linked.lines).toEqual([{ verificationCode: shown }, { accountId: alice, deviceId: 2 }]);
    } finally {
      stop(issuing.child);
      stop(newDevice.child);
    }
    const devices = await ok(["--profile", "alice", "devices"]);
    expect(devices).toEqual({
      devices: [
        { deviceId: 1, created: expect.any(Number), lastSeen: expect.any(Number) },
        { deviceId: 2, created: expect.any(Number), lastSeen: expect.any(Number) },
      ],
    });

    const fromBob = await ok(["--profile", "bob", "send", alice, "to both of alice's devices"]);
    const fromAlice = await ok(["--profile", "alice", "send", bob, "alice's reply"]);
    const r = await cli(["--profile", "alice2", "receive"]);
    expect(r.lines).toEqual([
      {
        id: fromBob.id,
        from: bob,
        fromDevice: 1,
        to: alice,
        timestamp: expect.any(Number),
        text: "to both of alice's devices",
      },
      { id: fromAlice.id, from: alice, fromDevice: 1, to: bob, timestamp: expect.any(Number), text: "alice's reply" },
    ]);
    expect((await cli(["--profile", "bob", "receive"])).lines.map((l) => l.text)).toEqual(["alice's reply"]);
    // The link code was used up.
    const reused = await cli(["--profile", "alice3", "link", "--server", relay.url, "--code", code as string]);
    expect(reused.code).toBe(1);
    expect((reused.json.error as { code: string }).code).toBe("LINK_TOKEN_INVALID");
  }, 90_000);

  it("link without approval fails: a declined (or unanswered) link-code leaves the new profile without a device", async () => {
    const issuing = interactive(["--profile", "alice", "link-code"]);
    const { code } = await issuing.line("code");
    const newDevice = interactive(["--profile", "mallory", "link", "--server", relay.url, "--code", code as string]);
    try {
      await issuing.line("verificationCode");
      issuing.child.stdin!.end(); // no answer is no
      const issued = await issuing.done;
      expect(issued.lines.at(-1)).toEqual({ approved: false });
      const linked = await newDevice.done;
      expect(linked.code).toBe(1);
      expect(linked.lines.at(-1)).toEqual({ error: { code: "LINK_TOKEN_INVALID", message: expect.any(String) } });
      const who = await cli(["--profile", "mallory", "whoami"]);
      expect((who.json.error as { code: string }).code).toBe("NOT_REGISTERED");
    } finally {
      stop(issuing.child);
      stop(newDevice.child);
    }
  }, 90_000);

  it("send-file and receive: files land under DIR/files, byte-identical, with their size and sha256", async () => {
    const report = randomBytes(3 * 1024 * 1024 + 77);
    const photo = randomBytes(1024 * 1024 + 5);
    writeFileSync(join(cwd, "report.pdf"), report);
    writeFileSync(join(cwd, "photo.jpg"), photo);
    const first = await cli(["--profile", "alice", "send-file", bob, "report.pdf"]);
    expect(first.code).toBe(0);
    expect(first.json).toEqual({ id: expect.any(String) });
    expect(first.stderr).toContain("uploading report.pdf: 100%");
    const second = await ok(["--profile", "alice", "send-file", bob, "photo.jpg"]);
    const r = await cli(["--profile", "bob", "receive"]);
    expect(r.code).toBe(0);
    expect(r.lines.map((l) => l.id)).toEqual([first.json.id, second.id]);
    for (const [line, bytes, name] of [
      [r.lines[0]!, report, "report.pdf"],
      [r.lines[1]!, photo, "photo.jpg"],
    ] as const) {
      expect(line).toMatchObject({ from: alice, fromDevice: 1, to: bob, timestamp: expect.any(Number), text: "" });
      const file = line.file as { name: string; size: number; sha256: string; path: string };
      expect(file).toEqual({
        name,
        size: bytes.length,
        sha256: createHash("sha256").update(bytes).digest("hex"),
        path: join(cwd, "bob", "files", name),
      });
      expect(readFileSync(file.path).equals(bytes)).toBe(true);
    }
  });

  it("send-file interrupted with Ctrl-C resumes where it stopped when run again", async () => {
    const big = randomBytes(45 * 1024 * 1024);
    writeFileSync(join(cwd, "big.bin"), big);
    const child = spawn(process.execPath, [BIN, "--profile", "alice", "send-file", bob, "big.bin"], { cwd });
    let stderr = "";
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    await new Promise<void>((resolve) =>
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        // The first 20 MiB chunk is on the relay: interrupt the second.
        if (/uploading big\.bin: [4-9]0%/.test(stderr)) {
          child.kill("SIGINT");
          resolve();
        }
      }),
    );
    expect(await exited).toBe(130);
    const again = await cli(["--profile", "alice", "send-file", bob, "big.bin"]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("resumed the interrupted upload of big.bin");
    expect(again.stderr).not.toContain("uploading big.bin: 0%");
    const r = await cli(["--profile", "bob", "receive"]);
    const file = r.lines.find((l) => l.id === again.json.id)!.file as { sha256: string; path: string };
    expect(file.sha256).toBe(createHash("sha256").update(big).digest("hex"));
  }, 60_000);

  it("send --expire-seconds marks the message as disappearing", async () => {
    const sent = await ok(["--profile", "alice", "send", bob, "gone soon", "--expire-seconds", "60"]);
    const r = await cli(["--profile", "bob", "receive"]);
    expect(r.lines).toEqual([expect.objectContaining({ id: sent.id, text: "gone soon", expireSeconds: 60 })]);
  });

  it("wrong arguments print usage on stderr and exit 2", async () => {
    const cases = [
      [],
      ["whoami"],
      ["--profile", "alice"],
      ["--profile", "alice", "fly"],
      ["--profile", "alice", "send", bob],
      ["--profile", "alice", "send", bob, "a", "b"],
      ["--profile", "alice", "register"],
      ["--profile", "alice", "receive", "--wait-ms", "soon"],
      ["--profile", "alice", "send", bob, "x", "--expire-seconds", "0"],
      ["--profile", "alice", "whoami", "--server", relay.url],
      ["--profile", "alice", "--colour", "whoami"],
    ];
    const runs = await Promise.all(cases.map((args) => cli(args)));
    for (const [i, r] of runs.entries()) {
      expect(r.code, cases[i]!.join(" ")).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("usage: cipherpost --profile DIR");
    }
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: cipherpost --profile DIR");
  });

  it("failures print {error:{code,message}} and exit 1; an unreachable relay says so", async () => {
    const down = await cli(["--profile", "nobody", "register", "--server", "http://127.0.0.1:1"]);
    expect(down.code).toBe(1);
    expect(down.json).toEqual({
      error: { code: "UNREACHABLE", message: expect.stringContaining("cannot reach the relay at http://127.0.0.1:1") },
    });
    const unregistered = await cli(["--profile", "nobody", "whoami"]);
    expect(unregistered.code).toBe(1);
    expect((unregistered.json.error as { code: string }).code).toBe("NOT_REGISTERED");
    const notFound = await cli(["--profile", "alice", "send", crypto.randomUUID(), "hello?"]);
    expect(notFound.code).toBe(1);
    expect(notFound.json).toEqual({ error: { code: "NOT_FOUND", message: expect.any(String) } });
    const noFile = await cli(["--profile", "alice", "send-file", bob, "missing.bin"]);
    expect(noFile.json).toEqual({
      error: { code: "INVALID_ARGUMENT", message: expect.stringContaining("missing.bin") },
    });
  });

  it("a second command on a busy profile waits for the first, or fails clearly when told not to wait long", async () => {
    // The receive holds the lock for its start-up, the queue and 15 s more: long enough for the two whoami
    // below to start (seconds each under load) and find the profile busy.
    const child = spawn(process.execPath, [BIN, "--profile", "bob", "receive", "--wait-ms", "15000"], { cwd });
    const done = new Promise<number>((r) => child.on("exit", (code) => r(code ?? -1)));
    try {
      await holdsLock("bob", child);
      const refused = await cli(["--profile", "bob", "whoami"], { CIPHERPOST_LOCK_TIMEOUT_MS: "300" });
      expect(refused.code).toBe(1);
      expect(refused.json).toEqual({
        error: { code: "PROFILE_LOCKED", message: expect.stringContaining(`process ${child.pid}`) },
      });
      const waited = await cli(["--profile", "bob", "whoami"]);
      expect(waited.code).toBe(0);
      expect(waited.stderr).toContain("waiting for the profile bob");
      expect(waited.json).toEqual({ accountId: bob, deviceId: 1, server: relay.url });
      expect(await done).toBe(0);
    } finally {
      stop(child);
    }
  }, 60_000);

  it("a profile of an earlier version: its plaintext state.log is taken over into the encrypted store and removed", async () => {
    const carol = (await ok(["--profile", "carol", "register", "--server", relay.url])).accountId as string;
    // Turn the profile back into what an earlier version kept: one plaintext journal line, no encrypted store.
    const profile = join(cwd, "carol");
    const key = new Uint8Array(readFileSync(join(profile, "storage.key")));
    const state = join(profile, "state");
    const entries = decryptedFiles(state, key)
      .filter((_, i) => readdirSync(state)[i] !== "manifest")
      .flatMap((text) => JSON.parse(text) as [string, string][]);
    writeFileSync(join(profile, "state.log"), `${JSON.stringify({ set: Object.fromEntries(entries) })}\n`, {
      mode: 0o600,
    });
    rmSync(state, { recursive: true });
    rmSync(join(profile, "storage.key"));
    expect(await ok(["--profile", "carol", "whoami"])).toEqual({ accountId: carol, deviceId: 1, server: relay.url });
    expect(readdirSync(profile).sort()).toEqual(["files", "state", "storage.key"]);
    expect(rawFiles(profile).some((f) => f.includes(carol))).toBe(false);
    const sent = await ok(["--profile", "carol", "send", alice, "from a migrated profile"]);
    expect(sent.id).toEqual(expect.any(String));
  });
});
