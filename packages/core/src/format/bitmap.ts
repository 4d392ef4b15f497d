/**
 * Block and inode bitmap checksums (ext4-format.md §4): the block bitmap's covers
 * clusters_per_group/8 bytes, the inode bitmap's only inodes_per_group/8 bytes — not
 * the whole block. The high 16 bits are stored only when descriptors are ≥ 64 bytes.
 */
import { crc32c } from './crc32c.js';

export function blockBitmapChecksum(fsSeed: number, bitmap: Uint8Array, clustersPerGroup: number): number {
  return crc32c(fsSeed, bitmap, 0, clustersPerGroup >>> 3);
}

export function inodeBitmapChecksum(fsSeed: number, bitmap: Uint8Array, inodesPerGroup: number): number {
  return crc32c(fsSeed, bitmap, 0, inodesPerGroup >>> 3);
}

/** Compare a computed 32-bit bitmap checksum with the stored one (16 or 32 bits). */
export function bitmapChecksumMatches(computed: number, stored: number, descSize: number): boolean {
  return descSize >= 64 ? (computed >>> 0) === (stored >>> 0) : (computed & 0xffff) === (stored & 0xffff);
}

export function testBit(bitmap: Uint8Array, bit: number): boolean {
  return (bitmap[bit >>> 3] & (1 << (bit & 7))) !== 0;
}
export function setBit(bitmap: Uint8Array, bit: number): void {
  bitmap[bit >>> 3] |= 1 << (bit & 7);
}
export function clearBit(bitmap: Uint8Array, bit: number): void {
  bitmap[bit >>> 3] &= ~(1 << (bit & 7));
}
