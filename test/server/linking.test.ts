// Linking's hand-shake at the relay: a link code alone (token and the existing device's key) never yields the
// hand-over or a device; the envelope comes only after approval and only to the approved request; one request per
// token, never replaced; rejection, single use, expiry and tokens of other accounts.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { toBase64 } from "../../src/crypto/bytes.ts";
import { generateEcKeyPair } from "../../src/crypto/keys.ts";
import { call, callJson, expectError, registerAccount } from "./helpers.ts";
import {
  approveLink,
  approvedLink,
  completeLink,
  fetchEnvelope,
  type Link,
  registerLinked,
  requestLink,
  startLink,
} from "./link-helpers.ts";

const pending = (link: Link, auth = link.owner.auth) =>
  call("POST", "/v1/devices/link/pending", { auth, body: { linkToken: link.linkToken } });

/** Every step of the hand-shake with this token is refused as LINK_TOKEN_INVALID. */
async function allRefused(link: Link) {
  const eph = generateEcKeyPair();
  await expectError((await requestLink(link, eph)).res, 403, "LINK_TOKEN_INVALID");
  await expectError(await pending(link), 403, "LINK_TOKEN_INVALID");
  await expectError(await approveLink(link, eph.publicKey), 403, "LINK_TOKEN_INVALID");
  await expectError(await fetchEnvelope(link, eph), 403, "LINK_TOKEN_INVALID");
  await expectError((await registerLinked(link, link.owner.identity)).res, 403, "LINK_TOKEN_INVALID");
}

describe("linking needs the existing device's approval", () => {
  it("with only the link code, no hand-over and no device: the envelope is null and registration refused", async () => {
    const a = await registerAccount();
    const link = await startLink(a);
    const { eph, res } = await requestLink(link);
    expect(res.status).toBe(204);
    expect(await callJson("POST", "/v1/devices/link/envelope", { body: bodyOf(link, eph.publicKey) })).toEqual({
      envelope: null,
    });
    // Even keys signed with the right identity key (which a code reader does not have) wait for approval.
    const refused = await registerLinked(link, a.identity);
    await expectError(refused.res, 403, "LINK_TOKEN_INVALID");
    expect(await (await pending(link)).json()).toEqual({ publicKey: toBase64(eph.publicKey) });
    expect((await callJson<{ devices: unknown[] }>("GET", "/v1/devices", { auth: a.auth })).devices).toHaveLength(1);
    // Once approved, the same device completes.
    expect((await approveLink(link, eph.publicKey)).status).toBe(204);
    expect((await registerLinked(link, a.identity)).res.status).toBe(200);
  });

  it("shows the request to the existing device, null before any; approval before a request is refused", async () => {
    const link = await startLink(await registerAccount());
    expect(await (await pending(link)).json()).toEqual({ publicKey: null });
    await expectError(await approveLink(link, generateEcKeyPair().publicKey), 403, "LINK_TOKEN_INVALID");
  });

  it("a second request is refused and never replaces the first; only the first can be approved", async () => {
    const link = await startLink(await registerAccount());
    const first = await requestLink(link);
    expect(first.res.status).toBe(204);
    const second = await requestLink(link);
    await expectError(second.res, 403, "LINK_TOKEN_INVALID");
    expect(await (await pending(link)).json()).toEqual({ publicKey: toBase64(first.eph.publicKey) });
    await expectError(await approveLink(link, second.eph.publicKey), 403, "LINK_TOKEN_INVALID");
    await expectError(await fetchEnvelope(link, second.eph), 403, "LINK_TOKEN_INVALID");
  });

  it("the envelope goes only to the approved request's key, and approval is given once", async () => {
    const link = await startLink(await registerAccount());
    const { eph } = await requestLink(link);
    expect((await approveLink(link, eph.publicKey)).status).toBe(204);
    await expectError(await approveLink(link, eph.publicKey), 403, "LINK_TOKEN_INVALID");
    await expectError(await fetchEnvelope(link, generateEcKeyPair()), 403, "LINK_TOKEN_INVALID");
    const { envelope } = (await (await fetchEnvelope(link, eph)).json()) as { envelope: string };
    expect(envelope.length).toBeGreaterThan(0);
  });

  it("rejection ends the token: nothing more can be asked, approved or registered", async () => {
    const link = await startLink(await registerAccount());
    await requestLink(link);
    expect(
      (await call("POST", "/v1/devices/link/reject", { auth: link.owner.auth, body: { linkToken: link.linkToken } }))
        .status,
    ).toBe(204);
    await allRefused(link);
  });

  it("a token works once", async () => {
    const link = await startLink(await registerAccount());
    expect((await completeLink(link)).res.status).toBe(200);
    await allRefused(link);
  });

  it("an expired token is refused at every step, approved or not", async () => {
    const a = await registerAccount();
    const fresh = await startLink(a);
    const approved = await startLink(a);
    await approvedLink(approved);
    await runInDurableObject(env.ACCOUNT.getByName(a.accountId), (_o, state) => {
      state.storage.sql.exec("UPDATE link_tokens SET expires_at = 1");
    });
    await allRefused(fresh);
    await allRefused(approved);
  });

  it("a wrong token, or another account's, is refused", async () => {
    const a = await registerAccount();
    const b = await registerAccount();
    const link = await startLink(a);
    const { eph } = await requestLink(link);
    await allRefused({ ...link, linkToken: toBase64(crypto.getRandomValues(new Uint8Array(32))) });
    // b cannot see or approve a's request, nor answer a's token under its own account.
    await expectError(await pending(link, b.auth), 403, "LINK_TOKEN_INVALID");
    await expectError(await approveLink({ ...link, owner: b }, eph.publicKey), 403, "LINK_TOKEN_INVALID");
    await expectError((await requestLink(link, generateEcKeyPair(), b.accountId)).res, 403, "LINK_TOKEN_INVALID");
    expect(await (await pending(link)).json()).toEqual({ publicKey: toBase64(eph.publicKey) });
  });

  it("refuses an envelope over MAX_LINK_ENVELOPE_BYTES and an empty one", async () => {
    const link = await startLink(await registerAccount());
    const { eph } = await requestLink(link);
    const approve = (envelope: string) =>
      call("POST", "/v1/devices/link/approve", {
        auth: link.owner.auth,
        body: { linkToken: link.linkToken, publicKey: toBase64(eph.publicKey), envelope },
      });
    await expectError(await approve(toBase64(new Uint8Array(65_537))), 413, "PAYLOAD_TOO_LARGE");
    await expectError(await approve(""), 400, "BAD_REQUEST");
    expect((await approve(toBase64(new Uint8Array(65_536)))).status).toBe(204);
  });

  it("the request's key must be an EC public key", async () => {
    const link = await startLink(await registerAccount());
    const res = await call("PUT", "/v1/devices/link/request", {
      body: { ...bodyOf(link, new Uint8Array(33)), publicKey: toBase64(new Uint8Array(32)) },
    });
    await expectError(res, 422, "INVALID_KEY");
    expect(await (await pending(link)).json()).toEqual({ publicKey: null });
  });
});

function bodyOf(link: Link, publicKey: Uint8Array) {
  return { accountId: link.owner.accountId, linkToken: link.linkToken, publicKey: toBase64(publicKey) };
}
