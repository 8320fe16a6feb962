// Structured logs: one JSON object per line, never message content, keys, passwords or client addresses.
// LOG_LEVEL (config.ts) drops lines below it, per isolate: loadConfig sets it each time it runs; until then, and
// when the vars do not parse, everything from "info" up is logged so that a misconfiguration is never silent.
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold: LogLevel = "info";

export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

export function logs(level: LogLevel): boolean {
  return RANK[level] >= RANK[threshold];
}

/** Writes `{level, ...fields}` as one line: warnings and errors to stderr, the rest to stdout. */
export function log(level: LogLevel, fields: Record<string, unknown>): void {
  if (!logs(level)) return;
  const line = JSON.stringify({ level, ...fields });
  if (RANK[level] >= RANK.warn) console.error(line);
  else console.log(line);
}
