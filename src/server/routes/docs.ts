// The published API document, generated from the same zod schemas and routes that validate requests.
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../app.ts";

export const OPENAPI_INFO = {
  openapi: "3.1.0",
  info: {
    title: "cipherpost relay API",
    version: "1.0.0",
    description:
      "The directory and relay of cipherpost, an end-to-end-encrypted messenger. Keys use libsignal's serialisations (EC public keys: 0x05 ‖ 32 bytes; KEM public keys: a type byte, 0x08 for libsignal's Kyber1024 or 0x0A for ML-KEM-1024, ‖ 1568 bytes; XEdDSA signatures in libsignal's variant); bytes travel as standard base64 with padding. A request field with a default may be left out. Every error is JSON `{code, message, requestId, …}` with a code from a closed set; 429 and 503 carry Retry-After. Authenticate devices with HTTP Basic `accountId.deviceId:password`. The WebSocket frames are at /v1/asyncapi.json; docs/api.md walks through both with libsignal and lists the limits a client meets.",
  },
  servers: [{ url: "http://127.0.0.1:8787", description: "Local development (npm start)" }],
};

export function mountDocs(app: OpenAPIHono<AppEnv>) {
  app.openAPIRegistry.registerComponent("securitySchemes", "basicAuth", {
    type: "http",
    scheme: "basic",
    description: "Username `accountId.deviceId`, password the device's password.",
  });
  app.doc31("/v1/openapi.json", OPENAPI_INFO);
}
