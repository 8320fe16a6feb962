// Running the `cipherpost` command as a person does, for the CLI tests: a child process of this Node in a given
// working directory, its exit code, its output, and its stdout's JSON lines (every line a command prints is JSON;
// --help prints the usage text instead).
import { type ChildProcess, execFile } from "node:child_process";

export const BIN = new URL("../../bin/cipherpost.mjs", import.meta.url).pathname;

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON lines. */
  lines: Record<string, unknown>[];
  /** The first JSON line ({} if none). */
  json: Record<string, unknown>;
}

/** Starts a command in `cwd`; `done` answers once it has exited (killed after 60 s). */
export function startCli(
  cwd: string,
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<CliRun> } {
  let child!: ChildProcess;
  const done = new Promise<CliRun>((resolve) => {
    child = execFile(
      process.execPath,
      [BIN, ...args],
      { cwd, env: { ...process.env, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        const lines = stdout
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        resolve({ code, stdout, stderr, lines, json: lines[0] ?? {} });
      },
    );
  });
  return { child, done };
}

/** Runs a command in `cwd` to its end. */
export function runCli(cwd: string, args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return startCli(cwd, args, env).done;
}
