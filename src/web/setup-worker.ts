// A Web Worker that creates or links this browser's device: key generation (a hundred ML-KEM keys) and the
// relay's proof of work run here, so the page stays responsive. The SDK runs unmodified against the encrypted
// IndexedDB storage; the page opens the same storage once the worker says it is done.
import { CipherpostClient, CipherpostError } from "../client/index.ts";
import { openWebStorage, type WebStorage } from "./storage/opfs-storage.ts";
import type { SetupProgress, SetupRequest, SetupResult, SetupVerification } from "./setup-protocol.ts";

interface WorkerScope {
  postMessage(message: SetupProgress | SetupVerification | SetupResult): void;
  onmessage: ((e: MessageEvent<SetupRequest>) => void) | null;
}
const scope = self as unknown as WorkerScope;

/**
 * Progress of the proof of work. The SDK's solver takes no progress callback, so the worker counts the SHA-256
 * digests it runs once the challenge (and its difficulty) has arrived: the expected count is 2^difficulty.
 */
let difficulty = 0;
let hashes = 0;
let lastReport = 0;
const subtle = crypto.subtle;
const digest = subtle.digest.bind(subtle);
subtle.digest = ((algorithm: AlgorithmIdentifier, data: BufferSource) => {
  if (difficulty > 0) {
    hashes++;
    const now = performance.now();
    if (now - lastReport > 100) {
      lastReport = now;
      scope.postMessage({ type: "progress", phase: "work", fraction: Math.min(0.99, hashes / 2 ** difficulty) });
    }
  }
  return digest(algorithm, data);
}) as SubtleCrypto["digest"];

/** Watches the relay's answers for the challenge's difficulty, and says when registration itself starts. */
const watchingFetch: typeof fetch = async (input, init) => {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  if (url.endsWith("/v1/registration") || url.endsWith("/v1/devices/link")) {
    difficulty = 0;
    scope.postMessage({ type: "progress", phase: "register", fraction: 1 });
  }
  const res = await fetch(input, init);
  if (url.endsWith("/v1/challenges") && res.ok) {
    const body = (await res.clone().json()) as { difficulty?: number };
    hashes = 0;
    difficulty = body.difficulty ?? 0;
    scope.postMessage({ type: "progress", phase: "work", fraction: 0 });
  }
  return res;
};

scope.onmessage = async (e) => {
  const req = e.data;
  let storage: WebStorage | undefined;
  try {
    storage = await openWebStorage(req.database);
    const options = { server: req.server, storage, fetch: watchingFetch };
    const client =
      req.type === "register"
        ? await CipherpostClient.register(options)
        : await CipherpostClient.link({
            ...options,
            code: req.code,
            onVerificationCode: (code) => scope.postMessage({ type: "verification", code }),
          });
    await client.close();
    scope.postMessage({ type: "done", accountId: client.accountId, deviceId: client.deviceId });
  } catch (err) {
    const code = CipherpostError.is(err) ? err.code : "UNEXPECTED";
    scope.postMessage({ type: "failed", code, message: err instanceof Error ? err.message : String(err) });
  } finally {
    await storage?.close();
  }
};
