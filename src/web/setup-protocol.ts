// The messages between the page and the setup worker (setup-worker.ts), and the page's side of it.

export type SetupRequest =
  | { type: "register"; server: string; database: string }
  | { type: "link"; server: string; database: string; code: string };

/** keys: generating keys; work: the proof of work (fraction of the expected hashes); register: talking to the relay. */
export interface SetupProgress {
  type: "progress";
  phase: "keys" | "work" | "register";
  fraction: number;
}

/** Linking: the verification code to show, for the person to compare with the existing device's before approving. */
export interface SetupVerification {
  type: "verification";
  code: string;
}

export type SetupResult =
  | { type: "done"; accountId: string; deviceId: number }
  | { type: "failed"; code: string; message: string };

/** Runs one registration or link in a fresh worker; answers when the device is stored. */
export function runSetup(
  request: SetupRequest,
  onProgress: (p: SetupProgress) => void,
  onVerification: (code: string) => void = () => undefined,
): Promise<Extract<SetupResult, { type: "done" }>> {
  const worker = new Worker(new URL("./setup-worker.js", document.baseURI), { type: "module" });
  onProgress({ type: "progress", phase: "keys", fraction: 0 });
  return new Promise((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<SetupProgress | SetupVerification | SetupResult>) => {
      const m = e.data;
      if (m.type === "progress") return onProgress(m);
      if (m.type === "verification") return onVerification(m.code);
      worker.terminate();
      if (m.type === "done") resolve(m);
      else reject(Object.assign(new Error(m.message), { code: m.code }));
    };
    worker.onerror = (e) => {
      worker.terminate();
      reject(new Error(e.message || "the setup worker failed to start"));
    };
    worker.postMessage(request);
  });
}
