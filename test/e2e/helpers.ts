// Helpers for the end-to-end tests: a relay started the way `npm start` starts it (scripts/start.ts: the D1
// migrations, then wrangler dev with its proxy in front of workerd), and an account registered over plain HTTP.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBase64, toBase64 } from "../../src/crypto/bytes.ts";
import { generateEcKeyPair, generateKemKeyPair } from "../../src/crypto/keys.ts";
import { xeddsaSign } from "../../src/crypto/xeddsa.ts";
import { registrationProofMessage } from "../../src/protocol/limits.ts";
import { solvePow } from "../../src/protocol/pow.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

async function post<T>(base: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${path} → ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

export interface Registered {
  accountId: string;
  deviceId: number;
  registrationId: number;
  /** `Basic …` for the new device. */
  auth: string;
}

/** Registers an account with real keys at the relay at `base`, as an SDK would. */
export async function register(base: string): Promise<Registered> {
  const identity = generateEcKeyPair();
  const sign = (b: Uint8Array) => toBase64(xeddsaSign(identity.privateKey, b));
  const spk = generateEcKeyPair().publicKey;
  const lastResort = generateKemKeyPair().publicKey;
  const ch = await post<{ challenge: string; difficulty: number }>(base, "/v1/challenges");
  const challenge = fromBase64(ch.challenge);
  const nonce = await solvePow(challenge, ch.difficulty);
  const proofMessage = registrationProofMessage(challenge, identity.publicKey);
  const password = toBase64(randomBytes(18));
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  const r = await post<{ accountId: string; deviceId: number }>(base, "/v1/registration", {
    identityKey: toBase64(identity.publicKey),
    registrationId,
    password,
    signedPreKey: { keyId: 1, publicKey: toBase64(spk), signature: sign(spk) },
    pqLastResortPreKey: { keyId: 2, publicKey: toBase64(lastResort), signature: sign(lastResort) },
    preKeys: [],
    pqPreKeys: [],
    pow: { challenge: ch.challenge, nonce: toBase64(nonce) },
    proof: sign(proofMessage),
  });
  const auth = `Basic ${Buffer.from(`${r.accountId}.${r.deviceId}:${password}`).toString("base64")}`;
  return { ...r, registrationId, auth };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface DevRelay {
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts the relay as `npm start` does (scripts/start.ts → wrangler dev) on free ports with fresh state, `vars`
 * passed as `--var`. Answers once /health does; `stop()` ends the process group (wrangler spawns workerd).
 */
export async function startLikeNpmStart(vars: Record<string, string> = {}, timeoutMs = 90_000): Promise<DevRelay> {
  const [port, inspector] = [await freePort(), await freePort()];
  const persist = mkdtempSync(join(tmpdir(), "cipherpost-npm-start-"));
  const args = ["--persist-to", persist, "--inspector-port", String(inspector)];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const child: ChildProcess = spawn(
    process.execPath,
    [join(ROOT, "node_modules/tsx/dist/cli.mjs"), "scripts/start.ts", ...args],
    {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.pid) process.kill(-child.pid, "SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (child.exitCode === null && child.pid) process.kill(-child.pid, "SIGKILL");
    rmSync(persist, { recursive: true, force: true });
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      rmSync(persist, { recursive: true, force: true });
      throw new Error(`npm start exited with ${child.exitCode}:\n${output}`);
    }
    const ok = await fetch(`${url}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { url, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`npm start did not answer /health within ${timeoutMs} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
