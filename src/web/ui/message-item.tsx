// One message in a conversation: text, attachments (images inline, other files as cards with a download link),
// time, the delivery state of one's own messages, and the time left of a disappearing one.
import { useEffect, useState } from "preact/hooks";
import type { AttachmentPointer, CallEntryData, StoredMessage } from "../../client/index.ts";
import { appData, deliveryState, timerLabel } from "../model/conversations.ts";
import type { Messenger } from "../model/messenger.ts";
import { formatBytes, shortTime } from "./hooks.ts";

const STATE_LABEL = { sent: "Sent", delivered: "Delivered", read: "Read" } as const;
/** Images up to this size are fetched and shown without asking. */
const INLINE_IMAGE_BYTES = 16 * 1024 * 1024;

/** Decrypted attachments of this page, by attachment id: fetched once, shown and downloaded from memory. */
const decrypted = new Map<string, Promise<string>>();

function objectUrl(m: Messenger, a: AttachmentPointer): Promise<string> {
  let p = decrypted.get(a.id);
  if (!p) {
    p = m.client
      .downloadAttachment(a)
      .then((stream) => new Response(stream).blob())
      .then((blob) => URL.createObjectURL(new Blob([blob], { type: a.contentType ?? "application/octet-stream" })));
    p.catch(() => decrypted.delete(a.id));
    decrypted.set(a.id, p);
  }
  return p;
}

function isImage(a: AttachmentPointer): boolean {
  return !!a.contentType?.startsWith("image/") && a.size <= INLINE_IMAGE_BYTES;
}

function ImagePreview({ messenger, pointer }: { messenger: Messenger; pointer: AttachmentPointer }) {
  const [url, setUrl] = useState<string>();
  useEffect(() => {
    let live = true;
    objectUrl(messenger, pointer).then(
      (u) => live && setUrl(u),
      () => undefined,
    );
    return () => {
      live = false;
    };
  }, [messenger, pointer]);
  return url ? (
    <img class="preview" src={url} alt={pointer.name ?? "image"} />
  ) : (
    <div class="preview placeholder">Loading image…</div>
  );
}

function FileCard({ messenger, pointer }: { messenger: Messenger; pointer: AttachmentPointer }) {
  const name = pointer.name ?? "file";
  const [state, setState] = useState<"idle" | "busy" | "failed">("idle");
  const download = async (e: Event) => {
    e.preventDefault();
    setState("busy");
    try {
      const a = document.createElement("a");
      a.href = await objectUrl(messenger, pointer);
      a.download = name;
      a.click();
      setState("idle");
    } catch {
      setState("failed");
    }
  };
  return (
    <div class="file-card">
      <svg class="file-icon" viewBox="0 0 24 24" width="26" height="26" aria-hidden="true">
        <path
          d="M6 2.75h8l4.25 4.25v14.25H6z M14 2.75V7h4.25"
          fill="none"
          stroke="currentColor"
          stroke-width="1.6"
          stroke-linejoin="round"
        />
      </svg>
      <span class="file-info">
        <span class="file-name">{name}</span>
        <span class="hint">{formatBytes(pointer.size)}</span>
      </span>
      <a href={`#download-${pointer.id}`} onClick={download} aria-label={`Download ${name}`}>
        {state === "busy" ? "Decrypting…" : state === "failed" ? "Retry" : "Download"}
      </a>
    </div>
  );
}

/**
 * "Delete message", then "Delete for me" or "Keep": deletes this device's copy (its text and its entry in the
 * encrypted store; docs/web.md). Other devices and the other person keep theirs.
 */
function DeleteControl({ messenger, message }: { messenger: Messenger; message: StoredMessage }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" class="link delete" aria-label="Delete message" onClick={() => setAsking(true)}>
        Delete
      </button>
    );
  return (
    <span class="delete-confirm">
      <button type="button" class="link" onClick={() => void messenger.deleteMessage(message)}>
        Delete for me
      </button>
      <button type="button" class="link" onClick={() => setAsking(false)}>
        Keep
      </button>
    </span>
  );
}

export function MessageItem(props: { messenger: Messenger; message: StoredMessage; now: number; showSender: boolean }) {
  const { messenger: m, message: msg, now } = props;
  const data = appData(msg);
  const mine = msg.direction === "outgoing";
  const call = (msg.data as Partial<CallEntryData> | undefined)?.call;
  if (call?.missed)
    return (
      <li class="notice missed-call">
        Missed {call.video ? "video" : "voice"} call
        {call.reason === "declined" ? " (declined)" : call.reason === "busy" ? " (you were in another call)" : ""} ·{" "}
        <time dateTime={new Date(msg.timestamp).toISOString()}>{shortTime(msg.timestamp, now)}</time>
      </li>
    );
  if (data.timer !== undefined && !msg.text && !msg.attachments?.length) {
    const who = mine ? "You" : m.nameOf(msg.from);
    return (
      <li class="notice">
        {who} set disappearing messages to {timerLabel(data.timer)}
      </li>
    );
  }
  const left = msg.expiresAt !== undefined ? Math.max(0, Math.ceil((msg.expiresAt - now) / 1000)) : undefined;
  return (
    <li class={`msg ${mine ? "outgoing" : "incoming"}`}>
      {props.showSender && !mine && <p class="sender">{m.nameOf(msg.from)}</p>}
      {msg.attachments?.map((a) =>
        isImage(a) ? (
          <figure key={a.id}>
            <ImagePreview messenger={m} pointer={a} />
            <FileCard messenger={m} pointer={a} />
          </figure>
        ) : (
          <FileCard key={a.id} messenger={m} pointer={a} />
        ),
      )}
      {msg.text && <p class="text">{msg.text}</p>}
      <p class="meta">
        <DeleteControl messenger={m} message={msg} />
        {left !== undefined && <span class="timer">⏱ {timerLabel(left)}</span>}
        <time dateTime={new Date(msg.timestamp).toISOString()}>{shortTime(msg.timestamp, now)}</time>
        {mine && <span class={`state ${deliveryState(msg)}`}>{STATE_LABEL[deliveryState(msg)]}</span>}
      </p>
    </li>
  );
}
