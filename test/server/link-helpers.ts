// Linking as the two devices drive it against the relay (docs/crypto.md, "Linking a device"): the existing device
// starts, the new device answers with its ephemeral key, the existing device approves with the sealed hand-over,
// the new device opens it and registers. Each step is its own helper so tests can stop or misbehave between them.
import { fromBase64, fromHex, toBase64, utf8 } from "../../src/crypto/bytes.ts";
import { type EcKeyPair, generateEcKeyPair } from "../../src/crypto/keys.ts";
import {
  deriveLinkSecrets,
  linkTranscript,
  openLinkEnvelope,
  sealLinkEnvelope,
} from "../../src/crypto/link-envelope.ts";
import { call, callJson, deviceKeys, type Identity, type TestAccount } from "./helpers.ts";

export interface Link {
  owner: TestAccount;
  linkToken: string;
  expiresAt: number;
  /** The existing device's ephemeral key pair, whose public half the link code carries. */
  existing: EcKeyPair;
}

/** What the existing device does first: a token from the relay and a fresh ephemeral key pair. */
export async function startLink(owner: TestAccount): Promise<Link> {
  const r = await callJson<{ linkToken: string; expiresAt: number }>("POST", "/v1/devices/link", { auth: owner.auth });
  return { owner, existing: generateEcKeyPair(), ...r };
}

export function transcriptOf(link: Link, newKey: Uint8Array): Uint8Array {
  return linkTranscript({
    accountId: fromHex(link.owner.accountId.replace(/-/g, "")),
    linkToken: fromBase64(link.linkToken),
    existingKey: link.existing.publicKey,
    newKey,
  });
}

/** The new device answers the code with its own ephemeral key. */
export async function requestLink(link: Link, eph: EcKeyPair = generateEcKeyPair(), accountId = link.owner.accountId) {
  const res = await call("PUT", "/v1/devices/link/request", {
    body: { accountId, linkToken: link.linkToken, publicKey: toBase64(eph.publicKey) },
  });
  return { eph, res };
}

/** The existing device approves the request with `newKey`: seals its identity key pair to it. */
export function approveLink(link: Link, newKey: Uint8Array, handOver?: Uint8Array) {
  const transcript = transcriptOf(link, newKey);
  const { key } = deriveLinkSecrets(link.existing.privateKey, newKey, transcript);
  const plaintext =
    handOver ??
    utf8(
      JSON.stringify({
        version: 1,
        accountId: link.owner.accountId,
        identityKey: toBase64(link.owner.identity.publicKey),
        identityPrivateKey: toBase64(link.owner.identity.privateKey),
      }),
    );
  return call("POST", "/v1/devices/link/approve", {
    auth: link.owner.auth,
    body: {
      linkToken: link.linkToken,
      publicKey: toBase64(newKey),
      envelope: toBase64(sealLinkEnvelope(key, transcript, plaintext)),
    },
  });
}

/** The new device asks for the hand-over (null until approved). */
export function fetchEnvelope(link: Link, eph: EcKeyPair) {
  return call("POST", "/v1/devices/link/envelope", {
    body: { accountId: link.owner.accountId, linkToken: link.linkToken, publicKey: toBase64(eph.publicKey) },
  });
}

/** The new device opens the approved hand-over: the account's identity key pair. */
export async function openHandOver(link: Link, eph: EcKeyPair): Promise<Identity> {
  const { envelope } = (await (await fetchEnvelope(link, eph)).json()) as { envelope: string | null };
  if (!envelope) throw new Error("not approved yet");
  const transcript = transcriptOf(link, eph.publicKey);
  const { key } = deriveLinkSecrets(eph.privateKey, link.existing.publicKey, transcript);
  const h = JSON.parse(new TextDecoder().decode(openLinkEnvelope(key, transcript, fromBase64(envelope)))) as {
    identityKey: string;
    identityPrivateKey: string;
  };
  return { publicKey: fromBase64(h.identityKey), privateKey: fromBase64(h.identityPrivateKey) };
}

/** Request and approval: what stands between a link code and the identity key. */
export async function approvedLink(link: Link): Promise<{ eph: EcKeyPair; identity: Identity }> {
  const { eph, res } = await requestLink(link);
  if (res.status !== 204) throw new Error(`request: ${res.status} ${await res.text()}`);
  const approved = await approveLink(link, eph.publicKey);
  if (approved.status !== 204) throw new Error(`approve: ${approved.status} ${await approved.text()}`);
  return { eph, identity: await openHandOver(link, eph) };
}

/** The new device registers with keys signed by the identity it opened. */
export async function registerLinked(link: Link, identity: Identity, registrationId?: number) {
  const keys = deviceKeys(identity, registrationId !== undefined ? { registrationId } : {});
  const res = await call("PUT", "/v1/devices/link", {
    body: { accountId: link.owner.accountId, linkToken: link.linkToken, ...keys },
  });
  return { res, keys, identity };
}

/** The whole flow, approved: the new device's registration answer, keys and the identity it received. */
export async function completeLink(link: Link, registrationId?: number) {
  const { identity } = await approvedLink(link);
  return registerLinked(link, identity, registrationId);
}
