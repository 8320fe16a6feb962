// A minimal binary writer and bounds-checked reader for cipherpost's own wire and state formats
// (big-endian integers, fixed-length fields, u32-length-prefixed byte strings).

import { CryptoError, type CryptoErrorCode } from "./errors.ts";

export class ByteWriter {
  private buf: Uint8Array;
  private view: DataView;
  private len = 0;

  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    this.ensure(2);
    this.view.setUint16(this.len, v);
    this.len += 2;
    return this;
  }

  u32(v: number): this {
    this.ensure(4);
    this.view.setUint32(this.len, v >>> 0);
    this.len += 4;
    return this;
  }

  /** Fixed-length bytes; the reader must know the length. */
  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  /** u32 length, then the bytes. */
  bytes(bytes: Uint8Array): this {
    return this.u32(bytes.length).raw(bytes);
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

export class ByteReader {
  private off = 0;
  private readonly view: DataView;

  constructor(
    private readonly buf: Uint8Array,
    private readonly errorCode: CryptoErrorCode,
    private readonly what: string,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  fail(reason: string): never {
    throw new CryptoError(this.errorCode, `${this.what}: ${reason}`);
  }

  private need(n: number): void {
    if (this.off + n > this.buf.length) this.fail("truncated");
  }

  get remaining(): number {
    return this.buf.length - this.off;
  }

  get offset(): number {
    return this.off;
  }

  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.off);
    this.off += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.off);
    this.off += 4;
    return v;
  }

  raw(n: number): Uint8Array {
    this.need(n);
    const out = this.buf.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }

  bytes(max = 1 << 24): Uint8Array {
    const n = this.u32();
    if (n > max) this.fail("field too long");
    return this.raw(n);
  }

  rest(): Uint8Array {
    return this.raw(this.remaining);
  }

  end(): void {
    if (this.remaining !== 0) this.fail("trailing bytes");
  }
}
