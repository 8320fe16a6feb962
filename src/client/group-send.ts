// Group sends: one content carrying the group, encrypted per member device and fanned out by the relay's
// multi-recipient send (cut at the request limits), members whose device set changed retried one by one, then
// the sync copy and the sender's own stored copy.
import { forEachPooled } from "../protocol/concurrency.ts";
import type { OutgoingMessage, RecipientResult } from "../protocol/messages.ts";
import { MAX_GROUP_MEMBERS } from "./content.ts";
import { checkAccountId, type ClientContext } from "./context.ts";
import { asCipherpostError, CipherpostError } from "./errors.ts";
import { errorFromResult } from "./http.ts";
import type { MessageInput, Sender, SendResult } from "./sending.ts";
import type { Sessions } from "./sessions.ts";

/** Group sends are split so each request stays under the relay's default 8 MiB MAX_SEND_REQUEST_BYTES. */
const MAX_GROUP_REQUEST_CHARS = 7 * 1024 * 1024;
const MAX_GROUP_RECIPIENTS_PER_REQUEST = 1000;
/** Bundles for members never written to are claimed this many at a time. */
const BUNDLE_CLAIMS_AT_ONCE = 8;

export interface GroupSendResult extends SendResult {
  groupId: string;
  /** Members the message could not be delivered to, with the reason. Empty when all got it. */
  failed: { accountId: string; error: CipherpostError }[];
}

/**
 * Sends one message to a group's members (this account included or not: it is left out of the fan-out and gets
 * the sync copy). Failures of single members are listed in `failed`; a refusal of the whole request throws.
 */
export async function sendGroupMessage(
  ctx: ClientContext,
  sessions: Sessions,
  sender: Sender,
  members: string[],
  input: MessageInput | string,
  options: { groupId?: string },
): Promise<GroupSendResult> {
  const self = ctx.accountId;
  const all = [...new Set(members.map((m) => checkAccountId(m, "member")))];
  if (!all.includes(self)) all.push(self);
  if (all.length > MAX_GROUP_MEMBERS)
    throw new CipherpostError("INVALID_ARGUMENT", `a group has at most ${MAX_GROUP_MEMBERS} members`);
  const groupId = options.groupId ?? crypto.randomUUID();
  const content = sender.messageContent(input, { id: groupId, members: all });
  const bytes = sender.encode(content);
  const recipients = all.filter((a) => a !== self);
  const ttl = content.expireSeconds;
  return ctx.mutex.run(async () => {
    await sender.logSent(content, recipients);
    const failed: GroupSendResult["failed"] = [];
    const retry: string[] = [];
    let needsSync = false;
    let serverTimestamp = 0;

    // Sessions for members we have never written to: bundles claimed a few at a time.
    const fresh: string[] = [];
    for (const a of recipients) if (!(await sessions.hasCurrentSession(a))) fresh.push(a);
    await forEachPooled(fresh, BUNDLE_CLAIMS_AT_ONCE, async (a) => {
      try {
        await sessions.fetch(a, "*");
      } catch (e) {
        failed.push({ accountId: a, error: asCipherpostError(e) });
      }
    });
    const reachable = recipients.filter((a) => !failed.some((f) => f.accountId === a));

    // Encrypt for each recipient, cutting requests at the size and count limits.
    let batch: { accountId: string; messages: OutgoingMessage[] }[] = [];
    let chars = 0;
    const flush = async () => {
      if (!batch.length) return;
      const body = {
        recipients: batch,
        timestamp: content.timestamp,
        online: false,
        urgent: true,
        ...(ttl ? { ttlSeconds: ttl } : {}),
      };
      batch = [];
      chars = 0;
      const r = await sender.sendMultiRequest(body);
      needsSync ||= r.needsSync;
      for (const result of r.results) {
        if (result.status === 200) serverTimestamp = Math.max(serverTimestamp, result.serverTimestamp ?? 0);
        else if (result.code === "MISMATCHED_DEVICES" || result.code === "STALE_DEVICES") retry.push(result.accountId);
        else
          failed.push({
            accountId: result.accountId,
            error: errorFromResult(result as RecipientResult & Record<string, unknown>),
          });
      }
    };
    for (const account of reachable) {
      const messages = await sender.encryptFor(account, bytes, content.timestamp);
      const size = messages.reduce((n, m) => n + m.content.length + 120, 80);
      if (batch.length >= MAX_GROUP_RECIPIENTS_PER_REQUEST || chars + size > MAX_GROUP_REQUEST_CHARS) await flush();
      batch.push({ accountId: account, messages });
      chars += size;
    }
    await flush();

    // Members whose device set changed: repaired and sent to one by one.
    for (const account of retry) {
      try {
        const r = await sender.deliver(account, bytes, {
          timestamp: content.timestamp,
          ttlSeconds: ttl,
          resendable: true,
        });
        needsSync ||= r.needsSync;
        serverTimestamp = Math.max(serverTimestamp, r.serverTimestamp);
      } catch (e) {
        failed.push({ accountId: account, error: asCipherpostError(e) });
      }
    }
    await sender.sync(content, undefined, needsSync);
    await sender.storeOwn(content, undefined);
    return { id: content.id, timestamp: content.timestamp, serverTimestamp, groupId, failed };
  });
}
