/**
 * buffer/buffer-head: the legacy buffered path's per-block state ("buffer heads") and the
 * getBlock contract through which a filesystem maps one block at a time (Linux's
 * get_block_t). Generic: nothing here knows ext4.
 *
 * A buffer head is one filesystem block of a folio. Its state is split the way the data
 * already lives:
 *   BH_Uptodate, BH_Dirty  the folio's own per-block bitmap (mm/folio.ts) — shared memory,
 *                          the same bits the page cache counts and writeback clears
 *   everything else        this table: a state byte (MAPPED, NEW, DELAY, UNWRITTEN, REQ)
 *                          and the device block (b_blocknr), in typed arrays indexed by the
 *                          folio's arena slot — no JS object per 4 KiB block
 *
 *   slot s, block b  →  index s × 4 + b        (≤ 4 blocks per 4 KiB page: 1 KiB blocks)
 *   states[index]    MAPPED|UNWRITTEN           blocknrs[index]  device block when MAPPED
 *   owners[s]        the Folio the entries belong to (attach_page_buffers)
 *
 * A slot is reused when its folio is freed and another takes the memory: `owners[slot]`
 * names the folio whose buffers the entries are, so a new folio in an old slot finds no
 * buffers (folio_buffers() == NULL) and attaches fresh ones. Nothing has to be told about
 * eviction. The engine thread alone reads and writes the table, under the folio lock.
 *
 * getBlock(inode, blockIndex, create) answers for ONE block (that is the design compared
 * with iomap's extent-sized mappings): its state bits (0 = a hole) and device block. It
 * may answer synchronously (a cached mapping: no promise, no microtask) or with a promise.
 * Which getBlock a caller passes says what `create` means: a delalloc write reserves
 * (DELAY|NEW), a non-delalloc write allocates, writeback allocates what is DELAY and
 * converts what is UNWRITTEN. Writeback's getBlock may answer null: "no room in this
 * batch" (its journal handle is out of credits); the batch ends and the next one retries.
 *
 * Cost: 36 bytes of typed arrays (four state bytes, four f64 block numbers) and one
 * reference per 4 KiB page of cache, under 1.2 % of the cache (a 4 KiB-block filesystem
 * touches 9 of the 36); attach = one fill of ≤ 4 bytes; every query is an array read.
 */
import { assert } from '../assert.js';
import { BLOCK_BYTES_MIN, PAGE_BYTES } from '../mm/constants.js';
import type { Folio } from '../mm/folio.js';
import type { AddressSpace } from '../mm/mapping.js';
import type { PageCache } from '../mm/page-cache.js';

/** Buffer state bits kept in the table (uptodate and dirty are the folio's bitmap). */
export const BufferState = {
  /** BH_Mapped: the block has a device block (blocknr is valid). */
  MAPPED: 0x1,
  /** BH_New: getBlock just allocated or reserved it: its device bytes are garbage. */
  NEW: 0x2,
  /** BH_Delay: space reserved, no device block yet; writeback's getBlock allocates it. */
  DELAY: 0x4,
  /** BH_Unwritten (with MAPPED): allocated, reads as zeros; writeback's getBlock converts it. */
  UNWRITTEN: 0x8,
  /** BH_Req: a device write of the block is in flight. */
  REQ: 0x10,
} as const;

/** What getBlock reports: MAPPED / UNWRITTEN / DELAY / NEW bits (0 = a hole). */
export const BLOCK_MAP_BITS = BufferState.MAPPED | BufferState.NEW | BufferState.DELAY | BufferState.UNWRITTEN;

/** Blocks of one 4 KiB page at the smallest block size: the table's stride per slot. */
export const BUFFERS_PER_PAGE_MAX = PAGE_BYTES / BLOCK_BYTES_MIN;

/** The per-file state the buffer layer needs; the filesystem's inode implements it. */
export interface BufferInode {
  readonly mapping: AddressSpace;
  /** i_size as the page cache sees it (raised by writes before any on-disk size). */
  sizeBytes: number;
  readonly blockSizeBytes: number;
}

/** One block's mapping: BufferState bits among BLOCK_MAP_BITS, and the device block when MAPPED. */
export interface BlockMap {
  state: number;
  blocknr: number;
}

/** get_block_t: map logical block `blockIndex` of the file (one block per call). */
export type GetBlock = (inode: BufferInode, blockIndex: number, create: boolean) => BlockMap | null | Promise<BlockMap | null>;

export const HOLE: BlockMap = Object.freeze({ state: 0, blocknr: 0 });

/**
 * Check a getBlock answer. Hot loops call getBlock themselves and await only when it
 * answered with a promise (a cached mapping costs no microtask); cold paths use getBlockAwait.
 */
export function checkBlockMap(map: BlockMap | null): BlockMap | null {
  assert(map === null || (map.state & ~BLOCK_MAP_BITS) === 0, 'getBlock answers map bits only');
  assert(map === null || (map.state & BufferState.MAPPED) === 0 || Number.isSafeInteger(map.blocknr), 'a mapped block has a block number');
  return map;
}

/** Call getBlock and await its answer. Null is for writeback's getBlock alone. */
export async function getBlockAwait(getBlock: GetBlock, inode: BufferInode, blockIndex: number, create: boolean): Promise<BlockMap | null> {
  return checkBlockMap(await getBlock(inode, blockIndex, create));
}

/** The buffer heads of every folio of one page cache. */
export class BufferHeadTable {
  /** State bytes, BUFFERS_PER_PAGE_MAX per arena slot. */
  readonly states: Uint8Array;
  /** Device block numbers (valid while MAPPED). */
  readonly blocknrs: Float64Array;
  private readonly owners: Array<Folio | undefined>;

  private constructor(readonly unitCount: number) {
    this.states = new Uint8Array(unitCount * BUFFERS_PER_PAGE_MAX);
    this.blocknrs = new Float64Array(unitCount * BUFFERS_PER_PAGE_MAX);
    this.owners = new Array<Folio | undefined>(unitCount);
  }

  /** The table of `cache` (made on first use). */
  static of(cache: PageCache): BufferHeadTable {
    let table = tables.get(cache);
    if (table === undefined) {
      table = new BufferHeadTable(cache.states.unitCount);
      tables.set(cache, table);
    }
    return table;
  }

  /** Whether `folio` has buffers attached (folio_buffers(folio) != NULL). */
  has(folio: Folio): boolean {
    return this.owners[folio.slot] === folio;
  }

  /**
   * The index of the folio's block 0 in `states`/`blocknrs`, attaching empty buffers
   * (all state clear: unmapped) first if it has none (create_empty_buffers). Under the lock.
   */
  base(folio: Folio): number {
    const base = folio.slot * BUFFERS_PER_PAGE_MAX;
    if (this.owners[folio.slot] !== folio) {
      assert(folio.blockCount <= BUFFERS_PER_PAGE_MAX << folio.order, 'a folio holds at most 4 blocks per page');
      this.owners[folio.slot] = folio;
      this.states.fill(0, base, base + folio.blockCount);
    }
    return base;
  }

  /** Forget the folio's buffers (try_to_free_buffers: the folio is leaving its mapping). */
  detach(folio: Folio): void {
    if (this.owners[folio.slot] === folio) this.owners[folio.slot] = undefined;
  }

  /** Record getBlock's answer for block `block` of the folio (its other state bits are kept). */
  setMap(folio: Folio, block: number, map: BlockMap): void {
    const at = this.base(folio) + block;
    this.states[at] = (this.states[at] & ~BLOCK_MAP_BITS) | map.state;
    this.blocknrs[at] = (map.state & BufferState.MAPPED) !== 0 ? map.blocknr : 0;
  }

  /** Clear bits in blocks [blockStart, blockEnd) of the folio (no-op without buffers). */
  clearBits(folio: Folio, blockStart: number, blockEnd: number, bits: number): void {
    if (!this.has(folio)) return;
    const base = folio.slot * BUFFERS_PER_PAGE_MAX;
    for (let block = blockStart; block < blockEnd; block++) this.states[base + block] &= ~bits;
  }

  /** Set bits in blocks [blockStart, blockEnd) of the folio (attaching buffers if needed). */
  setBits(folio: Folio, blockStart: number, blockEnd: number, bits: number): void {
    const base = this.base(folio);
    for (let block = blockStart; block < blockEnd; block++) this.states[base + block] |= bits;
  }

  /**
   * discard_buffer over blocks [blockStart, blockEnd): unmapped, not new/delayed/unwritten
   * (their blocks are being punched or truncated away). Uptodate and dirty are the caller's.
   */
  discard(folio: Folio, blockStart: number, blockEnd: number): void {
    this.clearBits(folio, blockStart, blockEnd, BLOCK_MAP_BITS);
  }

  /** A snapshot of one buffer head, for tests and debugging. */
  snapshot(folio: Folio, block: number): BufferHeadView {
    assert(block >= 0 && block < folio.blockCount, 'block inside the folio');
    const attached = this.has(folio);
    const at = folio.slot * BUFFERS_PER_PAGE_MAX + block;
    const state = attached ? this.states[at] : 0;
    return {
      attached,
      uptodate: folio.isRangeUptodate(block, block + 1),
      dirty: folio.isRangeDirty(block, block + 1),
      mapped: (state & BufferState.MAPPED) !== 0,
      new: (state & BufferState.NEW) !== 0,
      delay: (state & BufferState.DELAY) !== 0,
      unwritten: (state & BufferState.UNWRITTEN) !== 0,
      req: (state & BufferState.REQ) !== 0,
      blocknr: attached && (state & BufferState.MAPPED) !== 0 ? this.blocknrs[at] : -1,
    };
  }
}

/** One buffer head as a plain object (tests, debugging). */
export interface BufferHeadView {
  attached: boolean;
  uptodate: boolean;
  dirty: boolean;
  mapped: boolean;
  new: boolean;
  delay: boolean;
  unwritten: boolean;
  req: boolean;
  blocknr: number;
}

const tables = new WeakMap<PageCache, BufferHeadTable>();

// ─── Small folio arithmetic shared by the buffer/ files ────────────────────────────────

export function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

export function roundDown(value: number, unit: number): number {
  return value - (value % unit);
}

/** Zero folio bytes for file range [startBytes, endBytes) (clamped to the folio). */
export function zeroFolioRange(folio: Folio, startBytes: number, endBytes: number): void {
  const folioStart = folio.positionBytes;
  const from = Math.max(startBytes, folioStart) - folioStart;
  const to = Math.min(endBytes, folioStart + folio.lengthBytes) - folioStart;
  if (from < to) folio.bytes().fill(0, from, to);
}
