/**
 * Legacy block maps (ext2/ext3 inodes without EXTENTS_FL; the resize inode 7):
 * i_block[0..11] point at data blocks, [12] at an indirect block of bs/4 pointers,
 * [13] at a double-indirect and [14] at a triple-indirect block. A zero pointer is a
 * hole covering everything below it.
 *
 *   lblk:  [0,12) direct | [12, 12+P) single | next P² double | next P³ triple   (P = bs/4)
 *
 * A lookup costs up to three cached block reads, and answers a run of physically
 * consecutive blocks (or a hole) inside one pointer block, so a contiguous file costs
 * one lookup per pointer block (P blocks = 4 MiB at 4 KiB).
 */
import { corrupted } from '../vfs/errors.js';
import type { Ext4Super } from './super.js';
import type { Ext4Inode } from './inode.js';
import type { BlockMapping } from './extents.js';

const DIRECT_BLOCKS = 12;

function u32(bytes: Uint8Array, index: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + index * 4, 4).getUint32(0, true);
}

/** The run starting at pointers[index]: consecutive physical blocks, or consecutive zeros. */
function runAt(ext4: Ext4Super, inode: Ext4Inode, pointers: Uint8Array, index: number, count: number, lblk: number): BlockMapping {
  const first = u32(pointers, index);
  let len = 1;
  if (first === 0) {
    while (index + len < count && u32(pointers, index + len) === 0) len++;
    return { lblk, len, pblk: 0, kind: 'hole' };
  }
  while (index + len < count && u32(pointers, index + len) === first + len) len++;
  ext4.cache.checkRange(first, len, `block map of inode ${inode.ino}`);
  return { lblk, len, pblk: first, kind: 'mapped' };
}

/** The mapping of `lblk` through the inode's block map. */
export async function indirectMap(ext4: Ext4Super, inode: Ext4Inode, lblk: number): Promise<BlockMapping> {
  if (lblk < DIRECT_BLOCKS) return runAt(ext4, inode, inode.block, lblk, DIRECT_BLOCKS, lblk);
  const perBlock = ext4.blockSizeBytes / 4;
  let base = DIRECT_BLOCKS;
  for (let levels = 1; levels <= 3; levels++) {
    const span = perBlock ** levels;
    if (lblk < base + span) return walkDown(ext4, inode, u32(inode.block, DIRECT_BLOCKS + levels - 1), levels, lblk, lblk - base);
    base += span;
  }
  // Past what a block map can address: a hole to the end of the address space.
  return { lblk, len: 2 ** 32 - lblk, pblk: 0, kind: 'hole' };
}

/** Descend `levels` pointer blocks from `pointer` to the data run holding `offset`. */
async function walkDown(ext4: Ext4Super, inode: Ext4Inode, pointer: number, levels: number, lblk: number, offset: number): Promise<BlockMapping> {
  const perBlock = ext4.blockSizeBytes / 4;
  let block = pointer;
  for (let level = levels; level >= 1; level--) {
    const below = perBlock ** (level - 1);
    if (block === 0) {
      // A missing pointer block: a hole to the end of the subtree it would cover.
      const span = below * perBlock;
      return { lblk, len: span - (offset % span), pblk: 0, kind: 'hole' };
    }
    const pointers = await ext4.cache.read(block, `indirect block of inode ${inode.ino}`);
    const index = Math.floor(offset / below) % perBlock;
    if (level === 1) return runAt(ext4, inode, pointers, index, perBlock, lblk);
    block = u32(pointers, index);
  }
  throw corrupted(`inode ${inode.ino}: block map walk fell through`);
}
