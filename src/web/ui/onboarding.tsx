// The first screen: create an account (keys and proof of work in a worker, with progress), or link this
// browser to an existing account with a link code shown on a device that has it.
import { useState } from "preact/hooks";
import { runSetup, type SetupProgress } from "../setup-protocol.ts";

export interface OnboardingProps {
  database: string;
  /** Called once the device is stored, with the display name chosen (empty when linking). */
  onReady: (name: string) => void;
}

const PHASES: Record<SetupProgress["phase"], string> = {
  keys: "Generating your keys…",
  work: "Proving this is not a bulk sign-up…",
  register: "Creating your account…",
};

export function Onboarding({ database, onReady }: OnboardingProps) {
  const [mode, setMode] = useState<"create" | "link">("create");
  const [name, setName] = useState("");
  const [code, setCode] = useState("");
  const [progress, setProgress] = useState<SetupProgress | null>(null);
  const [error, setError] = useState("");
  const [verification, setVerification] = useState("");

  const run = async (request: Parameters<typeof runSetup>[0], chosenName: string) => {
    setError("");
    try {
      await runSetup(request, setProgress, setVerification);
      onReady(chosenName);
    } catch (e) {
      setProgress(null);
      setVerification("");
      const code = (e as { code?: string }).code;
      setError(
        code === "INVALID_LINK_CODE" || code === "LINK_TOKEN_INVALID"
          ? `That link code is not valid any more, or linking was refused on your other device: ${(e as Error).message}`
          : code === "UNREACHABLE"
            ? "The server cannot be reached. Check your connection and try again."
            : `Something went wrong: ${(e as Error).message}`,
      );
    }
  };
  const server = location.origin;
  const busy = progress !== null;

  return (
    <main class="onboarding">
      <div class="card">
        <h1 class="brand">
          <img src="icon.svg" alt="" width="40" height="40" /> cipherpost
        </h1>
        <p class="lead">Private messages, end-to-end encrypted. No phone number, no email.</p>
        {mode === "create" ? (
          <form
            key="create"
            onSubmit={(e) => {
              e.preventDefault();
              if (!busy) void run({ type: "register", server, database }, name.trim());
            }}
          >
            <label for="display-name">Display name</label>
            <input
              id="display-name"
              value={name}
              maxLength={64}
              required
              autoComplete="nickname"
              placeholder="How contacts see you"
              onInput={(e) => setName(e.currentTarget.value)}
              disabled={busy}
            />
            <p class="hint">Kept on this device and sent only inside your encrypted messages.</p>
            <button type="submit" class="primary" disabled={busy}>
              Create account
            </button>
          </form>
        ) : (
          <form
            key="link"
            onSubmit={(e) => {
              e.preventDefault();
              if (!busy) void run({ type: "link", server, database, code: code.trim() }, "");
            }}
          >
            <label for="link-code">Link code</label>
            <input
              id="link-code"
              value={code}
              required
              autoComplete="off"
              spellcheck={false}
              placeholder="cplink2.…"
              onInput={(e) => setCode(e.currentTarget.value)}
              disabled={busy}
            />
            <p class="hint">On a device that has your account, open Devices and choose “Link a device”.</p>
            <button type="submit" class="primary" disabled={busy}>
              Link this device
            </button>
          </form>
        )}
        {verification && (
          <p role="status">
            On your other device, approve only if it shows this code:{" "}
            <strong class="mono" role="note" aria-label="Verification code">
              {verification}
            </strong>
          </p>
        )}
        {progress && (
          <div class="progress-block">
            <p role="status">{PHASES[progress.phase]}</p>
            <progress
              aria-label="Setup progress"
              max={1}
              value={progress.phase === "keys" ? undefined : progress.phase === "work" ? progress.fraction : 1}
            />
          </div>
        )}
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <button
          type="button"
          class="link"
          disabled={busy}
          onClick={() => {
            setError("");
            setMode(mode === "create" ? "link" : "create");
          }}
        >
          {mode === "create" ? "Link to an existing account" : "Create a new account instead"}
        </button>
      </div>
    </main>
  );
}
