// The messenger once the device is open: the conversation list beside the open conversation on wide screens,
// one of them at a time on phones, and the dialogs the toolbar opens.
import { useEffect, useState } from "preact/hooks";
import { isGroupConversation, parseInvite } from "../model/conversations.ts";
import type { Messenger } from "../model/messenger.ts";
import { DevicesDialog, InviteDialog, SafetyDialog } from "./account-dialogs.tsx";
import { CallScreen } from "./call.tsx";
import { MembersDialog, NewChatDialog, NewGroupDialog, TimerDialog } from "./chat-dialogs.tsx";
import { Conversation } from "./conversation.tsx";
import { ConversationList } from "./conversation-list.tsx";
import { useMessenger } from "./hooks.ts";
import { SettingsDialog, usePushAnswers } from "./settings.tsx";

type Panel =
  | { kind: "welcome" }
  | { kind: "invite" }
  | { kind: "newChat"; initial?: string; initialUsername?: string }
  | { kind: "newGroup" }
  | { kind: "devices" }
  | { kind: "settings" }
  | { kind: "safety" }
  | { kind: "timer" }
  | { kind: "members" };

/** An invite link opened in the address bar: `#u=<account id>&n=<name>`. Read once, then cleared. */
function takeInviteFromUrl(): string | undefined {
  if (!parseInvite(location.hash)) return undefined;
  const link = location.href;
  history.replaceState(null, "", location.pathname + location.search);
  return link;
}

/** A username link opened in the address bar: `/u#<handle>.<key>`. Read once, then cleared. */
function takeUsernameLinkFromUrl(): string | undefined {
  if (location.pathname !== "/u" || location.hash.length < 2) return undefined;
  const link = location.href;
  history.replaceState(null, "", "/");
  return link;
}

export function App({ messenger: m, firstRun }: { messenger: Messenger; firstRun: boolean }) {
  useMessenger(m);
  const [open, setOpen] = useState<string | undefined>();
  usePushAnswers(m, open);
  const [panel, setPanel] = useState<Panel | null>(() => {
    const invite = takeInviteFromUrl();
    if (invite) return { kind: "newChat", initial: invite };
    const usernameLink = takeUsernameLinkFromUrl();
    if (usernameLink) return { kind: "newChat", initialUsername: usernameLink };
    return firstRun ? { kind: "welcome" } : null;
  });
  useEffect(() => {
    const onHash = () => {
      const invite = takeInviteFromUrl();
      if (invite) setPanel({ kind: "newChat", initial: invite });
    };
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  const close = () => setPanel(null);
  const start = (conv: string) => {
    setPanel(null);
    setOpen(conv);
  };

  return (
    <div class={`shell${open ? " has-open" : ""}`}>
      <aside class="sidebar" aria-label="Chats">
        <header class="side-head">
          <h1 class="brand">
            <img src="icon.svg" alt="" width="28" height="28" /> cipherpost
          </h1>
          <span class={`dot ${m.online ? "on" : "off"}`} role="status" aria-label={m.online ? "Online" : "Offline"} />
        </header>
        <div class="toolbar">
          <button type="button" class="primary" onClick={() => setPanel({ kind: "newChat" })}>
            New chat
          </button>
          <button type="button" onClick={() => setPanel({ kind: "newGroup" })}>
            New group
          </button>
        </div>
        <ConversationList messenger={m} selected={open} onOpen={setOpen} />
        <footer class="side-foot">
          <button type="button" class="link" onClick={() => setPanel({ kind: "invite" })}>
            {m.profile.name || "You"} · Invite
          </button>
          <button type="button" class="link" onClick={() => setPanel({ kind: "devices" })}>
            Devices
          </button>
          <button type="button" class="link" onClick={() => setPanel({ kind: "settings" })}>
            Settings
          </button>
        </footer>
      </aside>
      <main class="main">
        {m.stopped && (
          <p role="alert" class="banner">
            {m.stopped}
          </p>
        )}
        {open ? (
          <Conversation
            key={open}
            messenger={m}
            id={open}
            onBack={() => setOpen(undefined)}
            onShow={(kind) => setPanel({ kind })}
          />
        ) : (
          <div class="placeholder-pane">
            <p>Choose a conversation, or start a new one.</p>
          </div>
        )}
      </main>
      {panel?.kind === "welcome" && <InviteDialog messenger={m} title="You are all set" onClose={close} />}
      {panel?.kind === "invite" && <InviteDialog messenger={m} title="Your invite" onClose={close} />}
      {panel?.kind === "newChat" && (
        <NewChatDialog
          messenger={m}
          initial={panel.initial}
          initialUsername={panel.initialUsername}
          onClose={close}
          onStarted={start}
        />
      )}
      {panel?.kind === "newGroup" && <NewGroupDialog messenger={m} onClose={close} onStarted={start} />}
      {panel?.kind === "devices" && <DevicesDialog messenger={m} onClose={close} />}
      {panel?.kind === "settings" && <SettingsDialog messenger={m} onClose={close} />}
      {panel?.kind === "safety" && open && !isGroupConversation(open) && (
        <SafetyDialog messenger={m} contact={open} onClose={close} />
      )}
      {panel?.kind === "timer" && open && <TimerDialog messenger={m} conversation={open} onClose={close} />}
      {panel?.kind === "members" && open && <MembersDialog messenger={m} conversation={open} onClose={close} />}
      <CallScreen messenger={m} />
    </div>
  );
}
