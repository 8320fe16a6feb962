// The public surface of cipherpost's client cryptography, shared by the relay (signature checks)
// and the SDK. Pure TypeScript on the noble libraries: runs in Node 20+, browsers and workerd.

export * from "./bytes.js";
export * from "./keys.js";
export * from "./xeddsa.js";
export * from "./errors.js";
export * from "./link-envelope.js";
