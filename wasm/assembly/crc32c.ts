/**
 * crc32c (Castagnoli, reflected polynomial 0x82F63B78) in ext4's raw form: the running
 * value is fed in and returned with no final XOR, so calls chain.
 *
 * Slicing-by-16: 16 tables of 256 u32 (16 KiB, stays in L1), one table lookup per
 * input byte but 16 independent lookups per step, so the CPU overlaps them.
 * WebAssembly has no carry-less multiply or crc instruction, so tables are the best
 * portable form. Table k maps a byte to its CRC after k further zero bytes.
 */

const POLY: u32 = 0x82f63b78;
const TABLE_COUNT: u32 = 16;
/** 16 × 256 × 4 bytes; filled by the start function (identical bytes on every instance). */
const TABLES: usize = memory.data(16 * 256 * 4, 64);

function buildTables(): void {
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    store<u32>(TABLES + (<usize>n << 2), c);
  }
  for (let n: u32 = 0; n < 256; n++) {
    let c = load<u32>(TABLES + (<usize>n << 2));
    for (let k: u32 = 1; k < TABLE_COUNT; k++) {
      c = load<u32>(TABLES + (<usize>(c & 0xff) << 2)) ^ (c >>> 8);
      store<u32>(TABLES + (<usize>k << 10) + (<usize>n << 2), c);
    }
  }
}
buildTables();

// Table k, entry b (k is a compile-time constant at every call site, folded into the offset).
// @ts-ignore: decorator
@inline function tab(k: usize, b: u32): u32 {
  return load<u32>(TABLES + (<usize>b << 2) + (k << 10));
}

// @ts-ignore: decorator
@inline function step4(a: u32, k: usize): u32 {
  return tab(k + 3, a & 0xff) ^ tab(k + 2, (a >>> 8) & 0xff) ^ tab(k + 1, (a >>> 16) & 0xff) ^ tab(k, a >>> 24);
}

/** crc32c of bytes [ptr, ptr + lengthBytes), continuing from `seed`. */
export function crc32c(seed: u32, ptr: usize, lengthBytes: usize): u32 {
  let crc = seed;
  let p = ptr;
  const end = ptr + lengthBytes;
  while (end - p >= 16) {
    const a = load<u32>(p) ^ crc;
    const b = load<u32>(p, 4);
    const c = load<u32>(p, 8);
    const d = load<u32>(p, 12);
    crc = step4(a, 12) ^ step4(b, 8) ^ step4(c, 4) ^ step4(d, 0);
    p += 16;
  }
  while (p < end) {
    crc = tab(0, (crc ^ load<u8>(p)) & 0xff) ^ (crc >>> 8);
    p++;
  }
  return crc;
}
