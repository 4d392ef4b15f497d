/**
 * ext4-order bitmaps: bit i is bit (i & 7) of byte (i >> 3). On a little-endian
 * machine that makes a u64 loaded at byte 8k hold bits [64k, 64k + 64) with bit i at
 * position i & 63, so searches run a word at a time and use ctz/popcnt.
 *
 * Bit ranges are half-open [startBit, endBit) and limited to < 2^31 bits. Only bytes
 * [startBit >> 3, (endBit + 7) >> 3) are read or written, so a bitmap may end flush
 * with the end of memory. Cost: a 32768-bit group bitmap is 512 words, ~0.5 µs to scan.
 */

// Loads word k, reading only bytes inside [byteStart, byteEnd); bytes outside come back
// as zero (callers mask those bits away).
function loadWordClamped(ptr: usize, wordIndex: u32, byteStart: u32, byteEnd: u32): u64 {
  const first = wordIndex << 3;
  if (first >= byteStart && first + 8 <= byteEnd) return load<u64>(ptr + first);
  const lo = max(first, byteStart);
  const hi = min(first + 8, byteEnd);
  let word: u64 = 0;
  for (let b = lo; b < hi; b++) word |= (<u64>load<u8>(ptr + b)) << ((<u64>(b - first)) << 3);
  return word;
}

// Mask of bits [lo, hi) of one word, 0 ≤ lo < hi ≤ 64.
// @ts-ignore: decorator
@inline function bitMask(lo: u32, hi: u32): u64 {
  const upper: u64 = hi == 64 ? ~(<u64>0) : ((<u64>1) << hi) - 1;
  return upper & ~(((<u64>1) << lo) - 1);
}

// Mask of the bits of word k that lie inside [startBit, endBit).
// @ts-ignore: decorator
@inline function wordMask(wordIndex: u32, startBit: u32, endBit: u32): u64 {
  const base = wordIndex << 6;
  const lo = startBit > base ? startBit - base : 0;
  const hi = endBit - base < 64 ? endBit - base : 64;
  return bitMask(lo, hi);
}

// First bit in [startBit, endBit) whose value XOR `invert`'s bit is 1, or -1.
// invert = ~0 finds zeros, invert = 0 finds ones.
// @ts-ignore: decorator
@inline function findFirst(ptr: usize, startBit: u32, endBit: u32, invert: u64): i32 {
  if (startBit >= endBit) return -1;
  const byteStart = startBit >> 3;
  const byteEnd = (endBit + 7) >> 3;
  const firstWord = startBit >> 6;
  const lastWord = (endBit - 1) >> 6;
  let hits = (loadWordClamped(ptr, firstWord, byteStart, byteEnd) ^ invert) & wordMask(firstWord, startBit, endBit);
  if (hits != 0) return <i32>((firstWord << 6) + <u32>ctz(hits));
  if (firstWord == lastWord) return -1;
  for (let k = firstWord + 1; k < lastWord; k++) {
    hits = load<u64>(ptr + (<usize>k << 3)) ^ invert;
    if (hits != 0) return <i32>((k << 6) + <u32>ctz(hits));
  }
  hits = (loadWordClamped(ptr, lastWord, byteStart, byteEnd) ^ invert) & wordMask(lastWord, startBit, endBit);
  if (hits != 0) return <i32>((lastWord << 6) + <u32>ctz(hits));
  return -1;
}

/** First zero bit in [startBit, endBit), or -1. */
export function bitmapFindFirstZero(ptr: usize, startBit: u32, endBit: u32): i32 {
  return findFirst(ptr, startBit, endBit, ~(<u64>0));
}

/** First set bit in [startBit, endBit), or -1. */
export function bitmapFindFirstSet(ptr: usize, startBit: u32, endBit: u32): i32 {
  return findFirst(ptr, startBit, endBit, 0);
}

// Bit i of the result is set iff bits [i, i + runLength) of `free` are all set
// (1 ≤ runLength < 64; bits past 63 count as clear). Doubling shifts: ≤ 6 steps.
// @ts-ignore: decorator
@inline function runStartsIn(free: u64, runLength: u32): u64 {
  let starts = free;
  let covered: u32 = 1;
  while (covered < runLength) {
    const shift = min(covered, runLength - covered);
    starts &= starts >> (<u64>shift);
    covered += shift;
  }
  return starts;
}

// First run of runLength zero bits lying wholly inside [startBit, endBit), or -1.
// One pass over the words, carrying the zero run that touches the top of the previous
// word: per word, (1) does the carried run plus this word's low zeros reach runLength,
// (2) does a run fit inside the word, (3) carry this word's high zeros. Earliest start wins
// because each step's candidates start before the next step's.
function findZeroRunIn(ptr: usize, startBit: u32, endBit: u32, runLength: u32): i32 {
  if (endBit <= startBit || endBit - startBit < runLength) return -1;
  const byteStart = startBit >> 3;
  const byteEnd = (endBit + 7) >> 3;
  const firstWord = startBit >> 6;
  const lastWord = (endBit - 1) >> 6;
  let carriedBits: u32 = 0;
  let carriedStart: u32 = 0;
  for (let k = firstWord; k <= lastWord; k++) {
    const base = k << 6;
    const edge = k == firstWord || k == lastWord;
    const word = edge ? loadWordClamped(ptr, k, byteStart, byteEnd) : load<u64>(ptr + (<usize>k << 3));
    const free = edge ? ~word & wordMask(k, startBit, endBit) : ~word;
    if (free == ~(<u64>0)) {
      if (carriedBits == 0) carriedStart = base;
      carriedBits += 64;
      if (carriedBits >= runLength) return <i32>carriedStart;
      continue;
    }
    const lowFree = <u32>ctz(~free);
    if (carriedBits + lowFree >= runLength) return <i32>(carriedBits > 0 ? carriedStart : base);
    if (runLength < 64) {
      const starts = runStartsIn(free, runLength);
      if (starts != 0) return <i32>(base + <u32>ctz(starts));
    }
    carriedBits = <u32>clz(~free);
    carriedStart = base + 64 - carriedBits;
  }
  return -1;
}

/**
 * Start of the first run of runLength zero bits in a bitmap of bitCount bits, searching
 * from goalBit to the end and then wrapping to runs that start before goalBit (a run
 * never wraps across the end). -1 when no run exists or runLength is 0 or goalBit ≥ bitCount.
 */
export function bitmapFindZeroRun(ptr: usize, bitCount: u32, goalBit: u32, runLength: u32): i32 {
  if (runLength == 0 || goalBit >= bitCount) return -1;
  const found = findZeroRunIn(ptr, goalBit, bitCount, runLength);
  if (found >= 0 || goalBit == 0) return found;
  const wrapEnd = <u64>goalBit + <u64>runLength - 1;
  return findZeroRunIn(ptr, 0, wrapEnd < <u64>bitCount ? <u32>wrapEnd : bitCount, runLength);
}

// Set (value = 0xff) or clear (value = 0) bits [startBit, endBit): partial edge bytes
// by mask, whole bytes between them with memory.fill.
// @ts-ignore: decorator
@inline function fillRange(ptr: usize, startBit: u32, endBit: u32, value: u8): void {
  if (startBit >= endBit) return;
  const firstByte = startBit >> 3;
  const lastByte = (endBit - 1) >> 3;
  const headMask = <u8>((<u32>0xff) << (startBit & 7));
  const tailMask = <u8>((<u32>0xff) >> (7 - ((endBit - 1) & 7)));
  if (firstByte == lastByte) {
    applyMask(ptr + firstByte, headMask & tailMask, value);
    return;
  }
  applyMask(ptr + firstByte, headMask, value);
  memory.fill(ptr + firstByte + 1, value, lastByte - firstByte - 1);
  applyMask(ptr + lastByte, tailMask, value);
}

// @ts-ignore: decorator
@inline function applyMask(bytePtr: usize, mask: u8, value: u8): void {
  const old = load<u8>(bytePtr);
  store<u8>(bytePtr, value ? old | mask : old & ~mask);
}

/** Set bits [startBit, endBit). */
export function bitmapSetRange(ptr: usize, startBit: u32, endBit: u32): void {
  fillRange(ptr, startBit, endBit, 0xff);
}

/** Clear bits [startBit, endBit). */
export function bitmapClearRange(ptr: usize, startBit: u32, endBit: u32): void {
  fillRange(ptr, startBit, endBit, 0);
}

/** Number of set bits in [startBit, endBit). */
export function bitmapCountSet(ptr: usize, startBit: u32, endBit: u32): u32 {
  if (startBit >= endBit) return 0;
  const byteStart = startBit >> 3;
  const byteEnd = (endBit + 7) >> 3;
  const firstWord = startBit >> 6;
  const lastWord = (endBit - 1) >> 6;
  const head = loadWordClamped(ptr, firstWord, byteStart, byteEnd) & wordMask(firstWord, startBit, endBit);
  if (firstWord == lastWord) return <u32>popcnt(head);
  let count = popcnt(head);
  for (let k = firstWord + 1; k < lastWord; k++) count += popcnt(load<u64>(ptr + (<usize>k << 3)));
  count += popcnt(loadWordClamped(ptr, lastWord, byteStart, byteEnd) & wordMask(lastWord, startBit, endBit));
  return <u32>count;
}
