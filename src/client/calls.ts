// Voice and video calls (docs/calls.md): WebRTC media between two devices, negotiated over end-to-end-encrypted
// `online` messages (offer, answer, trickled ICE candidates, hangup, busy, decline), with TURN credentials from the
// relay. The SDK takes an RTCPeerConnection factory, so it runs wherever one exists (browsers) and tests can hand it
// theirs. A device is in at most one call; another offer meanwhile is answered "busy". A call that is not answered
// in time, or is declined, leaves a "missed call" entry in the callee's conversation.
import { IceServersResponse } from "../protocol/calls.ts";
import type { Clock, TimerHandle } from "../protocol/clock.ts";
import {
  Call,
  type CallControl,
  type CallEndReason,
  type CallEntryData,
  type CallOptions,
  type CallSetup,
  DEFAULT_RING_TIMEOUT_MS,
  type PeerConnectionLike,
} from "./call.ts";
import type { CallContent, IceCandidate } from "./content.ts";
import type { ClientContext } from "./context.ts";
import { CipherpostError } from "./errors.ts";
import type { MessageStore, StoredMessage } from "./message-store.ts";
import type { Sender } from "./sending.ts";
import { newBatch } from "./storage.ts";

/** Candidates gathered within this long travel in one signal. */
const CANDIDATE_BATCH_MS = 50;

interface Live {
  call: Call;
  ringTimer?: TimerHandle;
  /** Candidates gathered here, waiting for the batch timer (or, for the caller, for the answer). */
  outgoing: IceCandidate[];
  flushTimer?: TimerHandle;
  /** Candidates from the peer that arrived before the remote description was set. */
  incoming: IceCandidate[];
  remoteSet: boolean;
}

/** The calls of one device: at most one in progress, any number ringing. */
export class Calls implements CallControl {
  readonly #ctx: ClientContext;
  readonly #sender: Sender;
  readonly #store: MessageStore;
  readonly #options: CallOptions;
  readonly #live = new Map<string, Live>();

  constructor(ctx: ClientContext, parts: { sender: Sender; store: MessageStore }, options: CallOptions) {
    this.#ctx = ctx;
    this.#sender = parts.sender;
    this.#store = parts.store;
    this.#options = options;
  }

  get #clock(): Clock {
    return this.#ctx.clock;
  }

  /** The relay's ICE servers with fresh TURN credentials (one request, rate-limited per device). */
  iceServers(): Promise<IceServersResponse> {
    return this.#ctx.http.json("GET", "/v1/calls/ice-servers", IceServersResponse, { auth: this.#ctx.auth });
  }

  /** The call this device is in (connecting or connected), if any. */
  active(): Call | undefined {
    for (const l of this.#live.values())
      if (l.call.state === "connecting" || l.call.state === "connected") return l.call;
    return undefined;
  }

  /** Calls `account` (every device of it rings). CALL_BUSY when this device is in a call already. */
  async place(account: string, options: { video?: boolean; setup?: CallSetup } = {}): Promise<Call> {
    if (account === this.#ctx.accountId) throw new CipherpostError("INVALID_ARGUMENT", "a call needs another account");
    if (this.active()) throw new CipherpostError("CALL_BUSY", "this device is already in a call");
    const call = new Call(this, crypto.randomUUID(), account, "outgoing", options.video ?? false);
    const live = this.#track(call);
    try {
      const pc = await this.#connection(live, options.setup);
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await this.#signal(call, { signal: "offer", video: call.video, sdp: offer.sdp ?? "" });
    } catch (e) {
      this.#end(live, "failed");
      throw e;
    }
    live.ringTimer = this.#clock.setTimeout(() => void this.#timeout(live), this.#ringTimeout());
    return call;
  }

  async accept(call: Call, setup?: CallSetup): Promise<void> {
    const live = this.#live.get(call.id);
    if (!live || call.direction !== "incoming" || call.state !== "ringing")
      throw new CipherpostError("INVALID_ARGUMENT", "only a ringing incoming call can be accepted");
    if (this.active()) throw new CipherpostError("CALL_BUSY", "this device is already in a call");
    this.#clearRing(live);
    call.set("connecting");
    try {
      const pc = await this.#connection(live, setup);
      await pc.setRemoteDescription({ type: "offer", sdp: call.offer ?? "" });
      await this.#remoteSet(live);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await this.#signal(call, { signal: "answer", sdp: answer.sdp ?? "" });
      await this.#tellOwnDevices(call);
    } catch (e) {
      await this.#signal(call, { signal: "hangup" }).catch(() => undefined);
      this.#end(live, "failed");
      throw e;
    }
  }

  async decline(call: Call): Promise<void> {
    const live = this.#live.get(call.id);
    if (!live || call.direction !== "incoming" || call.state !== "ringing") return;
    this.#end(live, "declined");
    await this.#missed(call, "declined");
    await this.#signal(call, { signal: "decline" }).catch(() => undefined);
    await this.#tellOwnDevices(call).catch(() => undefined);
  }

  async hangup(call: Call): Promise<void> {
    const live = this.#live.get(call.id);
    if (!live || call.state === "ended") return;
    if (call.direction === "incoming" && call.state === "ringing") return this.decline(call);
    this.#end(live, "hangup");
    await this.#signal(call, { signal: "hangup" }).catch(() => undefined);
  }

  /** A call signal from `from`'s device `fromDevice` (decrypted by the receiver). */
  async onSignal(from: string, fromDevice: number, content: CallContent): Promise<void> {
    if (content.toDevice !== undefined && content.toDevice !== this.#ctx.deviceId) return;
    const live = this.#live.get(content.callId);
    if (from === this.#ctx.accountId) {
      // Another device of this account answered or declined a call that rings here too.
      if (content.signal === "handled" && live && live.call.state === "ringing")
        this.#end(live, content.outcome === "declined" ? "declined-elsewhere" : "answered-elsewhere");
      return;
    }
    if (content.signal === "offer") return this.#offer(from, fromDevice, content);
    if (!live || live.call.peer !== from) return;
    const { call } = live;
    // Once a device answered, only that device speaks for the peer.
    if (call.peerDevice !== undefined && call.peerDevice !== fromDevice) return;
    switch (content.signal) {
      case "answer": {
        if (call.direction !== "outgoing" || call.state !== "connecting" || live.remoteSet) return;
        call.peerDevice = fromDevice;
        this.#clearRing(live);
        await call.peerConnection?.setRemoteDescription({ type: "answer", sdp: content.sdp ?? "" });
        await this.#remoteSet(live);
        this.#flushCandidates(live);
        return;
      }
      case "ice":
        for (const c of content.candidates ?? []) {
          if (live.remoteSet) await call.peerConnection?.addIceCandidate(c).catch(() => undefined);
          else live.incoming.push(c);
        }
        return;
      case "hangup":
        if (call.direction === "incoming" && call.state === "ringing") {
          // The caller gave up before anyone answered: a missed call.
          this.#end(live, "remote-hangup");
          await this.#missed(call, "timeout");
        } else this.#end(live, "remote-hangup");
        return;
      case "busy":
      case "decline":
        if (call.direction === "outgoing" && call.state === "connecting" && !live.remoteSet)
          this.#end(live, content.signal === "busy" ? "busy" : "declined");
        return;
    }
  }

  /** Ends every call (the client is closing). */
  closeAll(): void {
    for (const live of [...this.#live.values()]) this.#end(live, "hangup");
  }

  async #offer(from: string, fromDevice: number, content: CallContent): Promise<void> {
    if (this.#live.has(content.callId)) return;
    const call = new Call(this, content.callId, from, "incoming", content.video ?? false);
    call.peerDevice = fromDevice;
    call.offer = content.sdp ?? "";
    if (this.active()) {
      // In a call already: the caller hears busy, and this device keeps a missed-call entry.
      await this.#signal(call, { signal: "busy" }).catch(() => undefined);
      await this.#missed(call, "busy");
      return;
    }
    const live = this.#track(call);
    live.ringTimer = this.#clock.setTimeout(() => void this.#timeout(live), this.#ringTimeout());
    await this.#ctx.events.emit("call", call);
  }

  #track(call: Call): Live {
    const live: Live = { call, outgoing: [], incoming: [], remoteSet: false };
    this.#live.set(call.id, live);
    return live;
  }

  #ringTimeout(): number {
    return this.#options.ringTimeoutMs ?? DEFAULT_RING_TIMEOUT_MS;
  }

  async #timeout(live: Live): Promise<void> {
    const { call } = live;
    if (call.state === "ended" || (call.state !== "ringing" && live.remoteSet)) return;
    this.#end(live, "timeout");
    if (call.direction === "incoming") await this.#missed(call, "timeout");
    else await this.#signal(call, { signal: "hangup" }).catch(() => undefined);
  }

  async #connection(live: Live, setup: CallSetup | undefined): Promise<PeerConnectionLike> {
    const make = this.#options.createPeerConnection;
    if (!make) throw new CipherpostError("CALLS_UNAVAILABLE", "this client was made without createPeerConnection");
    const { iceServers } = await this.iceServers();
    const pc = make({
      iceServers,
      ...(this.#options.iceTransportPolicy ? { iceTransportPolicy: this.#options.iceTransportPolicy } : {}),
    });
    live.call.peerConnection = pc;
    pc.addEventListener("icecandidate", (e) => {
      if (!e.candidate) return;
      live.outgoing.push(e.candidate.toJSON());
      // The caller holds its candidates until a device answered, then sends them to that device only.
      if (live.call.direction === "outgoing" && live.call.peerDevice === undefined) return;
      live.flushTimer ??= this.#clock.setTimeout(() => this.#flushCandidates(live), CANDIDATE_BATCH_MS);
    });
    pc.addEventListener("connectionstatechange", () => {
      const s = pc.connectionState;
      if (s === "connected" && live.call.state === "connecting") {
        live.call.connectedAt = this.#clock.now();
        live.call.set("connected");
      } else if (s === "failed") {
        void this.#signal(live.call, { signal: "hangup" }).catch(() => undefined);
        this.#end(live, "failed");
      }
    });
    await setup?.(pc);
    return pc;
  }

  async #remoteSet(live: Live): Promise<void> {
    live.remoteSet = true;
    const pending = live.incoming.splice(0);
    for (const c of pending) await live.call.peerConnection?.addIceCandidate(c).catch(() => undefined);
  }

  #flushCandidates(live: Live): void {
    if (live.flushTimer !== undefined) this.#clock.clearTimeout(live.flushTimer);
    live.flushTimer = undefined;
    const candidates = live.outgoing.splice(0);
    if (candidates.length === 0 || live.call.state === "ended") return;
    for (let i = 0; i < candidates.length; i += 32)
      this.#ctx.runInBackground("call candidates", () =>
        this.#signal(live.call, { signal: "ice", candidates: candidates.slice(i, i + 32) }),
      );
  }

  #clearRing(live: Live): void {
    if (live.ringTimer !== undefined) this.#clock.clearTimeout(live.ringTimer);
    live.ringTimer = undefined;
  }

  #end(live: Live, reason: CallEndReason): void {
    this.#clearRing(live);
    if (live.flushTimer !== undefined) this.#clock.clearTimeout(live.flushTimer);
    this.#live.delete(live.call.id);
    try {
      live.call.peerConnection?.close();
    } catch {
      // already closed
    }
    live.call.set("ended", reason);
  }

  /** Sends a signal of `call` to the peer (to its answering device once known), as an online message. */
  async #signal(call: Call, fields: Omit<CallContent, "type" | "id" | "timestamp" | "callId">): Promise<void> {
    const content: CallContent = {
      type: "call",
      id: crypto.randomUUID(),
      timestamp: this.#clock.now(),
      callId: call.id,
      ...(call.peerDevice !== undefined ? { toDevice: call.peerDevice } : {}),
      ...fields,
    };
    await this.#sender.sendContent(call.peer, content, true);
  }

  /** Tells this account's other devices that this one answered or declined, so they stop ringing. */
  async #tellOwnDevices(call: Call): Promise<void> {
    const content: CallContent = {
      type: "call",
      id: crypto.randomUUID(),
      timestamp: this.#clock.now(),
      callId: call.id,
      signal: "handled",
      peer: call.peer,
      outcome: call.endReason === "declined" ? "declined" : "answered",
    };
    await this.#sender.sendContent(this.#ctx.accountId, content, true).catch(() => undefined);
  }

  /** The missed-call entry in the conversation with the caller. */
  async #missed(call: Call, reason: CallEntryData["call"]["reason"]): Promise<void> {
    const now = this.#clock.now();
    const data: CallEntryData = { call: { missed: true, video: call.video, reason } };
    const entry: StoredMessage = {
      id: call.id,
      direction: "incoming",
      from: call.peer,
      fromDevice: call.peerDevice ?? 1,
      to: this.#ctx.accountId,
      timestamp: now,
      storedAt: now,
      data,
    };
    if (this.#store.has(call.peer, call.id)) return;
    const batch = newBatch();
    const commit = this.#store.stageAdd(entry, batch);
    await this.#ctx.storage.write(batch);
    commit();
    await this.#ctx.events.emit("message", entry);
  }
}
