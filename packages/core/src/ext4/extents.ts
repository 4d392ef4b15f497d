/**
 * Mapping logical file blocks to physical ones through the on-disk extent tree
 * (ext4-format.md §6), and the dispatcher that sends block-mapped inodes to
 * ./indirect.ts instead.
 *
 *   i_block root (≤ 4 entries, depth d) ─ index ─▶ block node (≤ 340) ─ … ─▶ leaf extents
 *
 * Every node on the path is checked before use: magic, depth = parent − 1, entries ≤
 * max, sorted entries, the tail crc32c with the inode's seed (metadata_csum), an index's
 * ei_block equal to its child's first logical block, every child entry inside its
 * parent's [ei_block, next ei_block) and every physical block inside the filesystem.
 * Depth is bounded (≤ 5) and strictly decreases, so corruption can never loop.
 *
 * Cost of one lookup: depth cached block reads and a binary search per level; a lookup
 * answers the whole extent (or hole) from that block on, so reading a file costs one
 * lookup per extent, not per block.
 */
import {
  EXT_MAX_DEPTH, ROOT_MAX_ENTRIES, checkExtentNode, decodeExtent, decodeExtentHeader, decodeExtentIndex,
  nodeMaxEntries, verifyExtentBlock,
} from '../format/extent.js';
import { corrupted } from '../vfs/errors.js';
import type { Ext4Super } from './super.js';
import { usesExtents, type Ext4Inode } from './inode.js';
import { indirectMap } from './indirect.js';

/** Logical blocks are 32-bit: every file's address space is [0, 2^32). */
export const LBLK_LIMIT = 2 ** 32;

export type MappingKind = 'mapped' | 'unwritten' | 'hole';

/** Logical [lblk, lblk + len) is at physical [pblk, pblk + len) (pblk 0 for a hole). */
export interface BlockMapping {
  lblk: number;
  len: number;
  pblk: number;
  kind: MappingKind;
}

function hole(lblk: number, endLblk: number): BlockMapping {
  return { lblk, len: endLblk - lblk, pblk: 0, kind: 'hole' };
}

/** Index of the last entry whose logical start ≤ lblk, or −1. */
function searchNode(node: Uint8Array, entries: number, lblk: number): number {
  let lo = 0, hi = entries - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    // Leaf and index entries both start with le32 logical block.
    const start = new DataView(node.buffer, node.byteOffset + 12 + mid * 12, 4).getUint32(0, true);
    if (start <= lblk) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

/** Logical range a child node must stay inside. */
interface Bounds { startLblk: number; endLblk: number }

async function readChild(ext4: Ext4Super, inode: Ext4Inode, pblk: number, depth: number, bounds: Bounds): Promise<Uint8Array> {
  const what = `extent node of inode ${inode.ino}`;
  const kind = `extent:${inode.ino}:${inode.generation}:${depth}`;
  const node = await ext4.cache.read(pblk, what, kind, (data) => {
    checkExtentNode(data, depth, nodeMaxEntries(ext4.blockSizeBytes));
    if (ext4.metadataCsum) verifyExtentBlock(data, inode.csumSeed, pblk);
  });
  const entries = decodeExtentHeader(node).entries;
  if (entries === 0) return node;
  // ei_block must equal the child's first logical block, and the child may not spill
  // past the next index entry.
  const first = depth === 0 ? decodeExtent(node, 0).lblk : decodeExtentIndex(node, 0).lblk;
  if (first !== bounds.startLblk) throw corrupted(`${what}: index says block ${bounds.startLblk}, child ${pblk} starts at ${first}`);
  const lastEnd = depth === 0
    ? (() => { const e = decodeExtent(node, entries - 1); return e.lblk + e.len; })()
    : decodeExtentIndex(node, entries - 1).lblk + 1;
  if (lastEnd > bounds.endLblk) throw corrupted(`${what}: child ${pblk} runs past logical block ${bounds.endLblk}`);
  return node;
}

/** The mapping of `lblk` through an extent tree: the extent or hole that contains it, from lblk on. */
export async function extentMap(ext4: Ext4Super, inode: Ext4Inode, lblk: number): Promise<BlockMapping> {
  let node: Uint8Array = inode.block;
  const rootDepth = decodeExtentHeader(node).depth;
  if (rootDepth > EXT_MAX_DEPTH) throw corrupted(`inode ${inode.ino}: extent depth ${rootDepth} > ${EXT_MAX_DEPTH}`);
  let h = checkExtentNode(node, rootDepth, ROOT_MAX_ENTRIES);
  let bounds: Bounds = { startLblk: 0, endLblk: LBLK_LIMIT };
  for (let depth = rootDepth; depth > 0; depth--) {
    const i = searchNode(node, h.entries, lblk);
    if (i < 0) return hole(lblk, decodeExtentIndex(node, 0).lblk);
    const index = decodeExtentIndex(node, i);
    const endLblk = i + 1 < h.entries ? decodeExtentIndex(node, i + 1).lblk : bounds.endLblk;
    bounds = { startLblk: index.lblk, endLblk };
    node = await readChild(ext4, inode, index.leaf, depth - 1, bounds);
    h = decodeExtentHeader(node);
  }
  const i = searchNode(node, h.entries, lblk);
  if (i >= 0) {
    const e = decodeExtent(node, i);
    if (lblk < e.lblk + e.len) {
      ext4.cache.checkRange(e.pblk, e.len, `extent of inode ${inode.ino}`);
      const skip = lblk - e.lblk;
      return { lblk, len: e.len - skip, pblk: e.pblk + skip, kind: e.unwritten ? 'unwritten' : 'mapped' };
    }
  }
  return hole(lblk, i + 1 < h.entries ? decodeExtent(node, i + 1).lblk : bounds.endLblk);
}

/** The mapping of `lblk` for any inode: extent tree or legacy block map. */
export async function mapBlock(ext4: Ext4Super, inode: Ext4Inode, lblk: number): Promise<BlockMapping> {
  if (!Number.isInteger(lblk) || lblk < 0 || lblk >= LBLK_LIMIT) return hole(lblk, Math.max(lblk + 1, LBLK_LIMIT));
  const m = usesExtents(inode) ? await extentMap(ext4, inode, lblk) : await indirectMap(ext4, inode, lblk);
  if (m.len < 1) throw corrupted(`inode ${inode.ino}: empty mapping at block ${lblk}`);
  return m;
}

/**
 * The mappings covering [startLblk, endLblk) in order, holes included, each clipped to
 * the range. Every step advances at least one block, so the walk always ends.
 */
export async function* walkMappings(ext4: Ext4Super, inode: Ext4Inode, startLblk: number, endLblk: number): AsyncGenerator<BlockMapping> {
  let lblk = startLblk;
  while (lblk < endLblk) {
    const m = await mapBlock(ext4, inode, lblk);
    const len = Math.min(m.len, endLblk - lblk);
    yield { ...m, len };
    lblk += len;
  }
}
