// The shapes of a device crossing the account object's RPC boundary (kept under this name for the Worker's
// imports; the device records are DeviceRegistry in device-registry.ts). Elsewhere "directory" means only the
// public key directory in D1: db/keys.ts, with its wire shapes in protocol/directory.ts.
import type { z } from "zod";
import type { LinkDeviceRequest } from "../../protocol/directory.ts";

/** A device to create: what registration and linking both send, as validated (every signature checked). */
export type NewDevice = Omit<z.output<typeof LinkDeviceRequest>, "accountId" | "linkToken">;

/** A device whose password checked out, as the Worker's routes see it. */
export interface AuthenticatedDevice {
  ok: true;
  accountId: string;
  deviceId: number;
  deviceUid: number;
  registrationId: number;
  identityKey: string;
}
