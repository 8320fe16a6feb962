// Bad input at every route: malformed, truncated, oversized, wrongly typed and missing fields, wrong content
// types and bad path parameters. Each gets a 4xx with a code from the closed set, never a 500, and storage
// is exactly as it was. The routes come from the published API document, so a new route cannot be missed.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { toBase64 } from "../../src/crypto/bytes.ts";
import { generateEcKeyPair } from "../../src/crypto/keys.ts";
import { ERROR_CODES } from "../../src/protocol/errors.ts";
import { call, callJson, deviceKeys, registerAccount, registrationBody, type TestAccount } from "./helpers.ts";

interface Schema {
  $ref?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
}
interface Doc {
  paths: Record<
    string,
    Record<string, { requestBody?: { content: Record<string, { schema: Schema }> }; security?: unknown[] }>
  >;
  components: { schemas: Record<string, Schema> };
}

const resolve = (s: Schema | undefined): Schema | undefined =>
  s?.$ref ? doc.components.schemas[s.$ref.split("/").pop()!] : s;

let a: TestAccount;
/** A second account, the recipient of the sample sends. */
let b: TestAccount;
let doc: Doc;
const samples: Record<string, () => Promise<Record<string, unknown>>> = {};
/** Routes whose bodies are not JSON; their own test files throw bad input at them (named here so none is forgotten). */
const NON_JSON_BODY_ROUTES = new Set<string>([]);

/**
 * Row counts of everything a request could write: every D1 table on every shard, both R2 buckets, and both
 * accounts' objects. Rate-limit events are left out on purpose: a limit counts attempts, good or bad.
 */
async function snapshot(): Promise<string> {
  const counts: Record<string, number> = {};
  for (const name of ["DB_0", "DB_1", "DB_2"] as const) {
    const db = env[name];
    const tables = await db
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
      )
      .all<{ name: string }>();
    for (const { name: t } of tables.results)
      counts[`${name}.${t}`] = (await db.prepare(`SELECT count(*) AS n FROM ${t}`).first<{ n: number }>())!.n;
  }
  counts["r2.KEY_PAGES"] = (await env.KEY_PAGES.list()).objects.length;
  counts["r2.ATTACHMENTS"] = (await env.ATTACHMENTS.list()).objects.length;
  for (const acct of [a, b]) {
    await runInDurableObject(env.ACCOUNT.getByName(acct.accountId), (_o, state) => {
      const tables = state.storage.sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name != 'rate_events'",
        )
        .toArray();
      for (const { name: t } of tables)
        counts[`${acct === a ? "a" : "b"}.${t}`] = state.storage.sql
          .exec<{ n: number }>(`SELECT count(*) AS n FROM ${t}`)
          .one().n;
    });
  }
  return JSON.stringify(counts);
}

beforeAll(async () => {
  a = await registerAccount();
  b = await registerAccount();
  doc = await callJson<Doc>("GET", "/v1/openapi.json");
  const link = await callJson<{ linkToken: string }>("POST", "/v1/devices/link", { auth: a.auth });
  const publicKey = toBase64(generateEcKeyPair().publicKey);
  const linkBody = { accountId: a.accountId, linkToken: link.linkToken, publicKey };
  samples["post /v1/registration"] = async () => await registrationBody();
  samples["put /v1/devices/link/request"] = async () => linkBody;
  samples["post /v1/devices/link/pending"] = async () => ({ linkToken: link.linkToken });
  samples["post /v1/devices/link/approve"] = async () => ({
    linkToken: link.linkToken,
    publicKey,
    envelope: toBase64(new Uint8Array(48)),
  });
  samples["post /v1/devices/link/reject"] = async () => ({ linkToken: link.linkToken });
  samples["post /v1/devices/link/envelope"] = async () => linkBody;
  samples["put /v1/devices/link"] = async () => ({
    accountId: a.accountId,
    linkToken: link.linkToken,
    ...deviceKeys(a.identity),
  });
  const send = () => ({
    messages: [
      {
        type: 2,
        destinationDeviceId: 1,
        destinationRegistrationId: b.keys.registrationId,
        content: toBase64(new Uint8Array(64)),
      },
    ],
    timestamp: Date.now(),
    online: false,
    urgent: true,
  });
  samples["put /v1/messages/{accountId}"] = async () => send();
  samples["put /v1/messages/multi"] = async () => {
    const { messages, ...rest } = send();
    return { recipients: [{ accountId: b.accountId, messages }], ...rest };
  };
  samples["put /v1/devices/push"] = async () => ({ endpoint: "https://push.example/subscription" });
  const usernameHash = "ab".repeat(32);
  samples["post /v1/usernames/reserve"] = async () => ({ usernameHashes: [usernameHash] });
  samples["put /v1/usernames/confirm"] = async () => ({ usernameHash });
  samples["put /v1/usernames/link"] = async () => ({ ciphertext: "Ab_-".repeat(25).concat("Ab") });
  samples["put /v2/keys"] = async () => {
    const k = deviceKeys(a.identity);
    return {
      signedPreKey: k.signedPreKey,
      pqLastResortPreKey: k.pqLastResortPreKey,
      preKeys: k.preKeys,
      pqPreKeys: k.pqPreKeys,
    };
  };
});

const toPath = (p: string) =>
  p
    .replace(/\{accountId\}/g, () => b.accountId)
    .replace(/\{deviceId\}/g, "2")
    .replace(/\{[^}]+\}/g, "00000000000000000000000000000000");

/** Free-length fields where a longer or shorter string can still be valid. */
const FREE_LENGTH = new Set(["password", "envelope", "nonce", "content", "endpoint"]);
/** Numbers any large value of which is valid (a sender's clock). */
const FREE_NUMBER = new Set(["timestamp"]);

/** Values of the wrong type for a field that holds `v`, and for fixed-length strings, wrong lengths and characters. */
function wrongTypes(v: unknown, key: string): unknown[] {
  const out: unknown[] = [null, { nested: 1 }];
  if (typeof v !== "boolean") out.push(true);
  if (typeof v !== "string") out.push("a string");
  if (typeof v !== "number") out.push(12345);
  if (!Array.isArray(v)) out.push([1, 2]);
  if (typeof v === "string" && !FREE_LENGTH.has(key))
    out.push(v.slice(0, Math.max(0, v.length - 4)), `${v}AAAA`, v.replace(/[A-Za-z]/, "!"));
  if (typeof v === "number") out.push(-1, 1.5, ...(FREE_NUMBER.has(key) ? [] : [2 ** 40]));
  return out;
}

/**
 * Every mutation of one field at a time, one level deep into objects and the first element of arrays. Leaving a
 * field out is a mutation only where the API document says it is required (else the body is still valid).
 */
function mutations(body: Record<string, unknown>, schema: Schema | undefined): { what: string; body: unknown }[] {
  const out: { what: string; body: unknown }[] = [];
  const s = resolve(schema);
  for (const [k, v] of Object.entries(body)) {
    const { [k]: _drop, ...without } = body;
    if (s?.required?.includes(k)) out.push({ what: `${k} missing`, body: without });
    const fieldSchema = resolve(s?.properties?.[k]);
    const innerSchema = resolve(Array.isArray(v) ? resolve(fieldSchema?.items) : fieldSchema);
    for (const w of wrongTypes(v, k))
      out.push({ what: `${k}=${JSON.stringify(w).slice(0, 30)}`, body: { ...body, [k]: w } });
    const inner = Array.isArray(v) ? v[0] : v;
    if (inner && typeof inner === "object") {
      for (const [ik, iv] of Object.entries(inner as Record<string, unknown>)) {
        const required = innerSchema?.required?.includes(ik) ?? true;
        for (const w of [...(required ? [undefined] : []), ...wrongTypes(iv, ik)]) {
          const mutated = { ...(inner as Record<string, unknown>), [ik]: w };
          if (w === undefined) delete mutated[ik];
          out.push({
            what: `${k}.${ik}=${String(JSON.stringify(w)).slice(0, 30)}`,
            body: { ...body, [k]: Array.isArray(v) ? [mutated, ...v.slice(1)] : mutated },
          });
        }
      }
    }
  }
  return out;
}

async function expect4xx(res: Response, what: string) {
  const text = await res.text();
  expect(res.status, `${what} → ${res.status} ${text}`).toBeGreaterThanOrEqual(400);
  expect(res.status, `${what} → ${res.status} ${text}`).toBeLessThan(500);
  const body = JSON.parse(text) as { code: string; requestId: string; message: string };
  expect(ERROR_CODES, what).toContain(body.code);
  expect(body.message, what).not.toMatch(/ZodError|"issues"|invalid_type/);
  return body.code;
}

describe("bad input at every route", () => {
  it("the API document lists the routes this test walks", () => {
    const ops = Object.entries(doc.paths).flatMap(([p, m]) => Object.keys(m).map((x) => `${x} ${p}`));
    expect(ops).toContain("post /v1/registration");
    expect(ops).toContain("put /v2/keys");
    for (const [p, methods] of Object.entries(doc.paths))
      for (const [m, op] of Object.entries(methods)) {
        const key = `${m} ${p}`;
        if (op.requestBody?.content["application/json"] && !NON_JSON_BODY_ROUTES.has(key))
          expect(samples, `add a sample body for ${key}`).toHaveProperty(key);
      }
  });

  it("every JSON body route refuses malformed, truncated, mistyped, oversized and non-JSON bodies and changes nothing", async () => {
    const bodies = await Promise.all(
      Object.entries(samples).map(async ([key, sample]) => [key, await sample()] as const),
    );
    const before = await snapshot();
    for (const [key, body] of bodies) {
      const [method, p] = key.split(" ") as [string, string];
      const path = toPath(p);
      const text = JSON.stringify(body);
      const send = (raw: BodyInit, type = "application/json") =>
        call(method.toUpperCase(), path, { auth: a.auth, raw, headers: { "content-type": type } });
      expect(await expect4xx(await send("{"), `${key} malformed`)).toBe("INVALID_JSON");
      expect(await expect4xx(await send(text.slice(0, Math.floor(text.length / 2))), `${key} truncated`)).toBe(
        "INVALID_JSON",
      );
      expect(await expect4xx(await send(""), `${key} empty`)).toMatch(/INVALID_JSON|BAD_REQUEST/);
      expect(await expect4xx(await send("[]"), `${key} array`)).toBe("BAD_REQUEST");
      expect(await expect4xx(await send("12"), `${key} number`)).toBe("BAD_REQUEST");
      expect(await expect4xx(await send(text, "text/plain"), `${key} text/plain`)).toBe("UNSUPPORTED_MEDIA_TYPE");
      expect(
        await expect4xx(await send(JSON.stringify({ ...body, pad: "x".repeat(8_500_000) })), `${key} oversized`),
      ).toBe("PAYLOAD_TOO_LARGE");
      const schema = doc.paths[p]![method]!.requestBody!.content["application/json"]!.schema;
      for (const m of mutations(body, schema)) await expect4xx(await send(JSON.stringify(m.body)), `${key} ${m.what}`);
    }
    expect(await snapshot()).toBe(before);
  }, 180_000);

  it("every route refuses bad path parameters and missing credentials and changes nothing", async () => {
    const before = await snapshot();
    for (const [p, methods] of Object.entries(doc.paths)) {
      for (const [m, op] of Object.entries(methods)) {
        if (p.includes("{")) {
          for (const bad of ["0", "128", "-1", "abc", "%00", "1.5", "x".repeat(300)]) {
            const path = p.replace(/\{[^}]+\}/g, bad);
            await expect4xx(
              await call(m.toUpperCase(), path, {
                auth: a.auth,
                ...(op.requestBody ? { raw: "{}", headers: { "content-type": "application/json" } } : {}),
              }),
              `${m} ${path}`,
            );
          }
        }
        if (op.security?.length && !op.security.some((alt) => Object.keys(alt as object).length === 0)) {
          // The WebSocket route is asked as a WebSocket would ask it, so what is refused is the missing credential.
          const upgrade: Record<string, string> = p === "/v1/websocket" ? { upgrade: "websocket" } : {};
          const res = await call(
            m.toUpperCase(),
            toPath(p),
            op.requestBody
              ? { raw: "{}", headers: { "content-type": "application/json", ...upgrade } }
              : { headers: upgrade },
          );
          expect(await expect4xx(res, `${m} ${p} without credentials`)).toBe("UNAUTHORIZED");
        }
      }
    }
    expect(await snapshot()).toBe(before);
    // About 200 requests; after the body walk above each takes tens of ms, so 30 s is too close on a busy machine.
  }, 120_000);

  it("unknown routes and methods answer JSON 404, never HTML", async () => {
    for (const [m, p] of [
      ["GET", "/nope"],
      ["DELETE", "/v2/keys"],
      ["PATCH", "/v1/devices"],
      ["GET", "/v1/registration"],
    ] as const) {
      expect(await expect4xx(await call(m, p, { auth: a.auth }), `${m} ${p}`)).toBe("NOT_FOUND");
    }
  });
});
