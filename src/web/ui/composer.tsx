// Writing a message: Enter sends (Shift+Enter for a new line), typing indicators go out while typing, and a
// file is sent as soon as it is chosen or dropped.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Messenger } from "../model/messenger.ts";

/** After this long without a keystroke the other side is told typing stopped. */
const TYPING_IDLE_MS = 4_000;

export function Composer({ messenger: m, conversation }: { messenger: Messenger; conversation: string }) {
  const [text, setText] = useState("");
  const typingSince = useRef(0);
  const idle = useRef<ReturnType<typeof setTimeout>>();
  const fileRef = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);

  const stopTyping = () => {
    clearTimeout(idle.current);
    if (typingSince.current) m.sendTyping(conversation, "stopped");
    typingSince.current = 0;
  };
  useEffect(() => stopTyping, [conversation]);

  const onInput = (value: string) => {
    setText(value);
    if (!value) return stopTyping();
    // "started" again every few seconds while typing goes on, so a late joiner or a lost one still shows it.
    if (Date.now() - typingSince.current > TYPING_IDLE_MS) {
      typingSince.current = Date.now();
      m.sendTyping(conversation, "started");
    }
    clearTimeout(idle.current);
    idle.current = setTimeout(stopTyping, TYPING_IDLE_MS);
  };

  const send = () => {
    const t = text.trim();
    if (!t) return;
    setText("");
    stopTyping();
    void m.sendText(conversation, t);
  };

  const sendFiles = (files: FileList | null | undefined) => {
    for (const f of files ?? []) void m.sendFile(conversation, f);
  };

  return (
    <form
      class={`composer${dragging ? " dragging" : ""}`}
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        sendFiles(e.dataTransfer?.files);
      }}
    >
      <input
        ref={fileRef}
        type="file"
        class="sr-only"
        tabIndex={-1}
        aria-hidden="true"
        multiple
        onChange={(e) => {
          sendFiles(e.currentTarget.files);
          e.currentTarget.value = "";
        }}
      />
      <button type="button" class="icon" aria-label="Attach file" onClick={() => fileRef.current?.click()}>
        <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true">
          <path
            d="M16.5 6.5 8.6 14.4a2 2 0 0 0 2.8 2.8l7.9-7.9a4 4 0 0 0-5.6-5.6L5.6 11.8a6 6 0 0 0 8.5 8.5l6.4-6.4"
            fill="none"
            stroke="currentColor"
            stroke-width="1.8"
            stroke-linecap="round"
          />
        </svg>
      </button>
      <textarea
        aria-label="Message"
        placeholder="Message"
        rows={1}
        value={text}
        onInput={(e) => onInput(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            send();
          }
        }}
      />
      <button type="submit" class="primary" disabled={!text.trim()}>
        Send
      </button>
    </form>
  );
}
