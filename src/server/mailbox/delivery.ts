// Pure pieces of a send, kept apart from the Durable Object so they read and test on their own: the device-set
// check (Signal-Server's 409/410 rules), the delivery frame built once at accept time, and the request digest
// an idempotency key is bound to.
import { utf8 } from "../../crypto/bytes.ts";
import { decodedLength } from "../../protocol/base64.ts";
import type { OutgoingMessage } from "../../protocol/messages.ts";
import { FRAME_TYPES } from "../../protocol/frames.ts";
import { sha256Hex } from "../account/credentials.ts";
import { fail, type Failure } from "../errors.ts";

export interface Sender {
  accountId: string;
  deviceId: number;
}

/** What the Worker hands the recipient's object: one RPC carries the whole send for that account. */
export interface DeliverRequest {
  sender: Sender;
  messages: OutgoingMessage[];
  timestamp: number;
  online: boolean;
  urgent: boolean;
  ttlSeconds?: number | undefined;
  idempotency?: { key: string; digest: string } | undefined;
}

export interface Delivered {
  ok: true;
  serverTimestamp: number;
  /** True when an earlier send with the same idempotency key answered this. */
  replayed: boolean;
}

/** An account's mailbox as a sender sees it: the recipient's object stub, or the sender's own intake. */
export interface Mailbox {
  deliver(req: DeliverRequest): Promise<Delivered | Failure>;
}

/** Where every account's mailbox is found by its id: the ACCOUNT namespace. */
export interface Mailboxes {
  getByName(accountId: string): Mailbox;
}

/** Per-ciphertext size limit (MAX_MESSAGE_BYTES), checked on the base64 length without decoding. */
export function checkSizes(maxBytes: number, list: OutgoingMessage[], where = ""): Failure | null {
  for (const [i, m] of list.entries()) {
    const bytes = decodedLength(m.content);
    if (bytes > maxBytes)
      return fail("MESSAGE_TOO_LARGE", `${where}messages.${i}.content: ${bytes} bytes, at most ${maxBytes}`, {
        limitBytes: maxBytes,
      });
  }
  return null;
}

/**
 * The request must name each current device exactly once (the sending device excluded on a send to its own
 * account): otherwise MISMATCHED_DEVICES with both lists; then any registration id that does not match is
 * STALE_DEVICES. Duplicate device ids in the request are a malformed request.
 */
export function checkDeviceSet(
  current: { device_id: number; registration_id: number }[],
  messages: OutgoingMessage[],
  excludeDeviceId: number | null,
): Failure | null {
  const expected = new Map<number, number>();
  for (const d of current) if (d.device_id !== excludeDeviceId) expected.set(d.device_id, d.registration_id);
  const given = new Set<number>();
  for (const m of messages) {
    if (given.has(m.destinationDeviceId))
      return fail("BAD_REQUEST", `messages: device ${m.destinationDeviceId} appears twice`);
    given.add(m.destinationDeviceId);
  }
  const missingDevices = [...expected.keys()].filter((d) => !given.has(d)).sort((a, b) => a - b);
  const extraDevices = [...given].filter((d) => !expected.has(d)).sort((a, b) => a - b);
  if (missingDevices.length || extraDevices.length)
    return fail("MISMATCHED_DEVICES", "the messages do not cover exactly the recipient's current devices", {
      missingDevices,
      extraDevices,
    });
  const staleDevices = messages
    .filter((m) => expected.get(m.destinationDeviceId) !== m.destinationRegistrationId)
    .map((m) => m.destinationDeviceId)
    .sort((a, b) => a - b);
  if (staleDevices.length)
    return fail("STALE_DEVICES", "a registration id no longer matches its device", { staleDevices });
  return null;
}

/**
 * The `message` frame for one copy, as text. Built by concatenation: the ciphertext is already checked base64
 * (no character needs escaping) and the shared fields are serialised once per send, not once per device.
 */
export function messageFrame(id: string, m: OutgoingMessage, common: string): string {
  return `{"type":"${FRAME_TYPES.message}","id":"${id}","envelope":{"type":${m.type},"destinationDeviceId":${m.destinationDeviceId},${common},"content":"${m.content}"}}`;
}

export function commonEnvelopeFields(req: DeliverRequest, serverTimestamp: number, expiresAt: number): string {
  return JSON.stringify({
    sourceAccountId: req.sender.accountId,
    sourceDeviceId: req.sender.deviceId,
    timestamp: req.timestamp,
    serverTimestamp,
    urgent: req.urgent,
    online: req.online,
    expiresAt,
  }).slice(1, -1);
}

export const ciphertextBytes = (m: OutgoingMessage) => decodedLength(m.content);

/** SHA-256 over what a send means for one recipient, so a key reused for another request is caught. */
export async function requestDigest(
  recipient: string,
  messages: OutgoingMessage[],
  fields: { timestamp: number; online: boolean; urgent: boolean; ttlSeconds?: number | undefined },
): Promise<string> {
  const parts: string[] = [
    recipient,
    String(fields.timestamp),
    String(fields.online),
    String(fields.urgent),
    String(fields.ttlSeconds ?? ""),
  ];
  for (const m of messages)
    parts.push(`${m.type}.${m.destinationDeviceId}.${m.destinationRegistrationId}.${m.content}`);
  return sha256Hex(utf8(parts.join("|")));
}
