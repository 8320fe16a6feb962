// A TURN server for the call tests: node-turn (pure JavaScript, from npm) on a free loopback UDP port, checking
// credentials the way coturn's `use-auth-secret` does: the username is "<expiry unix seconds>:<opaque id>" and the
// password base64(HMAC-SHA1(secret, username)), refused once the expiry has passed. node-turn itself only knows a
// fixed user list, so the list is a Proxy that computes the password of any unexpired username.
import { createHmac, randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

interface NodeTurn {
  start(): void;
  stop(): void;
  allocations: Record<string, unknown>;
}
const Turn = require("node-turn") as new (config: Record<string, unknown>) => NodeTurn;

export interface TurnServer {
  /** `turn:127.0.0.1:PORT`, for the relay's CALLS_TURN_URLS. */
  url: string;
  /** The shared secret, for the relay's CALLS_TURN_SECRET. */
  secret: string;
  /** Usernames the server accepted (an allocation was authenticated with them). */
  accepted: Set<string>;
  /** Usernames refused because their expiry had passed. */
  expired: Set<string>;
  /** Moves the server's clock (for the expiry test). */
  skewMs: number;
  stop(): void;
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket("udp4");
  await new Promise<void>((ok) => socket.bind(0, "127.0.0.1", ok));
  const { port } = socket.address();
  await new Promise<void>((ok) => socket.close(() => ok()));
  return port;
}

export async function startTurn(): Promise<TurnServer> {
  const secret = randomBytes(24).toString("hex");
  const port = await freeUdpPort();
  const server: TurnServer = {
    url: `turn:127.0.0.1:${port}`,
    secret,
    accepted: new Set(),
    expired: new Set(),
    skewMs: 0,
    stop: () => turn.stop(),
  };
  const credentials = new Proxy(
    {},
    {
      get(_, username) {
        if (typeof username !== "string") return undefined;
        const expiry = Number(username.split(":")[0]);
        if (!Number.isSafeInteger(expiry)) return undefined;
        if (expiry * 1000 <= Date.now() + server.skewMs) {
          server.expired.add(username);
          return undefined;
        }
        server.accepted.add(username);
        return createHmac("sha1", secret).update(username).digest("base64");
      },
    },
  );
  const turn = new Turn({
    listeningPort: port,
    listeningIps: ["127.0.0.1"],
    relayIps: ["127.0.0.1"],
    authMech: "long-term",
    realm: "cipherpost.test",
    credentials,
    debugLevel: "OFF",
    log: () => {},
  });
  turn.start();
  return server;
}
