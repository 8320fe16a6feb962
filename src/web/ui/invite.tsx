// This person's invite link (with its QR code) and account id: what they share so others can write to them.
import { useState } from "preact/hooks";
import { inviteLink } from "../model/conversations.ts";
import { Qr } from "./qr.tsx";

export function Invite({ accountId, name }: { accountId: string; name: string }) {
  const link = inviteLink(location.origin, accountId, name);
  const [copied, setCopied] = useState(false);
  return (
    <div class="invite">
      <p class="hint">
        Share this link with people you want to talk to. Anyone who opens it can start a chat with you.
      </p>
      <Qr value={link} label="QR code of your invite link" />
      <p class="field-label">Your invite link</p>
      <div class="mono selectable" role="note" aria-label="Invite link">
        {link}
      </div>
      <button
        type="button"
        onClick={async () => {
          await navigator.clipboard?.writeText(link).catch(() => undefined);
          setCopied(true);
        }}
      >
        Copy invite link
      </button>
      <span role="status" class="hint">
        {copied ? "Copied" : ""}
      </span>
      <p class="field-label">Account ID</p>
      <div class="mono selectable" role="note" aria-label="Account ID">
        {accountId}
      </div>
    </div>
  );
}
