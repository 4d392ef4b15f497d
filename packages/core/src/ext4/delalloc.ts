/**
 * ext4/delalloc: free-space accounting for delayed allocation (seed-series.md §1.3).
 * A buffered write reserves space for the blocks it makes DELAYED, so that writeback —
 * which allocates them much later, where an error can only lose data — never runs out:
 *
 *   write     reserve(n)   mount.reservedBlocks += n, inode.reservedDataBlocks += n
 *   writeback consume(n)   the blocks are allocated: the bitmaps now count them, so the
 *                          reservation is dropped (−n on both)
 *   truncate, punch,       release(n)  the delayed blocks are gone unwritten (−n on both)
 *   short write
 *
 * Invariants: an inode's reservedDataBlocks = the DELAYED blocks in its ES tree (no
 * bigalloc: one block per cluster); the mount's reservedBlocks = the sum over its inodes
 * (map_blocks.ts checkReservations).
 *
 * reserve(n) succeeds iff free − reserved − margin ≥ n, where free is what the allocator
 * can hand a data block (bitmaps' free count, minus the root reserve, minus blocks freed
 * by a transaction not yet committed) and margin is kept back for the extent-tree blocks
 * writeback's allocations may need (the kernel's s_resv_clusters: 2% of the filesystem,
 * at most 4096 blocks). On failure it forces a commit — parked freed blocks become
 * reusable — and tries once more (ext4_should_retry_alloc), then throws ENOSPC.
 *
 * The "nonda switch" (ext4_nonda_switch): when free space is low compared with what is
 * reserved, writes stop reserving and allocate at once (the non-delalloc iomap ops), so
 * the last blocks of a filesystem go to the writes that can really use them.
 *
 * Cost: O(1) counter updates (no promise when the space is there: delallocReserveNow);
 * a failed reserve costs one journal commit.
 */
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import { blockAllocator, setDelallocReservedSource } from './balloc.js';
import type { Ext4Mount } from './mount.js';
import type { Ext4InodeState } from './map_blocks.js';

/** The metadata margin is 2% of the filesystem … */
const MARGIN_PERCENT = 2;
/** … but at most this many blocks (ext4_calculate_resv_clusters caps at 4096 clusters). */
export const DELALLOC_MARGIN_BLOCKS_MAX = 4096;
/** Below this many free blocks above the margin (or 1/64 of the fs, if smaller) writes go non-delalloc. */
export const NONDA_FREE_BLOCKS_WATERMARK = 1024;
const NONDA_WATERMARK_FRACTION = 64;

// The watermark is a positive number of blocks (else the switch could never flip before ENOSPC).
assert(NONDA_FREE_BLOCKS_WATERMARK >= 1 && NONDA_WATERMARK_FRACTION >= 1, 'the nonda watermark is positive');

/** Per-mount delalloc state: the dirty (reserved, unallocated) block count. */
export interface DelallocAccount {
  reservedBlocks: number;
}

const accounts = new WeakMap<Ext4Mount, DelallocAccount>();

export function delallocAccount(mount: Ext4Mount): DelallocAccount {
  let account = accounts.get(mount);
  if (account === undefined) {
    const created: DelallocAccount = { reservedBlocks: 0 };
    account = created;
    accounts.set(mount, account);
    setDelallocReservedSource(mount, () => created.reservedBlocks);
  }
  return account;
}

/** Blocks kept back from reservations for extent-tree growth at writeback. */
export function delallocMarginBlocks(mount: Ext4Mount): number {
  return Math.min(DELALLOC_MARGIN_BLOCKS_MAX, Math.ceil((mount.ext4.blocksCount * MARGIN_PERCENT) / 100));
}

/** Blocks a reservation may still take now: free − reserved − margin (may be negative). */
export function delallocAvailable(mount: Ext4Mount): number {
  return blockAllocator.freeBlocks(mount, false) - delallocAccount(mount).reservedBlocks - delallocMarginBlocks(mount);
}

/**
 * Reserve `count` blocks for an inode's new delayed range. ENOSPC (after one forced
 * commit) when they are not there. The caller inserts the DELAYED range right after,
 * without an await between (or releases on failure).
 */
export async function delallocReserve(state: Ext4InodeState, count: number): Promise<void> {
  if (delallocReserveNow(state, count)) return;
  const { mount } = state;
  if (mount.journal !== undefined) await mount.sync();
  const available = delallocAvailable(mount);
  if (available < count) {
    throw new FsError('ENOSPC', { syscall: 'write', detail: `${Math.max(0, available)} blocks can be reserved, ${count} wanted` });
  }
  delallocAccount(mount).reservedBlocks += count;
  state.reservedDataBlocks += count;
}

/** delallocReserve when the blocks are there now (no commit needed): true = reserved; false = nothing done. */
export function delallocReserveNow(state: Ext4InodeState, count: number): boolean {
  if (!(Number.isInteger(count) && count >= 1)) assert(false, `reserve count ${count} is positive`);
  if (delallocAvailable(state.mount) < count) return false;
  delallocAccount(state.mount).reservedBlocks += count;
  state.reservedDataBlocks += count;
  return true;
}

/** Drop the reservation of `count` delayed blocks that will never be written (truncate, punch, short write). */
export function delallocRelease(state: Ext4InodeState, count: number): void {
  dropReservation(state, count, 'release');
}

/** Writeback allocated `count` delayed blocks: the bitmaps count them now, the reservation goes. */
export function delallocConsume(state: Ext4InodeState, count: number): void {
  dropReservation(state, count, 'consume');
}

function dropReservation(state: Ext4InodeState, count: number, what: string): void {
  const account = delallocAccount(state.mount);
  // (Messages built only on failure: called for every delayed block written back.)
  if (!(Number.isInteger(count) && count >= 1)) assert(false, `${what} count ${count} is positive`);
  if (count > state.reservedDataBlocks) assert(false, `inode ${state.ino}: ${what} ${count} > ${state.reservedDataBlocks} reserved`);
  if (count > account.reservedBlocks) assert(false, `${what} ${count} > mount's ${account.reservedBlocks} reserved`);
  state.reservedDataBlocks -= count;
  account.reservedBlocks -= count;
}

/**
 * Whether writes should bypass delalloc now: free space is under margin + watermark, or
 * under 1.5× what is already reserved (allocating at once then beats promising space
 * that writeback may not find).
 */
export function nondaSwitch(mount: Ext4Mount): boolean {
  const free = blockAllocator.freeBlocks(mount, false);
  const reserved = delallocAccount(mount).reservedBlocks;
  const watermark = Math.min(NONDA_FREE_BLOCKS_WATERMARK, Math.ceil(mount.ext4.blocksCount / NONDA_WATERMARK_FRACTION));
  // Measured above the margin, so the switch flips before reservations start to fail.
  return free < delallocMarginBlocks(mount) + watermark || 2 * free < 3 * reserved;
}
