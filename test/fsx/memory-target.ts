/**
 * An FsxTarget that is a tiny page cache in memory: one byte array, a size, and 4 KiB pages.
 * It exists to exercise what the host-file target cannot: the bytes of the EOF page past
 * EOF (capabilities.eofPage), which a real mmap store can dirty and which the file system
 * must zero when the size grows over them (fsx -e, generic/363).
 *
 * Like Linux, bytes past EOF inside the EOF page survive until a size change zeroes them:
 *
 *   size = 0x1100          page 1 = [0x1000, 0x2000)
 *   pollute                [0x1100, 0x2000) := garbage        (size unchanged)
 *   truncate to 0x1800     [0x1100, 0x1800) must read zero: growZero() clears it
 *
 * `bugs` turns on deliberate mistakes so tests can prove the exerciser catches them.
 */
import type { FsxCapabilities, FsxTarget } from '../../packages/cli/src/fsx/target.js';

export const MEMORY_TARGET_PAGE_BYTES = 4096;

export interface MemoryTargetBugs {
  /** Growing the size does not zero the old EOF page's tail (stale post-EOF bytes show). */
  noZeroOnExtend?: boolean;
}

export class MemoryFsxTarget implements FsxTarget {
  readonly capabilities: FsxCapabilities = { fallocate: true, punch: true, zero: true, mmap: true, eofPage: true };
  private readonly bytes: Uint8Array;
  private sizeBytes = 0;

  constructor(maxFileLen: number, private readonly bugs: MemoryTargetBugs = {}) {
    this.bytes = new Uint8Array(roundUpPage(maxFileLen) + MEMORY_TARGET_PAGE_BYTES);
  }

  async size(): Promise<number> { return this.sizeBytes; }

  async read(pos: number, len: number): Promise<Uint8Array> {
    const end = Math.min(pos + len, this.sizeBytes);
    return this.bytes.slice(Math.min(pos, end), end);
  }

  async write(pos: number, data: Uint8Array): Promise<void> {
    this.growTo(pos + data.length);
    this.bytes.set(data, pos);
  }

  async truncate(size: number): Promise<void> {
    if (size >= this.sizeBytes) {
      this.growTo(size);
      return;
    }
    // Shrinking zeroes the new EOF page's tail and drops every page past it.
    this.bytes.fill(0, size);
    this.sizeBytes = size;
  }

  async fallocate(pos: number, len: number, options: { keepSize: boolean }): Promise<void> {
    if (!options.keepSize) this.growTo(pos + len);
  }

  async punchHole(pos: number, len: number): Promise<void> {
    if (pos < this.sizeBytes) this.bytes.fill(0, pos, Math.min(pos + len, this.sizeBytes));
  }

  async zeroRange(pos: number, len: number, options: { keepSize: boolean }): Promise<void> {
    if (!options.keepSize) this.growTo(pos + len);
    if (pos < this.sizeBytes) this.bytes.fill(0, pos, Math.min(pos + len, this.sizeBytes));
  }

  async mapRead(pos: number, len: number): Promise<Uint8Array> { return this.read(pos, len); }

  async mapWrite(pos: number, data: Uint8Array): Promise<void> {
    if (pos + data.length > this.sizeBytes) await this.truncate(pos + data.length);
    this.bytes.set(data, pos);
  }

  async fsync(): Promise<void> {}
  async close(): Promise<void> {}
  async reopen(): Promise<void> {}

  async pollutePastEof(data: Uint8Array): Promise<number> {
    const count = Math.min(data.length, roundUpPage(this.sizeBytes) - this.sizeBytes);
    this.bytes.set(data.subarray(0, count), this.sizeBytes);
    return count;
  }

  async readPastEof(): Promise<Uint8Array> {
    return this.bytes.slice(this.sizeBytes, roundUpPage(this.sizeBytes));
  }

  private growTo(end: number): void {
    if (end <= this.sizeBytes) return;
    const from = this.bugs.noZeroOnExtend === true ? Math.min(roundUpPage(this.sizeBytes), end) : this.sizeBytes;
    this.bytes.fill(0, from, end);
    this.sizeBytes = end;
  }
}

function roundUpPage(n: number): number {
  return Math.ceil(n / MEMORY_TARGET_PAGE_BYTES) * MEMORY_TARGET_PAGE_BYTES;
}
