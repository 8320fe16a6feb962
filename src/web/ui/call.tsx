// The call screens (docs/calls.md): an incoming call with "Accept" and "Decline"; a call in progress with the
// remote video, this device's preview, a duration counter, "Mute", "Camera off" and "Hang up"; and, briefly, how a
// call ended. A full-screen <dialog> over the app, named "Incoming call" or "Call".
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import type { CallEndReason } from "../../client/index.ts";
import type { Messenger } from "../model/messenger.ts";
import { useMessenger, useNow } from "./hooks.ts";

const ENDED: Record<CallEndReason, string> = {
  hangup: "Call ended",
  "remote-hangup": "Call ended",
  declined: "Call declined",
  busy: "Busy: they are in another call",
  timeout: "No answer",
  "answered-elsewhere": "Answered on another device",
  "declined-elsewhere": "Declined on another device",
  failed: "The call could not connect",
};

/** mm:ss (h:mm:ss past an hour). */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const two = (n: number) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  return h ? `${h}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}` : `${two(Math.floor(s / 60))}:${two(s % 60)}`;
}

function Video(props: { stream: MediaStream | undefined; label: string; muted?: boolean; class: string }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (ref.current && ref.current.srcObject !== (props.stream ?? null)) ref.current.srcObject = props.stream ?? null;
  });
  return <video ref={ref} class={props.class} aria-label={props.label} autoPlay playsInline muted={props.muted} />;
}

function RemoteAudio(props: { stream: MediaStream | undefined }) {
  const ref = useRef<HTMLAudioElement>(null);
  useEffect(() => {
    if (ref.current && ref.current.srcObject !== (props.stream ?? null)) ref.current.srcObject = props.stream ?? null;
  });
  // A live call has no caption file; the empty track satisfies players that expect one.
  return (
    <audio ref={ref} autoPlay>
      <track kind="captions" />
    </audio>
  );
}

function Screen(props: { label: string; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog ref={ref} class="call-screen" aria-label={props.label} onCancel={(e) => e.preventDefault()}>
      {props.children}
    </dialog>
  );
}

export function CallScreen({ messenger: m }: { messenger: Messenger }) {
  useMessenger(m);
  const now = useNow(1000);
  const c = m.calls;
  const call = c.call;
  if (!call) {
    if (!c.error) return null;
    return (
      <Screen label="Call">
        <p role="alert" class="call-status">
          {c.error}
        </p>
        <div class="call-controls">
          <button type="button" onClick={() => c.dismiss()}>
            Close
          </button>
        </div>
      </Screen>
    );
  }
  const name = m.nameOf(call.peer);
  const kind = call.video ? "video call" : "voice call";
  if (call.state === "ringing")
    return (
      <Screen label="Incoming call">
        <p class="call-peer">{name}</p>
        <p class="call-status" role="status">
          Incoming {kind}
        </p>
        <div class="call-controls">
          <button type="button" class="danger" onClick={() => void c.decline()}>
            Decline
          </button>
          <button type="button" class="primary" onClick={() => void c.accept()}>
            Accept
          </button>
        </div>
      </Screen>
    );
  const status =
    call.state === "ended"
      ? ENDED[call.endReason ?? "hangup"]
      : call.state === "connected"
        ? duration(now - (call.connectedAt ?? now))
        : call.direction === "outgoing" && call.peerDevice === undefined
          ? "Calling…"
          : "Connecting…";
  return (
    <Screen label="Call">
      {call.video && <Video stream={c.remote} label="Remote video" class="remote-video" />}
      {!call.video && <RemoteAudio stream={c.remote} />}
      {call.video && c.local && <Video stream={c.local} label="Your camera" muted class="local-video" />}
      <p class="call-peer">{name}</p>
      <p class="call-status" role="status" aria-label="Call status">
        {status}
      </p>
      {call.state !== "ended" && (
        <div class="call-controls">
          <button type="button" aria-pressed={c.muted} onClick={() => c.toggleMute()}>
            {c.muted ? "Unmute" : "Mute"}
          </button>
          {call.video && (
            <button type="button" aria-pressed={c.cameraOff} onClick={() => c.toggleCamera()}>
              {c.cameraOff ? "Camera on" : "Camera off"}
            </button>
          )}
          <button type="button" class="danger" onClick={() => void c.hangup()}>
            Hang up
          </button>
        </div>
      )}
    </Screen>
  );
}
