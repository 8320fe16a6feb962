// Runs examples/libsignal-client.ts, the docs/api.md walk-through on Signal's libsignal, against a relay started
// locally, and checks the bytes it builds itself (proof of work, registration proof, link hand-over) against the
// relay's and the SDK's own code.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PrivateKey } from "@signalapp/libsignal-client";
import {
  linkSecrets,
  linkTranscript,
  offerLink,
  openHandOver,
  register,
  registrationProof,
  sealHandOver,
  solveProofOfWork,
  walkThrough,
} from "../../examples/libsignal-client.ts";
import { decodeLinkCode } from "../../src/client/link-code.ts";
import {
  deriveLinkSecrets,
  linkTranscript as sdkLinkTranscript,
  openLinkEnvelope,
  sealLinkEnvelope,
} from "../../src/crypto/link-envelope.ts";
import { registrationProofMessage } from "../../src/protocol/limits.ts";
import { powBits } from "../../src/protocol/pow.ts";
import { type Relay, startRelay } from "../support/relay.ts";

let relay: Relay;
beforeAll(async () => {
  relay = await startRelay();
}, 120_000);
afterAll(async () => {
  await relay?.stop();
});

describe("the libsignal example against a local relay", () => {
  it("registers two accounts, exchanges messages both ways over HTTP and the socket, links, repairs 409 and 410", async () => {
    const steps = await walkThrough(relay.url);
    const byWhat = Object.fromEntries(steps.map((s) => [s.what, s]));
    const types = (what: string) => byWhat[what]!.received.map((r) => `${r.to}<-${r.from}:${r.type}`);

    // PQXDH: the first message starts the session (prekey message, 3); once answered, Double Ratchet messages (2).
    expect(types("alice starts a session and writes to bob")).toEqual(["bob.1<-alice.1:3"]);
    expect(types("bob answers over his socket")).toEqual(["alice.1<-bob.1:2"]);
    expect(types("alice writes over her socket")).toEqual(["bob.1<-alice.1:2"]);
    expect(types("bob answers over HTTP")).toEqual(["alice.1<-bob.1:2"]);
    expect(steps.filter((s) => s.via === "http").length).toBeGreaterThanOrEqual(2);
    expect(steps.filter((s) => s.via === "socket").length).toBeGreaterThanOrEqual(2);

    // Linking: bob learns of the new device from a 409 and starts a session with it alone.
    const both = byWhat["bob writes to both of alice's devices"]!;
    expect(both.refusals).toEqual([409]);
    expect(types(both.what)).toEqual(["alice.1<-bob.1:2", "alice.2<-bob.1:3"]);
    const fromNew = byWhat["alice's new device answers bob"]!;
    // It answers on the session bob's prekey message started: no bundle claim, a Double Ratchet message.
    expect(types(fromNew.what)).toEqual(["bob.1<-alice.2:2"]);
    expect(fromNew.needsSync).toBe(true);

    // A device replaced under the same id: 410, then a new session. A device gone: 409 with it as extra.
    expect(byWhat["removed device's socket closed with 4410"]).toBeDefined();
    expect(steps.filter((s) => /^linked device 2 after both showed \d{6}$/.test(s.what))).toHaveLength(2);
    const replaced = byWhat["bob writes to alice's replaced device"]!;
    expect(replaced.refusals).toEqual([410]);
    expect(types(replaced.what)).toEqual(["alice.1<-bob.1:2", "alice.2 (new)<-bob.1:3"]);
    const gone = byWhat["bob writes after alice removed device 2"]!;
    expect(gone.refusals).toEqual([409]);
    expect(types(gone.what)).toEqual(["alice.1<-bob.1:2"]);

    // Acks deleted everything; keys_low made bob upload more one-time keys.
    expect(byWhat["after reconnecting alice got 0 message frames"]).toBeDefined();
    expect(steps.some((s) => /^bob refilled his one-time keys [1-9]/.test(s.what))).toBe(true);
  }, 120_000);

  it("builds the proof of work, the registration proof and the link hand-over exactly as the relay and SDK do", async () => {
    const challenge = randomBytes(32);
    expect(await powBits(challenge, solveProofOfWork(challenge, 10))).toBeGreaterThanOrEqual(10);
    const identityKey = randomBytes(33);
    expect(Buffer.from(registrationProof(challenge, identityKey))).toEqual(
      Buffer.from(registrationProofMessage(challenge, identityKey)),
    );
    // Linking: the example (libsignal's X25519, node's HKDF) and the SDK derive the same key and code.
    const [existing, joining] = [PrivateKey.generate(), PrivateKey.generate()];
    const [e, j] = [existing.getPublicKey().serialize(), joining.getPublicKey().serialize()];
    const accountId = crypto.randomUUID();
    const token = randomBytes(32);
    const transcript = linkTranscript(accountId, token.toString("base64"), e, j);
    expect(Buffer.from(transcript)).toEqual(
      Buffer.from(
        sdkLinkTranscript({
          accountId: Buffer.from(accountId.replaceAll("-", ""), "hex"),
          linkToken: token,
          existingKey: e,
          newKey: j,
        }),
      ),
    );
    const ours = linkSecrets(existing, j, transcript);
    const sdk = deriveLinkSecrets(existing.serialize(), j, transcript);
    expect(linkSecrets(joining, e, transcript)).toEqual(ours);
    expect({ key: Buffer.from(sdk.key), verificationCode: sdk.verificationCode }).toEqual(ours);
    const text = Buffer.from("the hand-over");
    expect(Buffer.from(openLinkEnvelope(ours.key, transcript, sealHandOver(ours.key, transcript, text)))).toEqual(text);
    expect(Buffer.from(openHandOver(ours.key, transcript, sealLinkEnvelope(ours.key, transcript, text)))).toEqual(text);
  });

  it("a link code carries the account, the token and the existing device's ephemeral key, and no secret", async () => {
    const alice = await register(relay.url);
    const offer = await offerLink(alice);
    expect(offer.code).toMatch(/^cplink2\.[A-Za-z0-9_-]{107}$/);
    const raw = Buffer.from(offer.code.slice(8), "base64url");
    expect(raw.subarray(0, 16).toString("hex")).toBe(alice.accountId.replaceAll("-", ""));
    expect(raw.subarray(16, 48).toString("base64")).toBe(offer.linkToken);
    expect(Buffer.from(raw.subarray(48))).toEqual(Buffer.from(offer.ephemeral.getPublicKey().getPublicKeyBytes()));
    // The SDK reads the same code: a cipherpost app can join an account whose existing device runs libsignal.
    const read = decodeLinkCode(offer.code);
    expect(read.accountId).toBe(alice.accountId);
    expect(Buffer.from(read.existingKey)).toEqual(Buffer.from(offer.ephemeral.getPublicKey().serialize()));
  });
});
