// Push wake-ups: a device registers its Web Push endpoint; the relay pokes it, with no payload, when a message
// waits for the device and it has no open connection (src/server/push/webpush.ts).
import { z } from "zod";

/** Longest endpoint URL accepted (push services' are about 200–500 characters). */
export const MAX_PUSH_ENDPOINT_CHARS = 1024;

export const PushEndpointRequest = z
  .object({
    endpoint: z.string().min(1).max(MAX_PUSH_ENDPOINT_CHARS).meta({
      description:
        "The PushSubscription's endpoint: https on port 443 at a push service on PUSH_ALLOWED_HOSTS, named by host name.",
    }),
  })
  .meta({
    id: "PushEndpointRequest",
    description: "Keys (p256dh, auth) are not needed: the relay's pushes carry no payload.",
  });
export type PushEndpointRequest = z.infer<typeof PushEndpointRequest>;

export const VapidKeyResponse = z
  .object({
    publicKey: z.string().meta({
      description:
        "The relay's VAPID public key, base64url (65-byte uncompressed P-256 point): pass as applicationServerKey to PushManager.subscribe.",
    }),
  })
  .meta({ id: "VapidKeyResponse" });
export type VapidKeyResponse = z.infer<typeof VapidKeyResponse>;
