// Issue 15 in real Chromium, through a real TURN server (node-turn, test/web/turn.ts) that checks the credentials
// the relay mints with coturn's shared-secret scheme. Every page's RTCPeerConnection is forced to relay-only ICE,
// so media that arrives went through TURN with the relay's credentials. Fake camera and microphone
// (--use-fake-device-for-media-stream, in startWebEnv).
import type { Page } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  createPerson,
  decryptedEntries,
  linkNewBrowser,
  messages,
  openChat,
  type Person,
  sendText,
  startChat,
  startWebEnv,
  twoPeopleChatting,
  waitForText,
  type WebEnv,
} from "./browser.ts";
import { startTurn, type TurnServer } from "./turn.ts";

const TTL_SECONDS = 600;
let env: WebEnv;
let turn: TurnServer;

beforeAll(async () => {
  turn = await startTurn();
  env = await startWebEnv({
    vars: {
      CALLS_TURN_PROVIDER: "coturn",
      CALLS_TURN_URLS: turn.url,
      CALLS_TURN_SECRET: turn.secret,
      CALLS_CREDENTIAL_TTL_SECONDS: String(TTL_SECONDS),
    },
  });
}, 60_000);
afterAll(async () => {
  await env?.stop();
  turn?.stop();
});

interface MediaStats {
  videoFramesDecoded: number;
  audioBytesReceived: number;
  /** The candidate type of this side of the selected pair ("relay" when media goes through TURN). */
  localCandidateType: string | undefined;
}

/** The inbound media of the page's latest RTCPeerConnection, from getStats(). */
function mediaStats(page: Page): Promise<MediaStats> {
  return page.evaluate(async () => {
    const pcs = (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs;
    const pc = pcs.at(-1)!;
    const stats = await pc.getStats();
    const out = { videoFramesDecoded: 0, audioBytesReceived: 0, localCandidateType: undefined as string | undefined };
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") out.videoFramesDecoded = s.framesDecoded ?? 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") out.audioBytesReceived = s.bytesReceived ?? 0;
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        out.localCandidateType = pair && stats.get(pair.localCandidateId)?.candidateType;
      }
    });
    return out;
  });
}

/** Polls `read` until `done` holds (media takes a moment to flow). */
async function until<T>(what: string, read: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

const callStatus = (page: Page) => page.getByLabel("Call status", { exact: true });
const incoming = (page: Page) => page.getByRole("dialog", { name: "Incoming call" });

async function place(caller: Person, callee: string, kind: "Voice call" | "Video call") {
  await openChat(caller.page, callee);
  await caller.page.getByRole("button", { name: kind }).click();
}

test("a video call through TURN: video and audio flow both ways, hang up ends it on both sides", async () => {
  const { alice, bob } = await twoPeopleChatting(env, "call me", { relayOnlyCalls: true });
  await place(alice, "Bob", "Video call");
  await waitForText(callStatus(alice.page), "Calling…");
  await incoming(bob.page).waitFor();
  await waitForText(incoming(bob.page), "Incoming video call");
  await bob.page.getByRole("button", { name: "Accept" }).click();
  // Connected on both sides: the duration counter runs.
  await waitForText(callStatus(alice.page), /^\d\d:\d\d$/, 30_000);
  await waitForText(callStatus(bob.page), /^\d\d:\d\d$/, 30_000);

  // Media flows, through the TURN server only.
  const first = await until(
    "Bob's decoded video and both sides' audio",
    async () => ({ bob: await mediaStats(bob.page), alice: await mediaStats(alice.page) }),
    (s) => s.bob.videoFramesDecoded > 10 && s.bob.audioBytesReceived > 0 && s.alice.audioBytesReceived > 0,
  );
  await until(
    "the media to keep flowing",
    async () => ({ bob: await mediaStats(bob.page), alice: await mediaStats(alice.page) }),
    (s) =>
      s.bob.videoFramesDecoded > first.bob.videoFramesDecoded + 10 &&
      s.bob.audioBytesReceived > first.bob.audioBytesReceived &&
      s.alice.audioBytesReceived > first.alice.audioBytesReceived,
  );
  expect(first.bob.localCandidateType).toBe("relay");
  expect(first.alice.localCandidateType).toBe("relay");
  expect(turn.accepted.size).toBeGreaterThanOrEqual(1);
  expect(await bob.page.getByLabel("Remote video", { exact: true }).count()).toBe(1);
  expect(await alice.page.getByLabel("Your camera", { exact: true }).count()).toBe(1);
  // The credential's username carries no account id.
  for (const username of turn.accepted) {
    expect(username).not.toContain(alice.accountId);
    expect(username).not.toContain(bob.accountId);
  }

  // Mute and camera off switch the local tracks; hang up ends the call on both sides.
  const sending = () =>
    alice.page.evaluate(() => {
      const pc = (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs.at(-1)!;
      const track = (kind: string) => pc.getSenders().find((s) => s.track?.kind === kind)?.track?.enabled;
      return { audio: track("audio"), video: track("video") };
    });
  expect(await sending()).toEqual({ audio: true, video: true });
  await alice.page.getByRole("button", { name: "Mute" }).click();
  await alice.page.getByRole("button", { name: "Unmute" }).waitFor();
  expect(await sending()).toEqual({ audio: false, video: true });
  await alice.page.getByRole("button", { name: "Camera off" }).click();
  await alice.page.getByRole("button", { name: "Camera on" }).waitFor();
  expect(await sending()).toEqual({ audio: false, video: false });
  await alice.page.getByRole("button", { name: "Hang up" }).click();
  await waitForText(callStatus(alice.page), "Call ended");
  await waitForText(callStatus(bob.page), "Call ended");
  await bob.page.getByRole("dialog", { name: "Call" }).waitFor({ state: "detached" });
  await Promise.all([alice.context.close(), bob.context.close()]);
}, 120_000);

test("the relay's TURN credentials work until they expire, then an allocation with them fails", async () => {
  const alice = await createPerson(env, "Alice");
  const device = JSON.parse(new Map(await decryptedEntries(alice.page)).get("device")!) as {
    accountId: string;
    deviceId: number;
    password: string;
  };
  const before = Math.floor(Date.now() / 1000);
  const answer = await alice.page.evaluate(
    async ({ user, password }) => {
      const res = await fetch("/v1/calls/ice-servers", {
        headers: { authorization: `Basic ${btoa(`${user}:${password}`)}` },
      });
      return (await res.json()) as { iceServers: RTCIceServer[]; ttlSeconds: number };
    },
    { user: `${device.accountId}.${device.deviceId}`, password: device.password },
  );
  expect(answer.ttlSeconds).toBe(TTL_SECONDS);
  const server = answer.iceServers[0]!;
  const expiry = Number(String(server.username).split(":")[0]);
  expect(expiry).toBeGreaterThanOrEqual(before + TTL_SECONDS);
  expect(expiry).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + TTL_SECONDS);

  /** Relay candidates one RTCPeerConnection gathers with these servers: one per successful TURN allocation. */
  const relayCandidates = () =>
    alice.page.evaluate(async (iceServers) => {
      const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: "relay" });
      pc.createDataChannel("probe");
      let relays = 0;
      const done = new Promise<void>((ok) => {
        pc.onicecandidate = (e) => {
          if (!e.candidate) ok();
          else if (e.candidate.type === "relay") relays++;
        };
        setTimeout(ok, 8_000);
      });
      await pc.setLocalDescription(await pc.createOffer());
      await done;
      pc.close();
      return relays;
    }, answer.iceServers);

  expect(await relayCandidates()).toBeGreaterThanOrEqual(1);
  expect(turn.accepted.has(String(server.username))).toBe(true);
  // The TURN server's clock passes the expiry the username states: the same credentials no longer allocate.
  turn.skewMs = (expiry + 1) * 1000 - Date.now();
  try {
    expect(await relayCandidates()).toBe(0);
    expect(turn.expired.has(String(server.username))).toBe(true);
  } finally {
    turn.skewMs = 0;
  }
  await alice.context.close();
}, 60_000);

/** The notice a call leaves in `page`'s conversation with `peer`. */
async function missedCall(page: Page, peer: string, text: string | RegExp) {
  await openChat(page, peer);
  await waitForText(messages(page), text);
}

test("declined, unanswered and busy calls: the caller sees why, the callee keeps a missed-call entry", async () => {
  const { alice, bob } = await twoPeopleChatting(env, "hello", { relayOnlyCalls: true, fakeClock: true });
  const carol = await createPerson(env, "Carol", undefined, { relayOnlyCalls: true });
  await startChat(carol.page, bob.invite);
  await sendText(carol.page, "hi Bob, Carol here");
  await openChat(bob.page, "Carol");
  await waitForText(messages(bob.page), "Carol here");

  // Declined: Alice's screen says so; Bob's conversation with Alice keeps a missed call.
  await place(alice, "Bob", "Voice call");
  await incoming(bob.page).waitFor();
  await waitForText(incoming(bob.page), "Incoming voice call");
  await bob.page.getByRole("button", { name: "Decline" }).click();
  await waitForText(callStatus(alice.page), "Call declined");
  await missedCall(bob.page, "Alice", "Missed voice call (declined)");
  await alice.page.getByRole("dialog", { name: "Call" }).waitFor({ state: "detached" });

  // Unanswered: a minute passes (the pages' clocks are moved); the caller sees "No answer", the callee a missed call.
  await place(alice, "Bob", "Video call");
  await incoming(bob.page).waitFor();
  await Promise.all([alice.page.clock.fastForward(61_000), bob.page.clock.fastForward(61_000)]);
  await waitForText(callStatus(alice.page), "No answer");
  await incoming(bob.page).waitFor({ state: "detached" });
  await missedCall(bob.page, "Alice", "Missed video call");
  await alice.page.getByRole("dialog", { name: "Call" }).waitFor({ state: "detached", timeout: 10_000 });

  // Busy: Bob is in a call with Alice when Carol calls.
  await place(alice, "Bob", "Voice call");
  await incoming(bob.page).waitFor();
  await bob.page.getByRole("button", { name: "Accept" }).click();
  await waitForText(callStatus(bob.page), /^\d\d:\d\d$/, 30_000);
  await place(carol, "Bob", "Voice call");
  await waitForText(callStatus(carol.page), "Busy");
  expect(await incoming(bob.page).count()).toBe(0);
  await waitForText(callStatus(bob.page), /^\d\d:\d\d$/);
  await bob.page.getByRole("button", { name: "Hang up" }).click();
  await waitForText(callStatus(alice.page), "Call ended");
  await missedCall(bob.page, "Carol", "Missed voice call (you were in another call)");
  await Promise.all([alice.context.close(), bob.context.close(), carol.context.close()]);
}, 180_000);

test("a callee with two devices: both ring, one answers, the other stops ringing within 2 s", async () => {
  const { alice, bob } = await twoPeopleChatting(env, "hello", { relayOnlyCalls: true });
  const bob2 = await linkNewBrowser(env, bob, { relayOnlyCalls: true });
  await place(alice, "Bob", "Video call");
  await Promise.all([incoming(bob.page).waitFor(), incoming(bob2.page).waitFor()]);
  await bob.page.getByRole("button", { name: "Accept" }).click();
  await incoming(bob2.page).waitFor({ state: "detached", timeout: 2_000 });
  await waitForText(callStatus(bob2.page), "Answered on another device");
  await waitForText(callStatus(alice.page), /^\d\d:\d\d$/, 30_000);
  await waitForText(callStatus(bob.page), /^\d\d:\d\d$/, 30_000);
  await alice.page.getByRole("button", { name: "Hang up" }).click();
  await waitForText(callStatus(bob.page), "Call ended");
  await Promise.all([alice.context.close(), bob.context.close(), bob2.context.close()]);
}, 120_000);
