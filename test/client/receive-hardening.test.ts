// The SDK keeping its promises under attack and on disk, against the relay started locally: a message whose key was
// evicted is a decryption error and a retry receipt (never a silent duplicate) and is resent; a forged retry
// receipt changes nothing on the sender while a genuine one heals the session; and the encrypted profile storage
// holds neither a replaced secret nor a plaintext after a prekey is used, a ratchet step, a disappearing message
// expiring and a message being deleted.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CipherpostClient, type DecryptionErrorEvent, MemoryStorage } from "../../src/client/index.ts";
import { RelayHttp } from "../../src/client/http.ts";
import { openProfileStorage, storageKeyFile } from "../../src/client/node.ts";
import { encodeContent } from "../../src/client/content.ts";
import { DEVICE_KEY, PREKEY_PREFIXES, sentPrefixAt } from "../../src/client/storage-keys.ts";
import { fromBase64, randomBytes, toBase64, utf8 } from "../../src/crypto/bytes.ts";
import { nextChainKey } from "../../src/crypto/kdf.ts";
import { SessionRecord } from "../../src/crypto/session-record.ts";
import { SendMessageResponse } from "../../src/protocol/messages.ts";
import { ManualClock } from "../support/manual-clock.ts";
import { clientOptions, nextEvent, relayForFile, waitFor } from "./helpers.ts";
import { containsSecret, decryptedFiles, rawFiles } from "./storage-scan.ts";

const fixture = relayForFile();
const client = fixture.client;

const sessionKeyOf = (account: string) => `s/${account}/001`;
async function storedRecord(storage: MemoryStorage, account: string): Promise<SessionRecord> {
  return SessionRecord.deserialize(fromBase64((await storage.get(sessionKeyOf(account)))!));
}

describe("evicted keys and retry receipts", () => {
  it("a message whose key was evicted is a decryption error and a retry receipt, and comes again", async () => {
    const storage = new MemoryStorage();
    const bob = await client({ storage, deliveryReceipts: false });
    const alice = await client();
    await Promise.all([alice.connect(), bob.connect()]);
    await alice.send(bob.accountId, "first");
    await waitFor("Bob gets the first message", () => bob.messages.list({ with: alice.accountId }).length === 1);
    await bob.close();
    const lost = await alice.send(bob.accountId, "its key was evicted");
    // Bob's chain moves past message 1 and drops its key, as the per-chain bound does after a long gap.
    const record = await storedRecord(storage, alice.accountId);
    const chain = record.current!.receivingChains.at(-1)!;
    expect(chain.index).toBe(1);
    chain.key = nextChainKey(chain.key!);
    chain.index = 2;
    chain.evictedMax = 1;
    await storage.write({ set: { [sessionKeyOf(alice.accountId)]: toBase64(record.serialize()) } });

    const reopened = await CipherpostClient.open(clientOptions(storage, { deliveryReceipts: false }));
    fixture.track(reopened);
    const reported = nextEvent(reopened, "decryptionError", (e) => e.timestamp === lost.timestamp);
    await reopened.connect();
    const report: DecryptionErrorEvent = await reported;
    expect(report.error.code).toBe("DECRYPTION_FAILED");
    expect(report.error.extras.cryptoCode).toBe("MESSAGE_KEY_EVICTED");
    const resent = await waitFor("the resend after the retry receipt", () =>
      reopened.messages.get(lost.id, alice.accountId),
    );
    expect(resent.text).toBe("its key was evicted");
  });

  it("a forged retry receipt without the right ratchet key changes nothing; a genuine one heals the session", async () => {
    const aliceStorage = new MemoryStorage();
    const bobStorage = new MemoryStorage();
    const alice = await client({ storage: aliceStorage });
    const bob = await client({ storage: bobStorage, deliveryReceipts: false });
    const carol = await client();
    await Promise.all([alice.connect(), bob.connect()]);
    const sent = await alice.send(bob.accountId, "the original");
    await waitFor("Bob gets it", () => bob.messages.get(sent.id, alice.accountId));

    const snapshot = async () => ({
      session: await aliceStorage.get(sessionKeyOf(bob.accountId)),
      log: await aliceStorage.list(sentPrefixAt(sent.timestamp)),
    });
    const before = await snapshot();
    // Bob's device (or the relay) sends receipts naming the right message but not its ratchet key.
    const bobDevice = JSON.parse((await bobStorage.get(DEVICE_KEY))!) as { password: string };
    const aliceDevice = JSON.parse((await aliceStorage.get(DEVICE_KEY))!) as { registrationId: number };
    const receipt = (ratchetKey?: Uint8Array) =>
      toBase64(
        encodeContent({
          type: "retry",
          id: crypto.randomUUID(),
          timestamp: Date.now(),
          targetDevice: 1,
          originalTimestamp: sent.timestamp,
          ...(ratchetKey ? { ratchetKey: toBase64(ratchetKey) } : {}),
        }),
      );
    const http = new RelayHttp(fixture.relay().url);
    const auth = { accountId: bob.accountId, deviceId: 1, password: bobDevice.password };
    for (const content of [receipt(Uint8Array.of(5, ...randomBytes(32))), receipt()]) {
      await http.json("PUT", `/v1/messages/${alice.accountId}`, SendMessageResponse, {
        auth,
        body: {
          messages: [
            { type: 8, destinationDeviceId: 1, destinationRegistrationId: aliceDevice.registrationId, content },
          ],
          timestamp: Date.now(),
          online: false,
          urgent: true,
        },
      });
    }
    // A barrier: Carol's message is queued behind the receipts, and anything they started runs under Alice's
    // mutex before her next send does.
    const barrier = await carol.send(alice.accountId, "barrier");
    await waitFor("Alice gets the barrier", () => alice.messages.get(barrier.id, carol.accountId));
    await alice.send(carol.accountId, "after the receipts");
    expect(await snapshot()).toEqual(before);

    // Genuine: Bob loses his session, cannot read Alice's next message and asks with its ratchet key.
    await bob.close();
    await bobStorage.write({ delete: [sessionKeyOf(alice.accountId)] });
    const bob2 = await CipherpostClient.open(clientOptions(bobStorage, { deliveryReceipts: false }));
    fixture.track(bob2);
    await bob2.connect();
    const baseKey = (await storedRecord(aliceStorage, bob.accountId)).current!.baseKey;
    const next = await alice.send(bob.accountId, "needs the healed session");
    const healed = await waitFor("the resend on a fresh session", () => bob2.messages.get(next.id, alice.accountId));
    expect(healed.text).toBe("needs the healed session");
    const after = await storedRecord(aliceStorage, bob.accountId);
    expect(toBase64(after.current!.baseKey)).not.toBe(toBase64(baseKey)); // the broken session was archived
    expect(after.previous.map((s) => toBase64(s.baseKey))).toContain(toBase64(baseKey));
  });
});

describe("secrets at rest: the encrypted profile after each step", () => {
  it("holds neither a replaced secret nor a plaintext after a prekey use, a ratchet step, an expiry and a deletion", async () => {
    const dir = fixture.tempDir("cipherpost-at-rest-");
    const storage = await openProfileStorage(dir);
    const key = storageKeyFile(join(dir, "storage.key"));
    const clock = new ManualClock();
    // No delivery receipts: nothing writes Bob's storage in the background while the test reads its files.
    const bob = await client({ storage, clock, deliveryReceipts: false });
    const alice = await client({ clock });
    await Promise.all([alice.connect(), bob.connect()]);
    const state = join(dir, "state");
    /** The files once every write queued so far has finished (writes are serialised). */
    const files = async () => {
      await storage.write({});
      return { raw: rawFiles(dir), plain: decryptedFiles(state, key) };
    };
    const privateHalves = async () => {
      const out = new Map<string, Uint8Array>();
      for (const prefix of [PREKEY_PREFIXES.ec, PREKEY_PREFIXES.kem])
        for (const [k, v] of await storage.list(prefix)) {
          const j = JSON.parse(v) as { priv?: string; sk?: string };
          out.set(k, fromBase64((j.priv ?? j.sk)!));
        }
      return out;
    };
    const ratchetSecrets = async () => {
      const s = SessionRecord.deserialize(fromBase64((await storage.get(sessionKeyOf(alice.accountId)))!)).current!;
      return [s.rootKey, s.receivingChains.at(-1)!.key!];
    };

    // 1. A prekey used: the one-time keys Alice's first message named are gone, private halves and all.
    const keysBefore = await privateHalves();
    const first = await alice.send(bob.accountId, "first words");
    await waitFor("Bob gets the first message", () => bob.messages.get(first.id, alice.accountId));
    const keysAfter = await privateHalves();
    const spent = [...keysBefore].filter(([k]) => !keysAfter.has(k)).map(([, v]) => v);
    expect(spent).toHaveLength(2); // one EC and one KEM one-time key
    let f = await files();
    for (const secret of spent) {
      expect(containsSecret(f.raw, secret)).toBe(false);
      expect(containsSecret(f.plain, secret)).toBe(false);
    }
    expect(containsSecret(f.raw, utf8("first words"))).toBe(false);

    // 2. A ratchet step: Bob answers, Alice writes again; the old root key and receiving chain key are gone.
    const [oldRoot, oldChain] = await ratchetSecrets();
    await bob.send(alice.accountId, "an answer");
    await waitFor("Alice gets the answer", () => alice.messages.list({ with: bob.accountId }).length >= 2);
    const third = await alice.send(bob.accountId, "after the ratchet step");
    await waitFor("Bob gets it", () => bob.messages.get(third.id, alice.accountId));
    const [newRoot] = await ratchetSecrets();
    expect(toBase64(newRoot!)).not.toBe(toBase64(oldRoot!));
    f = await files();
    for (const secret of [oldRoot!, oldChain!]) {
      expect(containsSecret(f.raw, secret)).toBe(false);
      expect(containsSecret(f.plain, secret)).toBe(false);
    }
    expect(containsSecret(f.raw, utf8("after the ratchet step"))).toBe(false);

    // 3. A disappearing message expired: gone from every file, decrypted or not.
    const vanishing = `vanishing ${crypto.randomUUID()}`;
    const gone = nextEvent(bob, "expired");
    const v = await alice.send(bob.accountId, { text: vanishing, expireSeconds: 5 });
    await waitFor("Bob stores it", () => bob.messages.get(v.id, alice.accountId));
    expect((await files()).plain.join()).toContain(vanishing);
    clock.advance(5_000);
    await gone;
    f = await files();
    expect(containsSecret(f.raw, utf8(vanishing))).toBe(false);
    expect(containsSecret(f.plain, utf8(vanishing))).toBe(false);

    // 4. A message deleted.
    expect(await bob.messages.delete(third.id, alice.accountId)).toBe(true);
    f = await files();
    expect(containsSecret(f.plain, utf8("after the ratchet step"))).toBe(false);
    expect(containsSecret(f.raw, utf8("after the ratchet step"))).toBe(false);
  }, 120_000);
});
