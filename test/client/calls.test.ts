// The SDK's call layer over a real relay, with a stand-in RTCPeerConnection that only records what the SDK asks of
// it (Node has no WebRTC; the media path is tested in Chromium through TURN, test/web/calls.test.ts). What is
// checked here is the signalling: the offer reaches the callee encrypted, the answer and candidates come back to
// the caller's device, hangup ends both sides, and the SDK's own refusals (CALL_BUSY, CALLS_UNAVAILABLE).
import { describe, expect, it } from "vitest";
import {
  type Call,
  CipherpostError,
  type PeerConnectionConfig,
  type PeerConnectionLike,
  type SessionDescription,
} from "../../src/client/index.ts";
import { nextEvent, relayForFile, waitFor } from "./helpers.ts";

const env = relayForFile({
  vars: { CALLS_TURN_PROVIDER: "coturn", CALLS_TURN_URLS: "turn:127.0.0.1:3478", CALLS_TURN_SECRET: "s".repeat(32) },
});

/** Records descriptions and candidates; gathers one candidate when its local description is set. */
class RecordingPc implements PeerConnectionLike {
  static made: RecordingPc[] = [];
  readonly config: PeerConnectionConfig;
  local: SessionDescription | undefined;
  remote: SessionDescription | undefined;
  readonly candidates: unknown[] = [];
  connectionState = "new";
  closed = false;
  readonly #listeners = new Map<string, ((e: never) => void)[]>();

  constructor(config: PeerConnectionConfig) {
    this.config = config;
    RecordingPc.made.push(this);
  }
  async createOffer() {
    return { type: "offer" as const, sdp: `offer-sdp ${RecordingPc.made.length}` };
  }
  async createAnswer() {
    return { type: "answer" as const, sdp: `answer-sdp ${RecordingPc.made.length}` };
  }
  async setLocalDescription(d: SessionDescription) {
    this.local = d;
    setTimeout(() => {
      const candidate = { candidate: `candidate:1 1 udp 1 127.0.0.1 ${9000 + RecordingPc.made.length} typ relay` };
      this.#emit("icecandidate", { candidate: { toJSON: () => candidate } });
    }, 10);
  }
  async setRemoteDescription(d: SessionDescription) {
    this.remote = d;
  }
  async addIceCandidate(c: unknown) {
    this.candidates.push(c);
  }
  addEventListener(type: string, listener: (e: never) => void) {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener]);
  }
  /** What the browser does once ICE and DTLS succeed. */
  connect() {
    this.connectionState = "connected";
    this.#emit("connectionstatechange", {});
  }
  close() {
    this.closed = true;
  }
  #emit(type: string, e: unknown) {
    for (const l of this.#listeners.get(type) ?? []) l(e as never);
  }
}

const calls = { createPeerConnection: (config: PeerConnectionConfig) => new RecordingPc(config) };

describe("call signalling", () => {
  it("an offer rings the callee; the answer and candidates reach the caller; hangup ends both", async () => {
    const [alice, bob] = await Promise.all([env.client({ calls }), env.client({ calls })]);
    await Promise.all([alice.connect(), bob.connect()]);
    const hello = nextEvent(bob, "message");
    await alice.send(bob.accountId, "hello"); // a session before the call
    await hello;

    const ringing = nextEvent(bob, "call");
    const call = await alice.call(bob.accountId, { video: true });
    expect(call.state).toBe("connecting");
    expect(alice.activeCall()).toBe(call);
    const callerPc = call.peerConnection as RecordingPc;
    // The relay's TURN credentials went into the connection.
    expect(callerPc.config.iceServers[0]!.urls).toEqual(["turn:127.0.0.1:3478"]);
    expect(callerPc.config.iceServers[0]!.username).toMatch(/^\d+:/);

    const incoming: Call = await ringing;
    expect(incoming).toMatchObject({ id: call.id, peer: alice.accountId, direction: "incoming", video: true });
    expect(incoming.state).toBe("ringing");
    await incoming.accept();
    const calleePc = incoming.peerConnection as RecordingPc;
    expect(calleePc.remote).toEqual({ type: "offer", sdp: callerPc.local!.sdp });

    // The answer comes back; then each side's candidate reaches the other.
    await waitFor("the answer at the caller", () => callerPc.remote?.sdp === calleePc.local?.sdp);
    expect(call.peerDevice).toBe(bob.deviceId);
    await waitFor("the callee's candidate at the caller", () => callerPc.candidates.length > 0);
    await waitFor("the caller's candidate at the callee", () => calleePc.candidates.length > 0);

    callerPc.connect();
    calleePc.connect();
    expect(call.state).toBe("connected");
    expect(incoming.state).toBe("connected");

    // A second call while this one is on: refused here, nothing sent.
    await expect(alice.call(bob.accountId)).rejects.toSatisfy((e) => CipherpostError.is(e, "CALL_BUSY"));

    await call.hangup();
    expect(call.endReason).toBe("hangup");
    await waitFor("the callee's end", () => incoming.state === "ended");
    expect(incoming.endReason).toBe("remote-hangup");
    expect(callerPc.closed && calleePc.closed).toBe(true);
    expect(alice.activeCall()).toBeUndefined();
  }, 60_000);

  it("a client without an RTCPeerConnection factory cannot call, and a call needs another account", async () => {
    const [alice, bob] = await Promise.all([env.client(), env.client({ calls })]);
    await expect(alice.call(bob.accountId)).rejects.toSatisfy((e) => CipherpostError.is(e, "CALLS_UNAVAILABLE"));
    await expect(bob.call(bob.accountId)).rejects.toSatisfy((e) => CipherpostError.is(e, "INVALID_ARGUMENT"));
    // The relay's answer, as an application checks it before showing call buttons.
    const answer = await alice.iceServers();
    expect(answer.ttlSeconds).toBeGreaterThan(0);
    expect(answer.iceServers[0]!.credential).toBeTruthy();
  }, 60_000);
});
