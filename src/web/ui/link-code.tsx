// The existing device's side of linking in the Devices dialog: the link code (text and QR), then the request
// that answers it with its verification code, approved only when the person sees the same code on the new device.
import { useEffect, useRef, useState } from "preact/hooks";
import type { CipherpostClient } from "../../client/index.ts";
import { Qr } from "./qr.tsx";

type Session = Awaited<ReturnType<CipherpostClient["createLinkCode"]>>;
type Request = Session extends { requests(): AsyncIterable<infer R> } ? R : never;

type Step =
  | { kind: "idle" }
  | { kind: "code"; session: Session }
  | { kind: "request"; session: Session; request: Request }
  | { kind: "done"; approved: boolean }
  | { kind: "failed"; message: string };

export function LinkDevicePanel(props: { client: CipherpostClient; onLinked: () => void }) {
  const [step, setStep] = useState<Step>({ kind: "idle" });
  const [busy, setBusy] = useState(false);
  const open = useRef(true);
  useEffect(
    () => () => {
      open.current = false;
    },
    [],
  );

  const start = async () => {
    setBusy(true);
    try {
      const session = await props.client.createLinkCode();
      setStep({ kind: "code", session });
      for await (const request of session.requests()) if (open.current) setStep({ kind: "request", session, request });
    } catch (e) {
      if (open.current) setStep({ kind: "failed", message: (e as Error).message });
    } finally {
      setBusy(false);
    }
  };
  const answer = async (request: Request, approve: boolean) => {
    setBusy(true);
    try {
      await (approve ? request.approve() : request.reject());
      setStep({ kind: "done", approved: approve });
      if (approve) props.onLinked();
    } catch (e) {
      setStep({ kind: "failed", message: (e as Error).message });
    } finally {
      setBusy(false);
    }
  };

  if (step.kind === "idle")
    return (
      <button type="button" class="primary" disabled={busy} onClick={() => void start()}>
        Link a device
      </button>
    );
  if (step.kind === "done" || step.kind === "failed")
    return (
      <p role="status" class={step.kind === "failed" ? "error" : "hint"}>
        {step.kind === "failed"
          ? `Linking stopped: ${step.message}`
          : step.approved
            ? "Approved: the new device finishes linking now."
            : "Refused: that link code no longer works."}
      </p>
    );
  const { session } = step;
  return (
    <div class="link-code">
      <p class="hint">
        On the new browser, open this app, choose “Link to an existing account” and enter this code. It works once,
        until {new Date(session.expiresAt).toLocaleTimeString()}. It gives nothing away on its own: you approve the new
        device here after comparing a code.
      </p>
      <Qr value={session.code} label="QR code of the link code" />
      <div class="mono selectable" role="note" aria-label="Link code value">
        {session.code}
      </div>
      {step.kind === "code" ? (
        <p class="hint" role="status">
          Waiting for the new device…
        </p>
      ) : (
        <section aria-label="Link request">
          <p>
            A device asks to be linked. Approve only if the new device shows this same code:{" "}
            <strong class="mono" role="note" aria-label="Verification code">
              {step.request.verificationCode}
            </strong>
          </p>
          <p class="hint">If it shows another code, or no code at all, someone else may have seen the link code.</p>
          <button type="button" class="primary" disabled={busy} onClick={() => void answer(step.request, true)}>
            Approve
          </button>{" "}
          <button type="button" disabled={busy} onClick={() => void answer(step.request, false)}>
            Reject
          </button>
        </section>
      )}
    </div>
  );
}
