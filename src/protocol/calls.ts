// Voice and video calls, the relay's part: the ICE servers (STUN/TURN with short-lived credentials) a device hands
// to RTCPeerConnection. The call itself (offers, answers, candidates) travels end-to-end encrypted as messages.
import { z } from "zod";

/** A stun:, stuns:, turn: or turns: URI (RFC 7064, RFC 7065); `?transport=` only on turn: and turns:. */
export const ICE_URL_PATTERN =
  /^(?:stuns?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?|turns?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?(?:\?transport=(?:udp|tcp))?)$/;

/**
 * What an answer's URL must look like: a scheme RTCPeerConnection takes and no spaces. Looser than
 * ICE_URL_PATTERN (which checks an operator's own CALLS_TURN_URLS), so a provider adding a query parameter does not
 * break calls.
 */
export const ICE_ANSWER_URL_PATTERN = /^(?:stuns?|turns?):[^\s]+$/;

/** Most ICE servers and URLs one answer carries (Cloudflare answers 2 servers and about 8 URLs). */
export const MAX_ICE_SERVERS = 16;
export const MAX_ICE_URLS = 32;

export const IceServer = z
  .object({
    urls: z
      .array(z.string().max(512).regex(ICE_ANSWER_URL_PATTERN))
      .min(1)
      .max(MAX_ICE_URLS)
      .meta({ description: "stun:, stuns:, turn: or turns: URIs of one server (RFC 7064, RFC 7065)." }),
    username: z
      .string()
      .max(512)
      .optional()
      .meta({ description: "The TURN username; absent for a STUN-only entry. Carries no account or device id." }),
    credential: z.string().max(512).optional().meta({ description: "The TURN password for `username`." }),
  })
  .meta({
    id: "IceServer",
    description: "One RTCIceServer, as RTCPeerConnection's `iceServers` configuration takes it.",
  });
export type IceServer = z.infer<typeof IceServer>;

export const IceServersResponse = z
  .object({
    iceServers: z.array(IceServer).min(1).max(MAX_ICE_SERVERS),
    ttlSeconds: z.number().int().positive().meta({
      description:
        "How long the credentials are valid from now (CALLS_CREDENTIAL_TTL_SECONDS). Fetch fresh ones for every call; a call lasting longer needs new ones and an ICE restart.",
    }),
  })
  .meta({
    id: "IceServersResponse",
    description: "Pass `iceServers` unchanged to `new RTCPeerConnection({ iceServers })`.",
  });
export type IceServersResponse = z.infer<typeof IceServersResponse>;
