// The command line's grammar: which commands exist, which options and positionals each takes, and the usage
// text. A wrong command line is a UsageError (usage on stderr, exit 2), never a half-run command.
import { parseArgs } from "node:util";

export const USAGE = `usage: cipherpost --profile DIR <command> [arguments]

commands:
  register --server URL                      create an account; prints {"accountId","deviceId"}
  link-code                                  a code to link a new device; prints {"code","expiresAt"}, waits for
                                             the device to answer, prints {"verificationCode"}, asks on stderr
                                             to approve (a "y" line on stdin), prints {"approved"}
  link --server URL --code CODE              link this profile as a new device; prints {"verificationCode"} to
                                             compare, then once approved {"accountId","deviceId"}
  whoami                                     prints {"accountId","deviceId","server"}
  safety-number ACCOUNT                      prints {"safetyNumber"} to compare with ACCOUNT
  send ACCOUNT TEXT [--expire-seconds N]     prints {"id"}
  send-file ACCOUNT PATH                     prints {"id"}
  username set NAME                          set the account's username: NAME (alice) gets a discriminator
                                             picked for it, NAME.DIGITS asks for exactly that; prints {"username"}
  username link                              prints {"url"}, the username link (made on first use)
  username reset-link                        a new link; the old one stops working; prints {"url"}
  username lookup USERNAME                   prints {"accountId"}
  username delete                            deletes the username and its link; prints {"deleted":true}
  receive [--wait-ms N]                      one JSON line per message; stays N ms after the queue is empty
  devices                                    prints {"devices":[{"deviceId","created","lastSeen"}]}
  ice-servers                                prints the relay's {"iceServers":[{urls,username,credential}],
                                             "ttlSeconds"}: fresh TURN credentials, to check a TURN setup

ACCOUNT is an account id, a username (alice.42) or a username link (https://RELAY/u#…).
--profile DIR holds the device's keys, sessions and received files (created with mode 0700).
Output is JSON on stdout; progress goes to stderr. Exit status: 0 done, 1 failed ({"error":{"code","message"}}),
2 wrong arguments.
`;

export class UsageError extends Error {}

export type Command =
  | { name: "register"; profile: string; server: string }
  | { name: "link-code"; profile: string }
  | { name: "link"; profile: string; server: string; code: string }
  | { name: "whoami"; profile: string }
  | { name: "safety-number"; profile: string; account: string }
  | { name: "send"; profile: string; account: string; text: string; expireSeconds?: number }
  | { name: "send-file"; profile: string; account: string; path: string }
  | { name: "receive"; profile: string; waitMs: number }
  | { name: "devices"; profile: string }
  | { name: "ice-servers"; profile: string }
  | { name: "username"; profile: string; action: UsernameAction; argument?: string }
  | { name: "help" };

/** `username` subcommands, each with the positionals it takes after its name. */
const USERNAME_ACTIONS = { set: ["NAME"], link: [], "reset-link": [], lookup: ["USERNAME"], delete: [] } as const;
export type UsernameAction = keyof typeof USERNAME_ACTIONS;

interface Spec {
  positionals: string[];
  options: string[];
  required?: string[];
}

const SPECS: Record<Exclude<Command["name"], "help" | "username">, Spec> = {
  register: { positionals: [], options: ["server"], required: ["server"] },
  "link-code": { positionals: [], options: [] },
  link: { positionals: [], options: ["server", "code"], required: ["server", "code"] },
  whoami: { positionals: [], options: [] },
  "safety-number": { positionals: ["ACCOUNT"], options: [] },
  send: { positionals: ["ACCOUNT", "TEXT"], options: ["expire-seconds"] },
  "send-file": { positionals: ["ACCOUNT", "PATH"], options: [] },
  receive: { positionals: [], options: ["wait-ms"] },
  devices: { positionals: [], options: [] },
  "ice-servers": { positionals: [], options: [] },
};

function nonNegativeInt(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min || !Number.isSafeInteger(Number(value)))
    throw new UsageError(`--${name} must be a whole number of at least ${min}`);
  return Number(value);
}

export function parseCommandLine(argv: string[]): Command {
  const parse = () =>
    parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        profile: { type: "string" },
        server: { type: "string" },
        code: { type: "string" },
        "expire-seconds": { type: "string" },
        "wait-ms": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === "help") return { name: "help" };
  const [name, ...rest] = positionals;
  if (!name) throw new UsageError("no command given");
  if (name === "username") return usernameCommand(values, rest);
  if (!(name in SPECS)) throw new UsageError(`unknown command: ${name}`);
  const command = name as keyof typeof SPECS;
  const spec = SPECS[command];
  for (const option of ["server", "code", "expire-seconds", "wait-ms"] as const) {
    if (values[option] !== undefined && !spec.options.includes(option))
      throw new UsageError(`${command} does not take --${option}`);
  }
  for (const option of spec.required ?? []) {
    const v = values[option as "server" | "code"];
    if (v === undefined || v === "") throw new UsageError(`${command} needs --${option}`);
  }
  if (rest.length !== spec.positionals.length) {
    const wanted = spec.positionals.length ? spec.positionals.join(" ") : "no arguments";
    const got = rest.length ? rest.map((r) => JSON.stringify(r)).join(" ") : "none";
    throw new UsageError(`${command} takes ${wanted}, got ${got}`);
  }
  const profile = values.profile;
  if (!profile) throw new UsageError("--profile DIR is required");

  switch (command) {
    case "register":
      return { name: command, profile, server: values.server! };
    case "link":
      return { name: command, profile, server: values.server!, code: values.code! };
    case "link-code":
    case "whoami":
    case "devices":
    case "ice-servers":
      return { name: command, profile };
    case "safety-number":
      return { name: command, profile, account: rest[0]! };
    case "send": {
      const expireSeconds = nonNegativeInt("expire-seconds", values["expire-seconds"], 1);
      return {
        name: command,
        profile,
        account: rest[0]!,
        text: rest[1]!,
        ...(expireSeconds !== undefined ? { expireSeconds } : {}),
      };
    }
    case "send-file":
      return { name: command, profile, account: rest[0]!, path: rest[1]! };
    case "receive":
      return { name: command, profile, waitMs: nonNegativeInt("wait-ms", values["wait-ms"], 0) ?? 0 };
  }
}

function usernameCommand(values: { profile?: string | undefined } & Record<string, unknown>, rest: string[]): Command {
  const [action, ...args] = rest;
  if (!action || !(action in USERNAME_ACTIONS))
    throw new UsageError(`username takes one of ${Object.keys(USERNAME_ACTIONS).join(", ")}`);
  const wanted = USERNAME_ACTIONS[action as UsernameAction];
  for (const option of ["server", "code", "expire-seconds", "wait-ms"])
    if (values[option] !== undefined) throw new UsageError(`username ${action} does not take --${option}`);
  if (args.length !== wanted.length) {
    const got = args.length ? args.map((r) => JSON.stringify(r)).join(" ") : "none";
    throw new UsageError(`username ${action} takes ${wanted.length ? wanted.join(" ") : "no arguments"}, got ${got}`);
  }
  const profile = values.profile;
  if (!profile) throw new UsageError("--profile DIR is required");
  return {
    name: "username",
    profile,
    action: action as UsernameAction,
    ...(args[0] !== undefined ? { argument: args[0] } : {}),
  };
}
