/**
 * Pure-TS twins of the wasm kernels: the oracle in tests and the baseline in the micro
 * benchmark. Each twin takes the bytes the kernel would see as its first argument and
 * then the kernel's own arguments, with pointers read as offsets into those bytes — so
 * `twins.k(memoryBytes, ...args)` must equal `core.kernels.k(...args)` for every k.
 *
 * The twins are written for obvious correctness first (byte-at-a-time skips, then bit
 * loops), not to mirror the kernels' word-at-a-time tricks: a shared bug is less likely.
 */
import { crc32cTs } from '../format/crc32c.js';
import { EXTENT_RECORD_BYTES, EXTENT_RECORD_LOGICAL_OFFSET } from './layout.js';

export { crc32cTs };

function testBit(bytes: Uint8Array, ptr: number, bit: number): boolean {
  return (bytes[ptr + (bit >>> 3)] & (1 << (bit & 7))) !== 0;
}

// First bit in [startBit, endBit) equal to `wanted`; whole bytes that cannot hold one are skipped.
function findFirstBit(bytes: Uint8Array, ptr: number, startBit: number, endBit: number, wanted: boolean): number {
  const skipByte = wanted ? 0x00 : 0xff;
  let bit = startBit;
  while (bit < endBit) {
    if ((bit & 7) === 0 && endBit - bit >= 8 && bytes[ptr + (bit >>> 3)] === skipByte) {
      bit += 8;
      continue;
    }
    if (testBit(bytes, ptr, bit) === wanted) return bit;
    bit++;
  }
  return -1;
}

export function bitmapFindFirstZeroTs(bytes: Uint8Array, ptr: number, startBit: number, endBit: number): number {
  return findFirstBit(bytes, ptr, startBit, endBit, false);
}

export function bitmapFindFirstSetTs(bytes: Uint8Array, ptr: number, startBit: number, endBit: number): number {
  return findFirstBit(bytes, ptr, startBit, endBit, true);
}

// First run of runLength zeros whose start lies in [firstStart, lastStartEnd) and that ends ≤ endBit.
function findZeroRunStartingIn(
  bytes: Uint8Array, ptr: number, firstStart: number, lastStartEnd: number, endBit: number, runLength: number,
): number {
  let runStart = firstStart;
  let runBits = 0;
  for (let bit = firstStart; bit < endBit; bit++) {
    if (runBits === 0 && bit >= lastStartEnd) return -1;
    if (testBit(bytes, ptr, bit)) {
      runBits = 0;
      runStart = bit + 1;
      continue;
    }
    runBits++;
    if (runBits === runLength) return runStart;
  }
  return -1;
}

/** See the kernel: goal to end first, then runs that start before the goal; -1 if none. */
export function bitmapFindZeroRunTs(
  bytes: Uint8Array, ptr: number, bitCount: number, goalBit: number, runLength: number,
): number {
  if (runLength === 0 || goalBit >= bitCount) return -1;
  const found = findZeroRunStartingIn(bytes, ptr, goalBit, bitCount, bitCount, runLength);
  if (found >= 0) return found;
  return findZeroRunStartingIn(bytes, ptr, 0, goalBit, bitCount, runLength);
}

function setBits(bytes: Uint8Array, ptr: number, startBit: number, endBit: number, value: boolean): void {
  for (let bit = startBit; bit < endBit; bit++) {
    const index = ptr + (bit >>> 3);
    const mask = 1 << (bit & 7);
    bytes[index] = value ? bytes[index] | mask : bytes[index] & ~mask;
  }
}

export function bitmapSetRangeTs(bytes: Uint8Array, ptr: number, startBit: number, endBit: number): void {
  setBits(bytes, ptr, startBit, endBit, true);
}

export function bitmapClearRangeTs(bytes: Uint8Array, ptr: number, startBit: number, endBit: number): void {
  setBits(bytes, ptr, startBit, endBit, false);
}

const POPCOUNT8 = Uint8Array.from({ length: 256 }, (_, n) => {
  let count = 0;
  for (let v = n; v !== 0; v >>>= 1) count += v & 1;
  return count;
});

export function bitmapCountSetTs(bytes: Uint8Array, ptr: number, startBit: number, endBit: number): number {
  let count = 0;
  let bit = startBit;
  while (bit < endBit) {
    if ((bit & 7) === 0 && endBit - bit >= 8) {
      count += POPCOUNT8[bytes[ptr + (bit >>> 3)]];
      bit += 8;
      continue;
    }
    if (testBit(bytes, ptr, bit)) count++;
    bit++;
  }
  return count;
}

function logicalStartOf(view: DataView, ptr: number, index: number): number {
  return view.getUint32(ptr + index * EXTENT_RECORD_BYTES + EXTENT_RECORD_LOGICAL_OFFSET, true);
}

/** Index of the last record with logical start ≤ logicalBlock, or -1. */
export function extentSearchTs(bytes: Uint8Array, ptr: number, recordCount: number, logicalBlock: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const target = logicalBlock >>> 0;
  // Invariant: records [0, low) start ≤ target; records [high, count) start > target.
  let low = 0;
  let high = recordCount;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (logicalStartOf(view, ptr, middle) <= target) low = middle + 1;
    else high = middle;
  }
  return low - 1;
}

export function bytesCopyTs(bytes: Uint8Array, targetPtr: number, sourcePtr: number, lengthBytes: number): void {
  bytes.copyWithin(targetPtr, sourcePtr, sourcePtr + lengthBytes);
}

export function bytesZeroTs(bytes: Uint8Array, ptr: number, lengthBytes: number): void {
  bytes.fill(0, ptr, ptr + lengthBytes);
}

export function bytesCompareTs(bytes: Uint8Array, aPtr: number, bPtr: number, lengthBytes: number): number {
  for (let i = 0; i < lengthBytes; i++) if (bytes[aPtr + i] !== bytes[bPtr + i]) return i;
  return -1;
}

/** crc32c with the kernel's (seed, ptr, lengthBytes) arguments. */
export function crc32cAtTs(bytes: Uint8Array, seed: number, ptr: number, lengthBytes: number): number {
  return crc32cTs(seed, bytes, ptr, ptr + lengthBytes);
}

/** Every twin under its kernel's name (see WasmKernels in core.ts). */
export const twins = {
  crc32c: crc32cAtTs,
  bitmapFindFirstZero: bitmapFindFirstZeroTs,
  bitmapFindFirstSet: bitmapFindFirstSetTs,
  bitmapFindZeroRun: bitmapFindZeroRunTs,
  bitmapSetRange: bitmapSetRangeTs,
  bitmapClearRange: bitmapClearRangeTs,
  bitmapCountSet: bitmapCountSetTs,
  extentSearch: extentSearchTs,
  bytesCopy: bytesCopyTs,
  bytesZero: bytesZeroTs,
  bytesCompare: bytesCompareTs,
} as const;
