// The `cipherpost` command: one device per --profile directory, JSON on stdout, progress on stderr, exit 0 when
// done, 1 on failure ({"error":{"code","message"}}), 2 on a wrong command line (usage on stderr).
// bin/cipherpost.mjs runs this file through tsx.
import { stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import {
  type AttachmentPointer,
  CipherpostClient,
  CipherpostError,
  type ClientOptions,
  type StoredMessage,
  type UploadState,
} from "../client/index.ts";
import {
  type EncryptedFileStorage,
  fileBlob,
  nodeWebSocket,
  openProfileStorage,
  writeStreamToFile,
} from "../client/node.ts";
import { existsSync } from "node:fs";
import { parseCommandLine, UsageError, USAGE, type Command } from "./args.ts";
import { lockHolder, openProfile, type Profile } from "./profile.ts";
import { progress } from "./progress.ts";
import type { PowProgress } from "../protocol/pow.ts";

const out = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
const note = (text: string) => process.stderr.write(`${text}\n`);

/** Asks on stderr and reads one line of stdin: yes only for "y" or "yes"; no answer (stdin closed) is no. */
async function confirm(question: string): Promise<boolean> {
  process.stderr.write(question);
  const rl = createInterface({ input: process.stdin, terminal: false });
  try {
    const answer = await new Promise<string>((done) => {
      rl.once("line", done);
      rl.once("close", () => done(""));
    });
    return /^\s*y(es)?\s*$/i.test(answer);
  } finally {
    rl.close();
  }
}

/** Storage keys the CLI adds beside the SDK's: uploads to resume after an interrupted send-file. */
const uploadKey = (account: string, path: string, size: number, mtimeMs: number) =>
  `cli/upload/${account}/${size}.${Math.floor(mtimeMs)}/${path}`;

interface Session {
  profile: Profile;
  storage: EncryptedFileStorage;
  client?: CipherpostClient;
}

async function options(storage: EncryptedFileStorage): Promise<ClientOptions> {
  return { storage, WebSocket: await nodeWebSocket() };
}

async function openClient(s: Session): Promise<CipherpostClient> {
  try {
    s.client = await CipherpostClient.open(await options(s.storage));
  } catch (e) {
    if (!CipherpostError.is(e, "NOT_REGISTERED")) throw e;
    throw new CipherpostError(
      "NOT_REGISTERED",
      `the profile ${s.profile.dir} has no device yet: run register or link first`,
    );
  }
  return s.client;
}

/** A file name safe to create under files/: no directories, no hidden files, nothing overwritten. */
function receivedPath(dir: string, name: string | undefined, id: string): string {
  const clean =
    (basename(name ?? "") || "attachment")
      .replace(/[^\w.\- ]+/g, "_")
      .replace(/^\.+/, "_")
      .slice(0, 120) || "attachment";
  let path = join(dir, clean);
  for (let i = 1; existsSync(path) || existsSync(`${path}.partial`); i++)
    path = join(dir, `${id.slice(0, 8)}-${i}-${clean}`);
  return path;
}

async function run(command: Exclude<Command, { name: "help" }>, s: Session): Promise<void> {
  switch (command.name) {
    case "register": {
      // Progress on stderr at most once a second: under a registration flood the work can take seconds.
      let last = Date.now();
      const onPowProgress = (p: PowProgress) => {
        if (Date.now() - last < 1000) return;
        last = Date.now();
        note(`proof of work: ${p.attempts} hashes tried (about ${p.expectedAttempts} expected)`);
      };
      const c = await CipherpostClient.register({
        server: command.server,
        onPowProgress,
        ...(await options(s.storage)),
      });
      s.client = c;
      return void out({ accountId: c.accountId, deviceId: c.deviceId });
    }
    case "link": {
      const c = await CipherpostClient.link({
        server: command.server,
        code: command.code,
        onVerificationCode: (verificationCode) => {
          out({ verificationCode });
          note(`verification code ${verificationCode}: approve on the other device only if it shows the same`);
        },
        ...(await options(s.storage)),
      });
      s.client = c;
      return void out({ accountId: c.accountId, deviceId: c.deviceId });
    }
    case "link-code": {
      const session = await (await openClient(s)).createLinkCode();
      out({ code: session.code, expiresAt: session.expiresAt });
      note("waiting for the new device to answer the code (cipherpost --profile DIR link --server URL --code CODE)");
      // No --yes: approving without comparing the codes is exactly what would let someone who saw the code in.
      for await (const request of session.requests()) {
        out({ verificationCode: request.verificationCode });
        const yes = await confirm(
          `Does the new device show ${request.verificationCode}? Approve linking it only if so [y/N] `,
        );
        await (yes ? request.approve() : request.reject());
        out({ approved: yes });
      }
      return;
    }
    case "whoami": {
      const c = await openClient(s);
      return void out({ accountId: c.accountId, deviceId: c.deviceId, server: c.server });
    }
    case "safety-number": {
      const safetyNumber = await (await openClient(s)).safetyNumber(command.account);
      return void out({ safetyNumber });
    }
    case "send": {
      const r = await (await openClient(s)).send(command.account, {
        text: command.text,
        ...(command.expireSeconds !== undefined ? { expireSeconds: command.expireSeconds } : {}),
      });
      return void out({ id: r.id });
    }
    case "send-file": {
      const c = await openClient(s);
      const path = resolve(command.path);
      const info = await stat(path).catch(() => null);
      if (!info?.isFile()) throw new CipherpostError("INVALID_ARGUMENT", `not a readable file: ${command.path}`);
      const file = await fileBlob(path);
      const key = uploadKey(command.account, path, info.size, info.mtimeMs);
      const saved = await s.storage.get(key);
      const bar = progress(`uploading ${basename(path)}`);
      let attachment: AttachmentPointer;
      let created = false;
      try {
        const upload = {
          onProgress: (n: number, total: number) => bar.update(n, total),
          onCreated: (state: UploadState) => {
            created = true;
            return s.storage.write({ set: { [key]: JSON.stringify(state) } });
          },
        };
        try {
          attachment = await c.uploadAttachment(file, {
            ...upload,
            ...(saved ? { resume: JSON.parse(saved) as UploadState } : {}),
          });
          // A resume whose file no longer matches starts over under a fresh key (a new upload is created).
          if (saved)
            note(
              created
                ? `${basename(path)} changed since the interrupted upload: uploaded it again from the start`
                : `resumed the interrupted upload of ${basename(path)}`,
            );
        } catch (e) {
          // The saved upload may have expired or gone: start afresh once.
          if (!saved || !CipherpostError.is(e, "NOT_FOUND")) throw e;
          attachment = await c.uploadAttachment(file, upload);
        }
      } finally {
        bar.finish();
      }
      const r = await c.send(command.account, { attachments: [attachment] });
      await s.storage.write({ delete: [key] });
      return void out({ id: r.id });
    }
    case "devices": {
      const devices = await (await openClient(s)).devices();
      return void out({
        devices: devices.map((d) => ({ deviceId: d.deviceId, created: d.created, lastSeen: d.lastSeen })),
      });
    }
    case "ice-servers":
      // The relay's answer as it is, for an operator checking a TURN setup (credentials included: they are short-lived).
      return void out(await (await openClient(s)).iceServers());
    case "receive":
      return receive(await openClient(s), s.profile, command.waitMs);
    case "username": {
      const c = await openClient(s);
      switch (command.action) {
        case "set":
          return void out({ username: await c.setUsername(command.argument!) });
        case "link":
          return void out({ url: await c.usernameLink() });
        case "reset-link":
          return void out({ url: await c.resetUsernameLink() });
        case "lookup":
          return void out({ accountId: await c.lookupUsername(command.argument!) });
        case "delete":
          await c.deleteUsername();
          return void out({ deleted: true });
      }
    }
  }
}

/** Prints one JSON line per stored message (files saved under files/), then waits `waitMs` after the queue empties. */
async function receive(c: CipherpostClient, profile: Profile, waitMs: number): Promise<void> {
  const printMessage = async (m: StoredMessage) => {
    const line: Record<string, unknown> = {
      id: m.id,
      from: m.from,
      fromDevice: m.fromDevice,
      to: m.to ?? null,
      timestamp: m.timestamp,
      text: m.text ?? "",
    };
    if (m.group) line.group = m.group;
    if (m.expireSeconds !== undefined) line.expireSeconds = m.expireSeconds;
    const files = [];
    for (const a of m.attachments ?? []) {
      const path = receivedPath(profile.filesDir, a.name, m.id);
      const bar = progress(`downloading ${basename(path)}`);
      try {
        const written = await writeStreamToFile(
          await c.downloadAttachment(a, { onProgress: (n, total) => bar.update(n, total) }),
          path,
        );
        files.push({ name: a.name ?? basename(path), size: written.size, sha256: written.sha256, path });
      } catch (e) {
        const err = CipherpostError.is(e) ? e : new CipherpostError("UNEXPECTED", String(e));
        files.push({ name: a.name ?? null, size: a.size, error: err.toJSON() });
      } finally {
        bar.finish();
      }
    }
    if (files.length) line.file = files[0];
    if (files.length > 1) line.files = files;
    out(line);
  };
  c.on("message", printMessage);
  c.on(
    "decryptionError",
    (e) => void out({ id: e.relayId, from: e.from, fromDevice: e.fromDevice, error: e.error.toJSON() }),
  );
  c.on("error", (e) => void note(`warning: ${e.code}: ${e.message}`));
  const stopped = c.once("stopped").then((e) => {
    throw e;
  });
  stopped.catch(() => undefined);
  const drained = c.waitForQueueEmpty();
  await c.connect({ failFast: true });
  await Promise.race([drained, stopped]);
  if (waitMs > 0) await Promise.race([new Promise((r) => setTimeout(r, waitMs)), stopped]);
}

export async function main(argv: string[]): Promise<number> {
  let command: Command;
  try {
    command = parseCommandLine(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`cipherpost: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  if (command.name === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  let session: Session | undefined;
  const cleanUp = async () => {
    await session?.client?.close().catch(() => undefined);
    await session?.storage.close().catch(() => undefined);
    session?.profile.release();
  };
  // Ctrl-C: let in-flight work settle (acks, the storage's last write), free the lock, exit 130.
  const onSignal = (signal: NodeJS.Signals) => {
    void cleanUp().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const profile = await openProfile(command.profile, (holder) =>
      note(`waiting for the profile ${command.profile}, in use by ${lockHolder(holder)}…`),
    );
    session = { profile, storage: undefined as unknown as EncryptedFileStorage };
    session.storage = await openProfileStorage(profile.dir);
    await run(command, session);
    await cleanUp();
    return 0;
  } catch (e) {
    await cleanUp();
    const err = CipherpostError.is(e)
      ? e
      : new CipherpostError("UNEXPECTED", e instanceof Error ? e.message : String(e), { cause: e });
    out({ error: { code: err.code, message: err.message } });
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
// Everything is closed by now; an idle keep-alive connection in fetch's pool must not hold the exit up.
setTimeout(() => process.exit(), 1000).unref();
