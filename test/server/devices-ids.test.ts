// Strict device ids: wherever a device id arrives as text (the Basic user `accountId.deviceId`, a path parameter)
// only canonical decimal 1..127 names a device, so `1e0`, `0x1`, ` 1`, `01` and `+1` are not device 1.
import { describe, expect, it } from "vitest";
import { toBase64, utf8 } from "../../src/crypto/bytes.ts";
import { parseDeviceIdText } from "../../src/protocol/directory.ts";
import { call, callJson, expectError, registerAccount } from "./helpers.ts";

const LENIENT = ["1e0", "0x1", " 1", "01", "+1", "1 ", "1.0", "1.", "0b1", "\u0661", "0", "128", "-1", ""];

const basicAs = (user: string, password: string) => `Basic ${toBase64(utf8(`${user}:${password}`))}`;

describe("device ids as text", () => {
  it("parseDeviceIdText takes canonical decimal 1..127 only", () => {
    expect(parseDeviceIdText("1")).toBe(1);
    expect(parseDeviceIdText("9")).toBe(9);
    expect(parseDeviceIdText("10")).toBe(10);
    expect(parseDeviceIdText("127")).toBe(127);
    for (const text of LENIENT) expect(parseDeviceIdText(text), JSON.stringify(text)).toBeNull();
  });

  it("Basic credentials naming device 1 as 1e0, 0x1, ' 1', 01 or +1 get 401; '1' and no device authenticate", async () => {
    const a = await registerAccount();
    expect(await callJson("GET", "/v1/accounts/whoami", { auth: basicAs(`${a.accountId}.1`, a.password) })).toEqual({
      accountId: a.accountId,
      deviceId: 1,
    });
    // Without a device part the user is the account's device 1, as Signal's clients send it.
    expect(await callJson("GET", "/v1/accounts/whoami", { auth: basicAs(a.accountId, a.password) })).toEqual({
      accountId: a.accountId,
      deviceId: 1,
    });
    for (const text of LENIENT) {
      const res = await call("GET", "/v1/accounts/whoami", { auth: basicAs(`${a.accountId}.${text}`, a.password) });
      await expectError(res, 401, "UNAUTHORIZED");
    }
  });

  it("a device id path parameter spelled 1e0, 0x1, ' 1', 01 or +1 gets 400 and removes nothing", async () => {
    const a = await registerAccount();
    for (const text of ["1e0", "0x1", "%201", "01", "+1", "2%20", "1.0", "0"]) {
      const res = await call("DELETE", `/v1/devices/${text}`, { auth: a.auth });
      await expectError(res, 400, "BAD_REQUEST");
    }
    // The canonical spelling reaches the route: device 1 cannot be removed (403), an unknown device is 404.
    await expectError(await call("DELETE", "/v1/devices/1", { auth: a.auth }), 403, "PRIMARY_DEVICE");
    await expectError(await call("DELETE", "/v1/devices/5", { auth: a.auth }), 404, "NOT_FOUND");
  });

  it("a prekey claim's device path parameter is as strict", async () => {
    const a = await registerAccount();
    const b = await registerAccount();
    for (const text of ["1e0", "0x1", "%201", "01", "+1"]) {
      const res = await call("GET", `/v2/keys/${b.accountId}/${text}`, { auth: a.auth });
      await expectError(res, 400, "BAD_REQUEST");
    }
    await callJson("GET", `/v2/keys/${b.accountId}/1`, { auth: a.auth });
  });
});
