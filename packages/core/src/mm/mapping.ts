/**
 * AddressSpace: one file's (inode's) page-cache mapping, page index → folio. Folios never
 * overlap; a folio of order k covers pages [index, index + 2^k) with index aligned to 2^k.
 *
 * Index structure (an xarray's shape at two levels): pages are grouped in chunks of 2048
 * (the largest folio, so a folio never straddles two chunks). A Map takes a chunk number
 * to its folios sorted by index; a sorted array of chunk numbers orders the chunks. Each
 * chunk counts its dirty and writeback folios — the "tags" that let dirty and writeback
 * walks skip whole clean chunks, in index order.
 *
 *   pages   0 ………… 2047 │ 2048 ……………………… 4095 │ …
 *   chunk 0: [0,o2) [4,o0) [512,o9)  │ chunk 1: [2048,o11)  dirtyCount 1
 *
 * Cost model (no bytes are copied here): lookup = one Map get + a binary search of ≤ 2048
 * entries (≤ 11 compares); creating a folio = lookup + an arena alloc (O(11), plus
 * evictions under pressure) + a sorted insert into its chunk (≤ 2048 moves; a new chunk:
 * a sorted insert into the chunk list, one per 8 MiB of file cached). Range walks cost
 * O(log n) per folio visited plus one step per chunk skipped. Nothing here touches the
 * folio's bytes; the page cache never zeroes a new folio (it is not uptodate; the I/O
 * layer fills or zeroes what it needs).
 */
import { assert } from '../assert.js';
import { FOLIO_STATE_DIRTY, FOLIO_STATE_LOCKED, FOLIO_STATE_WRITEBACK } from '../wasm/layout.js';
import {
  BLOCK_BYTES_MAX, BLOCK_BYTES_MIN, FOLIO_BLOCKS_MAX, FOLIO_ORDER_MAX, MAPPING_CHUNK_PAGES, PAGE_INDEX_LIMIT, PAGE_SHIFT,
} from './constants.js';
import { Folio } from './folio.js';
import type { PageCache } from './page-cache.js';

/** Readahead raises the folio order by this much per round (page_cache_ra_order). */
const READAHEAD_ORDER_STEP = 2;
/** Readahead windows smaller than this use order-0 folios. */
const READAHEAD_LARGE_FOLIO_PAGES_MIN = 4;

export interface AddressSpaceOptions {
  /** Filesystem block size: 1024, 2048 or 4096 bytes. */
  blockBytes: number;
  /**
   * Largest folio order for this file (0 = single pages, e.g. the buffer_head path).
   * Default and cap: 2048 blocks per folio (order 11 at 4 KiB blocks, 9 at 1 KiB).
   */
  orderMax?: number;
  /** The filesystem's handle for this mapping (its inode); the page cache never looks at it. */
  owner?: unknown;
}

export interface GetFolioOptions {
  /**
   * Pages at or after this index lie past EOF: a new folio of order > 0 ends at or before
   * it (an order-0 folio may still be created at any index, e.g. to write past EOF).
   */
  indexLimit?: number;
}

export interface InvalidateResult {
  /** Clean, unused folios wholly inside the range, removed and freed. */
  droppedCount: number;
  droppedBytes: number;
  /** Dirty folios overlapping the range, kept (the caller writes them back or deletes them). */
  dirty: Folio[];
  /** Clean folios kept because they are locked, pinned, under writeback, or only partly inside. */
  busy: Folio[];
}

/** Which folios a range walk visits. */
type WalkFilter = 'any' | 'dirty' | 'writeback';

interface Chunk {
  /** Sorted by index, non-overlapping. */
  folios: Folio[];
  dirtyCount: number;
  writebackCount: number;
}

let nextMappingId = 1;

export class AddressSpace {
  readonly id = nextMappingId++;
  readonly blockBytes: number;
  readonly blockShift: number;
  readonly orderMax: number;
  readonly owner: unknown;
  folioCount = 0;
  bytesCached = 0;
  dirtyFolioCount = 0;
  dirtyBytes = 0;
  writebackFolioCount = 0;
  /** Clock time (cache.now()) at which the mapping went from clean to dirty; 0 while clean. */
  dirtiedAtMs = 0;
  /** The last error a writeback callback threw for this mapping (like mapping->wb_err), or null. */
  writebackError: unknown = null;
  private readonly chunks = new Map<number, Chunk>();
  /** Chunk numbers, ascending. */
  private readonly chunkKeys: number[] = [];

  /** Created by PageCache.createMapping. */
  constructor(readonly cache: PageCache, options: AddressSpaceOptions) {
    const { blockBytes } = options;
    assert(blockBytes >= BLOCK_BYTES_MIN && blockBytes <= BLOCK_BYTES_MAX, 'block size in [1 KiB, 4 KiB]');
    assert((blockBytes & (blockBytes - 1)) === 0, 'block size is a power of two');
    this.blockBytes = blockBytes;
    this.blockShift = 31 - Math.clz32(blockBytes);
    // 2048 blocks per folio at most: order ≤ 11 + blockShift − PAGE_SHIFT.
    const orderCap = Math.log2(FOLIO_BLOCKS_MAX) + this.blockShift - PAGE_SHIFT;
    const orderMax = options.orderMax ?? orderCap;
    assert(Number.isInteger(orderMax) && orderMax >= 0 && orderMax <= FOLIO_ORDER_MAX, 'mapping order cap in [0, 11]');
    this.orderMax = Math.min(orderMax, orderCap);
    this.owner = options.owner;
  }

  // ─── Lookup and creation ───

  /** The folio covering page `index`, or null. Not pinned: pin it (get) before any await. */
  lookup(index: number): Folio | null {
    assertPageIndex(index);
    const chunk = this.chunks.get(chunkOf(index));
    if (chunk === undefined) return null;
    const folios = chunk.folios;
    const position = lastAtOrBefore(folios, index);
    if (position < 0 || folios[position].indexEnd <= index) return null;
    const folio = folios[position];
    this.cache.folioAccessed(folio);
    return folio;
  }

  /**
   * The order a new folio at `index` would get: the largest ≤ orderWanted (and ≤ the
   * mapping's and cache's caps) such that index is aligned to it, it stays below
   * indexLimit, and it overlaps no existing folio. Call only when lookup(index) is null.
   */
  chooseOrder(index: number, orderWanted: number, options: GetFolioOptions = {}): number {
    assert(Number.isInteger(orderWanted) && orderWanted >= 0, 'wanted order is a non-negative integer');
    let order = Math.min(orderWanted, this.orderMax, this.cache.folioOrderMax);
    while (order > 0 && index % (1 << order) !== 0) order--;
    const { indexLimit } = options;
    if (indexLimit !== undefined) {
      while (order > 0 && index + (1 << order) > indexLimit) order--;
    }
    const next = this.firstFrom(index, 'any');
    assert(next === null || next.index > index, 'no folio covers the index');
    if (next !== null) {
      while (order > 0 && index + (1 << order) > next.index) order--;
    }
    return order;
  }

  /**
   * The folio order for the next readahead round (mm/readahead.c's rule, seed §1.9): two
   * above the previous round's, capped by the mapping's and cache's caps and by
   * ilog2(windowPages); order 0 for windows under 4 pages. getOrCreate then lowers it
   * further per index for alignment, neighbours and EOF (options.indexLimit).
   */
  readaheadOrder(previousOrder: number, windowPages: number): number {
    assert(Number.isInteger(previousOrder) && previousOrder >= 0, 'previous order is a non-negative integer');
    if (windowPages < READAHEAD_LARGE_FOLIO_PAGES_MIN) return 0;
    const windowOrder = 31 - Math.clz32(Math.min(windowPages, 2 ** 31));
    return Math.min(previousOrder + READAHEAD_ORDER_STEP, this.orderMax, this.cache.folioOrderMax, windowOrder);
  }

  /**
   * The folio covering `index`, pinned (put() it when done); created if there is none, of
   * chooseOrder's order or — when the arena cannot supply that even after evicting — the
   * largest smaller order it can. Null when not even one page can be freed now (memory is
   * all dirty, under writeback, locked or pinned).
   */
  tryGetOrCreate(index: number, orderWanted: number, options: GetFolioOptions = {}): Folio | null {
    const existing = this.lookup(index);
    if (existing !== null) return existing.get();
    for (let order = this.chooseOrder(index, orderWanted, options); order >= 0; order--) {
      const dataPtr = this.cache.allocateFolioMemory(order);
      if (dataPtr < 0) continue;
      const folio = this.cache.adoptFolio(this, index, order, dataPtr);
      this.insertFolio(folio);
      return folio.get();
    }
    return null;
  }

  /** tryGetOrCreate, waiting for memory (writeback, unpinning) when none can be freed now. */
  async getOrCreate(index: number, orderWanted: number, options: GetFolioOptions = {}): Promise<Folio> {
    for (;;) {
      const folio = this.tryGetOrCreate(index, orderWanted, options);
      if (folio !== null) return folio;
      await this.cache.waitForMemory();
    }
  }

  // ─── Range walks (index order; robust to folios added or removed between steps) ───

  /** The first page in [indexStart, indexEnd) that a folio covers, or indexEnd when none does (no LRU touch). */
  firstCachedIndex(indexStart: number, indexEnd: number): number {
    const folio = this.firstFrom(indexStart, 'any');
    if (folio === null || folio.index >= indexEnd) return indexEnd;
    return Math.max(indexStart, folio.index);
  }

  /** Folios overlapping pages [indexStart, indexEnd). */
  *folios(indexStart: number, indexEnd: number): Generator<Folio> {
    yield* this.walk(indexStart, indexEnd, 'any');
  }

  /** Dirty folios overlapping [indexStart, indexEnd): the writeback walk. */
  *dirtyFolios(indexStart: number, indexEnd: number): Generator<Folio> {
    yield* this.walk(indexStart, indexEnd, 'dirty');
  }

  /** Folios under writeback overlapping [indexStart, indexEnd). */
  *writebackFolios(indexStart: number, indexEnd: number): Generator<Folio> {
    yield* this.walk(indexStart, indexEnd, 'writeback');
  }

  /** Wait until no folio overlapping [indexStart, indexEnd) is under writeback (filemap_fdatawait_range). */
  async waitWritebackRange(indexStart: number, indexEnd: number): Promise<void> {
    for (const folio of this.writebackFolios(indexStart, indexEnd)) {
      folio.get();
      try {
        await folio.waitWriteback();
      } finally {
        folio.put();
      }
    }
  }

  private *walk(indexStart: number, indexEnd: number, filter: WalkFilter): Generator<Folio> {
    assert(indexStart <= indexEnd, 'walk range is ordered');
    let index = indexStart;
    while (index < indexEnd) {
      const folio = this.firstFrom(index, filter);
      if (folio === null || folio.index >= indexEnd) return;
      yield folio;
      index = folio.indexEnd;
    }
  }

  // The first folio (matching filter) that covers `index` or starts after it.
  private firstFrom(index: number, filter: WalkFilter): Folio | null {
    const keys = this.chunkKeys;
    const key = chunkOf(index);
    for (let position = lowerBound(keys, key); position < keys.length; position++) {
      const chunk = this.chunks.get(keys[position])!;
      if (!chunkMatches(chunk, filter)) continue;
      const folios = chunk.folios;
      let at = keys[position] === key ? lastAtOrBefore(folios, index) : 0;
      if (at < 0 || folios[at].indexEnd <= index) at++;
      for (; at < folios.length; at++) {
        if (folioMatches(folios[at], filter)) return folios[at];
      }
    }
    return null;
  }

  // ─── Invalidation and truncation ───

  /**
   * Drop the clean, unused folios wholly inside pages [indexStart, indexEnd) and free their
   * memory (invalidate_mapping_pages); report the dirty and busy ones it kept.
   */
  invalidateRange(indexStart: number, indexEnd: number): InvalidateResult {
    const result: InvalidateResult = { droppedCount: 0, droppedBytes: 0, dirty: [], busy: [] };
    for (const folio of this.folios(indexStart, indexEnd)) {
      const state = folio.state();
      if ((state & FOLIO_STATE_DIRTY) !== 0) {
        result.dirty.push(folio);
        continue;
      }
      const inside = folio.index >= indexStart && folio.indexEnd <= indexEnd;
      const idle = (state & (FOLIO_STATE_LOCKED | FOLIO_STATE_WRITEBACK)) === 0 && folio.refCount === 0;
      if (!inside || !idle) {
        result.busy.push(folio);
        continue;
      }
      const lengthBytes = folio.lengthBytes;
      if (!this.cache.dropFolio(folio)) {
        result.busy.push(folio); // locked by another thread this instant
        continue;
      }
      result.droppedCount++;
      result.droppedBytes += lengthBytes;
    }
    return result;
  }

  /**
   * Remove a folio whatever its data (truncate_inode_folio): the caller holds its lock and
   * has waited for writeback; dirty data is discarded. The folio's memory is freed once it
   * is unlocked and its last pin is put.
   */
  deleteFolio(folio: Folio): void {
    assert(folio.mapping === this && folio.attached, 'deleting a folio of this mapping');
    assert(folio.lockedHere, 'folio deleted under its lock');
    assert(!folio.writebackAccounted, 'folio deleted after its writeback ended');
    folio.cancelDirty();
    this.removeFolio(folio);
    this.cache.folioChanged(folio);
  }

  // ─── Hooks for Folio and PageCache (engine thread; not for filesystem code) ───

  /** @internal */
  insertFolio(folio: Folio): void {
    const key = chunkOf(folio.index);
    let chunk = this.chunks.get(key);
    if (chunk === undefined) {
      chunk = { folios: [], dirtyCount: 0, writebackCount: 0 };
      this.chunks.set(key, chunk);
      this.chunkKeys.splice(lowerBound(this.chunkKeys, key), 0, key);
    }
    const folios = chunk.folios;
    const position = lastAtOrBefore(folios, folio.index) + 1;
    assert(position === 0 || folios[position - 1].indexEnd <= folio.index, 'new folio overlaps no earlier folio');
    assert(position === folios.length || folio.indexEnd <= folios[position].index, 'new folio overlaps no later folio');
    folios.splice(position, 0, folio);
    this.folioCount++;
    this.bytesCached += folio.lengthBytes;
  }

  /** @internal A clean folio leaves the mapping (eviction, invalidation, deletion). */
  removeFolio(folio: Folio): void {
    assert(folio.attached, 'removing an attached folio');
    assert(!folio.dirtyAccounted && !folio.writebackAccounted, 'removed folio is clean and not under writeback');
    const key = chunkOf(folio.index);
    const chunk = this.chunks.get(key)!;
    const position = lastAtOrBefore(chunk.folios, folio.index);
    assert(chunk.folios[position] === folio, 'folio is in its chunk');
    chunk.folios.splice(position, 1);
    if (chunk.folios.length === 0) {
      this.chunks.delete(key);
      this.chunkKeys.splice(lowerBound(this.chunkKeys, key), 1);
    }
    folio.attached = false;
    this.folioCount--;
    this.bytesCached -= folio.lengthBytes;
  }

  /** @internal Clean → dirty. */
  folioDirtied(folio: Folio): void {
    assert(!folio.dirtyAccounted, 'folio was counted clean');
    folio.dirtyAccounted = true;
    this.chunkOfFolio(folio).dirtyCount++;
    this.dirtyFolioCount++;
    this.dirtyBytes += folio.lengthBytes;
    if (this.dirtyFolioCount === 1) this.dirtiedAtMs = this.cache.now();
    this.cache.dirtyBytesChanged(this, folio.lengthBytes);
    this.cache.folioChanged(folio);
  }

  /** @internal Dirty → clean without writeback (cancelDirty) or as writeback starts. */
  folioCleaned(folio: Folio): void {
    assert(folio.dirtyAccounted, 'folio was counted dirty');
    folio.dirtyAccounted = false;
    this.chunkOfFolio(folio).dirtyCount--;
    this.dirtyFolioCount--;
    this.dirtyBytes -= folio.lengthBytes;
    if (this.dirtyFolioCount === 0) this.dirtiedAtMs = 0;
    this.cache.dirtyBytesChanged(this, -folio.lengthBytes);
  }

  /** @internal */
  folioWritebackStarted(folio: Folio, wasDirty: boolean): void {
    this.chunkOfFolio(folio).writebackCount++;
    this.writebackFolioCount++;
    // Count writeback before uncounting dirty: dirty + writeback must not dip, or a
    // throttled writer would be released while nothing has been cleaned.
    this.cache.writebackBytesChanged(folio.lengthBytes);
    if (wasDirty) this.folioCleaned(folio);
  }

  /** @internal */
  folioWritebackEnded(folio: Folio): void {
    this.chunkOfFolio(folio).writebackCount--;
    this.writebackFolioCount--;
    this.cache.writebackBytesChanged(-folio.lengthBytes);
    this.cache.folioChanged(folio);
  }

  private chunkOfFolio(folio: Folio): Chunk {
    assert(folio.attached, 'folio is in its mapping');
    return this.chunks.get(chunkOf(folio.index))!;
  }

  /** Check every structural invariant (tests; O(folios)). */
  checkInvariants(): void {
    let folioCount = 0;
    let dirtyCount = 0;
    let bytes = 0;
    let previousEnd = 0;
    for (let position = 0; position < this.chunkKeys.length; position++) {
      const key = this.chunkKeys[position];
      assert(position === 0 || this.chunkKeys[position - 1] < key, 'chunk keys ascend');
      const chunk = this.chunks.get(key)!;
      assert(chunk.folios.length > 0, 'no empty chunk is kept');
      let chunkDirty = 0;
      let chunkWriteback = 0;
      for (const folio of chunk.folios) {
        assert(chunkOf(folio.index) === key && chunkOf(folio.indexEnd - 1) === key, 'folio inside its chunk');
        assert(folio.index >= previousEnd, 'folios ascend without overlap');
        assert(folio.index % (1 << folio.order) === 0, 'folio aligned to its order');
        assert(folio.dirtyAccounted === folio.isDirty(), 'dirty accounting matches DIRTY');
        previousEnd = folio.indexEnd;
        folioCount++;
        bytes += folio.lengthBytes;
        if (folio.dirtyAccounted) chunkDirty++;
        if (folio.writebackAccounted) chunkWriteback++;
      }
      assert(chunk.dirtyCount === chunkDirty && chunk.writebackCount === chunkWriteback, 'chunk tags match folios');
      dirtyCount += chunkDirty;
    }
    assert(folioCount === this.folioCount && bytes === this.bytesCached, 'mapping counts match folios');
    assert(dirtyCount === this.dirtyFolioCount, 'dirty count matches folios');
  }
}

function assertPageIndex(index: number): void {
  assert(Number.isInteger(index) && index >= 0 && index < PAGE_INDEX_LIMIT, 'page index in [0, 2^32)');
}

function chunkOf(index: number): number {
  return Math.floor(index / MAPPING_CHUNK_PAGES);
}

function chunkMatches(chunk: Chunk, filter: WalkFilter): boolean {
  if (filter === 'dirty') return chunk.dirtyCount > 0;
  if (filter === 'writeback') return chunk.writebackCount > 0;
  return true;
}

function folioMatches(folio: Folio, filter: WalkFilter): boolean {
  if (filter === 'dirty') return folio.dirtyAccounted;
  if (filter === 'writeback') return folio.writebackAccounted;
  return true;
}

// Position of the last folio with index ≤ `index`, or -1.
function lastAtOrBefore(folios: Folio[], index: number): number {
  let low = 0;
  let high = folios.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (folios[middle].index <= index) low = middle + 1;
    else high = middle;
  }
  return low - 1;
}

// First position whose key is ≥ key.
function lowerBound(keys: number[], key: number): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (keys[middle] < key) low = middle + 1;
    else high = middle;
  }
  return low;
}
