// `ws` (Node 20's WebSocket, loaded at run time by node.ts when present) ships no types of its own; the SDK only
// uses its WHATWG-compatible class.
declare module "ws" {
  export const WebSocket: typeof globalThis.WebSocket;
  const _default: typeof globalThis.WebSocket;
  export default _default;
}
