// Making a device: registration (a new account, with the relay's proof of work) here, and linking (linking.ts).
// Both go through enrollDevice, the one place a new device's keys and record are built and stored.
import { fromBase64, randomBytes, toBase64 } from "../crypto/bytes.ts";
import { generateEcKeyPair } from "../crypto/keys.ts";
import type { LocalIdentity } from "../crypto/pqxdh.ts";
import { xeddsaSign } from "../crypto/xeddsa.ts";
import { systemClock } from "../protocol/clock.ts";
import {
  ChallengeResponse,
  type ECPreKey,
  type ECSignedPreKey,
  type KEMSignedPreKey,
  RegistrationResponse,
} from "../protocol/directory.ts";
import { MAX_REGISTRATION_ID, MIN_REGISTRATION_ID, registrationProofMessage } from "../protocol/limits.ts";
import { solvePow } from "../protocol/pow.ts";
import { type ClientOptions, type DeviceRecord, type RegisterOptions, relayHttp } from "./context.ts";
import { CipherpostError } from "./errors.ts";
import type { RelayHttp } from "./http.ts";
import { generateKeys, preKeyPolicy } from "./prekeys.ts";
import type { Storage } from "./storage.ts";
import { DEVICE_KEY, trustedIdentityKey } from "./storage-keys.ts";

/** The fields registration and linking both send: this device's ids, password and first keys. */
export interface NewDeviceFields {
  registrationId: number;
  password: string;
  signedPreKey: ECSignedPreKey;
  pqLastResortPreKey: KEMSignedPreKey;
  preKeys: ECPreKey[];
  pqPreKeys: KEMSignedPreKey[];
}

function randomUint32(): number {
  const v = new Uint32Array(1);
  crypto.getRandomValues(v);
  return v[0]!;
}

function randomRegistrationId(): number {
  return MIN_REGISTRATION_ID + (randomUint32() % (MAX_REGISTRATION_ID - MIN_REGISTRATION_ID + 1));
}

export async function assertNoDevice(storage: Storage): Promise<void> {
  if (await storage.get(DEVICE_KEY))
    throw new CipherpostError("ALREADY_REGISTERED", "this storage already holds a device");
}

/**
 * Builds a new device: its first keys (private halves stored before the relay sees a public one, deleted again if
 * the relay refuses), a password and a registration id; `publish` sends them; then the device record is stored
 * with the account's identity key pinned. With `redrawTakenId`, a registration id another device of the account
 * holds is drawn again (ids are random 14-bit numbers, so collisions are rare but real).
 */
export async function enrollDevice(
  options: ClientOptions,
  http: RelayHttp,
  identity: { publicKey: Uint8Array; privateKey: Uint8Array },
  publish: (fields: NewDeviceFields) => Promise<{ accountId: string; deviceId: number }>,
  redrawTakenId: boolean,
): Promise<void> {
  const { storage } = options;
  const policy = preKeyPolicy(options.preKeys);
  const now = (options.clock ?? systemClock).now();
  const firstKeyId = 1 + (randomUint32() % 0x7fff_ffff);
  const want = { signed: true, lastResort: true, ec: policy.batch, kem: policy.batch };
  const keys = generateKeys(identity.privateKey, firstKeyId, want, now);
  const password = toBase64(randomBytes(18));
  let registrationId = randomRegistrationId();
  // Private halves first: the relay must never hold a public key whose private half we could lose.
  await storage.write(keys.batch);
  let published: { accountId: string; deviceId: number } | undefined;
  try {
    for (let attempt = 0; !published; attempt++) {
      try {
        published = await publish({
          registrationId,
          password,
          signedPreKey: keys.signedPreKey!,
          pqLastResortPreKey: keys.pqLastResortPreKey!,
          preKeys: keys.preKeys,
          pqPreKeys: keys.pqPreKeys,
        });
      } catch (e) {
        if (!redrawTakenId || !CipherpostError.is(e, "REGISTRATION_ID_TAKEN") || attempt >= 4) throw e;
        registrationId = randomRegistrationId();
      }
    }
  } catch (e) {
    await storage.write({ delete: Object.keys(keys.batch.set) });
    throw e;
  }
  const device: DeviceRecord = {
    version: 1,
    server: http.server,
    accountId: published.accountId.toLowerCase(),
    deviceId: published.deviceId,
    password,
    registrationId,
    identityKey: toBase64(identity.publicKey),
    identityPrivateKey: toBase64(identity.privateKey),
    nextKeyId: keys.nextKeyId,
    created: now,
  };
  await storage.write({
    set: { [DEVICE_KEY]: JSON.stringify(device), [trustedIdentityKey(device.accountId)]: device.identityKey },
  });
}

/** Creates an account and its first device (solving the relay's proof of work) and stores it. */
export async function registerDevice(options: RegisterOptions): Promise<void> {
  await assertNoDevice(options.storage);
  const http = relayHttp(options.server, options);
  const identity = generateEcKeyPair();
  const ch = await http.json("POST", "/v1/challenges", ChallengeResponse);
  const challenge = fromBase64(ch.challenge);
  const nonce = await solvePow(
    challenge,
    ch.difficulty,
    options.onPowProgress ? { onProgress: options.onPowProgress } : {},
  );
  const proof = xeddsaSign(identity.privateKey, registrationProofMessage(challenge, identity.publicKey));
  const publish = (fields: NewDeviceFields) =>
    http.json("POST", "/v1/registration", RegistrationResponse, {
      body: {
        identityKey: toBase64(identity.publicKey),
        ...fields,
        pow: { challenge: ch.challenge, nonce: toBase64(nonce) },
        proof: toBase64(proof),
      },
    });
  await enrollDevice(options, http, identity, publish, false);
}

/** The device `storage` holds; NOT_REGISTERED when there is none. */
export async function loadDevice(storage: Storage): Promise<DeviceRecord> {
  const raw = await storage.get(DEVICE_KEY);
  if (!raw) throw new CipherpostError("NOT_REGISTERED", "this storage holds no device: register or link first");
  return JSON.parse(raw) as DeviceRecord;
}

export function identityOf(d: DeviceRecord): LocalIdentity {
  return {
    identityKeyPair: { publicKey: fromBase64(d.identityKey), privateKey: fromBase64(d.identityPrivateKey) },
    registrationId: d.registrationId,
  };
}
