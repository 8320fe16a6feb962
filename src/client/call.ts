// One call as the application sees it (docs/calls.md): its peer, direction, state and end reason, its
// RTCPeerConnection, and accept / decline / hangup. The calls part (calls.ts) drives it; this file imports nothing of
// the client so events.ts can name the type.
import type { IceServer } from "../protocol/calls.ts";
import type { IceCandidate } from "./content.ts";

/** How long an unanswered call rings before it ends as missed (docs/calls.md). */
export const DEFAULT_RING_TIMEOUT_MS = 60_000;

export type { IceServer };

export interface SessionDescription {
  type: "offer" | "answer" | "pranswer" | "rollback";
  sdp?: string;
}

/** The part of RTCPeerConnection the call layer uses (a browser's RTCPeerConnection is one). */
export interface PeerConnectionLike {
  createOffer(): Promise<SessionDescription>;
  createAnswer(): Promise<SessionDescription>;
  setLocalDescription(description: SessionDescription): Promise<void>;
  setRemoteDescription(description: SessionDescription): Promise<void>;
  addIceCandidate(candidate: IceCandidate): Promise<void>;
  addEventListener(type: "icecandidate", listener: (e: { candidate: { toJSON(): IceCandidate } | null }) => void): void;
  addEventListener(type: "connectionstatechange", listener: () => void): void;
  readonly connectionState: string;
  close(): void;
}

export interface PeerConnectionConfig {
  iceServers: IceServer[];
  /** "relay": TURN only (media never goes straight between the devices; hides each side's address). */
  iceTransportPolicy?: "all" | "relay";
}

export interface CallOptions {
  /** Makes the RTCPeerConnection of a call: `(config) => new RTCPeerConnection(config)` in a browser. */
  createPeerConnection?: (config: PeerConnectionConfig) => PeerConnectionLike;
  /** Ring time before an unanswered call ends as missed; default 60 s. */
  ringTimeoutMs?: number;
  /** "relay" to use only TURN relays (default "all"). */
  iceTransportPolicy?: "all" | "relay";
}

export type CallState = "ringing" | "connecting" | "connected" | "ended";
/**
 * Why a call ended: `hangup` (this side), `remote-hangup`, `declined` (by the callee), `busy` (the callee was in a
 * call), `timeout` (nobody answered), `answered-elsewhere` / `declined-elsewhere` (another device of this account
 * took or refused it), `failed` (the media connection failed).
 */
export type CallEndReason =
  | "hangup"
  | "remote-hangup"
  | "declined"
  | "busy"
  | "timeout"
  | "answered-elsewhere"
  | "declined-elsewhere"
  | "failed";

/** What the application does to a call's connection before it is negotiated: add tracks, listen for remote ones. */
export type CallSetup = (pc: PeerConnectionLike) => void | Promise<void>;

/** The "missed call" entry a call leaves in the callee's conversation (a StoredMessage's `data`). */
export interface CallEntryData {
  call: { missed: true; video: boolean; reason: "timeout" | "declined" | "busy" };
}

/** What a Call asks of the part that drives it. */
export interface CallControl {
  accept(call: Call, setup?: CallSetup): Promise<void>;
  decline(call: Call): Promise<void>;
  hangup(call: Call): Promise<void>;
}

export class Call {
  readonly id: string;
  /** The other account. */
  readonly peer: string;
  readonly direction: "outgoing" | "incoming";
  readonly video: boolean;
  state: CallState;
  endReason: CallEndReason | undefined;
  /** When the media connected (ms, the client's clock). */
  connectedAt: number | undefined;
  /** The call's connection, once made (at `call()` for the caller, at `accept()` for the callee). */
  peerConnection: PeerConnectionLike | undefined;
  /** The peer's device in this call: the callee's device that answered, or the caller's device. */
  peerDevice: number | undefined;
  readonly #listeners = new Set<(call: Call) => void>();
  readonly #calls: CallControl;
  /** An incoming call's offer, kept until it is accepted. */
  offer: string | undefined;

  constructor(calls: CallControl, id: string, peer: string, direction: Call["direction"], video: boolean) {
    this.#calls = calls;
    this.id = id;
    this.peer = peer;
    this.direction = direction;
    this.video = video;
    this.state = direction === "incoming" ? "ringing" : "connecting";
  }

  /** Calls `listener` on every change of state; answers the function that unsubscribes. */
  onChange(listener: (call: Call) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves when the call reaches `state` (or has ended, whatever state was asked for). */
  until(state: CallState): Promise<Call> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.state === state || this.state === "ended") {
          off();
          resolve(this);
        }
      };
      const off = this.onChange(check);
      check();
    });
  }

  /** Takes an incoming call on this device: the other devices of the account stop ringing. */
  accept(setup?: CallSetup): Promise<void> {
    return this.#calls.accept(this, setup);
  }

  /** Refuses an incoming call; the caller sees "declined", and this device keeps a missed-call entry. */
  decline(): Promise<void> {
    return this.#calls.decline(this);
  }

  /** Ends the call (or stops calling). */
  hangup(): Promise<void> {
    return this.#calls.hangup(this);
  }

  /** @internal */
  set(state: CallState, reason?: CallEndReason): void {
    if (this.state === "ended") return;
    this.state = state;
    if (reason) this.endReason = reason;
    for (const l of [...this.#listeners]) l(this);
  }
}
