// A group send: per-recipient ciphertexts fanned out to every recipient's object concurrently, one result per
// recipient (a bad recipient never fails the others). Shared by PUT /v1/messages/multi (the Worker) and the
// send_multi frame (the sender's own object), so both paths answer the same.
import { forEachPooled } from "../../protocol/concurrency.ts";
import { ERRORS, type ErrorCode } from "../../protocol/errors.ts";
import type { OutgoingMessage, RecipientResult } from "../../protocol/messages.ts";
import type { Config } from "../config.ts";
import { fail, type Failure } from "../errors.ts";
import {
  checkSizes,
  requestDigest,
  type DeliverRequest,
  type Delivered,
  type Mailboxes,
  type Sender,
} from "./delivery.ts";

/** Fan-out width: recipient objects called at once by one group send. */
export const FAN_OUT_CONCURRENCY = 32;

export interface GroupSend {
  recipients: { accountId: string; messages: OutgoingMessage[] }[];
  timestamp: number;
  online: boolean;
  urgent: boolean;
  ttlSeconds?: number | undefined;
}

/**
 * The checks that refuse a group send as a whole (400/413): too many recipients, one twice, a ciphertext too big.
 * Each recipient counts against the device's send limit, so a group larger than that whole limit could never
 * be sent: it is refused here, as too many recipients, rather than answered 429 for ever.
 */
export function checkGroupSend(cfg: Config, body: GroupSend): Failure | null {
  const most = Math.min(cfg.MAX_GROUP_RECIPIENTS, cfg.SENDS_PER_DEVICE_LIMIT);
  if (body.recipients.length > most) return fail("BAD_REQUEST", `recipients: at most ${most}`, { limit: most });
  const seen = new Set<string>();
  for (const [i, r] of body.recipients.entries()) {
    const id = r.accountId.toLowerCase();
    if (seen.has(id)) return fail("BAD_REQUEST", `recipients.${i}.accountId: appears twice`);
    seen.add(id);
    const tooBig = checkSizes(cfg.MAX_MESSAGE_BYTES, r.messages, `recipients.${i}.`);
    if (tooBig) return tooBig;
  }
  return null;
}

/** Delivers to every recipient, at most FAN_OUT_CONCURRENCY at a time; results in request order. */
export async function fanOut(
  accounts: Mailboxes,
  sender: Sender,
  body: GroupSend,
  idempotencyKey: string | undefined,
  onError: (e: unknown) => void,
): Promise<RecipientResult[]> {
  const fields = { timestamp: body.timestamp, online: body.online, urgent: body.urgent, ttlSeconds: body.ttlSeconds };
  const results: RecipientResult[] = new Array(body.recipients.length);
  await forEachPooled(body.recipients, FAN_OUT_CONCURRENCY, async (r, i) => {
    const accountId = r.accountId.toLowerCase();
    const req: DeliverRequest = {
      sender,
      messages: r.messages,
      ...fields,
      idempotency: idempotencyKey
        ? { key: idempotencyKey, digest: await requestDigest(accountId, r.messages, fields) }
        : undefined,
    };
    let out: Delivered | Failure;
    try {
      out = await accounts.getByName(accountId).deliver(req);
    } catch (e) {
      onError(e);
      out = {
        ok: false,
        code: "UNAVAILABLE",
        message: "the recipient's mailbox did not answer; try again",
        retryAfterSeconds: 1,
      };
    }
    results[i] = out.ok
      ? { accountId, status: 200, serverTimestamp: out.serverTimestamp }
      : recipientFailure(accountId, out);
  });
  return results;
}

function recipientFailure(accountId: string, f: Failure): RecipientResult {
  const x = (f.extras ?? {}) as { missingDevices?: number[]; extraDevices?: number[]; staleDevices?: number[] };
  return {
    accountId,
    status: ERRORS[f.code as ErrorCode].status,
    code: f.code,
    message: f.message,
    ...(x.missingDevices ? { missingDevices: x.missingDevices } : {}),
    ...(x.extraDevices ? { extraDevices: x.extraDevices } : {}),
    ...(x.staleDevices ? { staleDevices: x.staleDevices } : {}),
    ...(f.retryAfterSeconds !== undefined ? { retryAfterSeconds: Math.max(1, Math.ceil(f.retryAfterSeconds)) } : {}),
  };
}
