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
export { associatedData, type DecryptPlan } from "./ratchet.ts";
export {
  type ChainState,
  type FinishedChain,
  MAX_FINISHED_CHAINS,
  MAX_RECEIVING_CHAINS,
  MAX_SKIPPED_KEYS_PER_CHAIN,
  type PendingPreKey,
  type ReceivingChain,
  type SessionState,
} from "./ratchet-state.ts";
export * from "./work.ts";
export * from "./session-record.ts";
export * from "./session-store.ts";
export * from "./fingerprint.ts";
export * from "./link-envelope.ts";
export { forceBackend, nativeBackends, type Backend } from "./native.ts";
