/**
 * ext4/balloc: the block allocator (write-api.ts BlockAllocator) over the on-disk block
 * bitmaps, one bitmap block per group (ext4-format.md §3, §4, §8).
 *
 * Search order for allocate({ goal, count, minCount }):
 *   1. a free run of `count` in the goal's group, from the goal bit to the group end,
 *      then from the group start (the bitmap-run search);
 *   2. the same in every other group, in order from the goal's group (wrapping), skipping
 *      groups whose descriptor says they have fewer than `count` free blocks;
 *   3. the longest free run ≥ minCount anywhere (goal's group first on ties).
 * Ranges are half-open; bit i of group g is block firstDataBlock + g·bpg + i.
 *
 * ## The reuse rule (jbd2/journal.ts header)
 * A block freed under a handle may still be named by metadata that a crash would replay
 * (the old extent tree, the old bitmap), so it must not be handed out again until the
 * transaction that freed it has committed. Freed runs are parked per handle until its
 * transaction commits (JournalHandle.onCommitted, like ext4's journal callbacks);
 * searches OR the parked runs into a scratch copy of the bitmap. Parked runs still count
 * as free in the descriptors (they are free on disk); freeBlocks() subtracts them so
 * callers can tell "full" from "full until the next commit".
 *
 * ## BLOCK_UNINIT
 * Such a group's bitmap is not on disk: it is computed (its own sb backup + GDT +
 * reserved GDT, and its own bitmaps and inode table where they lie inside it). The first
 * allocation writes that bitmap (getCreateAccess, never read), clears the flag and
 * stores the checksum. The computed free count must match the descriptor's, else the
 * image is corrupt.
 *
 * Cost of one allocate: ≤ 1 bitmap read per group examined (cached; 4 KiB each), a
 * bit scan of ≤ bpg bits per group examined, 3 dirtied blocks (bitmap, GDT, superblock).
 * free: 3 dirtied blocks per group touched (the superblock once). The GDT block and
 * the superblock are encoded, and the bitmap checksummed, once per transaction at its
 * commit (mount.writeGroup/writeSuperblock), however many allocations it holds. The
 * run right at the goal is tried bit by bit first; allocateBlocksNow takes exactly it
 * with no promise when its bitmap is in the journal (buffer_head writeback, per block).
 */
import { assert } from '../assert.js';
import { testBit } from '../format/bitmap.js';
import { Compat, Incompat } from '../format/superblock.js';
import { GroupFlags } from '../format/group-desc.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { FsError, corrupted } from '../vfs/errors.js';
import { twins } from '../wasm/twins.js';
import { bitmapCountSet, bitmapFindFirstSet, bitmapFindZeroRun } from '../wasm/bitmap-search.js';
import type { Ext4Mount } from './mount.js';
import { groupFlags, groupHasSuper, type Ext4Super } from './super.js';
import type { BlockAllocator, BlockAllocRequest, BlockRun } from './write-api.js';

/** Blocks freed under one transaction, waiting for it to commit. */
interface ParkedRuns {
  runs: BlockRun[];
}

/** Per-mount allocator state: the parked runs and two running sums (everything else lives on disk). */
interface MountState {
  parked: ParkedRuns[];
  /** Blocks in `parked` (kept as a sum: freeBlocks() is asked at every allocation and delalloc reservation). */
  parkedBlocks: number;
  /**
   * Σ descriptors' free counts, or -1 until first asked. Only this allocator changes
   * those counts once mounted (allocate, free), so it keeps the sum as it goes instead
   * of adding up every group at every allocation (thousands of groups on a large image).
   */
  groupFreeBlocks: number;
  /** Each handle's parked entry (until its transaction commits). */
  byHandle: WeakMap<object, ParkedRuns>;
  /**
   * Allocations run one at a time: the search awaits bitmap reads, and two searches
   * interleaved there would pick the same free run (two files allocating at once).
   */
  allocating: Promise<unknown>;
  /** Allocations queued on `allocating` and not finished: allocateBlocksNow runs only when none is. */
  inFlight: number;
  /** Blocks delalloc holds reserved (ext4/delalloc.ts registers it): other allocations leave them. */
  delallocReserved: () => number;
}

const states = new WeakMap<Ext4Mount, MountState>();

function stateOf(mount: Ext4Mount): MountState {
  let state = states.get(mount);
  if (state === undefined) {
    state = { parked: [], parkedBlocks: 0, groupFreeBlocks: -1, byHandle: new WeakMap(), allocating: Promise.resolve(), inFlight: 0, delallocReserved: () => 0 };
    states.set(mount, state);
  }
  return state;
}


/** Blocks parked (freed, not yet reusable) inside [start, end). */
function parkedRunsIn(state: MountState, start: number, end: number): BlockRun[] {
  const out: BlockRun[] = [];
  if (state.parkedBlocks === 0) return out;
  for (const p of state.parked) {
    for (const r of p.runs) {
      const s = Math.max(r.start, start), e = Math.min(r.start + r.count, end);
      if (s < e) out.push({ start: s, count: e - s });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Geometry

/** [first, end) blocks of a group. */
export function groupBlockRange(ext4: Ext4Super, group: number): { first: number; end: number } {
  const first = ext4.sb.firstDataBlock + group * ext4.sb.blocksPerGroup;
  return { first, end: Math.min(ext4.blocksCount, first + ext4.sb.blocksPerGroup) };
}

export function groupOfBlock(ext4: Ext4Super, block: number): number {
  return Math.floor((block - ext4.sb.firstDataBlock) / ext4.sb.blocksPerGroup);
}

/** Blocks of sb + GDT + reserved GDT at the start of a group with a backup (not meta_bg). */
function superBlocksIn(ext4: Ext4Super, group: number): number {
  if (!groupHasSuper(ext4.sb, group)) return 0;
  const gdtBlocks = Math.ceil((ext4.groupCount * ext4.descSizeBytes) / ext4.blockSizeBytes);
  const reserved = (ext4.sb.featureCompat & Compat.RESIZE_INODE) !== 0 ? ext4.sb.reservedGdtBlocks : 0;
  return 1 + gdtBlocks + reserved;
}

/**
 * The computed bitmap of a BLOCK_UNINIT group (ext4-format.md §3 UNINIT semantics):
 * its own superblock area and its own bitmaps/table where they lie inside it, padding
 * bits past the group's end. Throws EUCLEAN if the count disagrees with the descriptor.
 */
export function computeUninitBlockBitmap(ext4: Ext4Super, group: number): Uint8Array {
  if ((ext4.sb.featureIncompat & Incompat.META_BG) !== 0) {
    throw new FsError('ENOTSUP', { syscall: 'write', detail: 'BLOCK_UNINIT groups under meta_bg' });
  }
  const bitmap = new Uint8Array(ext4.blockSizeBytes);
  const { first, end } = groupBlockRange(ext4, group);
  const bits = end - first;
  twins.bitmapSetRange(bitmap, 0, 0, superBlocksIn(ext4, group));
  const gd = ext4.groups[group];
  const own = (start: number, count: number): void => {
    const s = Math.max(start, first), e = Math.min(start + count, end);
    if (s < e) twins.bitmapSetRange(bitmap, 0, s - first, e - first);
  };
  own(gd.blockBitmap, 1);
  own(gd.inodeBitmap, 1);
  own(gd.inodeTable, ext4.inodeTableBlocks);
  twins.bitmapSetRange(bitmap, 0, bits, ext4.blockSizeBytes * 8);
  const free = bits - bitmapCountSet(bitmap, 0, bits);
  if (free !== gd.freeBlocksCount) {
    throw corrupted(`BLOCK_UNINIT group ${group}: computed ${free} free blocks, descriptor says ${gd.freeBlocksCount}`);
  }
  return bitmap;
}

/** The bitmap as it stands (read-only view): computed for BLOCK_UNINIT, else via the cache/journal. */
async function readBitmap(ext4: Ext4Super, group: number): Promise<Uint8Array> {
  if ((groupFlags(ext4, group) & GroupFlags.BLOCK_UNINIT) !== 0) return computeUninitBlockBitmap(ext4, group);
  return ext4.cache.read(ext4.groups[group].blockBitmap, `block bitmap of group ${group}`);
}

/** Write access to a group's bitmap, materialising a BLOCK_UNINIT one (flag cleared by the caller's writeGroup). */
async function bitmapForWrite(mount: Ext4Mount, h: JournalHandle, group: number): Promise<Uint8Array> {
  const { ext4 } = mount;
  const gd = ext4.groups[group];
  if ((groupFlags(ext4, group) & GroupFlags.BLOCK_UNINIT) === 0) return h.getWriteAccess(gd.blockBitmap);
  const computed = computeUninitBlockBitmap(ext4, group);
  const bytes = h.getCreateAccess(gd.blockBitmap);
  bytes.set(computed);
  gd.flags &= ~GroupFlags.BLOCK_UNINIT;
  return bytes;
}

/** Dirty the bitmap and write the descriptor; the bitmap's checksum goes into it at commit (mount.writeGroup). */
async function commitBitmap(mount: Ext4Mount, h: JournalHandle, group: number): Promise<void> {
  h.dirtyMetadata(mount.ext4.groups[group].blockBitmap);
  await mount.writeGroup(h, group, { blockBitmapChanged: true });
}

// ---------------------------------------------------------------------------------
// Searching

/** The longest zero run in bits [0, bitCount), capped at `cap`: { start, length } (length 0 if none). */
export function longestZeroRun(bitmap: Uint8Array, bitCount: number, cap: number): { start: number; length: number } {
  let best = { start: 0, length: 0 };
  let runStart = -1;
  let bit = 0;
  while (bit < bitCount) {
    const byte = bitmap[bit >>> 3];
    if ((bit & 7) === 0 && bitCount - bit >= 8 && (byte === 0xff || byte === 0x00)) {
      if (byte === 0xff) {
        if (runStart >= 0 && bit - runStart > best.length) best = { start: runStart, length: bit - runStart };
        runStart = -1;
      } else if (runStart < 0) runStart = bit;
      bit += 8;
    } else {
      if ((byte & (1 << (bit & 7))) !== 0) {
        if (runStart >= 0 && bit - runStart > best.length) best = { start: runStart, length: bit - runStart };
        runStart = -1;
      } else if (runStart < 0) runStart = bit;
      bit++;
    }
    if (best.length >= cap) return { start: best.start, length: cap };
  }
  if (runStart >= 0 && bitCount - runStart > best.length) best = { start: runStart, length: bitCount - runStart };
  return { start: best.start, length: Math.min(best.length, cap) };
}

/** The bitmap to search: the on-disk one with parked (not yet reusable) blocks marked used. */
async function searchBitmap(mount: Ext4Mount, state: MountState, group: number): Promise<Uint8Array> {
  const bitmap = await readBitmap(mount.ext4, group);
  const { first, end } = groupBlockRange(mount.ext4, group);
  const parked = parkedRunsIn(state, first, end);
  if (parked.length === 0) return bitmap;
  const copy = bitmap.slice();
  for (const r of parked) twins.bitmapSetRange(copy, 0, r.start - first, r.start - first + r.count);
  return copy;
}

/** Runs this short are checked bit by bit in TypeScript; longer ones in the WASM kernel (which copies the bitmap in). */
const SHORT_RUN_BITS_MAX = 256;

/** First set bit of the bitmap in [startBit, endBit), or -1. */
function firstSetBit(bitmap: Uint8Array, startBit: number, endBit: number): number {
  return endBit - startBit <= SHORT_RUN_BITS_MAX ? twins.bitmapFindFirstSet(bitmap, 0, startBit, endBit) : bitmapFindFirstSet(bitmap, startBit, endBit);
}

async function findRun(mount: Ext4Mount, state: MountState, goal: number, count: number, minCount: number): Promise<BlockRun | undefined> {
  const { ext4 } = mount;
  const clampedGoal = Math.min(Math.max(goal, ext4.sb.firstDataBlock), ext4.blocksCount - 1);
  const goalGroup = groupOfBlock(ext4, clampedGoal);
  // Groups in search order: the goal's group, then the following ones, wrapping.
  for (let i = 0; i < ext4.groupCount; i++) {
    const group = (goalGroup + i) % ext4.groupCount;
    if (ext4.groups[group].freeBlocksCount < count) continue;
    const { first, end } = groupBlockRange(ext4, group);
    const bitmap = await searchBitmap(mount, state, group);
    const goalBit = group === goalGroup ? clampedGoal - first : 0;
    // The goal itself first (mballoc's find-by-goal): a file written in order asks for
    // the block after its last one, usually free; a short run needs no search.
    if (goalBit + count <= end - first && count <= SHORT_RUN_BITS_MAX && firstSetBit(bitmap, goalBit, goalBit + count) < 0) {
      return { start: first + goalBit, count };
    }
    const at = bitmapFindZeroRun(bitmap, end - first, goalBit, count);
    if (at >= 0) return { start: first + at, count };
  }
  let best: BlockRun | undefined;
  for (let i = 0; i < ext4.groupCount; i++) {
    const group = (goalGroup + i) % ext4.groupCount;
    const free = ext4.groups[group].freeBlocksCount;
    if (free < minCount || free <= (best?.count ?? 0)) continue;
    const { first, end } = groupBlockRange(ext4, group);
    const run = longestZeroRun(await searchBitmap(mount, state, group), end - first, count);
    if (run.length >= minCount && run.length > (best?.count ?? 0)) best = { start: first + run.start, count: run.length };
  }
  return best;
}

// ---------------------------------------------------------------------------------
// The allocator

/** Tell the allocator how many blocks delayed allocation holds on this mount (delalloc.ts). */
export function setDelallocReservedSource(mount: Ext4Mount, reserved: () => number): void {
  stateOf(mount).delallocReserved = reserved;
}

/** Σ descriptors' free counts (computed once per mount, then kept by allocate and free). */
function groupFreeBlocks(mount: Ext4Mount, state: MountState): number {
  if (state.groupFreeBlocks < 0) {
    let free = 0;
    for (const gd of mount.ext4.groups) free += gd.freeBlocksCount;
    state.groupFreeBlocks = free;
  }
  return state.groupFreeBlocks;
}

function freeBlocksOf(mount: Ext4Mount, useReserved: boolean): number {
  const state = stateOf(mount);
  let free = groupFreeBlocks(mount, state) - state.parkedBlocks;
  if (!useReserved) free -= mount.ext4.sb.rBlocksCount;
  return Math.max(0, free);
}

function allocate(mount: Ext4Mount, h: JournalHandle, request: BlockAllocRequest): Promise<BlockRun> {
  const state = stateOf(mount);
  state.inFlight++;
  const run = state.allocating.then(() => allocateAlone(mount, h, request)).finally(() => { state.inFlight--; });
  state.allocating = run.catch(() => undefined);
  return run;
}

/**
 * allocate() without a promise, for the case buffer_head writeback meets at nearly every
 * block: exactly [goal, goal + count) — the blocks right after the file's last ones —
 * with the bitmap, the GDT block and the superblock already in the journal. Undefined,
 * with nothing changed, unless: no allocation is in flight (this runs whole, so it
 * cannot interleave with a search), the space is there for this caller, the run lies
 * in one group that is not BLOCK_UNINIT, is free and not parked, and every block to
 * dirty can be written without a read. The caller then uses allocate().
 */
export function allocateBlocksNow(mount: Ext4Mount, h: JournalHandle, request: BlockAllocRequest): BlockRun | undefined {
  const state = stateOf(mount);
  if (state.inFlight > 0) return undefined;
  const { ext4 } = mount;
  const { goal: start, count } = request;
  if (!(Number.isInteger(count) && count >= 1)) assert(false, `allocate count ${count}`);
  const held = request.fromDelallocReservation === true ? 0 : state.delallocReserved();
  if (freeBlocksOf(mount, request.useReserved === true) - held < count) return undefined;
  if (!Number.isSafeInteger(start) || start < ext4.sb.firstDataBlock || start + count > ext4.blocksCount) return undefined;
  const group = groupOfBlock(ext4, start);
  const gd = ext4.groups[group];
  const { first, end } = groupBlockRange(ext4, group);
  if (start + count > end || gd.freeBlocksCount < count || (groupFlags(ext4, group) & GroupFlags.BLOCK_UNINIT) !== 0) return undefined;
  if (parkedRunsIn(state, start, start + count).length > 0) return undefined;
  const bitmap = h.getWriteAccessNow(gd.blockBitmap);
  if (bitmap === undefined || firstSetBit(bitmap, start - first, start - first + count) >= 0) return undefined;
  // The descriptor last: once it is told the bitmap changed, the change must happen.
  if (!mount.writeSuperblockNow(h) || !mount.writeGroupNow(h, group, { blockBitmapChanged: true })) return undefined;
  twins.bitmapSetRange(bitmap, 0, start - first, start - first + count);
  h.dirtyMetadata(gd.blockBitmap);
  gd.freeBlocksCount -= count;
  state.groupFreeBlocks -= count; // freeBlocksOf above made it a number
  return { start, count };
}

async function allocateAlone(mount: Ext4Mount, h: JournalHandle, request: BlockAllocRequest): Promise<BlockRun> {
  const { ext4 } = mount;
  const minCount = request.minCount ?? 1;
  // (Messages built only on failure: this runs for every block buffer_head writeback allocates.)
  if (!(Number.isInteger(request.count) && request.count >= 1)) assert(false, `allocate count ${request.count}`);
  if (!(minCount >= 1 && minCount <= request.count)) assert(false, `allocate minCount ${minCount} outside [1, ${request.count}]`);
  const state = stateOf(mount);
  const held = request.fromDelallocReservation === true ? 0 : state.delallocReserved();
  const available = Math.max(0, freeBlocksOf(mount, request.useReserved === true) - held);
  if (available < minCount) throw enospc(available, held, minCount);
  const want = Math.min(request.count, available);
  const run = await findRun(mount, state, request.goal, want, minCount);
  if (run === undefined) throw enospc(available, held, minCount);
  const group = groupOfBlock(ext4, run.start);
  const first = groupBlockRange(ext4, group).first;
  assert(groupOfBlock(ext4, run.start + run.count - 1) === group, 'a run stays inside one group');
  const bitmap = await bitmapForWrite(mount, h, group);
  if (firstSetBit(bitmap, run.start - first, run.start - first + run.count) >= 0) assert(false, `run ${run.start}+${run.count} is free`);
  twins.bitmapSetRange(bitmap, 0, run.start - first, run.start - first + run.count);
  ext4.groups[group].freeBlocksCount -= run.count;
  state.groupFreeBlocks -= run.count; // freeBlocksOf above made it a number
  await commitBitmap(mount, h, group);
  await mount.writeSuperblock(h);
  return run;
}

function enospc(available: number, held: number, minCount: number): FsError {
  return new FsError('ENOSPC', {
    syscall: 'write', detail: `${available} blocks available (${held} held for delayed allocation), ${minCount} needed`,
  });
}

/** Blocks no one may free: below the first data block, past the end. */
function checkFreeRun(ext4: Ext4Super, run: BlockRun): void {
  if (!Number.isSafeInteger(run.start) || !Number.isInteger(run.count) || run.count < 1
    || run.start < ext4.sb.firstDataBlock || run.start + run.count > ext4.blocksCount) {
    throw corrupted(`free of blocks [${run.start}, ${run.start + run.count}) outside the filesystem`);
  }
}

async function free(mount: Ext4Mount, h: JournalHandle, run: BlockRun): Promise<void> {
  const { ext4 } = mount;
  checkFreeRun(ext4, run);
  const state = stateOf(mount);
  groupFreeBlocks(mount, state); // the sum as it stands, before this free changes descriptors
  let start = run.start;
  const end = run.start + run.count;
  while (start < end) {
    const group = groupOfBlock(ext4, start);
    const range = groupBlockRange(ext4, group);
    const stop = Math.min(end, range.end);
    if ((groupFlags(ext4, group) & GroupFlags.BLOCK_UNINIT) !== 0) {
      throw corrupted(`free of blocks [${start}, ${stop}) in BLOCK_UNINIT group ${group}`);
    }
    const bitmap = await h.getWriteAccess(ext4.groups[group].blockBitmap);
    const used = bitmapCountSet(bitmap, start - range.first, stop - range.first);
    if (used !== stop - start) throw corrupted(`free of blocks [${start}, ${stop}): ${stop - start - used} already free`);
    twins.bitmapClearRange(bitmap, 0, start - range.first, stop - range.first);
    ext4.groups[group].freeBlocksCount += stop - start;
    state.groupFreeBlocks += stop - start;
    await commitBitmap(mount, h, group);
    start = stop;
  }
  await mount.writeSuperblock(h);
  park(mount, h, run);
}

/**
 * Park a freed run until the handle's transaction commits (h.onCommitted): reusing it
 * earlier could let a crash replay old metadata over the block's new contents. One
 * entry per handle.
 */
function park(mount: Ext4Mount, h: JournalHandle, run: BlockRun): void {
  const state = stateOf(mount);
  const key: object = h;
  let entry = state.byHandle.get(key);
  if (entry === undefined) {
    const fresh: ParkedRuns = { runs: [] };
    entry = fresh;
    state.byHandle.set(key, fresh);
    state.parked.push(fresh);
    h.onCommitted(() => {
      state.parked = state.parked.filter((p) => p !== fresh);
      state.byHandle.delete(key);
      for (const r of fresh.runs) state.parkedBlocks -= r.count;
    });
  }
  entry.runs.push({ ...run });
  state.parkedBlocks += run.count;
}

/** Whether `block` is currently parked (freed by an uncommitted transaction). For tests. */
export function isParked(mount: Ext4Mount, block: number): boolean {
  return parkedRunsIn(stateOf(mount), block, block + 1).length > 0;
}

/** Whether `block` is set in its group's bitmap as the allocator sees it. For tests. */
export async function isBlockInUse(mount: Ext4Mount, block: number): Promise<boolean> {
  const group = groupOfBlock(mount.ext4, block);
  const bitmap = await readBitmap(mount.ext4, group);
  return testBit(bitmap, block - groupBlockRange(mount.ext4, group).first);
}

/** The ext4ts block allocator (state per mount: parked runs). */
export const blockAllocator: BlockAllocator = {
  allocate,
  free,
  freeBlocks: freeBlocksOf,
};
