// The account's Durable Object, as the runtime instantiates it: the directory duties of AccountDirectory.
// The mailbox (queues and hibernating WebSockets) extends it here.
import { AccountDirectory } from "./directory.ts";

export class Account extends AccountDirectory {}
