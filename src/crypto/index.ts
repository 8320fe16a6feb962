// The public surface of cipherpost's client cryptography, shared by the relay (signature checks)
// and the SDK. Pure TypeScript on the noble libraries: runs in Node 20+, browsers and workerd.

export * from "./bytes.js";
export * from "./errors.js";
export * from "./keys.js";
export * from "./xeddsa.js";
export * from "./kdf.js";
export * from "./padding.js";
export * from "./wire.js";
export * from "./pqxdh.js";
export {
  associatedData,
  type ChainState,
  type DecryptPlan,
  MAX_SKIP,
  MAX_STORED_SKIPPED_KEYS,
  type PendingPreKey,
  type SessionState,
} from "./ratchet.js";
export * from "./session-store.js";
export * from "./fingerprint.js";
export * from "./link-envelope.js";
export { forceBackend, nativeBackends, type Backend } from "./native.js";
