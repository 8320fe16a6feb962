// A file on its way out: a progress bar while it uploads; after a reload, a button to resume it (the browser
// cannot reopen a file by itself, so the person picks it again and the upload goes on from the relay's offset).
import { useRef } from "preact/hooks";
import type { Messenger, Upload } from "../model/messenger.ts";
import { formatBytes } from "./hooks.ts";

export function UploadItem({ messenger, upload: u }: { messenger: Messenger; upload: Upload }) {
  const input = useRef<HTMLInputElement>(null);
  return (
    <li class="msg outgoing upload">
      <p class="file-name">{u.name}</p>
      <progress aria-label={`Uploading ${u.name}`} max={u.total || 1} value={u.sent} />
      <p class="meta">
        {u.error ? (
          <span class="error">{u.error}</span>
        ) : u.paused ? (
          <span>Upload paused</span>
        ) : (
          <span>
            {formatBytes(Math.min(u.sent, u.size))} of {formatBytes(u.size)}
          </span>
        )}
      </p>
      {(u.paused || u.error) && (
        <>
          <input
            ref={input}
            type="file"
            class="sr-only"
            tabIndex={-1}
            aria-hidden="true"
            onChange={(e) => {
              const file = e.currentTarget.files?.[0];
              if (file) void messenger.resumeUpload(u.id, file);
            }}
          />
          <button type="button" onClick={() => input.current?.click()}>
            Resume upload of {u.name}
          </button>
        </>
      )}
    </li>
  );
}
