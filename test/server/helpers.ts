// Shared test helpers for the workerd tests: calling the Worker, and making accounts with real keys.
import { exports } from "cloudflare:workers";
import { expect } from "vitest";
import { fromBase64, randomBytes, toBase64, utf8 } from "../../src/crypto/bytes.ts";
import { generateEcKeyPair, generateKemKeyPair } from "../../src/crypto/keys.ts";
import { xeddsaSign } from "../../src/crypto/xeddsa.ts";
import { registrationProofMessage } from "../../src/protocol/limits.ts";
import { solvePow } from "../../src/protocol/pow.ts";

export const BASE = "https://relay.test";

export interface CallOptions {
  body?: unknown;
  raw?: BodyInit;
  auth?: string;
  headers?: Record<string, string>;
}

export async function call(method: string, path: string, opts: CallOptions = {}): Promise<Response> {
  // Each call comes from its own address unless the test names one, so per-IP limits only bite where tested.
  const headers: Record<string, string> = { "cf-connecting-ip": randomIp(), ...(opts.headers ?? {}) };
  if (opts.auth) headers.authorization = opts.auth;
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers["content-type"] ??= "application/json";
  }
  return exports.default.fetch(
    new Request(`${BASE}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) }),
  );
}

/**
 * Calls the Worker's handler directly with another env (bad config, broken bindings). Config is parsed once per
 * env object, so each new object is parsed afresh.
 */
export async function fetchWithEnv(e: Cloudflare.Env, path: string, init: RequestInit = {}): Promise<Response> {
  const { default: worker } = await import("../../src/server/index.ts");
  const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext;
  const headers = new Headers(init.headers);
  if (!headers.has("cf-connecting-ip")) headers.set("cf-connecting-ip", randomIp());
  const req = new Request(`${BASE}${path}`, { ...init, headers }) as unknown as Request<
    unknown,
    IncomingRequestCfProperties
  >;
  return worker.fetch(req, e, ctx);
}

export const randomIp = () =>
  `10.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}`;

export async function callJson<T = Record<string, unknown>>(
  method: string,
  path: string,
  opts: CallOptions = {},
  status = 200,
): Promise<T> {
  const res = await call(method, path, opts);
  const text = await res.text();
  expect(res.status, `${method} ${path} → ${res.status} ${text}`).toBe(status);
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Asserts an error answer: status, stable code, a message and the request id. */
export async function expectError(res: Response, status: number, code: string) {
  const body = (await res.json()) as { code: string; message: string; requestId: string } & Record<string, unknown>;
  expect(res.status, JSON.stringify(body)).toBe(status);
  expect(body.code).toBe(code);
  expect(body.message.length).toBeGreaterThan(0);
  expect(body.requestId).toMatch(/^[0-9a-f-]{36}$/);
  return body;
}

export const basic = (accountId: string, deviceId: number, password: string) =>
  `Basic ${toBase64(utf8(`${accountId}.${deviceId}:${password}`))}`;

export const newPassword = () => toBase64(randomBytes(18));

export interface Identity {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export function newIdentity(): Identity {
  return generateEcKeyPair();
}

let keyIdCounter = 1000;

/** A device's publishable keys, signed by `identity`: signed prekey, last-resort KEM key, one-time keys. */
export function deviceKeys(
  identity: Identity,
  opts: { preKeys?: number; pqPreKeys?: number; registrationId?: number } = {},
) {
  const sign = (bytes: Uint8Array) => toBase64(xeddsaSign(identity.privateKey, bytes));
  const spk = generateEcKeyPair().publicKey;
  const lr = generateKemKeyPair().publicKey;
  return {
    registrationId: opts.registrationId ?? 1 + Math.floor(Math.random() * 16000),
    password: newPassword(),
    signedPreKey: { keyId: keyIdCounter++, publicKey: toBase64(spk), signature: sign(spk) },
    pqLastResortPreKey: { keyId: keyIdCounter++, publicKey: toBase64(lr), signature: sign(lr) },
    preKeys: Array.from({ length: opts.preKeys ?? 3 }, () => ({
      keyId: keyIdCounter++,
      publicKey: toBase64(generateEcKeyPair().publicKey),
    })),
    pqPreKeys: Array.from({ length: opts.pqPreKeys ?? 2 }, () => {
      const k = generateKemKeyPair().publicKey;
      return { keyId: keyIdCounter++, publicKey: toBase64(k), signature: sign(k) };
    }),
  };
}

export async function solvedChallenge(ip = randomIp()) {
  const ch = await callJson<{ challenge: string; difficulty: number }>("POST", "/v1/challenges", {
    headers: { "cf-connecting-ip": ip },
  });
  const nonce = await solvePow(fromBase64(ch.challenge), ch.difficulty);
  return { challenge: ch.challenge, nonce: toBase64(nonce) };
}

export function registrationProof(identity: Identity, challenge: string): string {
  return toBase64(xeddsaSign(identity.privateKey, registrationProofMessage(fromBase64(challenge), identity.publicKey)));
}

export async function registrationBody(identity = newIdentity(), keys = deviceKeys(identity), ip = randomIp()) {
  const pow = await solvedChallenge(ip);
  return { identityKey: toBase64(identity.publicKey), ...keys, pow, proof: registrationProof(identity, pow.challenge) };
}

export interface TestAccount {
  accountId: string;
  deviceId: number;
  password: string;
  identity: Identity;
  auth: string;
  keys: ReturnType<typeof deviceKeys>;
}

export async function registerAccount(
  opts: { preKeys?: number; pqPreKeys?: number; ip?: string } = {},
): Promise<TestAccount> {
  const identity = newIdentity();
  const keys = deviceKeys(identity, opts);
  const body = await registrationBody(identity, keys, opts.ip);
  const r = await callJson<{ accountId: string; deviceId: number }>("POST", "/v1/registration", {
    body,
    ...(opts.ip ? { headers: { "cf-connecting-ip": opts.ip } } : {}),
  });
  return { ...r, password: keys.password, identity, auth: basic(r.accountId, r.deviceId, keys.password), keys };
}
