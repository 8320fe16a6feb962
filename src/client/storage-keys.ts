// The layout of a device's Storage: every key and prefix the SDK reads or writes lives here and nowhere else,
// so a new kind of entry cannot collide with an old one and deleteAccount can name them all.
// Numbers are zero-padded so that Storage.list (sorted by key) answers them in numeric order.

/** The device record: account and device ids, password, registration id, identity key pair, next prekey id. */
export const DEVICE_KEY = "device";

/** Session records, one per remote device: `s/<account>/<device, 3 digits>`. */
const SESSION_PREFIX = "s/";
export const sessionPrefix = (account: string): string => `${SESSION_PREFIX}${account}/`;
export const sessionKey = (account: string, device: number): string =>
  `${sessionPrefix(account)}${String(device).padStart(3, "0")}`;
/** The device id a session key names. */
export const deviceOfSessionKey = (key: string): number => Number(key.slice(key.lastIndexOf("/") + 1));

/** Trusted (first seen, then pinned) identity keys: `id/<account>` → base64. */
const IDENTITY_PREFIX = "id/";
export const trustedIdentityKey = (account: string): string => `${IDENTITY_PREFIX}${account}`;

/** Relay ids of processed messages, until their envelope expires: `seen/<relay id>` → expiresAt. */
export const SEEN_PREFIX = "seen/";
export const seenKey = (relayId: string): string => `${SEEN_PREFIX}${relayId}`;

/** The send log for retry receipts: `sent/<sender timestamp, 15 digits>/<client message id>[.sync]`. */
export const SENT_PREFIX = "sent/";
export const sentPrefixAt = (timestamp: number): string => `${SENT_PREFIX}${String(timestamp).padStart(15, "0")}/`;
export const sentKey = (timestamp: number, id: string): string => `${sentPrefixAt(timestamp)}${id}`;
/**
 * The ratchet key each device's copy of a logged message went out under, which a retry receipt must name:
 * `rk/<sender timestamp, 15 digits>/<account>/<device, 3 digits>/<ratchet key, hex>`; pruned with the send log.
 */
export const SENT_RATCHET_PREFIX = "rk/";
export const sentRatchetKey = (timestamp: number, account: string, device: number, ratchetKeyHex: string): string =>
  `${SENT_RATCHET_PREFIX}${String(timestamp).padStart(15, "0")}/${account}/${String(device).padStart(3, "0")}/${ratchetKeyHex}`;
/** The sender timestamp a send-log or sent-ratchet key names. */
export const timestampOfSentKey = (key: string): number => Number(key.split("/")[1]);

/** Private halves of prekeys, by kind: `pk/<kind>/<key id, 10 digits>`. */
const PREKEY_PREFIX = "pk/";
export const PREKEY_PREFIXES = {
  ec: `${PREKEY_PREFIX}ec/`,
  kem: `${PREKEY_PREFIX}kem/`,
  signed: `${PREKEY_PREFIX}spk/`,
  lastResort: `${PREKEY_PREFIX}lr/`,
} as const;
export const preKeyKey = (prefix: string, keyId: number): string => `${prefix}${String(keyId).padStart(10, "0")}`;
/** The key id a prekey key names. */
export const keyIdOfPreKeyKey = (key: string): number => Number(key.slice(key.lastIndexOf("/") + 1));

/**
 * Prekey messages accepted under a last-resort KEM key, which is never deleted on use (libsignal's replay check):
 * `lru/<KEM key id>/<signed prekey id>/<base key, hex>`. Apart from session records, so deleting a record does not
 * let a replay in again; deleted with their last-resort key.
 */
const LAST_RESORT_USE_PREFIX = "lru/";
export const lastResortUsePrefix = (kemPreKeyId: number): string =>
  `${LAST_RESORT_USE_PREFIX}${String(kemPreKeyId).padStart(10, "0")}/`;
export const lastResortUseKey = (kemPreKeyId: number, signedPreKeyId: number, baseKeyHex: string): string =>
  `${lastResortUsePrefix(kemPreKeyId)}${String(signedPreKeyId).padStart(10, "0")}/${baseKeyHex}`;

/** Stored messages in arrival order: `m/<sequence, 16 digits>`. */
export const MESSAGE_PREFIX = "m/";
export const messageKey = (seq: number): string => `${MESSAGE_PREFIX}${String(seq).padStart(16, "0")}`;
/** The sequence number a message key names. */
export const seqOfMessageKey = (key: string): number => Number(key.slice(MESSAGE_PREFIX.length));

/** The account's username as this device set it, and its username link's handle and key: `un/me` → JSON. */
const USERNAME_PREFIX = "un/";
export const USERNAME_KEY = `${USERNAME_PREFIX}me`;

/**
 * Every prefix the SDK writes under, besides DEVICE_KEY: what deleteAccount clears. Applications may keep their
 * own entries in the same Storage under other prefixes (the CLI uses `cli/`).
 */
export const SDK_PREFIXES: readonly string[] = [
  SESSION_PREFIX,
  IDENTITY_PREFIX,
  PREKEY_PREFIX,
  LAST_RESORT_USE_PREFIX,
  MESSAGE_PREFIX,
  SEEN_PREFIX,
  SENT_PREFIX,
  SENT_RATCHET_PREFIX,
  USERNAME_PREFIX,
];
