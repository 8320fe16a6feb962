// Usernames (Signal's shape: nickname.discriminator, e.g. alice.42): the normalisation rules, the hash the relay
// stores instead of the name, and the wire shapes of reserving, confirming, looking up and linking. The relay
// never receives a name: the client normalises and hashes it here, and sends only the hash (docs/api.md).
import { z } from "zod";
import type { ErrorCode } from "./errors.ts";

export const NICKNAME_MIN_CHARS = 3;
export const NICKNAME_MAX_CHARS = 32;
export const DISCRIMINATOR_MIN_DIGITS = 2;
export const DISCRIMINATOR_MAX_DIGITS = 9;
/** The longest normalised username: 32 + "." + 9. */
export const USERNAME_MAX_CHARS = NICKNAME_MAX_CHARS + 1 + DISCRIMINATOR_MAX_DIGITS;
/** Domain separation of the username hash (SHA-256), so it is never equal to any other hash cipherpost makes. */
export const USERNAME_HASH_CONTEXT = "cipherpost-username-v1";
/** Candidate hashes one reservation may offer (one nickname with several discriminators); the first free wins. */
export const USERNAME_RESERVE_MAX_CANDIDATES = 10;
/** A username link's plaintext: the username's UTF-8, zero-padded to this size so every link hides its length. */
export const USERNAME_LINK_PLAINTEXT_BYTES = 48;
/** AES-256-GCM: 12-byte nonce ‖ padded username ‖ 16-byte tag; every link's ciphertext has exactly this size. */
export const USERNAME_LINK_CIPHERTEXT_BYTES = 12 + USERNAME_LINK_PLAINTEXT_BYTES + 16;
export const USERNAME_LINK_KEY_BYTES = 32;
/** A link handle: the owner's bucket (the first three hex digits of its account id) then 29 random hex digits. */
export const USERNAME_LINK_HANDLE_CHARS = 32;

/** Why a username was refused; the code is USERNAME_INVALID for the nickname, DISCRIMINATOR_INVALID for the digits. */
export type UsernameProblem =
  | "nickname_too_short"
  | "nickname_too_long"
  | "nickname_characters"
  | "nickname_starts_with_digit"
  | "discriminator_missing"
  | "discriminator_length"
  | "discriminator_characters"
  | "discriminator_zero";

export interface UsernameRefusal {
  ok: false;
  code: Extract<ErrorCode, "USERNAME_INVALID" | "DISCRIMINATOR_INVALID">;
  problem: UsernameProblem;
  message: string;
}

const nicknameRefusal = (problem: UsernameProblem, message: string): UsernameRefusal => ({
  ok: false,
  code: "USERNAME_INVALID",
  problem,
  message,
});
const discriminatorRefusal = (problem: UsernameProblem, message: string): UsernameRefusal => ({
  ok: false,
  code: "DISCRIMINATOR_INVALID",
  problem,
  message,
});

/**
 * A nickname normalised: 3 to 32 of [a-z0-9_] after lowercasing, not starting with a digit. Only ASCII letters
 * are lowercased (so "ALICE" is "alice", and no Unicode case mapping, such as "İ" → "i̇", can make two spellings
 * of one name); anything outside [A-Za-z0-9_] is refused, never dropped.
 */
export function normalizeNickname(text: string): { ok: true; nickname: string } | UsernameRefusal {
  if (text.length < NICKNAME_MIN_CHARS)
    return nicknameRefusal("nickname_too_short", `a nickname has at least ${NICKNAME_MIN_CHARS} characters`);
  if (text.length > NICKNAME_MAX_CHARS)
    return nicknameRefusal("nickname_too_long", `a nickname has at most ${NICKNAME_MAX_CHARS} characters`);
  if (!/^[A-Za-z0-9_]+$/.test(text))
    return nicknameRefusal("nickname_characters", "a nickname is made of a-z, 0-9 and _ only");
  if (/^[0-9]/.test(text)) return nicknameRefusal("nickname_starts_with_digit", "a nickname cannot start with a digit");
  return { ok: true, nickname: text.toLowerCase() };
}

/**
 * A discriminator: 2 to 9 decimal digits, not all zeros; one of more than two digits has no leading zero, so each
 * number has one spelling ("07" and "42" are discriminators, "007" and "00" are not).
 */
export function checkDiscriminator(text: string): { ok: true; discriminator: string } | UsernameRefusal {
  if (text.length === 0) return discriminatorRefusal("discriminator_missing", "a username ends in .digits");
  if (!/^[0-9]+$/.test(text))
    return discriminatorRefusal("discriminator_characters", "a discriminator is made of the digits 0-9 only");
  if (text.length < DISCRIMINATOR_MIN_DIGITS || text.length > DISCRIMINATOR_MAX_DIGITS)
    return discriminatorRefusal(
      "discriminator_length",
      `a discriminator has ${DISCRIMINATOR_MIN_DIGITS} to ${DISCRIMINATOR_MAX_DIGITS} digits`,
    );
  if (/^0+$/.test(text)) return discriminatorRefusal("discriminator_zero", "a discriminator is not all zeros");
  if (text.length > DISCRIMINATOR_MIN_DIGITS && text.startsWith("0"))
    return discriminatorRefusal(
      "discriminator_zero",
      `a discriminator of more than ${DISCRIMINATOR_MIN_DIGITS} digits has no leading zero`,
    );
  return { ok: true, discriminator: text };
}

/** "Alice.42" → "alice.42"; exactly one dot, the nickname before it and the discriminator after. */
export function normalizeUsername(text: string): { ok: true; username: string } | UsernameRefusal {
  const dot = text.indexOf(".");
  if (dot < 0) return discriminatorRefusal("discriminator_missing", "a username is nickname.digits, e.g. alice.42");
  const nick = normalizeNickname(text.slice(0, dot));
  if (!nick.ok) return nick;
  const disc = checkDiscriminator(text.slice(dot + 1));
  if (!disc.ok) return disc;
  return { ok: true, username: `${nick.nickname}.${disc.discriminator}` };
}

/** Whether `text` has the shape of a username (for telling one apart from an account id or a link). */
export const looksLikeUsername = (text: string) => /^[A-Za-z_][A-Za-z0-9_]*\.[0-9]+$/.test(text);

/**
 * The hash the relay stores and looks up: SHA-256(UTF-8 "cipherpost-username-v1" ‖ UTF-8 normalised username), as
 * 64 lowercase hex digits. Its first three hex digits are its bucket: the shard that holds it (docs/scaling.md).
 */
export async function usernameHash(normalised: string): Promise<string> {
  const bytes = new TextEncoder().encode(`${USERNAME_HASH_CONTEXT}${normalised}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------- wire shapes ----------

export const UsernameHash = z
  .string()
  .regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits (SHA-256)")
  .meta({
    id: "UsernameHash",
    description:
      'SHA-256(UTF-8 "cipherpost-username-v1" ‖ UTF-8 normalised username) as 64 lowercase hex digits. The name itself never reaches the relay.',
  });

export const UsernameLinkHandle = z
  .string()
  .regex(/^[0-9a-f]{32}$/, "must be 32 lowercase hex digits")
  .meta({ id: "UsernameLinkHandle", description: "The random handle of a username link, given by the relay." });

export const ReserveUsernameRequest = z
  .object({
    usernameHashes: z
      .array(UsernameHash)
      .min(1)
      .max(USERNAME_RESERVE_MAX_CANDIDATES)
      .meta({ description: "Candidates in order of preference; the first free one is reserved." }),
  })
  .meta({ id: "ReserveUsernameRequest" });
export type ReserveUsernameRequest = z.infer<typeof ReserveUsernameRequest>;

export const ReserveUsernameResponse = z
  .object({
    usernameHash: UsernameHash,
    expiresAt: z.number().int().meta({ description: "Milliseconds since the epoch; confirm before then." }),
  })
  .meta({ id: "ReserveUsernameResponse" });
export type ReserveUsernameResponse = z.infer<typeof ReserveUsernameResponse>;

export const ConfirmUsernameRequest = z.object({ usernameHash: UsernameHash }).meta({ id: "ConfirmUsernameRequest" });
export type ConfirmUsernameRequest = z.infer<typeof ConfirmUsernameRequest>;

export const ConfirmUsernameResponse = z.object({ usernameHash: UsernameHash }).meta({ id: "ConfirmUsernameResponse" });
export type ConfirmUsernameResponse = z.infer<typeof ConfirmUsernameResponse>;

export const UsernameLookupResponse = z.object({ accountId: z.uuid() }).meta({ id: "UsernameLookupResponse" });
export type UsernameLookupResponse = z.infer<typeof UsernameLookupResponse>;

/** Unpadded base64url of exactly USERNAME_LINK_CIPHERTEXT_BYTES bytes. */
export const UsernameLinkCiphertext = z
  .string()
  .regex(
    new RegExp(`^[A-Za-z0-9_-]{${Math.ceil((USERNAME_LINK_CIPHERTEXT_BYTES * 4) / 3)}}$`),
    `must be ${USERNAME_LINK_CIPHERTEXT_BYTES} bytes as unpadded base64url`,
  )
  .meta({
    id: "UsernameLinkCiphertext",
    description: `The username encrypted under the link's key: AES-256-GCM, 12-byte nonce ‖ ciphertext of the username zero-padded to ${USERNAME_LINK_PLAINTEXT_BYTES} bytes ‖ tag, ${USERNAME_LINK_CIPHERTEXT_BYTES} bytes as unpadded base64url.`,
  });

export const SetUsernameLinkRequest = z
  .object({ ciphertext: UsernameLinkCiphertext })
  .meta({ id: "SetUsernameLinkRequest" });
export type SetUsernameLinkRequest = z.infer<typeof SetUsernameLinkRequest>;

export const SetUsernameLinkResponse = z.object({ handle: UsernameLinkHandle }).meta({ id: "SetUsernameLinkResponse" });
export type SetUsernameLinkResponse = z.infer<typeof SetUsernameLinkResponse>;

export const UsernameLinkResponse = z
  .object({ ciphertext: UsernameLinkCiphertext })
  .meta({ id: "UsernameLinkResponse" });
export type UsernameLinkResponse = z.infer<typeof UsernameLinkResponse>;
