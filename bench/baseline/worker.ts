// The floor: the least a relay of this architecture can do on this runtime. One Durable Object per recipient
// accepts hibernating WebSockets and, for each POSTed body, writes it to its SQLite storage and pushes it to the
// sockets. No authentication, validation, queues per device, acks or expiry. Also a raw R2 put, for comparing
// attachment uploads. cipherpost's cost is everything above this.
import { DurableObject } from "cloudflare:workers";

interface Env {
  INBOX: DurableObjectNamespace<Inbox>;
  BLOBS: R2Bucket;
}

export class Inbox extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  }

  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      const pair = new WebSocketPair();
      this.ctx.acceptWebSocket(pair[1]);
      return new Response(null, { status: 101, webSocket: pair[0] });
    }
    const body = await request.text();
    this.ctx.storage.sql.exec("INSERT INTO messages (body) VALUES (?)", body);
    for (const ws of this.ctx.getWebSockets()) ws.send(body);
    return new Response(null, { status: 204 });
  }

  override async webSocketMessage(): Promise<void> {}
  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    ws.close(code === 1005 || code === 1006 ? 1000 : code);
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const [, kind, name] = url.pathname.split("/");
    if (!name) return new Response("not found", { status: 404 });
    if (kind === "ws" || kind === "send") return env.INBOX.getByName(name).fetch(request);
    if (kind === "r2" && request.method === "PUT") {
      const obj = await env.BLOBS.put(name, request.body);
      return Response.json({ size: obj?.size ?? 0 });
    }
    return new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler<Env>;
