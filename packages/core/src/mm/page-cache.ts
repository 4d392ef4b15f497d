/**
 * PageCache: the engine's one page cache. It owns the buddy arena in the shared wasm memory
 * (the folios' bytes), the shared folio state table, the LRU of evictable folios, the dirty
 * accounting with its two thresholds, and the flusher.
 *
 * Memory bound. The arena IS the cache: it is created with cacheBytesMax bytes, so folio
 * memory can never exceed it, however large the files. A new folio that does not fit evicts
 * clean folios, least recently used first; when the buddy arena has the bytes but not a
 * free block of the wanted order, it reclaims the aligned region around the oldest LRU
 * folios, and failing that the mapping takes a smaller order (mapping.ts).
 *
 *   LRU (evictable = in a mapping, clean, not under writeback, unlocked, unpinned):
 *   head (oldest) ⇄ … ⇄ tail (newest)      pinned/locked/dirty folios are off the list
 *
 * Dirty limits (Linux's balance_dirty_pages, simplified). dirty = bytes of dirty folios;
 * writeback = bytes of folios under writeback. Above dirtyBackgroundBytes of dirty the
 * flusher is woken; writers call throttle() before dirtying, and while dirty + writeback ≥
 * dirtyBytesMax they wait until writeback brings it below. dirtyBytesMax + the largest
 * folio ≤ cacheBytesMax, so a throttled writer never holds the last free memory hostage.
 * Accounting is per folio (an 8 MiB folio with one dirty block counts 8 MiB), like Linux.
 *
 * Flusher: every writebackIntervalMs (an unref'd timer) and whenever woken, it walks the
 * dirty mappings oldest first and calls the filesystem's WritebackOps.writebackMapping for
 * those whose dirty data is older than dirtyExpireMs (whole mapping) or, while over the
 * background threshold, for the oldest ones FLUSH_CHUNK_BYTES at a time.
 *
 * Cost model: creating a folio = one arena alloc (O(11)) + per eviction one arena free and
 * one mapping removal (O(log n)); LRU operations are O(1) list edits. No bytes are copied
 * or zeroed by the cache. throttle() below the limit is one comparison and a resolved promise
 * (with writeback in flight: a clock read, and a setImmediate once per millisecond).
 */
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import { type BuddyArena, createArena } from '../wasm/arena.js';
import type { WasmCore } from '../wasm/core.js';
import { FOLIO_STATE_DIRTY, FOLIO_STATE_LOCKED, FOLIO_STATE_WRITEBACK } from '../wasm/layout.js';
import {
  CACHE_BYTES_MIN, CACHE_LARGEST_FOLIOS_MIN, DIRTY_BACKGROUND_PERCENT_DEFAULT, DIRTY_EXPIRE_MS_DEFAULT,
  DIRTY_PERCENT_DEFAULT, EVICT_REGION_CANDIDATES_MAX, FLUSH_CHUNK_BYTES, FLUSH_TURNS_PER_PASS_MAX, FOLIO_ORDER_MAX,
  MEMORY_WAITERS_MAX, PAGE_BYTES, PAGE_INDEX_LIMIT, THROTTLE_WAITERS_MAX, THROTTLE_YIELD_INTERVAL_MS, WRITEBACK_INTERVAL_MS_DEFAULT,
  WRITEBACK_INTERVAL_MS_MIN,
} from './constants.js';
import { Folio, FolioStateTable, type FolioStateShare, folioWordTryLock, folioWordUnlock } from './folio.js';
import { AddressSpace, type AddressSpaceOptions } from './mapping.js';

export interface PageCacheOptions {
  /** Folio memory, bytes: a multiple of 4 KiB, ≥ 64 KiB. The arena is exactly this big. */
  cacheBytesMax: number;
  /** Writers wait in throttle() while dirty + writeback ≥ this. Default 40 % of the cache. */
  dirtyBytesMax?: number;
  /** The flusher runs while dirty > this. Default 20 % of the cache. */
  dirtyBackgroundBytes?: number;
  /** Dirty data older than this is written back by the flusher. Default 30 s. */
  dirtyExpireMs?: number;
  /** Flusher period. Default 5 s. */
  writebackIntervalMs?: number;
  /** Monotonic clock in ms (tests may substitute one). Default performance.now. */
  now?: () => number;
}

export type WritebackReason = 'expired' | 'background' | 'sync';

export interface WritebackRequest {
  reason: WritebackReason;
  /**
   * Write back about this many bytes of dirty folios, oldest index first, then return (a
   * hint; Infinity = all). For 'sync' the callback must also wait for folios already under
   * writeback before writing them again (WB_SYNC_ALL), so that everything dirty when it
   * was called is on the device once the writeback it starts has ended.
   */
  lengthBytesMax: number;
}

/** The filesystem's writeback entry point (ext4's writepages). */
export interface WritebackOps {
  /**
   * Start writeback of `mapping`'s dirty folios: for each, lock, startWriteback(), submit,
   * unlock; endWriteback() on completion. Resolves once the I/O is submitted (the cache
   * waits for writeback to end itself where it needs to).
   */
  writebackMapping(mapping: AddressSpace, request: WritebackRequest): Promise<void>;
}

export interface PageCacheStats {
  cacheBytesMax: number;
  bytesInUse: number;
  folioCount: number;
  lruFolioCount: number;
  dirtyBytes: number;
  writebackBytes: number;
  dirtyMappingCount: number;
  mappingCount: number;
  throttledWriterCount: number;
  evictedFolioCount: number;
  flushPassCount: number;
}

/** Create the engine's page cache over this core's memory (one per memory: it claims the arena). */
export function createPageCache(core: WasmCore, options: PageCacheOptions): PageCache {
  const settings = pageCacheSettings(options);
  const arena = createArena(core, { sizeBytes: settings.cacheBytesMax });
  return new PageCache(core, arena, settings);
}

interface PageCacheSettings {
  cacheBytesMax: number;
  folioOrderMax: number;
  dirtyBytesMax: number;
  dirtyBackgroundBytes: number;
  dirtyExpireMs: number;
  writebackIntervalMs: number;
  now: () => number;
}

function invalid(detail: string): FsError {
  return new FsError('EINVAL', { syscall: 'createPageCache', detail });
}

function pageCacheSettings(options: PageCacheOptions): PageCacheSettings {
  const { cacheBytesMax } = options;
  if (!Number.isInteger(cacheBytesMax) || cacheBytesMax < CACHE_BYTES_MIN || cacheBytesMax % PAGE_BYTES !== 0) {
    throw invalid(`cacheBytesMax ${cacheBytesMax} must be a multiple of ${PAGE_BYTES} and ≥ ${CACHE_BYTES_MIN}`);
  }
  // Cap the folio order so the cache holds CACHE_LARGEST_FOLIOS_MIN of its largest folios.
  const pagesPerLargest = Math.floor(cacheBytesMax / PAGE_BYTES / CACHE_LARGEST_FOLIOS_MIN);
  const folioOrderMax = Math.min(FOLIO_ORDER_MAX, 31 - Math.clz32(pagesPerLargest));
  const folioBytesMax = PAGE_BYTES << folioOrderMax;
  const percentOf = (percent: number) => Math.floor((cacheBytesMax * percent) / 100 / PAGE_BYTES) * PAGE_BYTES;
  const dirtyBytesMax = options.dirtyBytesMax ?? percentOf(DIRTY_PERCENT_DEFAULT);
  const dirtyBackgroundBytes = options.dirtyBackgroundBytes ?? Math.min(percentOf(DIRTY_BACKGROUND_PERCENT_DEFAULT), dirtyBytesMax - PAGE_BYTES);
  if (!(dirtyBytesMax > 0 && dirtyBytesMax + folioBytesMax <= cacheBytesMax)) {
    throw invalid(`dirtyBytesMax ${dirtyBytesMax} must be > 0 and leave a largest folio (${folioBytesMax}) of the cache`);
  }
  if (!(dirtyBackgroundBytes >= 0 && dirtyBackgroundBytes < dirtyBytesMax)) {
    throw invalid(`dirtyBackgroundBytes ${dirtyBackgroundBytes} must be in [0, dirtyBytesMax)`);
  }
  const dirtyExpireMs = options.dirtyExpireMs ?? DIRTY_EXPIRE_MS_DEFAULT;
  const writebackIntervalMs = options.writebackIntervalMs ?? WRITEBACK_INTERVAL_MS_DEFAULT;
  if (!(dirtyExpireMs >= 0) || !(writebackIntervalMs >= WRITEBACK_INTERVAL_MS_MIN)) {
    throw invalid(`dirtyExpireMs ${dirtyExpireMs} ≥ 0 and writebackIntervalMs ${writebackIntervalMs} ≥ ${WRITEBACK_INTERVAL_MS_MIN}`);
  }
  const now = options.now ?? (() => performance.now());
  return { cacheBytesMax, folioOrderMax, dirtyBytesMax, dirtyBackgroundBytes, dirtyExpireMs, writebackIntervalMs, now };
}

export class PageCache {
  readonly states: FolioStateTable;
  readonly cacheBytesMax: number;
  /** Largest folio order this cache hands out (≤ 11; smaller for small caches). */
  readonly folioOrderMax: number;
  readonly dirtyBytesMax: number;
  readonly dirtyBackgroundBytes: number;
  readonly dirtyExpireMs: number;
  readonly writebackIntervalMs: number;
  readonly now: () => number;
  dirtyBytes = 0;
  writebackBytes = 0;
  private writebackOps: WritebackOps | null = null;
  private readonly mappings = new Set<AddressSpace>();
  /** Mappings with dirty folios, in the order they became dirty (oldest first). */
  private readonly dirtyMappings = new Set<AddressSpace>();
  /** Folio by slot (its first arena unit), for region reclaim. */
  private readonly folioBySlot: Array<Folio | undefined>;
  private lruHead: Folio | null = null;
  private lruTail: Folio | null = null;
  private lruCount = 0;
  private folioCount = 0;
  private evictedFolioCount = 0;
  private flushPassCount = 0;
  private throttleWaiters: Array<() => void> = [];
  private memoryWaiters: Array<() => void> = [];
  private flushRunning: Promise<void> | null = null;
  private flushAgain = false;
  private flushWakeScheduled = false;
  /** When throttle() last let the event loop run (see THROTTLE_YIELD_INTERVAL_MS). */
  private lastThrottleYieldMs = -Infinity;
  private readonly flushTimer: ReturnType<typeof setInterval>;
  private closed = false;

  constructor(readonly core: WasmCore, readonly arena: BuddyArena, settings: PageCacheSettings) {
    assert(arena.sizeBytes === settings.cacheBytesMax, 'the arena is exactly the cache');
    this.cacheBytesMax = settings.cacheBytesMax;
    this.folioOrderMax = settings.folioOrderMax;
    this.dirtyBytesMax = settings.dirtyBytesMax;
    this.dirtyBackgroundBytes = settings.dirtyBackgroundBytes;
    this.dirtyExpireMs = settings.dirtyExpireMs;
    this.writebackIntervalMs = settings.writebackIntervalMs;
    this.now = settings.now;
    this.states = FolioStateTable.create(arena.unitCount, arena.basePtr);
    this.folioBySlot = new Array<Folio | undefined>(arena.unitCount);
    this.flushTimer = setInterval(() => void this.flush(), this.writebackIntervalMs);
    this.flushTimer.unref();
  }

  // ─── Mappings and writeback hooks ───

  createMapping(options: AddressSpaceOptions): AddressSpace {
    assert(!this.closed, 'cache is open');
    const mapping = new AddressSpace(this, options);
    this.mappings.add(mapping);
    return mapping;
  }

  /** Forget a mapping (inode evicted): it must hold no dirty, writeback or busy folios. */
  releaseMapping(mapping: AddressSpace): void {
    const result = mapping.invalidateRange(0, PAGE_INDEX_LIMIT);
    assert(result.dirty.length === 0 && result.busy.length === 0, 'released mapping holds no dirty or busy folios');
    assert(mapping.folioCount === 0, 'released mapping is empty');
    this.mappings.delete(mapping);
  }

  /** The filesystem's writeback callback (null: nothing is ever written back). */
  setWritebackOps(ops: WritebackOps | null): void {
    this.writebackOps = ops;
  }

  /** State table for another thread (FolioStateTable.fromShare). */
  share(): FolioStateShare {
    return this.states.share();
  }

  // ─── Dirty limits ───

  /**
   * Writers call this before dirtying: waits while dirty + writeback ≥ dirtyBytesMax. Below
   * the limit, while writeback is in flight, it yields to the event loop once per
   * THROTTLE_YIELD_INTERVAL_MS (Linux's balance_dirty_pages pauses a writer too), so that
   * completions from the writeback workers are taken in while the writer goes on.
   */
  throttle(): Promise<void> {
    if (!this.throttleDue()) return Promise.resolve();
    if (this.dirtyBytes + this.writebackBytes < this.dirtyBytesMax) {
      this.lastThrottleYieldMs = this.now();
      return new Promise<void>((resolve) => setImmediate(resolve));
    }
    assert(this.throttleWaiters.length < THROTTLE_WAITERS_MAX, 'throttled writers within bound');
    this.wakeFlusher();
    return new Promise<void>((resolve) => this.throttleWaiters.push(resolve));
  }

  /** Whether throttle() would wait or yield now (a writer that skips resolved promises asks this first). */
  throttleDue(): boolean {
    if (this.dirtyBytes + this.writebackBytes >= this.dirtyBytesMax) return true;
    return this.writebackBytes > 0 && this.now() - this.lastThrottleYieldMs >= THROTTLE_YIELD_INTERVAL_MS;
  }

  /** Write back one mapping and wait until everything dirty in it at the call is on the device. */
  async syncMapping(mapping: AddressSpace): Promise<void> {
    if (this.writebackOps !== null && mapping.dirtyFolioCount > 0) {
      await this.writebackOps.writebackMapping(mapping, { reason: 'sync', lengthBytesMax: Infinity });
    }
    await mapping.waitWritebackRange(0, PAGE_INDEX_LIMIT);
  }

  /** syncMapping for every mapping with dirty or writeback folios. */
  async syncAll(): Promise<void> {
    const busy = [...this.mappings].filter((mapping) => mapping.dirtyFolioCount > 0 || mapping.writebackFolioCount > 0);
    for (const mapping of busy) await this.syncMapping(mapping);
  }

  // ─── Flusher ───

  /** Schedule a flusher pass soon (coalesced). */
  wakeFlusher(): void {
    if (this.closed) return;
    if (this.flushRunning !== null) {
      this.flushAgain = true;
      return;
    }
    if (this.flushWakeScheduled) return;
    this.flushWakeScheduled = true;
    // A microtask, not setImmediate: a writer that awaits only settled promises (a loop of
    // cached writes) never lets the event loop reach its check phase, so an immediate
    // would first run at the hard limit, with the whole dirty set to write back while the
    // writer waits (measured: a 55-95 ms stall at 205 MiB of a 256 MiB write). Started
    // from a microtask, the pass interleaves with the writer at its awaits, and the
    // writeback workers copy while the writer goes on, as Linux's flusher runs beside it.
    queueMicrotask(() => {
      this.flushWakeScheduled = false;
      void this.flush();
    });
  }

  /** Run one flusher pass now (or join the running one). */
  flush(): Promise<void> {
    if (this.flushRunning !== null) {
      this.flushAgain = true;
      return this.flushRunning;
    }
    if (this.closed || this.writebackOps === null || this.dirtyMappings.size === 0) return Promise.resolve();
    this.flushRunning = this.flushPass(this.writebackOps).finally(() => {
      this.flushRunning = null;
      if (this.flushAgain) {
        this.flushAgain = false;
        this.wakeFlusher();
      }
    });
    return this.flushRunning;
  }

  private async flushPass(ops: WritebackOps): Promise<void> {
    this.flushPassCount++;
    const dirtyAtStart = this.dirtyBytes;
    let turns = 0;
    // Set iteration visits mappings added during the pass and skips deleted ones.
    for (const mapping of this.dirtyMappings) {
      if (turns++ >= FLUSH_TURNS_PER_PASS_MAX) break;
      const expired = this.now() - mapping.dirtiedAtMs >= this.dirtyExpireMs;
      const background = this.overBackground();
      // Mappings are in dirtying order: once one is young and we are under the threshold, stop.
      if (!expired && !background) break;
      const request: WritebackRequest = expired
        ? { reason: 'expired', lengthBytesMax: Infinity }
        : { reason: 'background', lengthBytesMax: FLUSH_CHUNK_BYTES };
      try {
        await ops.writebackMapping(mapping, request);
      } catch (error) {
        mapping.writebackError = error;
      }
    }
    // More to do and this pass made progress: go again (a pass with no progress waits for the timer).
    if (this.overBackground() && this.dirtyBytes < dirtyAtStart) this.flushAgain = true;
  }

  private overBackground(): boolean {
    return this.dirtyBytes > this.dirtyBackgroundBytes || this.throttleWaiters.length > 0;
  }

  // ─── Memory ───

  /**
   * A block of order `order` for a new folio, evicting clean folios as needed; -1 when the
   * arena cannot supply one (the caller tries a smaller order, then waits).
   */
  allocateFolioMemory(order: number): number {
    assert(order >= 0 && order <= this.folioOrderMax, 'folio order within the cache cap');
    const lengthBytes = PAGE_BYTES << order;
    let dataPtr = this.arena.alloc(order);
    if (dataPtr >= 0) return dataPtr;
    // Free bytes first, oldest folios first.
    while (this.cacheBytesMax - this.arena.stats().bytesInUse < lengthBytes && this.lruHead !== null) {
      if (!this.evictFolio(this.lruHead)) break;
    }
    dataPtr = this.arena.alloc(order);
    if (dataPtr >= 0 || order === 0) return dataPtr;
    // The bytes are free but scattered: reclaim the aligned region around the oldest folios.
    let candidate = this.lruHead;
    for (let attempt = 0; attempt < EVICT_REGION_CANDIDATES_MAX && candidate !== null; attempt++) {
      const next = candidate.lruNext;
      if (this.evictRegion(candidate, order)) {
        dataPtr = this.arena.alloc(order);
        if (dataPtr >= 0) return dataPtr;
      }
      candidate = next !== null && next.inLru ? next : this.lruHead;
    }
    return -1;
  }

  // Evict every folio in the order-`order` aligned arena region holding `folio`, if all are evictable.
  private evictRegion(folio: Folio, order: number): boolean {
    if (folio.order >= order) return this.evictFolio(folio);
    const unitStart = folio.slot - (folio.slot % (1 << order));
    const unitEnd = unitStart + (1 << order);
    if (unitEnd > this.arena.unitCount) return false;
    const victims: Folio[] = [];
    for (let unit = unitStart; unit < unitEnd; ) {
      const resident = this.folioBySlot[unit];
      if (resident === undefined) {
        unit++;
        continue;
      }
      if (!resident.inLru) return false;
      victims.push(resident);
      unit += 1 << resident.order;
    }
    return victims.every((victim) => this.evictFolio(victim));
  }

  /** Resolves when memory may have become available (a folio turned evictable or was freed). */
  waitForMemory(): Promise<void> {
    assert(this.memoryWaiters.length < MEMORY_WAITERS_MAX, 'memory waiters within bound');
    this.wakeFlusher();
    return new Promise<void>((resolve) => this.memoryWaiters.push(resolve));
  }

  /** @internal A new folio over fresh arena memory (mapping.ts inserts it). */
  adoptFolio(mapping: AddressSpace, index: number, order: number, dataPtr: number): Folio {
    const slot = this.states.slotOfPtr(dataPtr);
    this.states.initSlot(slot, order);
    const folio = new Folio(mapping, index, order, dataPtr, slot);
    assert(this.folioBySlot[slot] === undefined, 'slot has no folio');
    this.folioBySlot[slot] = folio;
    this.folioCount++;
    return folio;
  }

  /** @internal Reclaim: dropFolio, counted as an eviction. */
  evictFolio(folio: Folio): boolean {
    if (!this.dropFolio(folio)) return false;
    this.evictedFolioCount++;
    return true;
  }

  /**
   * @internal Remove a clean, unused folio from its mapping and free it; false when another
   * thread holds its lock right now.
   */
  dropFolio(folio: Folio): boolean {
    assert(folio.attached && folio.refCount === 0 && !folio.lockedHere, 'evicted folio is attached and unused');
    if (!folioWordTryLock(this.states.words, folio.slot)) return false;
    const state = Atomics.load(this.states.words, folio.slot);
    assert((state & (FOLIO_STATE_DIRTY | FOLIO_STATE_WRITEBACK)) === 0, 'evicted folio is clean');
    folioWordUnlock(this.states.words, folio.slot);
    if (folio.inLru) this.lruRemove(folio);
    folio.mapping.removeFolio(folio);
    this.freeFolio(folio);
    return true;
  }

  private freeFolio(folio: Folio): void {
    assert(!folio.attached && folio.refCount === 0 && !folio.lockedHere, 'freed folio is detached and unused');
    assert(folio.readBytesPending === 0 && folio.writeBytesPending === 0, 'freed folio has no I/O pending');
    assert(this.folioBySlot[folio.slot] === folio, 'slot holds this folio');
    this.folioBySlot[folio.slot] = undefined;
    this.states.freeSlot(folio.slot);
    this.arena.free(folio.dataPtr);
    this.folioCount--;
    this.releaseMemoryWaiters();
  }

  // ─── Hooks for Folio and AddressSpace ───

  /** @internal Recompute LRU membership (or free a detached folio) after a state change. */
  folioChanged(folio: Folio): void {
    const state = Atomics.load(this.states.words, folio.slot);
    const idle = folio.refCount === 0 && !folio.lockedHere && !folio.writebackAccounted &&
      (state & (FOLIO_STATE_LOCKED | FOLIO_STATE_WRITEBACK)) === 0;
    if (!folio.attached) {
      if (folio.inLru) this.lruRemove(folio);
      if (idle && this.folioBySlot[folio.slot] === folio) this.freeFolio(folio);
      return;
    }
    const evictable = idle && (state & FOLIO_STATE_DIRTY) === 0;
    if (evictable && !folio.inLru) {
      this.lruAppend(folio);
      this.releaseMemoryWaiters();
    } else if (!evictable && folio.inLru) {
      this.lruRemove(folio);
    }
  }

  /** @internal A lookup hit: an evictable folio becomes the most recently used. */
  folioAccessed(folio: Folio): void {
    if (!folio.inLru || this.lruTail === folio) return;
    this.lruRemove(folio);
    this.lruAppend(folio);
  }

  /** @internal */
  dirtyBytesChanged(mapping: AddressSpace, deltaBytes: number): void {
    this.dirtyBytes += deltaBytes;
    assert(this.dirtyBytes >= 0, 'dirty bytes are not negative');
    if (mapping.dirtyFolioCount === 0) this.dirtyMappings.delete(mapping);
    else if (!this.dirtyMappings.has(mapping)) this.dirtyMappings.add(mapping);
    if (deltaBytes > 0 && this.dirtyBytes > this.dirtyBackgroundBytes) this.wakeFlusher();
    if (deltaBytes < 0) this.releaseThrottled();
  }

  /** @internal */
  writebackBytesChanged(deltaBytes: number): void {
    this.writebackBytes += deltaBytes;
    assert(this.writebackBytes >= 0, 'writeback bytes are not negative');
    if (deltaBytes < 0) this.releaseThrottled();
  }

  private releaseThrottled(): void {
    if (this.throttleWaiters.length === 0 || this.dirtyBytes + this.writebackBytes >= this.dirtyBytesMax) return;
    const waiters = this.throttleWaiters;
    this.throttleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private releaseMemoryWaiters(): void {
    if (this.memoryWaiters.length === 0) return;
    const waiters = this.memoryWaiters;
    this.memoryWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private lruAppend(folio: Folio): void {
    folio.lruPrev = this.lruTail;
    folio.lruNext = null;
    if (this.lruTail !== null) this.lruTail.lruNext = folio;
    else this.lruHead = folio;
    this.lruTail = folio;
    folio.inLru = true;
    this.lruCount++;
  }

  private lruRemove(folio: Folio): void {
    assert(folio.inLru, 'folio is on the LRU');
    const { lruPrev, lruNext } = folio;
    if (lruPrev !== null) lruPrev.lruNext = lruNext;
    else this.lruHead = lruNext;
    if (lruNext !== null) lruNext.lruPrev = lruPrev;
    else this.lruTail = lruPrev;
    folio.lruPrev = null;
    folio.lruNext = null;
    folio.inLru = false;
    this.lruCount--;
  }

  // ─── Introspection and shutdown ───

  stats(): PageCacheStats {
    return {
      cacheBytesMax: this.cacheBytesMax,
      bytesInUse: this.arena.stats().bytesInUse,
      folioCount: this.folioCount,
      lruFolioCount: this.lruCount,
      dirtyBytes: this.dirtyBytes,
      writebackBytes: this.writebackBytes,
      dirtyMappingCount: this.dirtyMappings.size,
      mappingCount: this.mappings.size,
      throttledWriterCount: this.throttleWaiters.length,
      evictedFolioCount: this.evictedFolioCount,
      flushPassCount: this.flushPassCount,
    };
  }

  /** Check the cache-wide invariants (tests; O(folios)). */
  checkInvariants(): void {
    let dirtyBytes = 0;
    let folioBytes = 0;
    for (const mapping of this.mappings) {
      mapping.checkInvariants();
      dirtyBytes += mapping.dirtyBytes;
      folioBytes += mapping.bytesCached;
      assert(this.dirtyMappings.has(mapping) === mapping.dirtyFolioCount > 0, 'dirty mapping set matches');
    }
    assert(dirtyBytes === this.dirtyBytes, 'cache dirty bytes match mappings');
    assert(folioBytes <= this.arena.stats().bytesInUse, 'mapped folio bytes within the arena in use');
    assert(this.arena.stats().bytesInUse <= this.cacheBytesMax, 'memory within the cache size');
    let count = 0;
    for (let folio = this.lruHead; folio !== null; folio = folio.lruNext) {
      assert(folio.inLru && folio.attached && folio.refCount === 0 && !folio.isDirty(), 'LRU folios are evictable');
      count++;
    }
    assert(count === this.lruCount, 'LRU count matches the list');
  }

  /** Stop the flusher and give the arena back; the caller has synced and released its mappings. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.flushTimer);
    this.arena.close();
  }
}

