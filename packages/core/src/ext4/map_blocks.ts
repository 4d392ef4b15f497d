/**
 * ext4/map_blocks: "what is at logical block lblk, for how long?" for one inode — the
 * question every buffered I/O path asks (seed-series.md §1.2). The extent status (ES)
 * tree answers first; on a miss the on-disk extent tree is walked and its answer cached;
 * with CREATE, blocks are allocated through the extent writer in a short journal handle
 * and the result inserted into the ES tree (which reports the DELAYED blocks it replaced:
 * the delalloc reservation this allocation consumes, §1.3).
 *
 *   mapBlocks(state, lblk, len, flags)
 *     ES hit ───────────────────────────────▶ WRITTEN→MAPPED, UNWRITTEN, DELAYED, HOLE
 *     ES miss ─ read lock ─ mapBlock (disk) ─▶ cache extent / hole ─▶ answer
 *     CREATE ─ write lock ─ resolve as above ─ HOLE or DELAYED ─ transact{mapOrAllocate}
 *                                            ─ es.insert (consumes delayed) ─▶ answer (NEW)
 *
 * The hole-length rule (Jan Kara's fix, v6.8): the gap the on-disk tree reports runs to
 * its next extent, but a DELAYED range in the ES tree may start before that; the hole is
 * cut there, cached, and measured from lblk:
 *
 *   disk      [lblk ──────── hole ──────────────────────)[ next extent
 *   ES                          [ DELAYED ]
 *   answer    [lblk ─ HOLE ─────)  (cached as a HOLE record)
 *
 * Per-inode state (`Ext4InodeState`): the ES tree, i_reserved_data_blocks (always equal
 * to the ES tree's delayed block count: no bigalloc), the page cache's i_size and the
 * on-disk i_disksize, a read/write lock standing for i_data_sem (the on-disk tree may be
 * half-edited across an await inside a handle, so readers of it wait for writers). ES
 * hits take no lock. States live in a per-mount registry with one ES shrinker.
 *
 * Cost: an ES hit is one lookup (~log2 n compares, no allocation beyond the answer); a
 * miss adds one on-disk lookup (depth cached block reads) and one cacheExtent; an
 * allocation is one handle of writeCredits(n) credits: the extent edit, ≤ 3 blocks per
 * allocated run (bitmap, GDT, superblock) and the inode.
 */
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import { ExtentStatusTree, EsShrinker, EsStatus, ES_LBLK_LIMIT, newEsLookup, type EsLookup } from './extents_status.js';
import { mapBlock } from './extents.js';
import { extentWriter } from './extents-write.js';
import { blockAllocator } from './balloc.js';
import type { Ext4Mount } from './mount.js';
import { delallocAccount, delallocConsume, delallocRelease } from './delalloc.js';

/** What a mapping is (the seed's m_flags, made exclusive). */
export const MapStatus = {
  HOLE: 0,
  DELAYED: 1,
  MAPPED: 2,
  UNWRITTEN: 3,
} as const;
export type MapStatus = (typeof MapStatus)[keyof typeof MapStatus];

/** mapBlocks flags (a subset of ext4's EXT4_GET_BLOCKS_*, same bit values). */
export const MapFlags = {
  /** Allocate what is a hole or delayed. */
  CREATE: 0x1,
  /** With CREATE: allocate as unwritten extents. */
  UNWRIT_EXT: 0x2,
  /** The caller is writeback allocating delayed blocks: their space is already reserved. */
  DELALLOC_RESERVE: 0x4,
} as const;

/** One answer: logical [lblk, lblk + len) is `status` (at pblk when MAPPED/UNWRITTEN). */
export interface BlocksMapping {
  lblk: number;
  len: number;
  /** Physical block of lblk (MAPPED, UNWRITTEN); 0 otherwise. */
  pblk: number;
  status: MapStatus;
  /** Allocated by this call (their device contents are garbage). */
  fresh: boolean;
  /** The ES tree's seq after this call: the iomap validity cookie. */
  seq: number;
}

/**
 * Most blocks one CREATE call allocates (the kernel's MAX_WRITEPAGES_EXTENT_LEN): bounds
 * the credits of one handle; a longer range is mapped by further calls.
 */
export const MAP_ALLOC_BLOCKS_MAX = 2048;

/**
 * Journal credits for mapping (allocating or converting) `blocks` blocks of one inode:
 * a bitmap block and a descriptor block per group touched (≤ blocks), the GDT blocks,
 * the superblock, extent-tree blocks split or written on the path (two per 170 extents of
 * a leaf), and a margin for the inode and depth growth.
 */
export function writeCredits(mount: Ext4Mount, blocks: number): number {
  const { ext4 } = mount;
  const gdtBlocks = Math.ceil(ext4.groupCount / (ext4.blockSizeBytes / ext4.descSizeBytes));
  return Math.min(blocks, ext4.groupCount) + Math.min(blocks, gdtBlocks) + 1 + 2 * Math.ceil(blocks / 170) + 16;
}
/** ES records (of all inodes of a mount) kept before the shrinker reclaims cached ones. */
export const ES_RECORD_BUDGET = 1 << 16;

// ─── i_data_sem ─────────────────────────────────────────────────────────────────────────

/**
 * A FIFO read/write lock for async code (the engine thread is one thread, but a handle's
 * work spans awaits). Writers are exclusive; a waiting writer blocks later readers, so a
 * stream of reads cannot starve an allocation.
 */
export class InodeDataLock {
  private readers = 0;
  private writer = false;
  private readonly waiters: { write: boolean; wake: () => void }[] = [];

  async read<T>(body: () => Promise<T>): Promise<T> {
    if (this.writer || this.waiters.length > 0) await new Promise<void>((wake) => this.waiters.push({ write: false, wake }));
    else this.readers++;
    try { return await body(); } finally { this.readers--; this.wakeNext(); }
  }

  async write<T>(body: () => Promise<T>): Promise<T> {
    if (this.writer || this.readers > 0 || this.waiters.length > 0) {
      await new Promise<void>((wake) => this.waiters.push({ write: true, wake }));
    } else this.writer = true;
    try { return await body(); } finally { this.writer = false; this.wakeNext(); }
  }

  /** Hand the lock to the next waiter(s): one writer, or every reader up to the next writer. */
  private wakeNext(): void {
    if (this.writer) return;
    while (this.waiters.length > 0) {
      const next = this.waiters[0];
      if (next.write) {
        if (this.readers > 0) return;
        this.waiters.shift();
        this.writer = true;
        next.wake();
        return;
      }
      this.waiters.shift();
      this.readers++;
      next.wake();
    }
  }
}

// ─── Per-inode state and the registry ───────────────────────────────────────────────────

export class Ext4InodeState {
  readonly es: ExtentStatusTree;
  readonly lock = new InodeDataLock();
  /** i_reserved_data_blocks: delayed blocks whose space this inode holds (= es.delayedBlockCount). */
  reservedDataBlocks = 0;
  /** i_size as the page cache sees it (raised by writes before any disk size). */
  sizeBytes: number;
  /** i_disksize: the size in the on-disk inode, raised at writeback completion. */
  diskSizeBytes: number;

  constructor(readonly mount: Ext4Mount, readonly ino: number, sizeBytes: number, shrinker: EsShrinker) {
    this.es = new ExtentStatusTree({ shrinker });
    this.sizeBytes = sizeBytes;
    this.diskSizeBytes = sizeBytes;
  }

  get blockSizeBytes(): number { return this.mount.ext4.blockSizeBytes; }
}

interface Registry {
  shrinker: EsShrinker;
  states: Map<number, Ext4InodeState>;
}

const registries = new WeakMap<Ext4Mount, Registry>();

function registryOf(mount: Ext4Mount): Registry {
  let registry = registries.get(mount);
  if (registry === undefined) {
    registry = { shrinker: new EsShrinker({ recordBudget: ES_RECORD_BUDGET }), states: new Map() };
    registries.set(mount, registry);
  }
  return registry;
}

/** The state of inode `ino` (created on first use from the on-disk inode: i_size = i_disksize). */
export async function inodeState(mount: Ext4Mount, ino: number): Promise<Ext4InodeState> {
  const registry = registryOf(mount);
  const known = registry.states.get(ino);
  if (known !== undefined) return known;
  const inode = await mount.inode(ino);
  const raced = registry.states.get(ino);
  if (raced !== undefined) return raced;
  const state = new Ext4InodeState(mount, ino, inode.size, registry.shrinker);
  registry.states.set(ino, state);
  return state;
}

/** Forget an inode's state (eviction, or after its last unlink): it must hold no delayed blocks. */
export function forgetInodeState(mount: Ext4Mount, ino: number): void {
  const registry = registryOf(mount);
  const state = registry.states.get(ino);
  if (state === undefined) return;
  assert(state.reservedDataBlocks === 0, `inode ${ino} is forgotten with no reservation left`);
  state.es.dispose();
  registry.states.delete(ino);
}

/** Every live inode state of a mount. */
export function inodeStates(mount: Ext4Mount): IterableIterator<Ext4InodeState> {
  return registryOf(mount).states.values();
}

/**
 * The reservation invariants (tests; cheap enough for debugging): every inode's reserved
 * count equals its delayed blocks, and they sum to the mount's reserved count.
 */
export function checkReservations(mount: Ext4Mount): void {
  let total = 0;
  for (const state of inodeStates(mount)) {
    assert(state.reservedDataBlocks === state.es.delayedBlockCount,
      `inode ${state.ino}: ${state.reservedDataBlocks} reserved, ${state.es.delayedBlockCount} delayed`);
    total += state.reservedDataBlocks;
  }
  const account = delallocAccount(mount);
  assert(total === account.reservedBlocks, `inodes reserve ${total}, the mount counts ${account.reservedBlocks}`);
}

// ─── mapBlocks ──────────────────────────────────────────────────────────────────────────

function checkQuery(lblk: number, len: number): void {
  if (!(Number.isInteger(lblk) && lblk >= 0 && lblk < ES_LBLK_LIMIT)) assert(false, `lblk ${lblk} is a u32`);
  if (!(Number.isInteger(len) && len >= 1 && lblk + len <= ES_LBLK_LIMIT)) assert(false, `len ${len} is positive and in range`);
}

function statusOfEs(status: EsStatus): MapStatus {
  switch (status) {
    case EsStatus.WRITTEN: return MapStatus.MAPPED;
    case EsStatus.UNWRITTEN: return MapStatus.UNWRITTEN;
    case EsStatus.DELAYED: return MapStatus.DELAYED;
    case EsStatus.HOLE: return MapStatus.HOLE;
  }
}

/** The answer of an ES hit, clipped to [lblk, lblk + len). */
function answerHit(state: Ext4InodeState, hit: EsLookup, lblk: number, len: number): BlocksMapping {
  assert(hit.found && hit.status !== 0, 'a hit has a kind');
  const status = statusOfEs(hit.status);
  const mapped = status === MapStatus.MAPPED || status === MapStatus.UNWRITTEN;
  return {
    lblk, len: Math.min(len, hit.lblk + hit.len - lblk), pblk: mapped ? hit.pblk + (lblk - hit.lblk) : 0,
    status, fresh: false, seq: state.es.seq,
  };
}

/**
 * Resolve [lblk, lblk + len) without allocating: ES first, the on-disk tree on a miss
 * (caching its answer). The caller holds the inode's lock (read or write).
 */
export async function resolveLocked(state: Ext4InodeState, lblk: number, len: number): Promise<BlocksMapping> {
  const hit = state.es.lookup(lblk, newEsLookup());
  if (hit.found) return answerHit(state, hit, lblk, len);
  const { mount } = state;
  const disk = await mapBlock(mount.ext4, await mount.inode(state.ino), lblk);
  assert(disk.lblk === lblk && disk.len >= 1, 'the on-disk answer starts at lblk');
  if (disk.kind !== 'hole') {
    const status = disk.kind === 'unwritten' ? EsStatus.UNWRITTEN : EsStatus.WRITTEN;
    state.es.cacheExtent(lblk, disk.len, disk.pblk, status);
    // The ES records past lblk are authoritative (a DELAYED one exists nowhere else): stop at the first.
    const mappedLen = Math.min(len, disk.len, hit.nextLblk - lblk);
    return { lblk, len: mappedLen, pblk: disk.pblk, status: statusOfEs(status), fresh: false, seq: state.es.seq };
  }
  // The hole-length rule: cut the on-disk gap at the next DELAYED range.
  let holeEnd = Math.min(ES_LBLK_LIMIT, lblk + disk.len);
  const delayed = state.es.nextDelayed(lblk);
  if (delayed !== undefined && delayed.lblk < holeEnd) {
    // A delayed range covering lblk itself would have been an ES hit above.
    assert(delayed.lblk > lblk, 'a delayed range at lblk is an ES hit');
    holeEnd = delayed.lblk;
  }
  state.es.cacheExtent(lblk, holeEnd - lblk, 0, EsStatus.HOLE);
  return { lblk, len: Math.min(len, holeEnd - lblk), pblk: 0, status: MapStatus.HOLE, fresh: false, seq: state.es.seq };
}

/**
 * Map [lblk, lblk + len) of the inode: the mapping of lblk, at most len blocks long. With
 * MapFlags.CREATE, a HOLE is allocated first (UNWRIT_EXT: as unwritten; the free space
 * not reserved by delalloc must cover it), and a DELAYED range too when DELALLOC_RESERVE
 * says the caller is writeback (its space is reserved); the answer is then
 * MAPPED/UNWRITTEN with `fresh` set, at most MAP_ALLOC_BLOCKS_MAX blocks.
 */
export async function mapBlocks(mount: Ext4Mount, state: Ext4InodeState, lblk: number, len: number, flags = 0): Promise<BlocksMapping> {
  checkQuery(lblk, len);
  assert(state.mount === mount, 'the state belongs to this mount');
  if ((flags & MapFlags.CREATE) === 0) {
    const hit = state.es.lookup(lblk, newEsLookup());
    if (hit.found) return answerHit(state, hit, lblk, len);
    return state.lock.read(() => resolveLocked(state, lblk, len));
  }
  return state.lock.write(() => mapBlocksCreateLocked(state, lblk, len, flags));
}

/** mapBlocks with CREATE; the caller holds the inode's write lock (delalloc.ts, iomap_ops.ts). */
export async function mapBlocksCreateLocked(state: Ext4InodeState, lblk: number, len: number, flags: number): Promise<BlocksMapping> {
  checkQuery(lblk, len);
  assert((flags & MapFlags.CREATE) !== 0, 'CREATE is set');
  const found = await resolveLocked(state, lblk, len);
  if (found.status === MapStatus.MAPPED || found.status === MapStatus.UNWRITTEN) return found;
  const reserved = found.status === MapStatus.DELAYED;
  // Only writeback allocates delayed blocks; anyone else (a non-delalloc write that raced
  // with a delalloc one) is told the range is DELAYED, as ext4_iomap_get_blocks reports it.
  if (reserved && (flags & MapFlags.DELALLOC_RESERVE) === 0) return found;
  let count = Math.min(found.len, MAP_ALLOC_BLOCKS_MAX);
  if (!reserved) count = Math.min(count, await claimUnreserved(state.mount, count));
  return allocateLocked(state, lblk, count, (flags & MapFlags.UNWRIT_EXT) !== 0, reserved);
}

/**
 * Space for a non-delalloc allocation of up to `count` blocks: what is free minus what
 * delalloc has reserved (ext4_claim_free_clusters), after one commit if that is too
 * little (freed blocks are parked until their transaction commits). Returns how many may
 * be allocated (≥ 1), or throws ENOSPC.
 */
async function claimUnreserved(mount: Ext4Mount, count: number): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const available = blockAllocator.freeBlocks(mount, false) - delallocAccount(mount).reservedBlocks;
    if (available >= count || (available >= 1 && attempt > 0)) return Math.min(count, available);
    if (attempt > 0 || mount.journal === undefined) {
      throw new FsError('ENOSPC', { syscall: 'write', detail: `${Math.max(0, available)} unreserved blocks free, ${count} wanted` });
    }
    await mount.sync();
  }
}

/**
 * Allocate [lblk, lblk + count) (a hole, or delayed when `reserved`) in one short
 * handle, insert every run into the ES tree and consume the delayed blocks it replaced.
 * Answers the first run.
 */
async function allocateLocked(state: Ext4InodeState, lblk: number, count: number, unwritten: boolean, reserved: boolean): Promise<BlocksMapping> {
  const { mount } = state;
  let runs;
  try {
    runs = await mount.transact(writeCredits(mount, count), (h) => extentWriter.mapOrAllocate(mount, h, state.ino, lblk, count, { unwritten, fromDelallocReservation: reserved }));
  } catch (error) {
    // Part of the range may be allocated on disk now: drop cached HOLE records there, so
    // the next lookup reads the disk again. A delayed range keeps its records (the next
    // attempt finds the allocated part and consumes the reservation then).
    if (!reserved) assert(state.es.remove(lblk, count) === 0, 'a hole being allocated holds no delayed blocks');
    throw error;
  }
  let consumed = 0;
  for (const run of runs) {
    consumed += state.es.insert(run.lblk, run.count, run.pblk, run.unwritten ? EsStatus.UNWRITTEN : EsStatus.WRITTEN);
  }
  assert(!reserved || consumed === count, `writeback of ${count} delayed blocks consumes them all (${consumed})`);
  assert(reserved || consumed === 0, 'allocating a hole consumes no reservation');
  if (consumed > 0) delallocConsume(state, consumed);
  const first = runs[0];
  assert(first !== undefined && first.lblk === lblk, 'mapOrAllocate maps from lblk');
  return {
    lblk, len: first.count, pblk: first.pblk, status: first.unwritten ? MapStatus.UNWRITTEN : MapStatus.MAPPED,
    fresh: first.fresh, seq: state.es.seq,
  };
}

// ─── Punch and truncate: the ES side ────────────────────────────────────────────────────

/**
 * After [lblk, lblk + len) was punched (on disk by the caller), under the write lock: cache it as one HOLE
 * (seed patch 4: later lookups hit, holes stay contiguous) and release the reservation of
 * the delayed blocks it dropped. Returns the blocks released.
 */
export async function punchInodeState(state: Ext4InodeState, lblk: number, len: number): Promise<number> {
  checkQuery(lblk, len);
  return state.lock.write(async () => {
    const released = state.es.insert(lblk, len, 0, EsStatus.HOLE);
    if (released > 0) delallocRelease(state, released);
    return released;
  });
}

/**
 * Truncate (under the write lock): forget everything at or after fromLblk (the on-disk blocks are the caller's)
 * and release the reservation of the delayed blocks there. Returns the blocks released.
 */
export async function truncateInodeState(state: Ext4InodeState, fromLblk: number): Promise<number> {
  assert(Number.isInteger(fromLblk) && fromLblk >= 0 && fromLblk <= ES_LBLK_LIMIT, 'fromLblk is in range');
  return state.lock.write(async () => {
    const released = state.es.remove(fromLblk, ES_LBLK_LIMIT - fromLblk);
    if (released > 0) delallocRelease(state, released);
    return released;
  });
}
