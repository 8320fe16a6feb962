// Dialogs about conversations: start a chat from an invite link, an account id or a username (or username link), create a group from contacts,
// set a conversation's disappearing-message timer, see a group's members.
import { useState } from "preact/hooks";
import { CipherpostError } from "../../client/index.ts";
import { GROUP_PREFIX, parseInvite, TIMER_CHOICES, timerLabel } from "../model/conversations.ts";
import type { Messenger } from "../model/messenger.ts";
import { Dialog } from "./dialog.tsx";
import { usernameProblem } from "./username.tsx";

export function NewChatDialog(props: {
  messenger: Messenger;
  initial?: string;
  /** A username link opened in the address bar: put in "Find by username". */
  initialUsername?: string;
  onClose: () => void;
  onStarted: (conversation: string) => void;
}) {
  const [value, setValue] = useState(props.initial ?? "");
  const [name, setName] = useState(props.initialUsername ?? "");
  const [nameError, setNameError] = useState("");
  const [finding, setFinding] = useState(false);
  const [error, setError] = useState("");
  const invite = parseInvite(value);
  const self = props.messenger.client.accountId;
  return (
    <Dialog title="New chat" onClose={props.onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (!invite) return setError("That is neither an invite link nor an account ID.");
          if (invite.accountId === self) return setError("That is your own invite link.");
          await props.messenger.addContact(invite.accountId, invite.name);
          props.onStarted(invite.accountId);
        }}
      >
        <label for="invite-input">Invite link or account ID</label>
        <input
          id="invite-input"
          value={value}
          autoComplete="off"
          spellcheck={false}
          onInput={(e) => {
            setValue(e.currentTarget.value);
            setError("");
          }}
        />
        {invite?.name && <p class="hint">Invite from {invite.name}</p>}
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" class="primary">
          Start chat
        </button>
      </form>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          const text = name.trim();
          if (!text) return;
          setFinding(true);
          setNameError("");
          try {
            // alice.42 or a username link: the SDK sends the relay only the name's hash (or the link's handle).
            const isLink = text.includes("#");
            const found = isLink
              ? await props.messenger.client.resolveUsernameLink(text)
              : { username: text.toLowerCase(), accountId: await props.messenger.client.lookupUsername(text) };
            if (found.accountId === self) setNameError("That is your own username.");
            else {
              await props.messenger.addContact(found.accountId, found.username);
              props.onStarted(found.accountId);
            }
          } catch (err) {
            setNameError(
              text.includes("#") && CipherpostError.is(err, "NOT_FOUND")
                ? "That username link no longer works."
                : usernameProblem(err),
            );
          }
          setFinding(false);
        }}
      >
        <label for="username-find">Find by username</label>
        <input
          id="username-find"
          value={name}
          autoComplete="off"
          autoCapitalize="none"
          spellcheck={false}
          placeholder="alice.42 or a username link"
          onInput={(e) => {
            setName(e.currentTarget.value);
            setNameError("");
          }}
        />
        {nameError && (
          <p role="alert" class="error">
            {nameError}
          </p>
        )}
        <button type="submit" disabled={finding}>
          Find
        </button>
      </form>
    </Dialog>
  );
}

export function NewGroupDialog(props: {
  messenger: Messenger;
  onClose: () => void;
  onStarted: (conversation: string) => void;
}) {
  const m = props.messenger;
  const contacts = [...m.contacts.values()].filter((c) => c.id !== m.client.accountId);
  const [name, setName] = useState("");
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  return (
    <Dialog title="New group" onClose={props.onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (!name.trim() || chosen.size === 0) return;
          props.onStarted(await m.createGroup(name.trim(), [...chosen]));
        }}
      >
        <label for="group-name">Group name</label>
        <input id="group-name" value={name} maxLength={64} required onInput={(e) => setName(e.currentTarget.value)} />
        <fieldset>
          <legend>Members</legend>
          {contacts.length === 0 && <p class="hint">Start a chat with someone first; then add them to a group.</p>}
          {contacts.map((c) => (
            <label key={c.id} class="check">
              <input
                type="checkbox"
                checked={chosen.has(c.id)}
                onChange={(e) => {
                  const next = new Set(chosen);
                  if (e.currentTarget.checked) next.add(c.id);
                  else next.delete(c.id);
                  setChosen(next);
                }}
              />
              {c.name}
            </label>
          ))}
        </fieldset>
        <button type="submit" class="primary" disabled={!name.trim() || chosen.size === 0}>
          Create group
        </button>
      </form>
    </Dialog>
  );
}

export function TimerDialog(props: { messenger: Messenger; conversation: string; onClose: () => void }) {
  const [chosen, setChosen] = useState(props.messenger.prefsOf(props.conversation).timer ?? 0);
  return (
    <Dialog title="Disappearing messages" onClose={props.onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void props.messenger.setTimer(props.conversation, chosen);
          props.onClose();
        }}
      >
        <p class="hint">
          New messages in this chat disappear from every device, yours and theirs, this long after they arrive.
        </p>
        <fieldset class="choices">
          <legend class="sr-only">Timer</legend>
          {TIMER_CHOICES.map((s) => (
            <label key={s} class="check">
              <input type="radio" name="timer" checked={s === chosen} onChange={() => setChosen(s)} />
              {s === 0 ? "Off" : timerLabel(s)}
            </label>
          ))}
        </fieldset>
        <button type="submit" class="primary">
          Set timer
        </button>
      </form>
    </Dialog>
  );
}

export function MembersDialog(props: { messenger: Messenger; conversation: string; onClose: () => void }) {
  const m = props.messenger;
  const group = m.groups.get(props.conversation.slice(GROUP_PREFIX.length));
  return (
    <Dialog title={`Members of ${group?.name ?? "the group"}`} onClose={props.onClose}>
      <ul class="plain" aria-label="Members">
        {group?.members.map((id) => (
          <li key={id}>{id === m.client.accountId ? "You" : m.nameOf(id)}</li>
        ))}
      </ul>
    </Dialog>
  );
}
