// The app's side of calls (docs/calls.md): the one call on screen (ringing here, or this device's own), its media
// (the camera and microphone stream, the remote stream), mute and camera switches, and whether the relay can place
// calls at all (no TURN service: the call buttons stay hidden). The SDK does the signalling and the crypto.
import { type Call, type CipherpostClient, CipherpostError, type PeerConnectionLike } from "../../client/index.ts";

/** How long an ended call stays on screen with its outcome before the screen closes. */
const ENDED_SHOWN_MS = 2_000;

/** A browser's RTCPeerConnection seen through the SDK's structural type. */
type BrowserPc = PeerConnectionLike & RTCPeerConnection;

export class CallController {
  readonly #client: CipherpostClient;
  readonly #changed: () => void;
  /** Whether the relay hands out ICE servers: undefined until known. */
  available: boolean | undefined;
  /** The call on screen. */
  call: Call | undefined;
  local: MediaStream | undefined;
  remote: MediaStream | undefined;
  muted = false;
  cameraOff = false;
  /** Why starting or accepting a call failed (no camera, the relay refused), for the call screen. */
  error: string | undefined;

  constructor(client: CipherpostClient, changed: () => void) {
    this.#client = client;
    this.#changed = changed;
    client.on("call", (call) => {
      // The SDK answers "busy" for a device already in a call; a second call ringing at once waits its turn.
      if (this.call && this.call.state !== "ended") return;
      this.#show(call);
    });
  }

  /** Asks the relay once whether it can give TURN credentials. */
  async probe(): Promise<void> {
    try {
      await this.#client.iceServers();
      this.available = true;
    } catch (e) {
      // CALLS_NOT_CONFIGURED: this relay has no TURN service. Anything else (offline): try again on the next probe.
      this.available = CipherpostError.is(e, "CALLS_NOT_CONFIGURED") ? false : undefined;
    }
    this.#changed();
  }

  async start(peer: string, video: boolean): Promise<void> {
    if (this.call && this.call.state !== "ended") return;
    this.error = undefined;
    try {
      const stream = await this.#media(video);
      this.#show(await this.#client.call(peer, { video, setup: (pc) => this.#attach(pc as BrowserPc, stream) }));
    } catch (e) {
      this.#stopMedia();
      this.error = describe(e);
      this.#changed();
    }
  }

  async accept(): Promise<void> {
    const call = this.call;
    if (call?.state !== "ringing") return;
    try {
      const stream = await this.#media(call.video);
      await call.accept((pc: PeerConnectionLike) => this.#attach(pc as BrowserPc, stream));
    } catch (e) {
      this.error = describe(e);
      await call.hangup().catch(() => undefined);
    }
    this.#changed();
  }

  async decline(): Promise<void> {
    await this.call?.decline();
  }

  async hangup(): Promise<void> {
    await this.call?.hangup();
  }

  toggleMute(): void {
    this.muted = !this.muted;
    for (const t of this.local?.getAudioTracks() ?? []) t.enabled = !this.muted;
    this.#changed();
  }

  toggleCamera(): void {
    this.cameraOff = !this.cameraOff;
    for (const t of this.local?.getVideoTracks() ?? []) t.enabled = !this.cameraOff;
    this.#changed();
  }

  /** Closes the screen of an ended call (or a failed start) at once. */
  dismiss(): void {
    if (this.call?.state === "ended") this.call = undefined;
    this.error = undefined;
    this.#changed();
  }

  #show(call: Call): void {
    this.call = call;
    this.muted = false;
    this.cameraOff = false;
    call.onChange(() => {
      if (call.state === "ended") {
        this.#stopMedia();
        setTimeout(() => {
          if (this.call === call) {
            this.call = undefined;
            this.#changed();
          }
        }, ENDED_SHOWN_MS);
      }
      this.#changed();
    });
    this.#changed();
  }

  async #media(video: boolean): Promise<MediaStream> {
    this.#stopMedia();
    this.local = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    this.remote = new MediaStream();
    return this.local;
  }

  #attach(pc: BrowserPc, stream: MediaStream): void {
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    const remote = this.remote;
    pc.addEventListener("track", (e: RTCTrackEvent) => {
      remote?.addTrack(e.track);
      this.#changed();
    });
  }

  #stopMedia(): void {
    for (const t of this.local?.getTracks() ?? []) t.stop();
    this.local = undefined;
  }
}

function describe(e: unknown): string {
  if (CipherpostError.is(e, "CALL_BUSY")) return "You are already in a call.";
  if (CipherpostError.is(e, "CALLS_NOT_CONFIGURED")) return "This relay cannot connect calls.";
  if (e instanceof DOMException && (e.name === "NotAllowedError" || e.name === "NotFoundError"))
    return "cipherpost could not use the microphone or camera.";
  return e instanceof Error ? e.message : String(e);
}
