// The published API document, generated from the same zod schemas and routes that validate requests.
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../app.ts";

export const OPENAPI_INFO = {
  openapi: "3.1.0",
  info: {
    title: "cipherpost relay API",
    version: "1.0.0",
    description:
      "The directory and relay of cipherpost, an end-to-end-encrypted messenger. Keys use libsignal's serialisations (EC public keys: 0x05 ‖ 32 bytes; KEM public keys: type byte ‖ 1568 bytes; XEdDSA signatures in libsignal's variant); bytes travel as standard base64 with padding. Every error is JSON `{code, message, requestId, …}` with a code from a closed set. Authenticate devices with HTTP Basic `accountId.deviceId:password`.",
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
