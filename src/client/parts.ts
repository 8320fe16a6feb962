// How a client is put together: the shared context and every part, wired once for the CipherpostClient facade,
// and the mailbox connection whose frames go to the receiver. What changes over the facade's life (its
// connection, whether it is closed) comes in as hooks.
import { systemClock } from "../protocol/clock.ts";
import { Mutex } from "../protocol/concurrency.ts";
import { type ConnectionOptions, MailboxConnection, type WebSocketConstructor } from "./connection.ts";
import { type ClientContext, type ClientOptions, type DeviceRecord, relayHttp } from "./context.ts";
import { Calls } from "./calls.ts";
import { BackgroundTasks, Emitter } from "./events.ts";
import { Expiry } from "./expiry.ts";
import type { MessageStore } from "./message-store.ts";
import { identityOf } from "./onboarding.ts";
import { PreKeyUpkeep } from "./prekey-upkeep.ts";
import { preKeyPolicy } from "./prekeys.ts";
import { Receipts } from "./receipts.ts";
import { Receiver } from "./receiving.ts";
import { Retries } from "./retries.ts";
import { Sender } from "./sending.ts";
import { SentLog } from "./sent-log.ts";
import { Sessions } from "./sessions.ts";
import { Usernames } from "./usernames.ts";

export interface ClientParts {
  ctx: ClientContext;
  events: Emitter;
  background: BackgroundTasks;
  store: MessageStore;
  sessions: Sessions;
  log: SentLog;
  expiry: Expiry;
  sender: Sender;
  receipts: Receipts;
  upkeep: PreKeyUpkeep;
  receiver: Receiver;
  usernames: Usernames;
  calls: Calls;
}

export interface FacadeHooks {
  connection(): MailboxConnection | null;
  closed(): boolean;
  reconnect(): void;
}

export function assembleClient(
  options: ClientOptions,
  device: DeviceRecord,
  store: MessageStore,
  hooks: FacadeHooks,
): ClientParts {
  const clock = options.clock ?? systemClock;
  const { accountId, deviceId, password } = device;
  const events = new Emitter();
  const background = new BackgroundTasks(events, hooks.closed);
  const ctx: ClientContext = {
    storage: options.storage,
    http: relayHttp(device.server, options),
    clock,
    accountId,
    deviceId,
    identity: identityOf(device),
    auth: { accountId, deviceId, password },
    mutex: new Mutex(),
    events,
    connection: hooks.connection,
    runInBackground: (what, task) => background.run(what, task),
  };
  const sessions = new Sessions(ctx);
  const log = new SentLog(options.storage, clock);
  const expiry = new Expiry(store, clock, events);
  const sender = new Sender(ctx, sessions, store, expiry, log);
  const receipts = new Receipts(ctx, sender);
  const upkeep = new PreKeyUpkeep(ctx, device, preKeyPolicy(options.preKeys));
  const calls = new Calls(ctx, { sender, store }, options.calls ?? {});
  const receiver = new Receiver(ctx, {
    sessions,
    store,
    receipts,
    retries: new Retries(ctx, sessions, sender, log),
    expiry,
    deliveryReceipts: options.deliveryReceipts !== false,
    refreshPreKeys: () => upkeep.refresh(),
    reconnect: hooks.reconnect,
    callSignal: (from, fromDevice, content) => calls.onSignal(from, fromDevice, content),
  });
  const usernames = new Usernames(ctx);
  return {
    ctx,
    events,
    background,
    store,
    sessions,
    log,
    expiry,
    sender,
    receipts,
    upkeep,
    receiver,
    usernames,
    calls,
  };
}

/** The mailbox connection of a client: frames to its receiver, prekey upkeep on every opening, events out. */
export function mailboxConnection(
  p: ClientParts,
  WebSocketImpl: WebSocketConstructor,
  options: ConnectionOptions | undefined,
): MailboxConnection {
  const { ctx, events } = p;
  return new MailboxConnection(
    ctx.http,
    ctx.auth,
    WebSocketImpl,
    {
      frame: (socket, frame) => p.receiver.onFrame(socket, frame),
      event: (e) => {
        void events.emit("connection", e);
        if (e.state === "open") ctx.runInBackground("prekey upkeep", () => p.upkeep.refresh());
      },
      fatal: (error) => void events.emit("stopped", error),
      protocolError: (error) => void events.emit("error", error),
    },
    options,
    ctx.clock,
  );
}
