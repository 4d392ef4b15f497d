/**
 * mkfs geometry and placement, as pure functions: given a size, where every piece of
 * metadata goes, exactly as `mkfs.ext4 -b 4096` (e2fsprogs 1.47.0, Debian 12 defaults)
 * places it. Facts come from ext4-format.md §1/§3 and from comparing with mkfs.ext4's
 * own images (layout.test.ts runs the real tool over many sizes).
 *
 * The plan is computed over a set of used block intervals rather than a bitmap, so a
 * 16 TiB plan costs O(groups) memory (a 64 GiB plan: 512 groups, ~70 intervals).
 *
 * Allocation order (it decides every position, so it mirrors mke2fs):
 *   1. superblock + GDT + reserved GDT of every group that has a backup (sparse_super);
 *   2. per group: block bitmap, inode bitmap, inode table, packed per flex group;
 *   3. root dir block, 4 lost+found blocks, the resize inode's DIND block;
 *   4. the journal from a goal near the middle, then its extent leaf if > 4 extents.
 * Block numbers are absolute; ranges are half-open.
 */
import { FsError } from '../vfs/errors.js';
import { assert } from '../assert.js';

export const BLOCK_SIZE_BYTES = 4096;
export const LOG_BLOCK_SIZE = 2; // 1024 << 2
export const BLOCKS_PER_GROUP = 32768; // one bitmap block covers 4096 × 8 blocks
export const INODE_SIZE_BYTES = 256;
export const INODES_PER_BLOCK = BLOCK_SIZE_BYTES / INODE_SIZE_BYTES; // 16
export const DESC_SIZE_BYTES = 64;
export const DESCS_PER_BLOCK = BLOCK_SIZE_BYTES / DESC_SIZE_BYTES; // 64
export const LOG_GROUPS_PER_FLEX = 4;
export const FLEX_GROUPS = 1 << LOG_GROUPS_PER_FLEX; // 16
export const FIRST_INO = 11;
export const LOST_FOUND_BLOCKS = 4; // 16 KiB, as mke2fs makes it
export const EXTENT_BLOCKS_MAX = 32768; // longest initialized extent
export const ROOT_EXTENTS_MAX = 4; // extent entries in i_block
export const JOURNAL_BLOCKS_MIN = 1024;
export const JOURNAL_BLOCKS_MAX = 10_240_000; // mke2fs's limit
/** 8 MiB: below this mke2fs makes no journal (and 1 KiB blocks); we do not go there. */
export const FS_BYTES_MIN = 8 * 1024 * 1024;
/** Block numbers stay below 2^32: resize_inode and 32-bit inode counts hold up to here. */
export const FS_BLOCKS_MAX = 2 ** 32 - 1;

const MiB = 1024 * 1024;

export type SizeClass = 'small' | 'default' | 'big' | 'huge';

export interface GeometryOptions {
  sizeBytes: number;
  /** Bytes per inode; default from the size class (mke2fs.conf). */
  inodeRatio?: number;
  /** Journal length; default from ext2fs_default_journal_size's table. */
  journalBlocks?: number;
}

export interface Geometry {
  blocksCount: number;
  /** 32768, unless a 'small' fs needed fewer so that inodes per group fit a bitmap (129 MiB: 31920). */
  blocksPerGroup: number;
  groupCount: number;
  sizeClass: SizeClass;
  inodeRatio: number;
  inodesPerGroup: number;
  inodeTableBlocks: number;
  inodesCount: number;
  descBlocks: number;
  reservedGdtBlocks: number;
  /** 5% reserved for root (s_r_blocks_count). */
  rBlocksCount: number;
  journalBlocks: number;
}

function invalid(detail: string): FsError {
  return new FsError('EINVAL', { syscall: 'mkfs', detail });
}

/** mke2fs's size classes pick the inode ratio (mke2fs.conf: small 4096 … huge 65536). */
export function sizeClassOf(fsBytes: number): SizeClass {
  if (fsBytes < 512 * MiB) return 'small';
  if (fsBytes < 4 * 1024 * 1024 * MiB) return 'default';
  if (fsBytes < 16 * 1024 * 1024 * MiB) return 'big';
  return 'huge';
}

const RATIO_BY_CLASS: Record<SizeClass, number> = { small: 4096, default: 16384, big: 32768, huge: 65536 };

/** Groups 0, 1 and powers of 3, 5 and 7 hold superblock + GDT backups (sparse_super). */
export function groupHasSuper(group: number): boolean {
  if (group <= 1) return true;
  if (group % 2 === 0) return false;
  for (const base of [3, 5, 7]) {
    let n = group;
    while (n % base === 0) n /= base;
    if (n === 1) return true;
  }
  return false;
}

/** Default journal length in blocks for a filesystem of `blocksCount` 4 KiB blocks. */
export function defaultJournalBlocks(blocksCount: number): number {
  const table: [number, number][] = [
    [32768, 1024], [256 * 1024, 4096], [512 * 1024, 8192], [4096 * 1024, 16384],
    [8192 * 1024, 32768], [16384 * 1024, 65536], [32768 * 1024, 131072],
  ];
  for (const [below, blocks] of table) if (blocksCount < below) return blocks;
  return 262144;
}

/**
 * Reserved GDT blocks: enough descriptor blocks to grow online to 1024× the size (capped
 * at 2^32 blocks), minus the ones in use, capped at bs/4. 1 GiB: 2^28 blocks → 8192
 * groups → 128 desc blocks − 1 = 127.
 */
export function reservedGdtBlocksFor(blocksCount: number, descBlocks: number, blocksPerGroup = BLOCKS_PER_GROUP): number {
  const maxBlocks = blocksCount < Math.floor(0xffffffff / 1024) ? blocksCount * 1024 : 0xffffffff;
  const groups = Math.ceil(maxBlocks / blocksPerGroup);
  const wanted = Math.ceil(groups / DESCS_PER_BLOCK) - descBlocks;
  return Math.max(0, Math.min(wanted, BLOCK_SIZE_BYTES / 4));
}

/** Inodes per group filling whole inode-table blocks (and a multiple of 8). */
function inodesPerGroupFor(inodesWanted: number, groupCount: number): number {
  const ipg = Math.ceil(inodesWanted / groupCount);
  const tableBlocks = Math.ceil((ipg * INODE_SIZE_BYTES) / BLOCK_SIZE_BYTES);
  return ((tableBlocks * BLOCK_SIZE_BYTES) / INODE_SIZE_BYTES) & ~7;
}

/**
 * Blocks, groups, inodes and reserved counts. Like mke2fs, a last group too small for
 * its own metadata + 50 blocks is dropped and the inode count (fixed from the requested
 * size) is spread over the remaining groups. Throws EINVAL for sizes out of range.
 */
export function computeGeometry(options: GeometryOptions): Geometry {
  const requested = Math.floor(options.sizeBytes / BLOCK_SIZE_BYTES);
  if (!Number.isFinite(options.sizeBytes) || options.sizeBytes < FS_BYTES_MIN) {
    throw invalid(`filesystem size ${options.sizeBytes} is below the ${FS_BYTES_MIN}-byte minimum`);
  }
  if (requested > FS_BLOCKS_MAX) throw invalid(`filesystem of ${requested} blocks exceeds ${FS_BLOCKS_MAX}`);
  const sizeClass = sizeClassOf(requested * BLOCK_SIZE_BYTES);
  const inodeRatio = options.inodeRatio ?? RATIO_BY_CLASS[sizeClass];
  if (!Number.isInteger(inodeRatio) || inodeRatio < 1024 || inodeRatio > 64 * MiB) {
    throw invalid(`inode ratio ${inodeRatio} out of range [1024, 64 MiB]`);
  }
  // Both in the requested size, as mke2fs fixes them before it trims a last group.
  const inodesWanted = Math.floor((requested * BLOCK_SIZE_BYTES) / inodeRatio);
  const rBlocksRequested = Math.floor((5.0 * requested) / 100.0);
  let blocksCount = requested;
  let blocksPerGroup = BLOCKS_PER_GROUP;
  let rBlocksCount = rBlocksRequested;
  for (;;) {
    const groupCount = Math.ceil(blocksCount / blocksPerGroup);
    const descBlocks = Math.ceil(groupCount / DESCS_PER_BLOCK);
    const reservedGdtBlocks = reservedGdtBlocksFor(blocksCount, descBlocks, blocksPerGroup);
    const inodesPerGroup = inodesPerGroupFor(inodesWanted, groupCount);
    if (inodesPerGroup > BLOCK_SIZE_BYTES * 8) {
      // mke2fs shrinks groups 8 blocks at a time from the full requested size until the
      // inodes of each fit one bitmap block (129 MiB 'small': 31920 blocks per group).
      if (blocksPerGroup < 256) throw invalid(`${inodesPerGroup} inodes per group exceed one bitmap block`);
      blocksPerGroup -= 8;
      blocksCount = requested;
      continue;
    }
    if (inodesPerGroup < FIRST_INO + 5) throw invalid(`inode ratio ${inodeRatio} leaves too few inodes`);
    const inodeTableBlocks = (inodesPerGroup * INODE_SIZE_BYTES) / BLOCK_SIZE_BYTES;
    if (3 + inodeTableBlocks + reservedGdtBlocks + descBlocks > blocksPerGroup) throw invalid('too many inodes per group');
    const lastGroupOverhead = 2 + inodeTableBlocks + (groupHasSuper(groupCount - 1) ? 1 + descBlocks + reservedGdtBlocks : 0);
    const remainder = blocksCount % blocksPerGroup;
    if (groupCount === 1 && remainder !== 0 && remainder < lastGroupOverhead) throw invalid('filesystem too small for its metadata');
    if (remainder !== 0 && remainder < lastGroupOverhead + 50) {
      blocksCount -= remainder;
      const reservedRatio = (100.0 * rBlocksRequested) / requested;
      rBlocksCount = Math.floor((reservedRatio * blocksCount) / 100.0);
      continue;
    }
    const inodesCount = inodesPerGroup * groupCount;
    assert(inodesCount <= 0xffffffff, `inode count ${inodesCount} fits 32 bits`);
    const journalBlocks = options.journalBlocks ?? defaultJournalBlocks(blocksCount);
    return {
      blocksCount, blocksPerGroup, groupCount, sizeClass, inodeRatio, inodesPerGroup, inodeTableBlocks, inodesCount,
      descBlocks, reservedGdtBlocks, rBlocksCount, journalBlocks,
    };
  }
}

// ---------------------------------------------------------------------------------
// Used-block intervals

/**
 * A set of used blocks as sorted, merged, half-open intervals. Allocation mostly appends
 * near the end, so the array splices stay short.
 */
export class BlockSpace {
  readonly starts: number[] = [];
  readonly ends: number[] = [];
  constructor(readonly blocksCount: number) {}

  /** Index of the first interval whose end is past `block`. */
  private firstEndingAfter(block: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid] <= block) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  isFree(blockIndex: number, blockCount = 1): boolean {
    const i = this.firstEndingAfter(blockIndex);
    return i === this.starts.length || this.starts[i] >= blockIndex + blockCount;
  }

  /** Length of the free run starting at `blockIndex` (0 if used), bounded by the fs end. */
  freeRunAt(blockIndex: number): number {
    const i = this.firstEndingAfter(blockIndex);
    if (i < this.starts.length && this.starts[i] <= blockIndex) return 0;
    return (i < this.starts.length ? this.starts[i] : this.blocksCount) - blockIndex;
  }

  mark(blockIndex: number, blockCount: number): void {
    assert(blockCount > 0 && blockIndex + blockCount <= this.blocksCount, `mark [${blockIndex}, +${blockCount}) inside the fs`);
    assert(this.isFree(blockIndex, blockCount), `blocks [${blockIndex}, +${blockCount}) are free before marking`);
    const i = this.firstEndingAfter(blockIndex);
    const end = blockIndex + blockCount;
    const joinsLeft = i > 0 && this.ends[i - 1] === blockIndex;
    const joinsRight = i < this.starts.length && this.starts[i] === end;
    if (joinsLeft && joinsRight) {
      this.ends[i - 1] = this.ends[i];
      this.starts.splice(i, 1);
      this.ends.splice(i, 1);
    } else if (joinsLeft) this.ends[i - 1] = end;
    else if (joinsRight) this.starts[i] = blockIndex;
    else {
      this.starts.splice(i, 0, blockIndex);
      this.ends.splice(i, 0, end);
    }
  }

  /**
   * First candidate b in [start, finish) — wrapping past the fs end when finish ≤ start —
   * with [b, b + count) all free. Runs may extend past `finish`, not past the fs end.
   * (The semantics of ext2fs_get_free_blocks2, which mke2fs's table placement relies on.)
   */
  findFree(start: number, finish: number, count: number): number | null {
    const segments: [number, number][] = start < finish ? [[start, finish]] : [[start, this.blocksCount], [0, finish]];
    for (const [from, to] of segments) {
      let b = from;
      while (b < to) {
        if (b + count > this.blocksCount) break;
        const i = this.firstEndingAfter(b);
        if (i === this.starts.length || this.starts[i] >= b + count) return b;
        b = Math.max(b + 1, this.ends[i]);
      }
      if (start < finish) return null;
    }
    return null;
  }

  /** First free block at or after `goal`, wrapping to block 0 (ext2fs_new_block). */
  firstFreeFrom(goal: number): number {
    const b = this.findFree(goal, goal, 1);
    if (b === null) throw new FsError('ENOSPC', { syscall: 'mkfs', detail: 'no free block for metadata' });
    return b;
  }

  /** Used blocks inside [start, end). */
  usedIn(start: number, end: number): number {
    let used = 0;
    for (let i = this.firstEndingAfter(start); i < this.starts.length && this.starts[i] < end; i++) {
      used += Math.min(end, this.ends[i]) - Math.max(start, this.starts[i]);
    }
    return used;
  }

  /** Calls fn(start, end) for each used interval clipped to [start, end). */
  forEachUsedIn(start: number, end: number, fn: (from: number, to: number) => void): void {
    for (let i = this.firstEndingAfter(start); i < this.starts.length && this.starts[i] < end; i++) {
      fn(Math.max(start, this.starts[i]), Math.min(end, this.ends[i]));
    }
  }
}

// ---------------------------------------------------------------------------------
// Placement

export const GroupFlag = { INODE_UNINIT: 0x1, BLOCK_UNINIT: 0x2, ITABLE_ZEROED: 0x4 } as const;

export interface GroupLayout {
  /** [first, first + blocks) of this group. */
  firstBlock: number;
  blocks: number;
  /** Superblock + GDT + reserved GDT at the group start (sparse_super backup or primary). */
  hasSuper: boolean;
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  /** INODE_UNINIT / BLOCK_UNINIT (ITABLE_ZEROED is up to the writer). */
  flags: number;
  freeBlocks: number;
  freeInodes: number;
  usedDirs: number;
  itableUnused: number;
}

export interface PhysExtent {
  /** Logical block in the file. */
  lblk: number;
  /** Physical start block. */
  pblk: number;
  len: number;
}

export interface Layout {
  geometry: Geometry;
  groups: GroupLayout[];
  rootDirBlock: number;
  lostFoundBlocks: number[];
  resizeDindBlock: number;
  journalExtents: PhysExtent[];
  /** The extent leaf block when the journal needs more than 4 extents, else null. */
  journalLeafBlock: number | null;
  /** s_overhead_clusters as mke2fs 1.47 sets it: fs metadata + journal (not files). */
  overheadBlocks: number;
  freeBlocksCount: number;
  freeInodesCount: number;
  /** Every used block (bitmaps are built from it). */
  space: BlockSpace;
}

function groupFirstBlock(g: Geometry, group: number): number {
  return group * g.blocksPerGroup;
}
function groupLastBlock(g: Geometry, group: number): number {
  return Math.min(g.blocksCount, (group + 1) * g.blocksPerGroup) - 1;
}

/** Blocks of superblock + GDT + reserved GDT in a group that has a backup. */
export function superBlocksOf(g: Geometry, group: number): number {
  return groupHasSuper(group) ? 1 + g.descBlocks + g.reservedGdtBlocks : 0;
}

interface TablePlacement { blockBitmap: number; inodeBitmap: number; inodeTable: number }

/**
 * Where the search for a flex group's next table starts (mke2fs flexbg_offset): right
 * after the previous group's table of the same kind if a slot is free within the next
 * min(remaining groups × size, bpg/4) blocks; else the first free run of that size in
 * the flex's groups; else any run of one element; else anywhere.
 */
function flexSearchStart(g: Geometry, space: BlockSpace, group: number, prevBlock: number, elemBlocks: number): number {
  const flexLast = Math.min(group | (FLEX_GROUPS - 1), g.groupCount - 1);
  const runBlocks = Math.min((flexLast - group + 1) * elemBlocks, g.blocksPerGroup / 4);
  if (prevBlock !== 0 && prevBlock < g.blocksCount) {
    const near = space.findFree(prevBlock, prevBlock + runBlocks, elemBlocks);
    if (near !== null) return near;
  }
  const flexStart = groupFirstBlock(g, group & ~(FLEX_GROUPS - 1));
  const flexEnd = groupLastBlock(g, flexLast);
  return space.findFree(flexStart, flexEnd, runBlocks)
    ?? space.findFree(flexStart, flexEnd, elemBlocks)
    ?? space.findFree(0, flexEnd, elemBlocks)
    ?? flexStart;
}

/**
 * Bitmaps and inode table of one group, packed per flex group: with 16 groups per flex,
 * block bitmaps at B..B+15, inode bitmaps at B+16.., tables at B+32... In the last flex
 * the stride is its group count (1 GiB, 8 groups: 129-136 / 137-144 / 145-4240), except
 * that a last flex of one group keeps 16 (64 MiB: 9 / 25 / 41).
 */
function placeGroupTables(g: Geometry, space: BlockSpace, group: number, prev: TablePlacement | null): TablePlacement {
  const flexLast = Math.min(group | (FLEX_GROUPS - 1), g.groupCount - 1);
  const finish = groupLastBlock(g, flexLast);
  const firstOfFlex = group % FLEX_GROUPS === 0;
  let stride = FLEX_GROUPS;
  if (firstOfFlex && flexLast === g.groupCount - 1 && (flexLast & (FLEX_GROUPS - 1)) !== 0) {
    stride = (flexLast & (FLEX_GROUPS - 1)) + 1;
  }
  const allocate = (start: number, count: number, fallback: boolean): number => {
    const b = space.findFree(start, finish, count) ?? (fallback ? space.findFree(groupFirstBlock(g, group), finish, count) : null);
    if (b === null) throw new FsError('ENOSPC', { syscall: 'mkfs', detail: `no room for group ${group}'s tables` });
    space.mark(b, count);
    return b;
  };
  const bbStart = flexSearchStart(g, space, group, firstOfFlex || prev === null ? 0 : prev.blockBitmap + 1, 1);
  const blockBitmap = allocate(bbStart, 1, true);
  const ibPrev = firstOfFlex || prev === null ? blockBitmap + stride : prev.inodeBitmap + 1;
  const inodeBitmap = allocate(flexSearchStart(g, space, group, ibPrev, 1), 1, true);
  const itPrev = firstOfFlex || prev === null ? inodeBitmap + stride : prev.inodeTable + g.inodeTableBlocks;
  const inodeTable = allocate(flexSearchStart(g, space, group, itPrev, g.inodeTableBlocks), g.inodeTableBlocks, false);
  return { blockBitmap, inodeBitmap, inodeTable };
}

/**
 * The journal's goal (mke2fs get_midpoint_journal_block): the first block of the group
 * with the most free blocks among the middle group and its neighbour(s). Past the first
 * flex, the middle group is rounded down to its flex start and only it and the next group
 * compete (8 GiB: group 32 holds flex tables, so group 33 wins).
 */
export function journalGoalBlock(g: Geometry, freeInGroup: (group: number) => number): number {
  let group = Math.floor(Math.floor(g.blocksCount / 2) / g.blocksPerGroup);
  let start: number;
  if (group > FLEX_GROUPS) {
    group &= ~(FLEX_GROUPS - 1);
    while (group < g.groupCount && freeInGroup(group) === 0) group++;
    if (group === g.groupCount) group = 0;
    start = group;
  } else {
    start = group > 0 ? group - 1 : group;
  }
  const end = group + 1 < g.groupCount ? group + 1 : group;
  let best = start;
  for (let i = start + 1; i <= end; i++) if (freeInGroup(i) > freeInGroup(best)) best = i;
  return groupFirstBlock(g, best);
}

/** First-fit from the goal, wrapping; each extent at most 32768 blocks. */
function placeJournal(space: BlockSpace, goal: number, journalBlocks: number): PhysExtent[] {
  const extents: PhysExtent[] = [];
  let cursor = goal;
  let lblk = 0;
  while (lblk < journalBlocks) {
    const pblk = space.firstFreeFrom(cursor);
    const len = Math.min(space.freeRunAt(pblk), journalBlocks - lblk, EXTENT_BLOCKS_MAX);
    space.mark(pblk, len);
    extents.push({ lblk, pblk, len });
    lblk += len;
    cursor = pblk + len < space.blocksCount ? pblk + len : 0;
  }
  return extents;
}

/** Resize inode's DIND goal (res_gdt.c): past where group 0's GDT, reserve and first table end. */
function resizeDindGoal(g: Geometry): number {
  return g.descBlocks + g.reservedGdtBlocks + 2 + g.inodeTableBlocks;
}

function checkJournalBlocks(g: Geometry, freeBlocks: number): void {
  const n = g.journalBlocks;
  if (n === defaultJournalBlocks(g.blocksCount)) return; // mke2fs checks only sizes asked for
  if (!Number.isInteger(n) || n < JOURNAL_BLOCKS_MIN || n > JOURNAL_BLOCKS_MAX) {
    throw invalid(`journal of ${n} blocks out of range [${JOURNAL_BLOCKS_MIN}, ${JOURNAL_BLOCKS_MAX}]`);
  }
  if (n > Math.floor(freeBlocks / 2)) throw invalid(`journal of ${n} blocks is more than half the ${freeBlocks} free blocks`);
}

/** Places every piece of metadata for a geometry, as mke2fs would. */
export function planLayout(g: Geometry): Layout {
  const space = new BlockSpace(g.blocksCount);
  for (let group = 0; group < g.groupCount; group++) {
    const superBlocks = superBlocksOf(g, group);
    if (superBlocks > 0) space.mark(groupFirstBlock(g, group), superBlocks);
  }
  const tables: TablePlacement[] = [];
  for (let group = 0; group < g.groupCount; group++) {
    tables.push(placeGroupTables(g, space, group, group > 0 ? tables[group - 1] : null));
  }
  const take = (goal: number): number => {
    const b = space.firstFreeFrom(goal);
    space.mark(b, 1);
    return b;
  };
  // Root, then lost+found: their goal is the first block of inode 2's / 11's flex group (0).
  const rootDirBlock = take(0);
  const lostFoundBlocks = [take(0)];
  while (lostFoundBlocks.length < LOST_FOUND_BLOCKS) lostFoundBlocks.push(take(lostFoundBlocks[lostFoundBlocks.length - 1]));
  const resizeDindBlock = take(resizeDindGoal(g));
  const groupBlocks = (group: number): number => groupLastBlock(g, group) + 1 - groupFirstBlock(g, group);
  const freeInGroup = (group: number): number => groupBlocks(group) - space.usedIn(groupFirstBlock(g, group), groupLastBlock(g, group) + 1);
  checkJournalBlocks(g, g.blocksCount - space.usedIn(0, g.blocksCount));
  const journalExtents = placeJournal(space, journalGoalBlock(g, freeInGroup), g.journalBlocks);
  // mke2fs puts a new extent leaf just before the first extent when that block is free.
  const journalLeafBlock = journalExtents.length > ROOT_EXTENTS_MAX ? take(Math.max(0, journalExtents[0].pblk - 1)) : null;
  const groups = g.groupCount;
  const layout: GroupLayout[] = [];
  let freeBlocksCount = 0;
  for (let group = 0; group < groups; group++) {
    const freeBlocks = freeInGroup(group);
    const onlySuper = groupBlocks(group) - freeBlocks === superBlocksOf(g, group);
    const reservedInodes = group === 0 ? FIRST_INO : 0; // inodes 1..11 (lost+found is 11)
    let flags = 0;
    if (group !== 0) flags |= GroupFlag.INODE_UNINIT;
    if (group !== groups - 1 && onlySuper) flags |= GroupFlag.BLOCK_UNINIT;
    layout.push({
      firstBlock: groupFirstBlock(g, group), blocks: groupBlocks(group), hasSuper: groupHasSuper(group), ...tables[group],
      flags, freeBlocks, freeInodes: g.inodesPerGroup - reservedInodes, usedDirs: group === 0 ? 2 : 0,
      itableUnused: g.inodesPerGroup - reservedInodes,
    });
    freeBlocksCount += freeBlocks;
  }
  let superBlocksTotal = 0;
  for (let group = 0; group < groups; group++) superBlocksTotal += superBlocksOf(g, group);
  return {
    geometry: g, groups: layout, rootDirBlock, lostFoundBlocks, resizeDindBlock, journalExtents, journalLeafBlock,
    overheadBlocks: superBlocksTotal + groups * (2 + g.inodeTableBlocks) + g.journalBlocks,
    freeBlocksCount, freeInodesCount: g.inodesCount - FIRST_INO, space,
  };
}

/** Groups whose block bitmap mke2fs writes (not BLOCK_UNINIT). */
export function blockBitmapIsWritten(group: GroupLayout): boolean {
  return (group.flags & GroupFlag.BLOCK_UNINIT) === 0;
}

/**
 * The block bitmap of one group: a bit per used block, and bits past the fs end (last
 * group) through the end of the bitmap block set, as e2fsck requires.
 */
export function buildBlockBitmap(layout: Layout, group: number, target: Uint8Array): void {
  assert(target.length === BLOCK_SIZE_BYTES, 'bitmap buffer is one block');
  target.fill(0);
  const gl = layout.groups[group];
  const setRange = (from: number, to: number): void => {
    let bit = from;
    while (bit < to && (bit & 7) !== 0) { target[bit >>> 3] |= 1 << (bit & 7); bit++; }
    const wholeEnd = to & ~7;
    if (bit < wholeEnd) { target.fill(0xff, bit >>> 3, wholeEnd >>> 3); bit = wholeEnd; }
    while (bit < to) { target[bit >>> 3] |= 1 << (bit & 7); bit++; }
  };
  layout.space.forEachUsedIn(gl.firstBlock, gl.firstBlock + gl.blocks, (from, to) => setRange(from - gl.firstBlock, to - gl.firstBlock));
  setRange(gl.blocks, BLOCK_SIZE_BYTES * 8);
}

/** The inode bitmap of group 0 (the only one written): inodes 1..11 used, padding set. */
export function buildInodeBitmap(layout: Layout, group: number, target: Uint8Array): void {
  assert(target.length === BLOCK_SIZE_BYTES, 'bitmap buffer is one block');
  const ipg = layout.geometry.inodesPerGroup;
  const usedInodes = ipg - layout.groups[group].freeInodes;
  target.fill(0);
  for (let bit = 0; bit < usedInodes; bit++) target[bit >>> 3] |= 1 << (bit & 7);
  // ipg is a multiple of 8, so the padding starts on a byte boundary.
  target.fill(0xff, ipg >>> 3);
}
