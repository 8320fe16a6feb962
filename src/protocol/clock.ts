// The one source of time for the relay's Durable Objects and the SDK's timers. Production code reads
// `systemClock`; tests hand an object or a client a `ManualClock` (test/support/manual-clock.ts) and move time
// instead of sleeping. Runtime-agnostic: Workers, Node and browsers all have these globals.

/** A timer handle, opaque to callers. */
export type TimerHandle = unknown;

export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds of this clock's time. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
