/**
 * fsx's in-memory model of the file: `good` is the expected image (maxFileLen bytes) and
 * `sizeBytes` the expected size. Each method is one op's update rule, as fsx applies it
 * after the syscall succeeded (seed-series.md §3.1):
 *
 *   write / mapWrite  extend the size to pos+len, zero the gap, copy the data
 *   truncate          grow: zero-fill [old, new); shrink: drop everything past new
 *   fallocate         never touches data; extends with zeros unless keepSize
 *   punchHole         always keep-size; skipped when pos >= size; zeroes [pos, min(end, size))
 *   zeroRange         zeroes [pos, end); extends to end unless keepSize
 *
 * Invariant (stronger than fsx, which leaves stale bytes past file_size and zeroes them on
 * growth): every byte of `good` at or past sizeBytes is zero. Growing then never needs an
 * explicit zero-fill, but the methods still do it so each rule reads as fsx states it.
 *
 * Cost: O(len) memset/memcpy per op on a buffer of at most maxFileLen bytes.
 */
import assert from 'node:assert/strict';

export class FsxModel {
  readonly maxFileLen: number;
  readonly good: Uint8Array;
  sizeBytes = 0;

  constructor(maxFileLen: number) {
    assert.ok(Number.isSafeInteger(maxFileLen) && maxFileLen > 0, 'maxFileLen must be a positive integer');
    this.maxFileLen = maxFileLen;
    this.good = new Uint8Array(maxFileLen);
  }

  /** pwrite: the gap [size, pos) is zero, the size becomes max(size, pos + len). */
  write(pos: number, data: Uint8Array): void {
    const end = this.checkRange(pos, data.length);
    this.extendTo(end);
    this.good.set(data, pos);
  }

  /** fsx domapwrite: ftruncate up to pos + len first (zero gap), then the mapped store. */
  mapWrite(pos: number, data: Uint8Array): void {
    const end = this.checkRange(pos, data.length);
    if (end > this.sizeBytes) this.truncate(end);
    this.good.set(data, pos);
  }

  /** ftruncate: growth reads as zero, bytes past a smaller size are dropped. */
  truncate(size: number): void {
    this.checkRange(0, size);
    if (size > this.sizeBytes) {
      this.good.fill(0, this.sizeBytes, size);
    } else {
      this.good.fill(0, size, this.sizeBytes);
    }
    this.sizeBytes = size;
  }

  /** fallocate: data unchanged; without keepSize the size becomes max(size, pos + len). */
  fallocate(pos: number, len: number, keepSize: boolean): void {
    const end = this.checkRange(pos, len);
    if (!keepSize) this.extendTo(end);
  }

  /** Punch (always KEEP_SIZE): nothing at or past EOF is visible, so only [pos, min(end, size)) is zeroed. */
  punchHole(pos: number, len: number): void {
    const end = this.checkRange(pos, len);
    if (pos >= this.sizeBytes) return;
    this.good.fill(0, pos, Math.min(end, this.sizeBytes));
  }

  /** Zero range: [pos, end) reads zero; without keepSize the size becomes max(size, end). */
  zeroRange(pos: number, len: number, keepSize: boolean): void {
    const end = this.checkRange(pos, len);
    if (!keepSize) this.extendTo(end);
    // Past EOF (keepSize) the bytes are already zero by the invariant; clamp to keep it exact.
    this.good.fill(0, pos, Math.min(end, Math.max(this.sizeBytes, pos)));
  }

  /** The expected bytes [pos, pos + len), clamped to the size (what pread returns). */
  expected(pos: number, len: number): Uint8Array {
    const end = Math.min(pos + len, this.sizeBytes);
    return this.good.subarray(Math.min(pos, end), end);
  }

  /** The whole expected file image. */
  image(): Uint8Array {
    return this.good.subarray(0, this.sizeBytes);
  }

  private extendTo(end: number): void {
    if (end <= this.sizeBytes) return;
    this.good.fill(0, this.sizeBytes, end);
    this.sizeBytes = end;
  }

  private checkRange(pos: number, len: number): number {
    assert.ok(Number.isSafeInteger(pos) && pos >= 0, `bad offset ${pos}`);
    assert.ok(Number.isSafeInteger(len) && len >= 0, `bad length ${len}`);
    const end = pos + len;
    assert.ok(end <= this.maxFileLen, `range end 0x${end.toString(16)} exceeds maxFileLen 0x${this.maxFileLen.toString(16)}`);
    return end;
  }
}
