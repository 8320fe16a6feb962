// Dialogs about this account: the invite link, the devices (with removal and linking a new one), and a
// contact's safety number.
import { useEffect, useState } from "preact/hooks";
import type { CipherpostClient } from "../../client/index.ts";
import { fromBase64 } from "../../crypto/bytes.ts";
import { safetyNumber } from "../../crypto/fingerprint.ts";
import type { Messenger } from "../model/messenger.ts";
import { Dialog } from "./dialog.tsx";
import { shortTime } from "./hooks.ts";
import { Invite } from "./invite.tsx";
import { LinkDevicePanel } from "./link-code.tsx";
import { Qr } from "./qr.tsx";

type DeviceInfo = Awaited<ReturnType<CipherpostClient["devices"]>>[number];

export function InviteDialog(props: { messenger: Messenger; title: string; onClose: () => void }) {
  const m = props.messenger;
  return (
    <Dialog title={props.title} onClose={props.onClose}>
      <Invite accountId={m.client.accountId} name={m.profile.name} />
    </Dialog>
  );
}

function useAsync<T>(load: () => Promise<T>, deps: unknown[]): [T | undefined, string, () => void] {
  const [value, setValue] = useState<T>();
  const [error, setError] = useState("");
  const [round, setRound] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (v) => live && setValue(v),
      (e: unknown) => live && setError(e instanceof Error ? e.message : String(e)),
    );
    return () => {
      live = false;
    };
  }, [...deps, round]);
  return [value, error, () => setRound(round + 1)];
}

export function DevicesDialog(props: { messenger: Messenger; onClose: () => void }) {
  const client = props.messenger.client;
  const [devices, error, reload] = useAsync<DeviceInfo[]>(() => client.devices(), [client]);
  return (
    <Dialog title="Devices" onClose={props.onClose} wide>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <ul class="plain devices" aria-label="Your devices">
        {devices?.map((d) => (
          <li key={d.deviceId}>
            <span>
              <strong>
                Device {d.deviceId}
                {d.deviceId === client.deviceId ? " (this browser)" : ""}
              </strong>
              <span class="hint">
                {" "}
                · linked {shortTime(d.created)} · last active {new Date(d.lastSeen).toLocaleDateString()}
              </span>
            </span>
            {d.deviceId !== client.deviceId && (client.deviceId === 1 || d.deviceId === client.deviceId) && (
              <button
                type="button"
                aria-label={`Remove device ${d.deviceId}`}
                onClick={async () => {
                  if (!confirm(`Remove device ${d.deviceId}? It will stop receiving messages.`)) return;
                  await client.removeDevice(d.deviceId).catch(() => undefined);
                  reload();
                }}
              >
                Remove
              </button>
            )}
          </li>
        ))}
      </ul>
      <LinkDevicePanel client={client} onLinked={reload} />
    </Dialog>
  );
}

export function SafetyDialog(props: { messenger: Messenger; contact: string; onClose: () => void }) {
  const m = props.messenger;
  // After an identity change the number to compare is the one with the new key, not yet trusted by the SDK.
  const changed = m.prefsOf(props.contact).identityChanged;
  const [digits, error] = useAsync(
    async () =>
      changed
        ? safetyNumber({
            localIdentifier: m.client.accountId,
            localIdentityKey: m.client.identityKey,
            remoteIdentifier: props.contact,
            remoteIdentityKey: fromBase64(changed),
          }).display
        : m.client.safetyNumber(props.contact),
    [props.contact, changed],
  );
  const name = m.nameOf(props.contact);
  return (
    <Dialog title="Safety number" onClose={props.onClose}>
      <p class="hint">
        Compare these numbers with {name}, in person or on a call. If they match on both screens, your messages cannot
        be read by anyone in between.
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {digits && (
        <>
          <Qr value={digits.replace(/\s/g, "")} label={`QR code of your safety number with ${name}`} />
          <div class="mono digits" role="note" aria-label="Safety number digits">
            {digits}
          </div>
        </>
      )}
    </Dialog>
  );
}
