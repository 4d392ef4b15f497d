/**
 * Binary search over a packed array of extent records sorted by logical start and
 * non-overlapping. Record layout (16 bytes, little-endian; mirrored in
 * packages/core/src/wasm/layout.ts as EXTENT_RECORD_*):
 *   +0  u32 logical start block
 *   +4  u32 block count (low 28 bits) | flags (high 4 bits)
 *   +8  u64 physical start block
 * Only the logical start is read here.
 */

const RECORD_BYTES_SHIFT: usize = 4;

/** Index of the last record whose logical start ≤ logicalBlock, or -1 (none, or count 0). */
export function extentSearch(ptr: usize, recordCount: u32, logicalBlock: u32): i32 {
  if (recordCount == 0 || load<u32>(ptr) > logicalBlock) return -1;
  // Invariant: record[base].start ≤ logicalBlock; the answer is in [base, base + n).
  let base: u32 = 0;
  let n = recordCount;
  while (n > 1) {
    const half = n >>> 1;
    const start = load<u32>(ptr + (<usize>(base + half) << RECORD_BYTES_SHIFT));
    base = select<u32>(base + half, base, start <= logicalBlock);
    n -= half;
  }
  return <i32>base;
}
