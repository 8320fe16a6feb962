// One tab owns the device: two tabs driving the same ratchets and the same mailbox would corrupt sessions and
// displace each other's connection. A Web Lock names the owner; another tab can take over (steal), and the tab
// that lost it is told so, closes its client and offers to take the device back.

const LOCK = "cipherpost-device";

export interface DeviceLock {
  /** Resolves when this tab loses the lock to another tab that took over. */
  readonly lost: Promise<void>;
  release(): void;
}

/**
 * Tries to own the device. `steal`: take it even if another tab owns it (that tab's lock is lost). Answers null
 * when another tab owns it and `steal` is false.
 */
export function acquireDeviceLock(steal = false): Promise<DeviceLock | null> {
  if (!("locks" in navigator)) {
    // No Web Locks (very old browsers): behave as the only tab.
    return Promise.resolve({ lost: new Promise<void>(() => {}), release() {} });
  }
  return new Promise((resolve, reject) => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    let signalLost: () => void = () => {};
    const lost = new Promise<void>((r) => (signalLost = r));
    const options: LockOptions = steal ? { steal: true } : { ifAvailable: true };
    navigator.locks
      .request(LOCK, options, async (lock) => {
        if (!lock) {
          resolve(null);
          return;
        }
        resolve({ lost, release });
        await held;
      })
      .catch((e: unknown) => {
        // A lock stolen by another tab rejects the holder's request with AbortError.
        if (e instanceof DOMException && e.name === "AbortError") signalLost();
        else reject(e);
      });
  });
}
