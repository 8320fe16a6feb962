// Wire shapes of the directory: proof-of-work challenges, registration, devices and linking, prekeys and
// bundles. Field names follow Signal-Server where Signal has one, so libsignal clients map onto them directly.
import { z } from "zod";
import { base64Bytes, base64Range } from "./base64.ts";
import {
  EC_PUBLIC_KEY_BYTES,
  KEM_PUBLIC_KEY_BYTES,
  LINK_TOKEN_BYTES,
  MAX_DEVICE_ID,
  MAX_KEY_ID,
  MAX_PASSWORD_CHARS,
  MAX_PREKEYS_PER_UPLOAD,
  MAX_REGISTRATION_ID,
  MIN_DEVICE_ID,
  MIN_PASSWORD_CHARS,
  MIN_REGISTRATION_ID,
  POW_CHALLENGE_BYTES,
  POW_NONCE_MAX_BYTES,
  SIGNATURE_BYTES,
} from "./limits.ts";

export const AccountId = z.uuid().meta({ id: "AccountId", description: "An account's random id (UUID)." });
export const DeviceId = z
  .number()
  .int()
  .min(MIN_DEVICE_ID)
  .max(MAX_DEVICE_ID)
  .meta({ description: "Device id, 1..127; 1 is the primary device." });

/**
 * A device id written as text (the Basic user `accountId.deviceId`, a path parameter): canonical decimal only, no
 * sign, leading zero, space, exponent or hex, so that a device has one spelling (`1e0`, `0x1`, ` 1`, `01` and `+1`
 * are not device 1).
 */
export function parseDeviceIdText(text: string): number | null {
  if (!/^[1-9][0-9]{0,2}$/.test(text)) return null;
  const n = Number(text);
  return n >= MIN_DEVICE_ID && n <= MAX_DEVICE_ID ? n : null;
}

/** A device id as a path parameter: the text parseDeviceIdText takes, as a number. */
export const DeviceIdParam = z
  .string()
  .regex(/^[1-9][0-9]{0,2}$/, "must be a device id, 1..127 in decimal without sign, leading zero or spaces")
  .transform((text, ctx) => {
    const n = parseDeviceIdText(text);
    if (n !== null) return n;
    ctx.addIssue({ code: "custom", message: `must be a device id, ${MIN_DEVICE_ID}..${MAX_DEVICE_ID}` });
    return z.NEVER;
  })
  .meta({ description: "A device id, 1..127, in decimal without sign, leading zero or spaces." });
export const RegistrationId = z
  .number()
  .int()
  .min(MIN_REGISTRATION_ID)
  .max(MAX_REGISTRATION_ID)
  .meta({ description: "libsignal registration id, 1..16383, unique among the account's devices." });
export const KeyId = z.number().int().min(0).max(MAX_KEY_ID).meta({ description: "Key id, unsigned 32-bit." });

export const EcPublicKey = base64Bytes(EC_PUBLIC_KEY_BYTES, "EC public key: 0x05 then 32 bytes of X25519");
export const KemPublicKey = base64Bytes(
  KEM_PUBLIC_KEY_BYTES,
  "KEM public key: a type byte (0x08 Kyber1024 as libsignal makes it, or 0x0A ML-KEM-1024) then 1568 bytes",
);
export const Signature = base64Bytes(
  SIGNATURE_BYTES,
  "XEdDSA signature (libsignal variant) by the account identity key over the key's full serialisation",
);

export const ECPreKey = z.object({ keyId: KeyId, publicKey: EcPublicKey }).meta({ id: "ECPreKey" });
export const ECSignedPreKey = z
  .object({ keyId: KeyId, publicKey: EcPublicKey, signature: Signature })
  .meta({ id: "ECSignedPreKey" });
export const KEMSignedPreKey = z
  .object({ keyId: KeyId, publicKey: KemPublicKey, signature: Signature })
  .meta({ id: "KEMSignedPreKey" });
export type ECPreKey = z.infer<typeof ECPreKey>;
export type ECSignedPreKey = z.infer<typeof ECSignedPreKey>;
export type KEMSignedPreKey = z.infer<typeof KEMSignedPreKey>;

export const Password = z
  .string()
  .min(MIN_PASSWORD_CHARS)
  .max(MAX_PASSWORD_CHARS)
  .regex(/^[A-Za-z0-9+/]+={0,2}$/, "must be base64 of at least 16 random bytes")
  .meta({
    description:
      "The device's password: base64 of at least 16 random bytes. Sent once; only a salted HMAC of it is stored.",
  });

const PreKeys = z.array(ECPreKey).max(MAX_PREKEYS_PER_UPLOAD);
const PqPreKeys = z.array(KEMSignedPreKey).max(MAX_PREKEYS_PER_UPLOAD);

/** The keys a new device publishes with itself (registration and linking). */
const DeviceKeys = {
  registrationId: RegistrationId,
  password: Password,
  signedPreKey: ECSignedPreKey,
  pqLastResortPreKey: KEMSignedPreKey,
  preKeys: PreKeys.default([]),
  pqPreKeys: PqPreKeys.default([]),
};

// ---- Proof of work ----

export const ChallengeResponse = z
  .object({
    challenge: base64Bytes(POW_CHALLENGE_BYTES, "The challenge"),
    difficulty: z.number().int().min(0).max(32).meta({
      description:
        'Leading zero bits SHA-256("cipherpost-pow-v1" ‖ challenge ‖ nonce) must have: this challenge\'s own, which rises with the relay-wide registration rate (each bit doubles the expected work).',
    }),
    expiresAt: z
      .number()
      .int()
      .meta({ description: "Milliseconds since the epoch after which the challenge is refused." }),
  })
  .meta({ id: "ChallengeResponse" });
export type ChallengeResponse = z.infer<typeof ChallengeResponse>;

export const ChallengeSolution = z
  .object({
    challenge: base64Bytes(POW_CHALLENGE_BYTES, "The challenge as issued"),
    nonce: base64Range(0, POW_NONCE_MAX_BYTES, "The nonce that solves it"),
  })
  .meta({ id: "ChallengeSolution" });

// ---- Registration ----

export const RegistrationRequest = z
  .object({
    identityKey: EcPublicKey,
    ...DeviceKeys,
    pow: ChallengeSolution,
    proof: Signature.meta({
      description:
        'XEdDSA signature by the identity key over UTF-8 "cipherpost-register-v1" ‖ challenge (32 bytes) ‖ identityKey (33 bytes): proves possession of the identity private key.',
    }),
  })
  .meta({ id: "RegistrationRequest" });
export type RegistrationRequest = z.input<typeof RegistrationRequest>;

export const RegistrationResponse = z.object({ accountId: AccountId, deviceId: DeviceId }).meta({
  id: "RegistrationResponse",
  description: "The new account; authenticate as `accountId.deviceId:password` with HTTP Basic.",
});
export type RegistrationResponse = z.infer<typeof RegistrationResponse>;

// ---- Devices and linking ----

export const DeviceInfo = z
  .object({
    deviceId: DeviceId,
    registrationId: RegistrationId,
    created: z.number().int().meta({ description: "Milliseconds since the epoch." }),
    lastSeen: z.number().int().meta({ description: "Milliseconds since the epoch, rounded down to the day." }),
  })
  .meta({ id: "DeviceInfo" });
export const DeviceListResponse = z.object({ devices: z.array(DeviceInfo) }).meta({ id: "DeviceListResponse" });
export type DeviceInfo = z.infer<typeof DeviceInfo>;
export type DeviceListResponse = z.infer<typeof DeviceListResponse>;

export const LinkToken = base64Bytes(LINK_TOKEN_BYTES, "Link token");

export const CreateLinkResponse = z
  .object({ linkToken: LinkToken, expiresAt: z.number().int() })
  .meta({ id: "CreateLinkResponse", description: "Single use; expires after LINK_TOKEN_TTL_SECONDS." });
export type CreateLinkResponse = z.infer<typeof CreateLinkResponse>;

const EphemeralKey = EcPublicKey.meta({
  description:
    "The new device's ephemeral X25519 key for this link (0x05 then 32 bytes): the hand-over is sealed to it, and both devices show a verification code derived from it.",
});

export const LinkRequestBody = z
  .object({ accountId: AccountId, linkToken: LinkToken, publicKey: EphemeralKey })
  .meta({ id: "LinkRequestBody", description: "The new device answers a link code with its ephemeral key." });
export type LinkRequestBody = z.input<typeof LinkRequestBody>;

export const LinkTokenBody = z.object({ linkToken: LinkToken }).meta({ id: "LinkTokenBody" });

export const LinkPendingResponse = z
  .object({
    publicKey: EphemeralKey.nullable().meta({ description: "The requesting device's key; null while none asked." }),
  })
  .meta({ id: "LinkPendingResponse" });
export type LinkPendingResponse = z.infer<typeof LinkPendingResponse>;

export const ApproveLinkRequest = z
  .object({
    linkToken: LinkToken,
    publicKey: EphemeralKey.meta({ description: "The request being approved: must be the one the relay holds." }),
    envelope: z.string().meta({
      description:
        'The hand-over sealed to the requesting device, stored opaquely (at most MAX_LINK_ENVELOPE_BYTES decoded bytes, standard base64). cipherpost clients use (docs/crypto.md): transcript = "cipherpost-link-v2" ‖ account id (16 bytes) ‖ link token (32) ‖ existing device\'s ephemeral key (33) ‖ new device\'s ephemeral key (33); okm = HKDF-SHA-256(ikm = X25519 of the two ephemeral keys, salt = SHA-256(transcript), info = "cipherpost-link-v2", 37 bytes); key = okm[0..32]; verification code = big-endian okm[32..37] mod 10^6, 6 digits; envelope = 0x02 ‖ 24-byte random nonce ‖ XChaCha20-Poly1305(key, nonce, aad = 0x02 ‖ transcript, plaintext = UTF-8 JSON {"version":1, "accountId", "identityKey", "identityPrivateKey"}); link code = "cplink2." ‖ base64url without padding of (account id 16 bytes ‖ link token 32 ‖ existing device\'s ephemeral X25519 key 32).',
      format: "byte",
    }),
  })
  .meta({ id: "ApproveLinkRequest" });

export const LinkEnvelopeResponse = z
  .object({
    envelope: z.string().nullable().meta({
      format: "byte",
      description: "The sealed hand-over once the existing device approved; null until then.",
    }),
  })
  .meta({ id: "LinkEnvelopeResponse" });
export type LinkEnvelopeResponse = z.infer<typeof LinkEnvelopeResponse>;

export const LinkDeviceRequest = z
  .object({ accountId: AccountId, linkToken: LinkToken, ...DeviceKeys })
  .meta({ id: "LinkDeviceRequest", description: "Prekey signatures must verify with the account's identity key." });
export type LinkDeviceRequest = z.input<typeof LinkDeviceRequest>;
export const LinkDeviceResponse = RegistrationResponse;

// ---- Keys ----

export const SetKeysRequest = z
  .object({
    signedPreKey: ECSignedPreKey.optional(),
    pqLastResortPreKey: KEMSignedPreKey.optional(),
    preKeys: PreKeys.optional(),
    pqPreKeys: PqPreKeys.optional(),
  })
  .meta({
    id: "SetKeysRequest",
    description:
      "Replace the signed EC prekey and/or the KEM last-resort prekey; add one-time keys. Re-sent key ids are ignored.",
  });
export type SetKeysRequest = z.infer<typeof SetKeysRequest>;

export const PreKeyCountResponse = z
  .object({ count: z.number().int(), pqCount: z.number().int() })
  .meta({ id: "PreKeyCountResponse", description: "One-time EC (count) and KEM (pqCount) keys the device has left." });
export type PreKeyCountResponse = z.infer<typeof PreKeyCountResponse>;

export const BundleDevice = z
  .object({
    deviceId: DeviceId,
    registrationId: RegistrationId,
    signedPreKey: ECSignedPreKey,
    preKey: ECPreKey.optional().meta({ description: "Absent when the device has no one-time EC prekeys left." }),
    pqPreKey: KEMSignedPreKey.meta({
      description: "A one-time KEM prekey, or the last-resort one when none are left.",
    }),
  })
  .meta({ id: "BundleDevice" });
export const PreKeyBundleResponse = z
  .object({ identityKey: EcPublicKey, devices: z.array(BundleDevice) })
  .meta({ id: "PreKeyBundleResponse" });
export type BundleDevice = z.infer<typeof BundleDevice>;
export type PreKeyBundleResponse = z.infer<typeof PreKeyBundleResponse>;

export const HealthResponse = z
  .object({
    status: z.enum(["ok", "degraded", "misconfigured"]),
    config: z.object({
      valid: z.boolean(),
      problems: z.array(z.object({ variable: z.string(), problem: z.string() })),
    }),
    shards: z.record(z.string(), z.boolean()).optional(),
    r2: z.record(z.string(), z.boolean()).optional(),
  })
  .meta({ id: "HealthResponse" });
export type HealthResponse = z.infer<typeof HealthResponse>;
