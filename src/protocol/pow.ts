// The registration proof of work, shared by the relay (which checks one hash) and the SDK (which solves it).
import { POW_CONTEXT, POW_NONCE_MAX_BYTES } from "./limits.ts";

/** Leading zero bits of SHA-256(POW_CONTEXT ‖ challenge ‖ nonce): one hash, so checking is constant work. */
export async function powBits(challenge: Uint8Array, nonce: Uint8Array): Promise<number> {
  const ctx = new TextEncoder().encode(POW_CONTEXT);
  const input = new Uint8Array(ctx.length + challenge.length + nonce.length);
  input.set(ctx, 0);
  input.set(challenge, ctx.length);
  input.set(nonce, ctx.length + challenge.length);
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", input));
  let bits = 0;
  for (const byte of h) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    bits += Math.clz32(byte) - 24;
    break;
  }
  return bits;
}

/** How far a solver has got: hashes tried so far, and the 2^difficulty a solver expects to need on average. */
export interface PowProgress {
  attempts: number;
  expectedAttempts: number;
}

export interface SolveOptions {
  /** Called every `progressEvery` attempts (and never after the nonce is found), e.g. to draw a progress bar. */
  onProgress?: (progress: PowProgress) => void;
  /** Attempts between progress calls; 16384 (about 50 ms of one core) by default. */
  progressEvery?: number;
}

/**
 * Finds a nonce (8 bytes, counting up) whose hash has at least `difficulty` leading zero bits. The work is
 * geometric: each attempt succeeds with probability 2^-difficulty, so `attempts / expectedAttempts` is a guide
 * (it passes 1 in about 37% of solves), not a fraction done.
 */
export async function solvePow(
  challenge: Uint8Array,
  difficulty: number,
  options: SolveOptions = {},
): Promise<Uint8Array> {
  const nonce = new Uint8Array(Math.min(8, POW_NONCE_MAX_BYTES));
  const view = new DataView(nonce.buffer);
  const every = Math.max(1, options.progressEvery ?? 16_384);
  const expectedAttempts = 2 ** difficulty;
  for (let i = 0; ; i++) {
    view.setUint32(0, Math.floor(i / 2 ** 32));
    view.setUint32(4, i >>> 0);
    if ((await powBits(challenge, nonce)) >= difficulty) return nonce;
    if (options.onProgress && (i + 1) % every === 0) options.onProgress({ attempts: i + 1, expectedAttempts });
  }
}
