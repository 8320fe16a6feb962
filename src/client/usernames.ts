// Usernames on the client: picking discriminators, reserving and confirming by hash (the relay never receives a
// name), lookups, username links (the name encrypted under a key that travels only in the link's fragment), and
// the resolver that lets an application write alice.42 or a username link wherever it writes an account id.
import { concatBytes, fromBase64Url, fromUtf8, randomBytes, toBase64Url, utf8 } from "../crypto/bytes.ts";
import { AccountId } from "../protocol/directory.ts";
import {
  ConfirmUsernameResponse,
  normalizeNickname,
  normalizeUsername,
  ReserveUsernameResponse,
  SetUsernameLinkResponse,
  type UsernameRefusal,
  USERNAME_LINK_KEY_BYTES,
  USERNAME_LINK_PLAINTEXT_BYTES,
  USERNAME_RESERVE_MAX_CANDIDATES,
  UsernameLinkResponse,
  UsernameLookupResponse,
  usernameHash,
} from "../protocol/usernames.ts";
import { checkAccountId, type ClientContext } from "./context.ts";
import { CipherpostError } from "./errors.ts";
import { USERNAME_KEY } from "./storage-keys.ts";

/** What this device remembers of its username: the name, and the link's handle and key once it made one. */
interface UsernameState {
  username: string;
  link?: { handle: string; key: string };
}

/** The path of a username link on the relay's origin; the fragment (`#handle.key`) never reaches the server. */
export const USERNAME_LINK_PATH = "/u";

function refused(r: UsernameRefusal): CipherpostError {
  return new CipherpostError(r.code, r.message, { extras: { problem: r.problem } });
}

/** A username from an application, normalised; USERNAME_INVALID or DISCRIMINATOR_INVALID naming the rule. */
export function checkUsername(text: string): string {
  const n = normalizeUsername(text);
  if (!n.ok) throw refused(n);
  return n.username;
}

/** Discriminators to offer for one nickname: mostly two digits, then longer ones if those are crowded. */
function candidateDiscriminators(round: number): string[] {
  const digits = Math.min(2 + round * 2, 9);
  const out = new Set<string>();
  while (out.size < USERNAME_RESERVE_MAX_CANDIDATES) {
    const min = digits === 2 ? 1 : 10 ** (digits - 1);
    const span = 10 ** digits - min;
    const n = min + (new DataView(randomBytes(4).buffer).getUint32(0) % span);
    out.add(String(n).padStart(digits, "0"));
  }
  return [...out];
}

async function linkCipher(key: Uint8Array, usage: "encrypt" | "decrypt"): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", key as BufferSource, { name: "AES-GCM" }, false, [usage]);
}

export class Usernames {
  constructor(private readonly ctx: ClientContext) {}

  async #state(): Promise<UsernameState | null> {
    const text = await this.ctx.storage.get(USERNAME_KEY);
    return text ? (JSON.parse(text) as UsernameState) : null;
  }

  async #save(state: UsernameState | null): Promise<void> {
    await this.ctx.storage.write(
      state ? { set: { [USERNAME_KEY]: JSON.stringify(state) } } : { delete: [USERNAME_KEY] },
    );
  }

  /** This device's username as it last set it, or null. */
  async current(): Promise<string | null> {
    return (await this.#state())?.username ?? null;
  }

  /**
   * Sets the account's username: `alice` gets a discriminator picked here (alice.42), `alice.42` asks for exactly
   * that. Only hashes go to the relay. Replaces any earlier username (and its link).
   */
  async set(text: string): Promise<string> {
    const dot = text.indexOf(".");
    let rounds: string[][];
    let nickname: string;
    if (dot >= 0) {
      const exact = checkUsername(text);
      // Already this account's name (as this device set it): nothing to change.
      if ((await this.current()) === exact) return exact;
      nickname = exact.slice(0, exact.indexOf("."));
      rounds = [[exact.slice(nickname.length + 1)]];
    } else {
      const n = normalizeNickname(text);
      if (!n.ok) throw refused(n);
      nickname = n.nickname;
      rounds = [0, 1, 2].map(candidateDiscriminators);
    }
    for (const [i, discriminators] of rounds.entries()) {
      const names = discriminators.map((d) => `${nickname}.${d}`);
      const hashes = await Promise.all(names.map(usernameHash));
      let reserved: ReserveUsernameResponse;
      try {
        reserved = await this.ctx.http.json("POST", "/v1/usernames/reserve", ReserveUsernameResponse, {
          auth: this.ctx.auth,
          body: { usernameHashes: hashes },
        });
      } catch (e) {
        if (CipherpostError.is(e, "USERNAME_TAKEN") && i < rounds.length - 1) continue;
        throw e;
      }
      const username = names[hashes.indexOf(reserved.usernameHash)];
      if (username === undefined)
        throw new CipherpostError("INVALID_RESPONSE", "the relay reserved a username this client did not offer");
      await this.ctx.http.json("PUT", "/v1/usernames/confirm", ConfirmUsernameResponse, {
        auth: this.ctx.auth,
        body: { usernameHash: reserved.usernameHash },
      });
      // The relay dropped the old link with the old name.
      await this.#save({ username });
      return username;
    }
    throw new CipherpostError("USERNAME_TAKEN", "every username offered is taken");
  }

  /** Deletes the account's username and its link. */
  async delete(): Promise<void> {
    await this.ctx.http.empty("DELETE", "/v1/usernames/me", { auth: this.ctx.auth });
    await this.#save(null);
  }

  /** The account holding `username` (alice.42); NOT_FOUND when nobody does. */
  async lookup(username: string): Promise<string> {
    const hash = await usernameHash(checkUsername(username));
    return (
      await this.ctx.http.json("GET", `/v1/usernames/${hash}`, UsernameLookupResponse, { auth: this.ctx.auth })
    ).accountId.toLowerCase();
  }

  /** This account's username link, made on first use: https://<relay>/u#<handle>.<key>. */
  async link(): Promise<string> {
    const state = await this.#state();
    if (state?.link) return this.#url(state.link);
    return this.resetLink();
  }

  /** A new link (new handle, new key); the previous link stops working. */
  async resetLink(): Promise<string> {
    const state = await this.#state();
    if (!state)
      throw new CipherpostError("NOT_FOUND", "this device knows no username of the account: set one with setUsername");
    const key = randomBytes(USERNAME_LINK_KEY_BYTES);
    const padded = new Uint8Array(USERNAME_LINK_PLAINTEXT_BYTES);
    padded.set(utf8(state.username));
    const nonce = randomBytes(12);
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv: nonce as BufferSource },
        await linkCipher(key, "encrypt"),
        padded as BufferSource,
      ),
    );
    const { handle } = await this.ctx.http.json("PUT", "/v1/usernames/link", SetUsernameLinkResponse, {
      auth: this.ctx.auth,
      body: { ciphertext: toBase64Url(concatBytes(nonce, sealed)) },
    });
    const link = { handle, key: toBase64Url(key) };
    await this.#save({ ...state, link });
    return this.#url(link);
  }

  #url(link: { handle: string; key: string }): string {
    return `${this.ctx.http.server}${USERNAME_LINK_PATH}#${link.handle}.${link.key}`;
  }

  /** The username and account a link names: the ciphertext from the relay, opened with the fragment's key. */
  async resolveLink(url: string): Promise<{ username: string; accountId: string }> {
    const bad = (why: string) => new CipherpostError("INVALID_ARGUMENT", `not a username link (${why}): ${url}`);
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw bad("not a URL");
    }
    if (u.pathname !== USERNAME_LINK_PATH) throw bad(`the path is not ${USERNAME_LINK_PATH}`);
    if (u.origin !== new URL(this.ctx.http.server).origin) throw bad(`it is not a link of ${this.ctx.http.server}`);
    const m = /^#([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$/.exec(u.hash);
    if (!m) throw bad("the fragment is not handle.key");
    let key: Uint8Array;
    try {
      key = fromBase64Url(m[2]!);
    } catch {
      throw bad("the key is not base64url");
    }
    if (key.length !== USERNAME_LINK_KEY_BYTES) throw bad("the key has the wrong length");
    const { ciphertext } = await this.ctx.http.json("GET", `/v1/usernames/links/${m[1]}`, UsernameLinkResponse);
    const bytes = fromBase64Url(ciphertext);
    let padded: Uint8Array;
    try {
      padded = new Uint8Array(
        await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: bytes.subarray(0, 12) as BufferSource },
          await linkCipher(key, "decrypt"),
          bytes.subarray(12) as BufferSource,
        ),
      );
    } catch {
      throw bad("it does not open with its key");
    }
    const end = padded.indexOf(0);
    const username = checkUsername(fromUtf8(end < 0 ? padded : padded.subarray(0, end)));
    return { username, accountId: await this.lookup(username) };
  }

  /**
   * An account id from what an application was given: an account id (UUID), a username (alice.42) or a username
   * link. `what` names the argument in the INVALID_ARGUMENT error for anything else.
   */
  async resolveAccount(text: string, what = "account"): Promise<string> {
    if (AccountId.safeParse(text).success) return text.toLowerCase();
    if (/^https?:\/\//i.test(text)) return (await this.resolveLink(text)).accountId;
    if (text.includes(".")) return this.lookup(text);
    return checkAccountId(text, what);
  }
}
