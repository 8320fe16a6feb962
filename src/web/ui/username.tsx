// "Username" in Settings: pick a nickname (the SDK adds the digits, alice.42, and sends the relay only its hash),
// show it with the username link and its QR code, copy or reset the link, delete the username.
import { useEffect, useState } from "preact/hooks";
import { CipherpostError } from "../../client/index.ts";
import type { Messenger } from "../model/messenger.ts";
import { Qr } from "./qr.tsx";

/** What a person reads when the relay refuses a name. */
export function usernameProblem(e: unknown): string {
  if (CipherpostError.is(e, "USERNAME_INVALID"))
    return "A username is 3 to 32 letters, digits or _, and does not start with a digit.";
  if (CipherpostError.is(e, "DISCRIMINATOR_INVALID")) return "The number after the dot is 2 to 9 digits.";
  if (CipherpostError.is(e, "USERNAME_TAKEN")) return "That username is taken. Try another.";
  if (CipherpostError.is(e, "RATE_LIMITED")) return "Too many tries for now. Try again later.";
  if (CipherpostError.is(e, "NOT_FOUND")) return "Nobody has that username.";
  return e instanceof Error ? e.message : String(e);
}

export function UsernameSettings({ messenger: m }: { messenger: Messenger }) {
  const [current, setCurrent] = useState<string | null>();
  const [link, setLink] = useState<string>();
  const [nickname, setNickname] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [copied, setCopied] = useState(false);
  useEffect(() => {
    void m.client.username().then(setCurrent, () => setCurrent(null));
  }, [m]);
  useEffect(() => {
    setLink(undefined);
    if (current) void m.client.usernameLink().then(setLink, (e: unknown) => setError(usernameProblem(e)));
  }, [m, current]);

  const run = async (what: () => Promise<void>) => {
    setBusy(true);
    setError("");
    setCopied(false);
    try {
      await what();
    } catch (e) {
      setError(usernameProblem(e));
    }
    setBusy(false);
  };

  return (
    <section class="username" aria-labelledby="username-heading">
      <h3 id="username-heading" class="section-title">
        Username
      </h3>
      {current ? (
        <>
          <p class="field-label">Your username</p>
          <div class="mono selectable" role="note" aria-label="Your username">
            {current}
          </div>
          {link && (
            <>
              <Qr value={link} label="QR code of your username link" />
              <p class="field-label">Your username link</p>
              <div class="mono selectable" role="note" aria-label="Username link">
                {link}
              </div>
            </>
          )}
          <div class="row">
            <button
              type="button"
              disabled={!link || busy}
              onClick={async () => {
                await navigator.clipboard?.writeText(link ?? "").catch(() => undefined);
                setCopied(true);
              }}
            >
              Copy username link
            </button>
            <button
              type="button"
              disabled={busy}
              onClick={() => run(async () => setLink(await m.client.resetUsernameLink()))}
            >
              Reset username link
            </button>
            <button
              type="button"
              disabled={busy}
              onClick={() =>
                run(async () => {
                  await m.client.deleteUsername();
                  setCurrent(null);
                })
              }
            >
              Delete username
            </button>
          </div>
          <p class="hint">
            People can find you by this name or this link. The relay stores only a hash of the name; a reset link stops
            the old one working.
          </p>
        </>
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void run(async () => setCurrent(await m.client.setUsername(nickname.trim())));
          }}
        >
          <label for="username-input">Username</label>
          <input
            id="username-input"
            value={nickname}
            autoComplete="off"
            autoCapitalize="none"
            spellcheck={false}
            maxLength={42}
            placeholder="alice"
            onInput={(e) => {
              setNickname(e.currentTarget.value);
              setError("");
            }}
          />
          <p class="hint">cipherpost adds a number (alice.42), so many people can use the same name.</p>
          <button type="submit" class="primary" disabled={busy || current === undefined}>
            Set username
          </button>
        </form>
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <span role="status" class="hint">
        {copied ? "Copied" : ""}
      </span>
    </section>
  );
}
