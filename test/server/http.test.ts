// HTTP conduct: browsers on any origin (CORS preflights, explicit credentials, exposed headers), security
// headers, request ids, and an API document that matches the routes the Worker serves.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { app } from "../../src/server/index.ts";
import { ERROR_CODES } from "../../src/protocol/errors.ts";
import { call, callJson, fetchWithEnv, registerAccount } from "./helpers.ts";

describe("browsers", () => {
  it("answers CORS preflights for any origin, allowing the credential and tus headers", async () => {
    const res = await call("OPTIONS", "/v2/keys", {
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "PUT",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(res.status).toBeLessThan(300);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-methods")).toContain("PUT");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    expect(res.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("upload-offset");
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
  });

  it("answers cross-origin requests with exposed headers, security headers and no cookies", async () => {
    const a = await registerAccount();
    const res = await call("GET", "/v1/devices", { auth: a.auth, headers: { origin: "https://app.example" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-expose-headers")?.toLowerCase()).toContain("retry-after");
    expect(res.headers.get("access-control-expose-headers")?.toLowerCase()).toContain("idempotent-replayed");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("x-frame-options")).toBe("SAMEORIGIN");
    expect(res.headers.get("strict-transport-security")).toMatch(/max-age=/);
    expect(res.headers.get("set-cookie")).toBeNull();
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("error bodies carry the same request id as the header", async () => {
    const res = await call("GET", "/v1/devices");
    const body = (await res.json()) as { requestId: string };
    expect(body.requestId).toBe(res.headers.get("x-request-id"));
  });
});

describe("the API document", () => {
  it("is OpenAPI 3.1 and lists exactly the routes the Worker serves", async () => {
    const doc = await callJson<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
      "GET",
      "/v1/openapi.json",
    );
    expect(doc.openapi).toBe("3.1.0");
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([p, ms]) =>
        Object.keys(ms).map((m) => `${m.toUpperCase()} ${p.replace(/\{(\w+)\}/g, ":$1")}`),
      ),
    );
    const served = new Set(
      app.routes
        .filter((r) => r.method !== "ALL" && !["/v1/openapi.json", "/v1/asyncapi.json"].includes(r.path))
        .map((r) => `${r.method} ${r.path}`),
    );
    expect(
      [...served].filter((r) => !documented.has(r)),
      "served but not documented",
    ).toEqual([]);
    expect(
      [...documented].filter((r) => !served.has(r)),
      "documented but not served",
    ).toEqual([]);
  });

  it("documents every error code a route can answer with the shared error schema", async () => {
    const doc = await callJson<{
      paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
      components: { schemas: Record<string, unknown> };
    }>("GET", "/v1/openapi.json");
    expect(doc.components.schemas).toHaveProperty("Error");
    const mentioned = new Set<string>();
    for (const ms of Object.values(doc.paths))
      for (const op of Object.values(ms))
        for (const r of Object.values(op.responses))
          for (const m of r.description.matchAll(/`([A-Z_]+)`/g)) mentioned.add(m[1]!);
    for (const code of mentioned) expect(ERROR_CODES).toContain(code);
    // Any route can meet the configuration gate, so every operation but /health (which reports it itself) says so.
    for (const [p, ms] of Object.entries(doc.paths))
      for (const [m, op] of Object.entries(ms)) {
        if (p === "/health") continue;
        expect(
          Object.values(op.responses)
            .map((r) => r.description)
            .join(" "),
          `${m} ${p}`,
        ).toContain("`MISCONFIGURED`");
      }
    for (const code of [
      "INVALID_SIGNATURE",
      "CHALLENGE_INVALID",
      "RATE_LIMITED",
      "LINK_TOKEN_INVALID",
      "TOO_MANY_DEVICES",
      "UNAUTHORIZED",
    ])
      expect(mentioned).toContain(code);
  });
});

describe("unexpected failures", () => {
  it("answer 500 INTERNAL with the request id and nothing of the error itself", async () => {
    const { createApp } = await import("../../src/server/app.ts");
    const { env } = await import("cloudflare:workers");
    const broken = createApp((a) => {
      a.get("/boom", () => {
        throw new Error("secret detail that must not leak");
      });
    });
    const res = await broken.fetch(new Request("https://relay.test/boom"), env);
    expect(res.status).toBe(500);
    const body = (await res.json()) as { code: string; message: string; requestId: string };
    expect(body.code).toBe("INTERNAL");
    expect(body.message).not.toContain("secret");
    expect(body.requestId).toBe(res.headers.get("x-request-id"));
  });
});

describe("logs", () => {
  // The test Worker runs with LOG_LEVEL=warn (vitest.workers.config.ts); these run the same Worker with "info".
  const atInfo = { ...env, LOG_LEVEL: "info" } as Cloudflare.Env;

  it("one JSON line per request with id, route, status and duration; never the address, password or body", async () => {
    const { vi } = await import("vitest");
    const a = await registerAccount();
    const spy = vi.spyOn(console, "log");
    try {
      const res = await fetchWithEnv(atInfo, "/v2/keys", {
        method: "PUT",
        headers: { authorization: a.auth, "content-type": "application/json", "cf-connecting-ip": "198.51.100.77" },
        body: JSON.stringify({ preKeys: [] }),
      });
      expect(res.status).toBe(204);
      const lines = spy.mock.calls.map((c) => String(c[0]));
      const line = lines.find((l) => l.includes('"route":"/v2/keys"'));
      expect(line, lines.join("\n")).toBeDefined();
      const entry = JSON.parse(line!) as Record<string, unknown>;
      expect(Object.keys(entry).sort()).toEqual(["durationMs", "level", "method", "requestId", "route", "status"]);
      expect(entry).toMatchObject({
        level: "info",
        method: "PUT",
        route: "/v2/keys",
        status: 204,
        requestId: res.headers.get("x-request-id"),
      });
      for (const l of lines) {
        expect(l).not.toContain("198.51.100.77");
        expect(l).not.toContain(a.password);
        expect(l).not.toContain(a.accountId);
      }
    } finally {
      spy.mockRestore();
    }
  });

  it("LOG_LEVEL=warn drops the access log of answered requests and keeps a 5xx as an error", async () => {
    const { vi } = await import("vitest");
    const out = vi.spyOn(console, "log");
    const err = vi.spyOn(console, "error");
    try {
      const ok = await fetchWithEnv(env, "/health");
      expect(ok.status).toBe(200);
      const id = ok.headers.get("x-request-id")!;
      expect([...out.mock.calls, ...err.mock.calls].some((c) => String(c[0]).includes(id))).toBe(false);
      // The same request at "info" is logged, so the line above was dropped by the level and not missing.
      const logged = await fetchWithEnv(atInfo, "/health");
      expect(out.mock.calls.some((c) => String(c[0]).includes(logged.headers.get("x-request-id")!))).toBe(true);
      // A misconfigured relay answers 503 on every request, and each is logged as an error.
      const broken = await fetchWithEnv({ ...env, MAX_DEVICES: "many" } as Cloudflare.Env, "/v1/challenges", {
        method: "POST",
      });
      expect(broken.status).toBe(503);
      const line = err.mock.calls.map((c) => String(c[0])).find((l) => l.includes(broken.headers.get("x-request-id")!));
      expect(line).toBeDefined();
      expect(JSON.parse(line!)).toMatchObject({ level: "error", status: 503, method: "POST" });
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
  });
});
