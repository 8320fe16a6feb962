// The two published documents agree on what a client sends: the send and send_multi frames of /v1/asyncapi.json
// against the bodies of PUT /v1/messages/{accountId} and PUT /v1/messages/multi in /v1/openapi.json, field by
// field (required or not, type, bounds, defaults), and the AsyncAPI document lists every close code.
import { describe, expect, it } from "vitest";
import { CLOSE_CODES } from "../../src/protocol/frames.ts";
import { callJson } from "./helpers.ts";

type Schema = Record<string, unknown>;
type Doc = { components: { schemas: Record<string, Schema> } } & Schema;

/** Follows a local `$ref` (`#/components/schemas/X`) to its schema. */
function resolve(doc: Doc, schema: Schema): Schema {
  const ref = schema.$ref as string | undefined;
  if (!ref) return schema;
  const target = ref
    .slice(2)
    .split("/")
    .reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[k], doc);
  if (!target) throw new Error(`unresolved ${ref}`);
  return resolve(doc, target as Schema);
}

/**
 * The keywords a validator decides with, written one way. Left out: prose (description, title); the bounds zod adds
 * to every integer (±2^53 - 1, which JSON numbers cannot pass precisely anyway) and the pattern it adds to a uuid,
 * which the OpenAPI generator states as `type: integer` and `format: uuid` alone; `const: x` is written `enum: [x]`.
 */
function keywords(s: Schema): Schema {
  const out: Schema = {};
  for (const [k, v] of Object.entries(s)) {
    if (["description", "title", "properties", "items", "anyOf", "required", "$ref"].includes(k)) continue;
    if ((k === "maximum" || k === "minimum") && Math.abs(v as number) === Number.MAX_SAFE_INTEGER) continue;
    if (k === "pattern" && s.format === "uuid") continue;
    if (k === "const") out.enum = [v];
    else out[k] = v;
  }
  return out;
}

/** Every field of a schema by path (`messages[].type`), with whether it is required and its keywords. */
function fields(doc: Doc, schema: Schema, path = "$", out: Record<string, Schema> = {}, required = true) {
  const s = resolve(doc, schema);
  out[path] = { required, ...keywords(s) };
  if (Array.isArray(s.anyOf))
    out[path].anyOf = (s.anyOf as Schema[])
      .map((a) => keywords(resolve(doc, a)))
      .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  const req = (s.required as string[] | undefined) ?? [];
  for (const [k, v] of Object.entries((s.properties as Record<string, Schema> | undefined) ?? {}))
    fields(doc, v, `${path}.${k}`, out, req.includes(k));
  if (s.items) fields(doc, s.items as Schema, `${path}[]`, out);
  return out;
}

interface OpenApiOperation {
  parameters?: { name: string; in: string; required?: boolean; schema: Schema }[];
  requestBody: { content: { "application/json": { schema: Schema } } };
}

async function documents() {
  const openapi = await callJson<Doc & { paths: Record<string, Record<string, OpenApiOperation>> }>(
    "GET",
    "/v1/openapi.json",
  );
  const asyncapi = await callJson<Doc & { info: { description: string } }>("GET", "/v1/asyncapi.json");
  const frame = (name: string) => resolve(asyncapi, { $ref: `#/components/schemas/${name}` });
  const body = (path: string) => openapi.paths[path]!.put!.requestBody.content["application/json"].schema;
  return { openapi, asyncapi, frame, body, operation: (path: string) => openapi.paths[path]!.put! };
}

describe("the AsyncAPI and OpenAPI documents agree on sends", () => {
  it("a send frame's message is PUT /v1/messages/{accountId}'s body, field by field", async () => {
    const { openapi, asyncapi, frame, body } = await documents();
    const message = (frame("SendFrame").properties as Record<string, Schema>).message!;
    const overSocket = fields(asyncapi, message);
    expect(overSocket).toEqual(fields(openapi, body("/v1/messages/{accountId}")));
    // What issue 17 found: the frame required these, the relay and OpenAPI do not.
    for (const f of ["$.online", "$.urgent", "$.ttlSeconds"])
      expect(overSocket[f], f).toMatchObject({ required: false });
    expect(overSocket["$.online"]).toMatchObject({ type: "boolean", default: false });
    expect(overSocket["$.urgent"]).toMatchObject({ type: "boolean", default: true });
    expect(Object.keys(overSocket)).toEqual(
      expect.arrayContaining(["$.messages[].type", "$.messages[].destinationRegistrationId", "$.timestamp"]),
    );
  });

  it("a send_multi frame's message is PUT /v1/messages/multi's body, field by field", async () => {
    const { openapi, asyncapi, frame, body } = await documents();
    const message = (frame("SendMultiFrame").properties as Record<string, Schema>).message!;
    const overSocket = fields(asyncapi, message);
    expect(overSocket).toEqual(fields(openapi, body("/v1/messages/multi")));
    expect(overSocket["$.urgent"]).toMatchObject({ required: false });
    expect(overSocket["$.recipients[].accountId"]).toMatchObject({ required: true, type: "string", format: "uuid" });
  });

  it("the frames' own fields are the HTTP path and header: destination, idempotencyKey", async () => {
    const { asyncapi, frame, operation } = await documents();
    const send = fields(asyncapi, frame("SendFrame"));
    const params = operation("/v1/messages/{accountId}").parameters ?? [];
    const path = params.find((p) => p.in === "path" && p.name === "accountId")!;
    const header = params.find((p) => p.in === "header" && p.name.toLowerCase() === "idempotency-key")!;
    expect(send["$.destination"]).toMatchObject({ required: true, type: path.schema.type, format: "uuid" });
    expect(path.required).toBe(true);
    expect(send["$.idempotencyKey"]).toMatchObject({ required: false, type: header.schema.type });
    expect(header.required ?? false).toBe(false);
    expect(fields(asyncapi, frame("SendMultiFrame"))["$.idempotencyKey"]).toMatchObject({ required: false });
  });

  it("frames the relay receives take unknown fields, as its parser does (it ignores them)", async () => {
    const { frame } = await documents();
    for (const name of ["SendFrame", "SendMultiFrame", "AckFrame", "SendMessageRequest", "OutgoingMessage"])
      expect(frame(name).additionalProperties, name).toBeUndefined();
  });

  it("the AsyncAPI description names every close code", async () => {
    const { asyncapi } = await documents();
    const description = asyncapi.info.description;
    for (const code of Object.values(CLOSE_CODES)) expect(description).toContain(`${code} `);
    expect(description).toContain("gets no answer");
    expect(description).toContain("outside the in-flight window");
  });
});
