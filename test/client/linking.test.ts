// Linking through the SDK against the relay: both devices show the same verification code; the link completes
// only when the existing device approves; a rejected request, or a code someone else answered first, never
// yields a device or the identity key.
import { describe, expect, it } from "vitest";
import { CipherpostClient, CipherpostError, MemoryStorage } from "../../src/client/index.ts";
import { clientOptions, relayForFile, waitFor } from "./helpers.ts";

const fixture = relayForFile();

/** Starts linking a fresh storage with `code`; `shown` holds the verification code it reports. */
function startLinking(code: string) {
  const storage = new MemoryStorage();
  const state: { shown?: string; settled: boolean } = { settled: false };
  const done = CipherpostClient.link({
    server: fixture.relay().url,
    code,
    onVerificationCode: (v) => {
      state.shown = v;
    },
    ...clientOptions(storage),
  }).finally(() => {
    state.settled = true;
  });
  done.catch(() => undefined); // observed by the test that awaits it
  return { storage, state, done };
}

const code = (e: unknown) => (e instanceof CipherpostError ? e.code : String(e));

describe("linking a device", () => {
  it("completes only after the existing device approves the request whose code matches", async () => {
    const a1 = await fixture.client();
    const session = await a1.createLinkCode();
    const linking = startLinking(session.code);
    const requests = session.requests()[Symbol.asyncIterator]();
    const { value: request } = await requests.next();
    const shown = await waitFor("the new device's verification code", () => linking.state.shown);
    expect(request!.verificationCode).toMatch(/^\d{6}$/);
    expect(request!.verificationCode).toBe(shown);
    // Answered but not approved: no device yet, and the new device is still waiting.
    expect((await a1.devices()).map((d) => d.deviceId)).toEqual([1]);
    expect(linking.state.settled).toBe(false);
    await request!.approve();
    const a2 = fixture.track(await linking.done);
    expect(a2.accountId).toBe(a1.accountId);
    expect(a2.identityKey).toEqual(a1.identityKey);
    expect((await requests.next()).done).toBe(true);
  });

  it("a rejected request fails on the new device and leaves it without a device or the identity key", async () => {
    const a1 = await fixture.client();
    const session = await a1.createLinkCode();
    const linking = startLinking(session.code);
    for await (const request of session.requests()) await request.reject();
    await expect(linking.done).rejects.toMatchObject({ code: "LINK_TOKEN_INVALID" });
    await expect(CipherpostClient.open(clientOptions(linking.storage))).rejects.toMatchObject({
      code: "NOT_REGISTERED",
    });
    expect(await linking.storage.list("")).toEqual([]); // nothing stored at all, let alone a key
    expect((await a1.devices()).map((d) => d.deviceId)).toEqual([1]);
  });

  it("a code read by someone else: their request comes first, the genuine device is told, and rejecting ends it", async () => {
    const a1 = await fixture.client();
    const session = await a1.createLinkCode();
    const snooper = startLinking(session.code);
    const requests = session.requests()[Symbol.asyncIterator]();
    const { value: request } = await requests.next();
    // The genuine device, typing the same code, is refused at once: the code was answered by another device.
    const genuine = startLinking(session.code);
    const refused = await genuine.done.then(
      () => "linked",
      (e: unknown) => [code(e), (e as Error).message],
    );
    expect(refused).toEqual(["LINK_TOKEN_INVALID", expect.stringMatching(/another device already answered/)]);
    expect(genuine.state.shown).toBeUndefined();
    // The person sees a request while their device shows no code, and refuses it: the snooper gets nothing.
    await request!.reject();
    expect(code(await snooper.done.catch((e: unknown) => e))).toBe("LINK_TOKEN_INVALID");
    expect((await a1.devices()).map((d) => d.deviceId)).toEqual([1]);
  });

  it("refuses a link code of the old kind, which carried the identity key's secret", async () => {
    const old = `cplink1.${"A".repeat(107)}`;
    await expect(startLinking(old).done).rejects.toMatchObject({ code: "INVALID_LINK_CODE" });
  });
});
