// Connecting to the mailbox at /v1/websocket: the Worker authenticates the device (HTTP Basic, or a single-use
// ticket for browsers, which cannot set headers on a WebSocket) and forwards the upgrade to the account's object,
// which holds the socket on the Hibernation API. The frames are documented at /v1/asyncapi.json.
import { createRoute, z } from "@hono/zod-openapi";
import { WebSocketTicketResponse } from "../../protocol/messages.ts";
import { INTERNAL_DEVICE_HEADER, INTERNAL_TICKET_HEADER } from "../account/account.ts";
import { deviceAuth, errorResponses, json, newRouter } from "../app.ts";
import { ACCOUNT_ID_PATTERN, authenticate, requireDevice } from "../auth.ts";
import { ApiError, failureError, storage, unwrap, type Failure } from "../errors.ts";

export const websocket = newRouter();

websocket.openapi(
  createRoute({
    method: "post",
    path: "/ticket",
    tags: ["Mailbox"],
    summary: "Get a single-use ticket to open the mailbox WebSocket",
    description:
      "For clients that cannot send an Authorization header on a WebSocket (browsers). Valid once, for WS_TICKET_TTL_SECONDS (default 30).",
    security: deviceAuth,
    middleware: [requireDevice] as const,
    responses: { 200: json(WebSocketTicketResponse, "The ticket"), ...errorResponses("UNAUTHORIZED", "UNAVAILABLE") },
  }),
  async (c) => {
    const d = c.get("device");
    const r = unwrap(await storage("account", () => c.env.ACCOUNT.getByName(d.accountId).createTicket(d.deviceId)));
    return c.json({ ticket: r.ticket, expiresAt: r.expiresAt }, 200);
  },
);

websocket.openapi(
  createRoute({
    method: "get",
    path: "/",
    tags: ["Mailbox"],
    summary: "Open the device's mailbox WebSocket",
    description:
      "A WebSocket upgrade, authenticated with HTTP Basic or `?ticket=` from POST /v1/websocket/ticket. The mailbox sends the device's queued messages oldest first, then a `queue_empty` frame, then live messages; the client acks by id. Frames are JSON text; see /v1/asyncapi.json. A second connection of the same device closes the first with 4409; a socket with no ping for IDLE_TIMEOUT_SECONDS (default 90) is closed with 4408.",
    security: [...deviceAuth, {}],
    request: {
      query: z.object({
        ticket: z
          .string()
          .max(200)
          .optional()
          .meta({ description: "A ticket from POST /v1/websocket/ticket, used up by this call." }),
      }),
    },
    responses: {
      101: { description: "Switching protocols: the mailbox WebSocket" },
      ...errorResponses("BAD_REQUEST", "UNAUTHORIZED", "UNAVAILABLE"),
    },
  }),
  async (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket")
      throw new ApiError("BAD_REQUEST", "this route takes a WebSocket upgrade (Upgrade: websocket)");
    const ticket = c.req.query("ticket");
    const headers: Record<string, string> = { upgrade: "websocket" };
    let accountId: string;
    if (ticket !== undefined) {
      if (ticket.length > 200) throw new ApiError("UNAUTHORIZED", "the ticket is unknown, used or expired");
      const dot = ticket.indexOf(".");
      accountId = ticket.slice(0, dot).toLowerCase();
      if (dot < 0 || !ACCOUNT_ID_PATTERN.test(accountId))
        throw new ApiError("UNAUTHORIZED", "the ticket is unknown, used or expired");
      headers[INTERNAL_TICKET_HEADER] = ticket.slice(dot + 1);
    } else {
      const d = await authenticate(c.env, c.req.header("authorization"));
      accountId = d.accountId;
      headers[INTERNAL_DEVICE_HEADER] = String(d.deviceId);
    }
    // fetch, not RPC, only because a WebSocket upgrade has to travel as an HTTP request and response.
    const res = await storage("mailbox", () =>
      c.env.ACCOUNT.getByName(accountId).fetch("https://account/websocket", { headers }),
    );
    if (res.status === 101) return res;
    throw failureError((await res.json()) as Failure);
  },
);
