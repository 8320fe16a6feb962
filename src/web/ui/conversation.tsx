// One open conversation: its header (name, calls, safety number, disappearing timer), the messages with their
// delivery states and times, the typing indicator, files being uploaded, and the composer.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { isGroupConversation, timerLabel } from "../model/conversations.ts";
import type { Messenger } from "../model/messenger.ts";
import { Composer } from "./composer.tsx";
import { useMessenger, useNow } from "./hooks.ts";
import { MessageItem } from "./message-item.tsx";
import { UploadItem } from "./upload-item.tsx";

const PAGE = 60;

export function Conversation(props: {
  messenger: Messenger;
  id: string;
  onBack: () => void;
  onShow: (panel: "safety" | "timer" | "members") => void;
}) {
  const { messenger: m, id } = props;
  useMessenger(m);
  const now = useNow(1000);
  const [shown, setShown] = useState(PAGE);
  const all = m.messagesOf(id);
  const messages = all.slice(-shown);
  const pending = [...m.outbox.values()].filter((p) => p.conversation === id);
  const uploads = [...m.uploads.values()].filter((u) => u.conversation === id);
  const name = m.nameOf(id);
  const isGroup = isGroupConversation(id);
  const timer = m.prefsOf(id).timer ?? 0;
  const listRef = useRef<HTMLElement>(null);
  const newest = all.at(-1)?.storedAt ?? 0;

  // Read receipts while the conversation is on screen and the page visible.
  useEffect(() => {
    const read = () => document.visibilityState === "visible" && void m.markRead(id);
    read();
    document.addEventListener("visibilitychange", read);
    return () => document.removeEventListener("visibilitychange", read);
  }, [m, id, newest]);

  // Keep the newest message in view as messages arrive.
  useLayoutEffect(() => {
    const el = listRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [id, all.length, pending.length, uploads.length]);

  return (
    <section class="conversation-view" aria-label={`Conversation with ${name}`}>
      <header class="chat-head">
        <button type="button" class="icon back" aria-label="Back to conversations" onClick={props.onBack}>
          ←
        </button>
        <div class="chat-title">
          <h2>{name}</h2>
          <p class="hint" role="status">
            {m.isTyping(id)
              ? `${isGroup ? "Someone" : name} is typing…`
              : timer
                ? `Disappearing: ${timerLabel(timer)}`
                : ""}
          </p>
        </div>
        {isGroup ? (
          <button type="button" onClick={() => props.onShow("members")}>
            Members
          </button>
        ) : (
          <>
            {m.calls.available && (
              <>
                <button type="button" onClick={() => void m.calls.start(id, false)}>
                  Voice call
                </button>
                <button type="button" onClick={() => void m.calls.start(id, true)}>
                  Video call
                </button>
              </>
            )}
            <button type="button" onClick={() => props.onShow("safety")}>
              Safety number
            </button>
          </>
        )}
        <button type="button" onClick={() => props.onShow("timer")}>
          Disappearing messages
        </button>
      </header>
      {m.prefsOf(id).identityChanged && (
        <div class="banner" role="alert">
          <p>
            {name}’s safety number has changed. They may have reinstalled, or someone may be trying to listen in.
            Compare the new safety number before you trust it.
          </p>
          <button type="button" onClick={() => props.onShow("safety")}>
            Compare numbers
          </button>{" "}
          <button type="button" onClick={() => void m.acceptIdentity(id)}>
            Trust new key
          </button>
        </div>
      )}
      <section class="messages" ref={listRef} aria-label="Messages">
        {all.length > shown && (
          <button type="button" class="link older" onClick={() => setShown(shown + PAGE)}>
            Show earlier messages
          </button>
        )}
        <ol>
          {messages.map((msg) => (
            <MessageItem key={`${msg.from}/${msg.id}`} messenger={m} message={msg} now={now} showSender={isGroup} />
          ))}
          {pending.map((p) => (
            <li key={p.id} class="msg outgoing pending">
              <p class="text">{p.text}</p>
              <p class="meta">
                <span class="state">{m.online ? "Sending…" : "Waiting for network"}</span>
              </p>
            </li>
          ))}
          {uploads.map((u) => (
            <UploadItem key={u.id} messenger={m} upload={u} />
          ))}
        </ol>
      </section>
      <Composer messenger={m} conversation={id} />
    </section>
  );
}
