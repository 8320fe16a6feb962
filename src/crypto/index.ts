// The public surface of cipherpost's client cryptography, shared by the relay (signature checks)
// and the SDK. Pure TypeScript on the noble libraries: runs in Node 20+, browsers and workerd.

export * from "./bytes.ts";
export * from "./errors.ts";
export * from "./keys.ts";
export * from "./xeddsa.ts";
export * from "./kdf.ts";
export * from "./padding.ts";
export * from "./wire.ts";
export * from "./pqxdh.ts";
export {
  associatedData,
  type ChainState,
  type DecryptPlan,
  MAX_SKIP,
  MAX_STORED_SKIPPED_KEYS,
  type PendingPreKey,
  type SessionState,
} from "./ratchet.ts";
export * from "./session-store.ts";
export * from "./fingerprint.ts";
export * from "./link-envelope.ts";
export { forceBackend, nativeBackends, type Backend } from "./native.ts";
