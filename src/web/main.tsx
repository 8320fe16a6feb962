// The web app's entry: take ownership of the device (one tab at a time), open the encrypted storage and the
// SDK client, then show onboarding or the messenger. Registers the service worker for the offline app shell.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { CipherpostClient, CipherpostError } from "../client/index.ts";
import { acquireDeviceLock, type DeviceLock } from "./device-lock.ts";
import { Messenger } from "./model/messenger.ts";
import { openWebStorage } from "./storage/opfs-storage.ts";
import { App } from "./ui/app.tsx";
import { Onboarding } from "./ui/onboarding.tsx";

const DATABASE = "cipherpost";

type Screen =
  | { kind: "starting" }
  | { kind: "elsewhere"; lost: boolean }
  | { kind: "onboarding" }
  | { kind: "ready"; messenger: Messenger; firstRun: boolean }
  | { kind: "failed"; message: string };

async function openMessenger(name?: string): Promise<Messenger | null> {
  const storage = await openWebStorage(DATABASE);
  try {
    const client = await CipherpostClient.open({
      storage,
      // Calls (docs/calls.md): the SDK negotiates on the browser's own RTCPeerConnection.
      ...(typeof RTCPeerConnection !== "undefined"
        ? { calls: { createPeerConnection: (config) => new RTCPeerConnection(config) } }
        : {}),
    });
    const messenger = await Messenger.open(client, storage);
    if (name !== undefined && name !== messenger.profile.name) await messenger.setProfile({ name });
    void client.connect().catch(() => undefined);
    return messenger;
  } catch (e) {
    await storage.close();
    if (CipherpostError.is(e, "NOT_REGISTERED")) return null;
    throw e;
  }
}

function Root() {
  const [screen, setScreen] = useState<Screen>({ kind: "starting" });
  const [lock, setLock] = useState<DeviceLock | null>(null);

  const start = async (steal: boolean) => {
    const held = await acquireDeviceLock(steal);
    if (!held) return setScreen({ kind: "elsewhere", lost: false });
    setLock(held);
    try {
      const messenger = await openMessenger();
      setScreen(messenger ? { kind: "ready", messenger, firstRun: false } : { kind: "onboarding" });
    } catch (e) {
      setScreen({ kind: "failed", message: e instanceof Error ? e.message : String(e) });
    }
  };

  useEffect(() => void start(false), []);

  // Another tab took the device over: let go of the connection and offer to take it back.
  useEffect(() => {
    if (!lock) return;
    let live = true;
    void lock.lost.then(async () => {
      if (!live) return;
      if (screen.kind === "ready") await screen.messenger.client.close();
      setScreen({ kind: "elsewhere", lost: true });
    });
    return () => {
      live = false;
    };
  }, [lock, screen]);

  switch (screen.kind) {
    case "starting":
      return (
        <main class="center">
          <p role="status">Opening cipherpost…</p>
        </main>
      );
    case "failed":
      return (
        <main class="center">
          <p role="alert">cipherpost could not start: {screen.message}</p>
        </main>
      );
    case "elsewhere":
      return (
        <main class="center">
          <div class="card">
            <h1>{screen.lost ? "cipherpost was opened in another tab" : "cipherpost is open in another tab"}</h1>
            <p class="hint">Only one tab can use your account at a time, so messages stay in order.</p>
            <button type="button" class="primary" onClick={() => void start(true)}>
              Use here
            </button>
          </div>
        </main>
      );
    case "onboarding":
      return (
        <Onboarding
          database={DATABASE}
          onReady={async (name) => {
            const messenger = await openMessenger(name || undefined);
            if (messenger) setScreen({ kind: "ready", messenger, firstRun: true });
          }}
        />
      );
    case "ready":
      return <App messenger={screen.messenger} firstRun={screen.firstRun} />;
  }
}

const root = document.getElementById("app");
if (root) render(<Root />, root);

if ("serviceWorker" in navigator && location.protocol !== "file:") {
  void navigator.serviceWorker.register("sw.js").catch(() => undefined);
}
