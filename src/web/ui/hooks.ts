// Small hooks shared by the screens: re-render on the messenger's change signal, and a ticking clock for
// timestamps, typing indicators and disappearing messages.
import { useEffect, useState } from "preact/hooks";
import type { Messenger } from "../model/messenger.ts";

/** Re-renders the component whenever the messenger changes. */
export function useMessenger(m: Messenger): number {
  const [, setVersion] = useState(m.version);
  useEffect(() => m.subscribe(() => setVersion(m.version)), [m]);
  return m.version;
}

/** The current time, refreshed every `ms`. */
export function useNow(ms: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** "14:05" today, "Mar 3" before. */
export function shortTime(ms: number, now = Date.now()): string {
  const d = new Date(ms);
  return new Date(now).toDateString() === d.toDateString() ? timeFormat.format(d) : dateFormat.format(d);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}
