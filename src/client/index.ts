// The cipherpost SDK's public surface. Web-standard APIs only; the Node helpers (a file-backed Storage, `ws`,
// files as Blobs) are in ./node.ts so browser and Workers builds never import node:*.
export { CipherpostClient } from "./client.ts";
export type {
  ClientEvents,
  ClientOptions,
  DecryptionErrorEvent,
  GroupSendResult,
  LinkOptions,
  MessageInput,
  ReceiptEvent,
  RegisterOptions,
  SendResult,
  TypingEvent,
} from "./client.ts";
export { CipherpostError, CIPHERPOST_ERROR_CODES, CLIENT_ERRORS, isRetryable } from "./errors.ts";
export type { CipherpostErrorCode, ClientErrorCode } from "./errors.ts";
export { MemoryStorage } from "./storage.ts";
export { Call, DEFAULT_RING_TIMEOUT_MS } from "./call.ts";
export type {
  CallEndReason,
  CallEntryData,
  CallOptions,
  CallSetup,
  CallState,
  IceServer,
  PeerConnectionConfig,
  PeerConnectionLike,
  SessionDescription,
} from "./call.ts";
export type { Storage, StorageBatch } from "./storage.ts";
export { MANIFEST, ShardedStore } from "./sharded-store.ts";
export type { FileSealer, ShardFiles, ShardManifest } from "./sharded-store.ts";
export type { MessageFilter, StoredMessage } from "./message-store.ts";
export { AttachmentPointer, Content, MAX_CONTENT_BYTES, MAX_TEXT_BYTES } from "./content.ts";
export type { GroupContext } from "./content.ts";
export { DEFAULT_CHUNK_BYTES } from "./attachments.ts";
export type { DownloadOptions, UploadOptions, UploadState } from "./attachments.ts";
export { DEFAULT_SEGMENT_BYTES, encryptedSize, paddedSize } from "./attachment-crypto.ts";
export type { ConnectionEvent, ConnectionOptions, WebSocketConstructor } from "./connection.ts";
export { systemClock } from "../protocol/clock.ts";
export type { Clock } from "../protocol/clock.ts";
export type { PowProgress } from "../protocol/pow.ts";
export type { IceServersResponse } from "../protocol/calls.ts";
export { decodeLinkCode, encodeLinkCode, LINK_CODE_PREFIX } from "./link-code.ts";
export type { LinkCode } from "./link-code.ts";
export type { LinkCodeSession, LinkRequest } from "./linking.ts";
export { DEFAULT_PREKEY_POLICY } from "./prekeys.ts";
export type { PreKeyPolicy } from "./prekeys.ts";
export { checkUsername, USERNAME_LINK_PATH } from "./usernames.ts";
export { normalizeUsername, usernameHash } from "../protocol/usernames.ts";
