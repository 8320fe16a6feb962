// Linking a new device (docs/crypto.md, "Linking a device"): the existing device's link code and the requests
// answering it, each with a verification code to compare and approve; and the new device's side, which gets the
// identity key only once the existing device approved it.
import { equalBytes, fromBase64, fromUtf8, toBase64, utf8 } from "../crypto/bytes.ts";
import { ecPublicKeyFromPrivate, generateEcKeyPair } from "../crypto/keys.ts";
import { deriveLinkSecrets, linkTranscript, openLinkEnvelope, sealLinkEnvelope } from "../crypto/link-envelope.ts";
import { type Clock, systemClock } from "../protocol/clock.ts";
import {
  CreateLinkResponse,
  LinkDeviceResponse,
  LinkEnvelopeResponse,
  LinkPendingResponse,
} from "../protocol/directory.ts";
import { type DeviceRecord, type LinkOptions, relayHttp } from "./context.ts";
import { CipherpostError } from "./errors.ts";
import type { Credentials, RelayHttp } from "./http.ts";
import { decodeLinkCode, encodeLinkCode, LinkHandOver, uuidToBytes } from "./link-code.ts";
import { assertNoDevice, enrollDevice, type NewDeviceFields } from "./onboarding.ts";

/** How often each side asks the relay whether the other has moved (a request, an approval). */
export const LINK_POLL_MS = 500;

/** A device asking to be linked with the link code, as the existing device sees it. */
export interface LinkRequest {
  /** Six digits; the new device shows the same ones only if it is the device that asked. */
  readonly verificationCode: string;
  /** Seals the account's identity key to the requesting device and releases it. Approve only on matching codes. */
  approve(): Promise<void>;
  /** Refuses it: the link code stops working. */
  reject(): Promise<void>;
}

/** A link code and what answers it. */
export interface LinkCodeSession {
  /** Shown to the new device; it opens nothing on its own. */
  code: string;
  expiresAt: number;
  /**
   * The requests answering the code: at most one (the relay keeps the first and refuses any other), yielded once
   * it arrives; the iteration ends after it, and fails LINK_TOKEN_INVALID when the code expires unanswered.
   */
  requests(): AsyncIterable<LinkRequest>;
}

const wait = (clock: Clock, ms: number) => new Promise<void>((resolve) => clock.setTimeout(resolve, ms));

/** Asks `poll` every LINK_POLL_MS until it answers something other than null. */
async function pollUntil<T>(clock: Clock, poll: () => Promise<T | null>, expiresAt = Number.POSITIVE_INFINITY) {
  for (;;) {
    const v = await poll();
    if (v !== null) return v;
    if (clock.now() >= expiresAt)
      throw new CipherpostError("LINK_TOKEN_INVALID", "the link code expired before a device answered it");
    await wait(clock, LINK_POLL_MS);
  }
}

/** Starts linking from this device: a token, a fresh ephemeral key pair and the code carrying both. */
export async function issueLinkCode(
  ctx: { http: RelayHttp; auth: Credentials; clock: Clock },
  device: DeviceRecord,
): Promise<LinkCodeSession> {
  const { http, auth, clock } = ctx;
  const existing = generateEcKeyPair();
  const r = await http.json("POST", "/v1/devices/link", CreateLinkResponse, { auth });
  const linkToken = fromBase64(r.linkToken);
  const request = async (): Promise<LinkRequest> => {
    const pending = () =>
      http.json("POST", "/v1/devices/link/pending", LinkPendingResponse, { auth, body: { linkToken: r.linkToken } });
    const publicKey = await pollUntil(clock, async () => (await pending()).publicKey, r.expiresAt);
    const newKey = fromBase64(publicKey);
    const reject = () => http.empty("POST", "/v1/devices/link/reject", { auth, body: { linkToken: r.linkToken } });
    const transcript = linkTranscript({
      accountId: uuidToBytes(device.accountId),
      linkToken,
      existingKey: existing.publicKey,
      newKey,
    });
    let secrets: ReturnType<typeof deriveLinkSecrets>;
    try {
      secrets = deriveLinkSecrets(existing.privateKey, newKey, transcript);
    } catch (e) {
      await reject();
      throw new CipherpostError("INVALID_LINK_CODE", "the device answering the link code sent an unusable key", {
        cause: e,
      });
    }
    return {
      verificationCode: secrets.verificationCode,
      approve: async () => {
        const handOver: LinkHandOver = {
          version: 1,
          accountId: device.accountId,
          identityKey: device.identityKey,
          identityPrivateKey: device.identityPrivateKey,
        };
        const envelope = sealLinkEnvelope(secrets.key, transcript, utf8(JSON.stringify(handOver)));
        await http.empty("POST", "/v1/devices/link/approve", {
          auth,
          body: { linkToken: r.linkToken, publicKey, envelope: toBase64(envelope) },
        });
      },
      reject,
    };
  };
  return {
    code: encodeLinkCode({ accountId: device.accountId, linkToken, existingKey: existing.publicKey }),
    expiresAt: r.expiresAt,
    async *requests() {
      yield await request();
    },
  };
}

/** LINK_TOKEN_INVALID on the new device, said as what it most likely means there. */
function explained(e: unknown, what: string): unknown {
  return CipherpostError.is(e, "LINK_TOKEN_INVALID")
    ? new CipherpostError("LINK_TOKEN_INVALID", what, { cause: e })
    : e;
}

/**
 * Links the storage as a new device of the account whose link code it was given: answers the code with a fresh
 * ephemeral key, reports the verification code (`onVerificationCode`) for the person to compare with the existing
 * device's, waits for that device's approval, opens the hand-over sealed to it, and enrolls with that identity.
 */
export async function linkDevice(options: LinkOptions): Promise<void> {
  await assertNoDevice(options.storage);
  const code = decodeLinkCode(options.code);
  const http = relayHttp(options.server, options);
  const clock = options.clock ?? systemClock;
  const eph = generateEcKeyPair();
  const linkToken = toBase64(code.linkToken);
  const body = { accountId: code.accountId, linkToken, publicKey: toBase64(eph.publicKey) };
  try {
    await http.empty("PUT", "/v1/devices/link/request", { body });
  } catch (e) {
    throw explained(
      e,
      "this link code is used, expired, or another device already answered it (if that was not you, someone else saw the code): make a new one",
    );
  }
  const transcript = linkTranscript({
    accountId: uuidToBytes(code.accountId),
    linkToken: code.linkToken,
    existingKey: code.existingKey,
    newKey: eph.publicKey,
  });
  const secrets = deriveLinkSecrets(eph.privateKey, code.existingKey, transcript);
  await options.onVerificationCode?.(secrets.verificationCode);
  let envelope: string;
  try {
    envelope = await pollUntil(
      clock,
      async () => (await http.json("POST", "/v1/devices/link/envelope", LinkEnvelopeResponse, { body })).envelope,
    );
  } catch (e) {
    throw explained(e, "the other device refused this link, or the link code expired first");
  }
  let handOver: LinkHandOver;
  try {
    const plaintext = openLinkEnvelope(secrets.key, transcript, fromBase64(envelope));
    handOver = LinkHandOver.parse(JSON.parse(fromUtf8(plaintext)));
  } catch (e) {
    throw new CipherpostError("INVALID_LINK_CODE", "the hand-over does not open for this link, or is malformed", {
      cause: e,
    });
  }
  const identity = { publicKey: fromBase64(handOver.identityKey), privateKey: fromBase64(handOver.identityPrivateKey) };
  if (
    handOver.accountId.toLowerCase() !== code.accountId ||
    !equalBytes(ecPublicKeyFromPrivate(identity.privateKey), identity.publicKey)
  )
    throw new CipherpostError(
      "INVALID_LINK_CODE",
      "the hand-over names another account or its identity key pair does not match",
    );
  const publish = (fields: NewDeviceFields) =>
    http.json("PUT", "/v1/devices/link", LinkDeviceResponse, {
      body: { accountId: code.accountId, linkToken, ...fields },
    });
  await enrollDevice(options, http, identity, publish, true);
}
