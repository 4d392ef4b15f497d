/**
 * Name lookup through a directory's hash index (ext4-format.md §7 "htree").
 *
 *   dx_root (block 0) ─▶ [dx_node …] ─▶ leaf block (ordinary linear entries)
 *
 * Hash the name (the root's version, +3 when the fs says unsigned chars), pick in each
 * index level the last entry whose hash ≤ the target (binary search; entry 0's hash is
 * implicitly 0), scan the leaf. If the name is not there, the next leaf may continue the
 * same hash: follow it while the next index entry's hash with bit 0 cleared equals the
 * target (bit 0 marks "this hash continues from the previous block", set by splits).
 *
 * Checks: root info (reserved 0, info length 8, known hash version, indirect levels ≤ 1,
 * or ≤ 2 with largedir — the kernel's rule), exact limits, counts, sorted hashes, child
 * block numbers inside the directory, dx_tail checksums (metadata_csum).
 *
 * Cost: (levels + 1) cached block reads and one leaf parse per lookup — 2 blocks for a
 * directory of up to ~500 leaves (~100,000 names at 4 KiB).
 */
import { dirHash } from '../format/dirhash.js';
import {
  DX_NODE_COUNT_OFFSET, decodeDxEntries, decodeDxRootInfo, dxLimit, dxRootCountOffset, isDxNode, verifyDxBlock,
  type DxEntry,
} from '../format/htree.js';
import { corrupted } from '../vfs/errors.js';
import type { Ext4Super } from './super.js';
import type { Ext4Inode } from './inode.js';
import { dirBlockCount, dxRootDots, readDirBlock, searchLeaf, type DirEntryInfo } from './dir.js';

const DX_HASH_TEA = 2;
const UNSIGNED_HASH_DELTA = 3;
/** The kernel masks the top 4 bits of a dx block number (reserved for future use). */
const DX_BLOCK_MASK = 0x0fffffff;

/** One level of the index path: that node's entries and the one we followed. */
interface Level { entries: DxEntry[]; at: number }

interface DxRoot { hashVersion: number; levels: number; entries: DxEntry[] }

/** An index block; its dx checksum (at countOffset) is verified once per cached copy. */
async function readDxBlock(ext4: Ext4Super, dir: Ext4Inode, lblk: number, countOffset: number, label: string): Promise<Uint8Array> {
  if (lblk >= dirBlockCount(ext4, dir)) throw corrupted(`directory ${dir.ino}: dx block ${lblk} past its ${dirBlockCount(ext4, dir)} blocks`);
  const kind = `dx:${dir.ino}:${dir.generation}:${countOffset}`;
  const raw = await readDirBlock(ext4, dir, lblk, kind, (data) => {
    if (ext4.metadataCsum) verifyDxBlock(data, countOffset, dir.csumSeed, label);
  });
  if (raw === undefined) throw corrupted(`directory ${dir.ino}: hole at indexed block ${lblk}`);
  return raw.block;
}

/** Decode and check the dx_root in block 0. */
async function readDxRoot(ext4: Ext4Super, dir: Ext4Inode): Promise<DxRoot> {
  const label = `dx root of directory ${dir.ino}`;
  const raw = await readDirBlock(ext4, dir, 0);
  if (raw === undefined) throw corrupted(`${label}: block 0 is a hole`);
  dxRootDots(ext4, raw.block, label);
  const info = decodeDxRootInfo(raw.block);
  if (info.infoLength !== 8) throw corrupted(`${label}: info length ${info.infoLength} != 8`);
  if (info.hashVersion > DX_HASH_TEA) throw corrupted(`${label}: unsupported hash version ${info.hashVersion}`);
  const maxIndirect = ext4.largeDir ? 2 : 1;
  if (info.indirectLevels > maxIndirect) throw corrupted(`${label}: ${info.indirectLevels} indirect levels > ${maxIndirect}`);
  const countOffset = dxRootCountOffset(info);
  // Limit first: it places the tail the checksum is read from.
  const dx = decodeDxEntries(raw.block, countOffset, dxLimit(ext4.blockSizeBytes, countOffset, ext4.metadataCsum), label);
  await readDxBlock(ext4, dir, 0, countOffset, label);
  const hashVersion = info.hashVersion + (ext4.hashUnsigned ? UNSIGNED_HASH_DELTA : 0);
  return { hashVersion, levels: info.indirectLevels, entries: dx.entries };
}

async function readDxNode(ext4: Ext4Super, dir: Ext4Inode, lblk: number): Promise<DxEntry[]> {
  const label = `dx node ${lblk} of directory ${dir.ino}`;
  const raw = await readDirBlock(ext4, dir, lblk);
  if (raw === undefined) throw corrupted(`${label}: hole at an index block`);
  if (!isDxNode(raw.block)) throw corrupted(`${label}: not an index node`);
  const limit = dxLimit(ext4.blockSizeBytes, DX_NODE_COUNT_OFFSET, ext4.metadataCsum);
  const dx = decodeDxEntries(raw.block, DX_NODE_COUNT_OFFSET, limit, label);
  await readDxBlock(ext4, dir, lblk, DX_NODE_COUNT_OFFSET, label);
  return dx.entries;
}

/** Index of the last entry with hash ≤ target (entry 0 always qualifies). */
function searchDx(entries: DxEntry[], hash: number): number {
  let lo = 1, hi = entries.length - 1, found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid].hash <= hash) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

function childOf(entries: DxEntry[], at: number): number {
  return entries[at].block & DX_BLOCK_MASK;
}

/**
 * Descend from path[from] (whose `at` is set) to a leaf, picking entries by `pick`;
 * fills path[from+1 …] and returns the leaf's logical block.
 */
async function descend(ext4: Ext4Super, dir: Ext4Inode, path: Level[], from: number, levels: number, pick: (e: DxEntry[]) => number): Promise<number> {
  for (let level = from; level < levels; level++) {
    const entries = await readDxNode(ext4, dir, childOf(path[level].entries, path[level].at));
    path[level + 1] = { entries, at: pick(entries) };
  }
  return childOf(path[levels].entries, path[levels].at);
}

/**
 * Advance the path to the next leaf if it continues `hash`; the leaf's block or
 * undefined when the next index entry starts another hash (or there is none).
 */
async function nextLeaf(ext4: Ext4Super, dir: Ext4Inode, path: Level[], levels: number, hash: number): Promise<number | undefined> {
  let level = levels;
  while (level >= 0 && path[level].at + 1 >= path[level].entries.length) level--;
  if (level < 0) return undefined;
  path[level].at++;
  const nextHash = path[level].entries[path[level].at].hash;
  if (((nextHash & ~1) >>> 0) !== hash) return undefined;
  return descend(ext4, dir, path, level, levels, () => 0);
}

/** Look `name` up through the hash index; the entry or undefined. */
export async function htreeLookup(ext4: Ext4Super, dir: Ext4Inode, name: Uint8Array): Promise<DirEntryInfo | undefined> {
  const root = await readDxRoot(ext4, dir);
  const { hash } = dirHash(name, root.hashVersion, ext4.hashSeed);
  const path: Level[] = [{ entries: root.entries, at: searchDx(root.entries, hash) }];
  let leaf: number | undefined = await descend(ext4, dir, path, 0, root.levels, (e) => searchDx(e, hash));
  // Each continuation moves to a later index entry, so the loop is bounded by the
  // directory's block count; the explicit bound guards against a corrupt cycle anyway.
  for (let hops = 0; leaf !== undefined; hops++) {
    if (hops > dirBlockCount(ext4, dir)) throw corrupted(`directory ${dir.ino}: hash chain longer than the directory`);
    if (leaf === 0 || leaf >= dirBlockCount(ext4, dir)) throw corrupted(`directory ${dir.ino}: dx leaf ${leaf} invalid`);
    const found = await searchLeaf(ext4, dir, leaf, name);
    if (found !== undefined) return found;
    leaf = await nextLeaf(ext4, dir, path, root.levels, hash);
  }
  return undefined;
}
