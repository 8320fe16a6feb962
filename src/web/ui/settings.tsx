// The settings dialog: the username (username.tsx), the "Notifications" switch (shown only where the relay has a VAPID key) and "Show message
// previews" (off by default: a notification then names only who wrote). Also the hook that lets the page answer
// the service worker's pushes while it owns the device.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Messenger } from "../model/messenger.ts";
import { answerPushes, disablePush, enablePush, type PushStatus, pushStatus, resyncPushEndpoint } from "../push.ts";
import { readNotificationSettings, writeNotificationSettings } from "../push-notice.ts";
import { Dialog } from "./dialog.tsx";
import { UsernameSettings } from "./username.tsx";

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** While mounted, the page answers pushes (naming the conversation on screen) and keeps its endpoint current. */
export function usePushAnswers(m: Messenger, open: string | undefined): void {
  const onScreen = useRef(open);
  onScreen.current = open;
  useEffect(() => {
    void resyncPushEndpoint(m.client).catch(() => undefined);
    return answerPushes(m, () => onScreen.current);
  }, [m]);
}

export function SettingsDialog(props: { messenger: Messenger; onClose: () => void }) {
  const m = props.messenger;
  const [status, setStatus] = useState<PushStatus>();
  const [previews, setPreviews] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  useEffect(() => {
    pushStatus(m.client).then(setStatus, (e: unknown) => setError(message(e)));
    void readNotificationSettings(m.storage).then((s) => setPreviews(s.previews));
  }, [m]);

  const toggle = async (on: boolean) => {
    setBusy(true);
    setError("");
    try {
      await (on ? enablePush(m.client) : disablePush(m.client));
    } catch (e) {
      setError(`Could not turn notifications ${on ? "on" : "off"}: ${message(e)}`);
    }
    setStatus(await pushStatus(m.client).catch(() => status));
    setBusy(false);
  };

  return (
    <Dialog title="Settings" onClose={props.onClose}>
      <UsernameSettings messenger={m} />
      <h3 class="section-title">Notifications</h3>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {status === undefined && !error && <p class="hint">Checking notifications…</p>}
      {status?.kind === "unsupported" && <p class="hint">This browser cannot show notifications from cipherpost.</p>}
      {status?.kind === "unconfigured" && <p class="hint">This relay sends no notifications.</p>}
      {status?.kind === "ready" && (
        <>
          <label class="check">
            <input
              type="checkbox"
              role="switch"
              aria-checked={status.enabled}
              checked={status.enabled}
              disabled={busy}
              onChange={(e) => void toggle(e.currentTarget.checked)}
            />
            Notifications
          </label>
          <label class="check">
            <input
              type="checkbox"
              checked={previews}
              onChange={async (e) => {
                const on = e.currentTarget.checked;
                setPreviews(on);
                await writeNotificationSettings(m.storage, { previews: on });
              }}
            />
            Show message previews
          </label>
          <p class="hint">
            A notification names who wrote. With previews on it also shows the text, on this device's lock screen.
          </p>
        </>
      )}
    </Dialog>
  );
}
