// The list of conversations, newest first, each with its last message, time and unread count.
import { previewOf, timerLabel } from "../model/conversations.ts";
import type { Messenger } from "../model/messenger.ts";
import { shortTime, useNow } from "./hooks.ts";

export function ConversationList(props: { messenger: Messenger; selected?: string; onOpen: (id: string) => void }) {
  const now = useNow(60_000);
  const list = props.messenger.conversations();
  if (!list.length)
    return <p class="empty hint">No conversations yet. Start one with “New chat”, or share your invite link.</p>;
  return (
    <ul class="conversations" aria-label="Conversations">
      {list.map((c) => {
        const preview = c.last ? previewOf(c.last, timerLabel) : "";
        const typing = props.messenger.isTyping(c.id);
        return (
          <li key={c.id}>
            <button
              type="button"
              class={`conversation${c.id === props.selected ? " selected" : ""}`}
              aria-current={c.id === props.selected ? "true" : undefined}
              onClick={() => props.onOpen(c.id)}
            >
              <span class="avatar" aria-hidden="true">
                {c.name.slice(0, 1).toUpperCase()}
              </span>
              <span class="conv-main">
                <span class="conv-name">{c.name}</span>
                <span class="conv-preview">{typing ? "typing…" : preview}</span>
              </span>
              <span class="conv-meta">
                {c.last && (
                  <time dateTime={new Date(c.last.storedAt).toISOString()}>{shortTime(c.last.storedAt, now)}</time>
                )}
                {c.unread > 0 && (
                  <span class="badge">
                    {c.unread}
                    <span class="sr-only"> unread</span>
                  </span>
                )}
              </span>
            </button>
          </li>
        );
      })}
    </ul>
  );
}
