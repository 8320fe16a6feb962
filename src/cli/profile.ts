// A profile directory (mode 0700): the device's encrypted state (state/, under the key in storage.key: see
// openProfileStorage), received files (files/) and a lock file, so a second command on the same profile waits for
// the first (up to CIPHERPOST_LOCK_TIMEOUT_MS, default 30 s) and then fails with PROFILE_LOCKED instead of
// advancing the same ratchets from a diverging copy.
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { CipherpostError } from "../client/errors.ts";

export interface Profile {
  dir: string;
  filesDir: string;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

// A lock left by a process that no longer runs is taken over.
function tryLock(path: string): { ok: true } | { ok: false; holder: number | null } {
  try {
    const fd = openSync(path, "wx", 0o600);
    writeSync(fd, `${JSON.stringify({ pid: process.pid, since: new Date().toISOString() })}\n`);
    closeSync(fd);
    return { ok: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  let holder: number | null = null;
  try {
    holder = (JSON.parse(readFileSync(path, "utf8")) as { pid?: number }).pid ?? null;
  } catch {
    holder = null; // being written right now, or garbage: treat as held, look again shortly
  }
  if (holder !== null && !alive(holder)) {
    try {
      unlinkSync(path); // stale: its process is gone
    } catch {
      // another waiter took it over first
    }
    return tryLock(path);
  }
  return { ok: false, holder };
}

/** Who holds a profile's lock, for messages: "process 1234", or "another process" when the lock file names none. */
export function lockHolder(pid: number | null): string {
  return pid !== null ? `process ${pid}` : "another process";
}

export async function openProfile(dir: string, onWait: (holder: number | null) => void): Promise<Profile> {
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true, mode: 0o700 });
  chmodSync(abs, 0o700);
  const filesDir = join(abs, "files");
  mkdirSync(filesDir, { recursive: true, mode: 0o700 });
  const lockPath = join(abs, "lock");
  const timeoutMs = Number(process.env.CIPHERPOST_LOCK_TIMEOUT_MS ?? 30_000);
  const deadline = Date.now() + (Number.isFinite(timeoutMs) ? timeoutMs : 30_000);
  let told = false;
  for (;;) {
    const r = tryLock(lockPath);
    if (r.ok) break;
    if (Date.now() >= deadline)
      throw new CipherpostError(
        "PROFILE_LOCKED",
        `the profile ${abs} is in use by ${lockHolder(r.holder)} (lock file ${lockPath}); try again when it has finished`,
      );
    if (!told) {
      onWait(r.holder);
      told = true;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  let released = false;
  return {
    dir: abs,
    filesDir,
    release() {
      if (released) return;
      released = true;
      try {
        unlinkSync(lockPath);
      } catch {
        // already gone
      }
    },
  };
}
