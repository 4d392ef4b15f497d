/**
 * crc32c (Castagnoli, reflected polynomial 0x82F63B78) in ext4's raw form:
 * `crc32c(seed, bytes)` feeds bytes into the running value `seed` with no final XOR,
 * so chaining is `crc32c(crc32c(s, a), b) === crc32c(s, a ‖ b)`.
 * Relation to the standard CRC-32C: crc32c(0xFFFFFFFF, d) === ~CRC32C(d) >>> 0.
 *
 * This file is the pure-TS reference (slicing-by-8, ~1 GB/s). The WASM kernel is
 * installed over it at engine start (installCrc32c); tests compare the two.
 * Cost: a 4 KiB metadata block is ~4 µs here, well under 1 µs in WASM.
 */

const POLY = 0x82f63b78;

/** 8 tables of 256 entries: table k maps a byte to its CRC after k further zero bytes. */
const TABLES: Uint32Array = (() => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c >>> 0;
    }
  }
  return t;
})();

/** Pure-TS crc32c over bytes[start, end). */
export function crc32cTs(seed: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  const t = TABLES;
  let crc = seed >>> 0;
  let i = start;
  // Align to 4 so the 8-byte body can use aligned 32-bit reads where the view allows.
  while (i < end && ((bytes.byteOffset + i) & 3) !== 0) crc = t[(crc ^ bytes[i++]) & 0xff] ^ (crc >>> 8);
  const words = end - i >= 8 ? new Uint32Array(bytes.buffer, bytes.byteOffset + i, (end - i) >>> 2) : null;
  if (words !== null) {
    // Little-endian hosts only (asserted at load below): word w holds bytes 4w..4w+3.
    const pairs = words.length >>> 1;
    for (let w = 0; w < pairs * 2; w += 2) {
      const lo = words[w] ^ crc;
      const hi = words[w + 1];
      crc =
        t[7 * 256 + (lo & 0xff)] ^
        t[6 * 256 + ((lo >>> 8) & 0xff)] ^
        t[5 * 256 + ((lo >>> 16) & 0xff)] ^
        t[4 * 256 + (lo >>> 24)] ^
        t[3 * 256 + (hi & 0xff)] ^
        t[2 * 256 + ((hi >>> 8) & 0xff)] ^
        t[1 * 256 + ((hi >>> 16) & 0xff)] ^
        t[hi >>> 24];
    }
    i += pairs * 8;
  }
  while (i < end) crc = t[(crc ^ bytes[i++]) & 0xff] ^ (crc >>> 8);
  return crc >>> 0;
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
if (!littleEndian) throw new Error('ext4ts requires a little-endian host');

export type Crc32cFn = (seed: number, bytes: Uint8Array, start?: number, end?: number) => number;

let accelerated: Crc32cFn | null = null;

/**
 * Install a faster implementation (the WASM kernel). The only piece of module state in
 * format/: it changes speed, never results (tests check the two agree).
 */
export function installCrc32c(fn: Crc32cFn | null): void {
  accelerated = fn;
}

/** crc32c over bytes[start, end), through the installed accelerator when there is one. */
export function crc32c(seed: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  return accelerated === null ? crc32cTs(seed, bytes, start, end) : accelerated(seed, bytes, start, end);
}

/** crc32c of a little-endian u32, as ext4 feeds inode numbers and generations (no allocation). */
export function crc32cU32le(seed: number, value: number): number {
  const t = TABLES;
  let crc = seed >>> 0;
  let v = value >>> 0;
  for (let k = 0; k < 4; k++) {
    crc = t[(crc ^ v) & 0xff] ^ (crc >>> 8);
    v >>>= 8;
  }
  return crc >>> 0;
}

/** crc32c of `count` zero bytes (a checksum field treated as zero), without a buffer. */
export function crc32cZeros(seed: number, count: number): number {
  const t = TABLES;
  let crc = seed >>> 0;
  for (let k = 0; k < count; k++) crc = t[crc & 0xff] ^ (crc >>> 8);
  return crc >>> 0;
}
