// Two small concurrency tools the relay and the SDK both need, runtime-agnostic: a mutex that runs async
// sections one at a time in arrival order, and a bounded worker pool.

/** Runs async sections one at a time, in the order they were asked for; a failed section does not block the next. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => undefined);
    return next;
  }
}

/** Calls `fn` on every item, at most `width` at a time; resolves when all are done (rejects on the first failure). */
export async function forEachPooled<T>(
  items: readonly T[],
  width: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) await fn(items[i]!, i);
    }),
  );
}
