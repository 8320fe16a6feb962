// Last-resort prekey replays in the SDK (src/client/prekeys.ts over src/crypto's check): a prekey message that used
// the last-resort KEM key and no one-time key is recorded by (KEM key id, signed prekey id, base key) apart from
// session records, so a replay after the record's deletion is refused; the records go when their key does.
import { describe, expect, it } from "vitest";
import { MemoryStorage } from "../../src/client/index.ts";
import {
  DEFAULT_PREKEY_POLICY,
  generateKeys,
  rotationPlan,
  StoragePreKeyStore,
  stageUsedPreKeys,
} from "../../src/client/prekeys.ts";
import { newBatch } from "../../src/client/storage.ts";
import { PREKEY_PREFIXES, preKeyKey } from "../../src/client/storage-keys.ts";
import { fromBase64, utf8 } from "../../src/crypto/bytes.ts";
import { CryptoError } from "../../src/crypto/errors.ts";
import { generateEcKeyPair } from "../../src/crypto/keys.ts";
import type { LocalIdentity, PreKeyBundle } from "../../src/crypto/pqxdh.ts";
import { SessionRecord } from "../../src/crypto/session-record.ts";
import { initiateSession, sessionDecrypt, sessionEncrypt } from "../../src/crypto/session-store.ts";

const DAY = 86_400_000;

async function device(now: number) {
  const identity: LocalIdentity = { identityKeyPair: generateEcKeyPair(), registrationId: 77 };
  const storage = new MemoryStorage();
  const keys = generateKeys(identity.identityKeyPair.privateKey, 1, { signed: true, lastResort: true }, now);
  await storage.write(keys.batch);
  const bundle: PreKeyBundle = {
    identityKey: identity.identityKeyPair.publicKey,
    deviceId: 1,
    registrationId: identity.registrationId,
    signedPreKey: {
      keyId: keys.signedPreKey!.keyId,
      publicKey: fromBase64(keys.signedPreKey!.publicKey),
      signature: fromBase64(keys.signedPreKey!.signature),
    },
    pqPreKey: {
      keyId: keys.pqLastResortPreKey!.keyId,
      publicKey: fromBase64(keys.pqLastResortPreKey!.publicKey),
      signature: fromBase64(keys.pqLastResortPreKey!.signature),
    },
  };
  return { identity, storage, bundle, preKeys: new StoragePreKeyStore(storage) };
}

/** Bob receives a prekey message as the SDK does: decrypt, then stage what the prekeys it used need. */
async function receive(bob: Awaited<ReturnType<typeof device>>, record: SessionRecord, body: Uint8Array) {
  const result = await sessionDecrypt(record, bob.identity, bob.preKeys, 3, body);
  const batch = newBatch();
  if (result.usedPreKeys) stageUsedPreKeys(batch, result.usedPreKeys);
  await bob.storage.write(batch);
  return result;
}

describe("last-resort prekey replays", () => {
  it("a last-resort prekey message replayed after its session record was deleted is refused", async () => {
    const bob = await device(Date.now());
    const alice: LocalIdentity = { identityKeyPair: generateEcKeyPair(), registrationId: 5 };
    const message = sessionEncrypt(await initiateSession(alice, bob.bundle), utf8("hello"));
    const first = await receive(bob, new SessionRecord(), message.body);
    expect(first.usedPreKeys).toMatchObject({ lastResort: true });
    // The last-resort key stays (it is never deleted on use); the use is recorded instead.
    expect(await bob.storage.list(PREKEY_PREFIXES.lastResort)).toHaveLength(1);
    expect(await bob.storage.list("lru/")).toHaveLength(1);

    const replay = await receive(bob, new SessionRecord(), message.body).catch((e: unknown) => e);
    expect(CryptoError.is(replay, "DUPLICATE_MESSAGE")).toBe(true);
    // Another session on the same keys (a new base key) is still welcome.
    const other = sessionEncrypt(await initiateSession(alice, bob.bundle), utf8("again"));
    expect((await receive(bob, new SessionRecord(), other.body)).newSession).toBe(true);
  });

  it("the records go with their last-resort key when it expires after rotation", async () => {
    const t0 = Date.now() - 40 * DAY;
    const bob = await device(t0);
    const alice: LocalIdentity = { identityKeyPair: generateEcKeyPair(), registrationId: 5 };
    await receive(bob, new SessionRecord(), sessionEncrypt(await initiateSession(alice, bob.bundle), utf8("x")).body);
    const [[use]] = (await bob.storage.list("lru/")) as [[string, string]];
    // A successor made after two days; the grace period then runs out.
    await bob.storage.write(generateKeys(generateEcKeyPair().privateKey, 50, { lastResort: true }, t0 + 2 * DAY).batch);
    const plan = await rotationPlan(bob.storage, DEFAULT_PREKEY_POLICY, Date.now());
    expect(plan.expired).toContain(preKeyKey(PREKEY_PREFIXES.lastResort, bob.bundle.pqPreKey.keyId));
    expect(plan.expired).toContain(use);
  });
});
