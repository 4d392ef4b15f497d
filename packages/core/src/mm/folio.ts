/**
 * Folios: the page cache's unit of memory. A folio is 2^order consecutive 4 KiB pages of one
 * file (order 0..11, 4 KiB..8 MiB), starting at a page index aligned to 2^order, whose
 * bytes are one buddy-arena block in the shared wasm memory. Its state is one i32 word
 * (LOCKED, UPTODATE, DIRTY, WRITEBACK, …) plus, per filesystem block, an uptodate bit and
 * a dirty bit (iomap's ifs layout: uptodate bits then dirty bits). Word and bitmap live in
 * a SharedArrayBuffer (FolioStateTable) so writeback workers and client threads can test
 * and change them with Atomics; wasm/layout.ts defines the bits and every ordering rule.
 *
 *   slot = (dataPtr − arenaBase) / 4096        a folio of order 2 at slot 8:
 *   state word:  words[slot]                   units 8 9 10 11 │ bitmap bytes 8..11
 *   bitmap bits: slot × 8 + [0, n) uptodate,                   │ (n = 4 blocks of 4 KiB:
 *                slot × 8 + [n, 2n) dirty                      │  bits 64..67 up, 68..71 dirty)
 *
 * Two layers:
 * - free functions `folioWord*` over (words, slot): the cross-thread protocol, usable in any
 *   thread that has the table (a worker gets FolioStateTable.fromShare(share)).
 * - class Folio: the engine thread's handle, with reference counting (pin), an async lock
 *   with a FIFO waiter queue (Atomics.waitAsync when the holder is another thread), and the
 *   accounting hooks of its mapping (dirty bytes, writeback bytes, LRU membership).
 *
 * Cost model: no folio operation copies data. A state change is one Atomics RMW (~10 ns);
 * a per-block range update is one Atomics RMW per 32 bits touched (a whole 2048-block
 * folio: 64 words); finding the next dirty range reads at most 2n/32 words. lock() on an
 * unlocked folio is one CAS and a resolved promise; contended, one queue entry (engine
 * holder: direct hand-off at unlock) or one waitAsync (holder in another thread).
 */
import { assert } from '../assert.js';
import {
  FOLIO_BITMAP_BITS_PER_UNIT, FOLIO_STATE_DIRTY, FOLIO_STATE_ERROR, FOLIO_STATE_IN_USE, FOLIO_STATE_LOCKED,
  FOLIO_STATE_LOCK_WAITERS, FOLIO_STATE_ORDER_MASK, FOLIO_STATE_ORDER_SHIFT, FOLIO_STATE_UPTODATE,
  FOLIO_STATE_WRITEBACK, FOLIO_STATE_WRITEBACK_WAITERS,
} from '../wasm/layout.js';
import { FOLIO_LOCK_WAITERS_MAX, FOLIO_ORDER_MAX, PAGE_BYTES, PAGE_SHIFT } from './constants.js';
import type { AddressSpace } from './mapping.js';

// ─── The shared table ───────────────────────────────────────────────────────────────────

/** What another thread needs to open the same table (structured-cloneable). */
export interface FolioStateShare {
  buffer: SharedArrayBuffer;
  unitCount: number;
  /** Byte address of arena unit 0 in the wasm memory (dataPtr = arenaBasePtr + slot × 4096). */
  arenaBasePtr: number;
}

/** One state word per arena unit, then FOLIO_BITMAP_BITS_PER_UNIT bitmap bits per unit. */
export class FolioStateTable {
  readonly words: Int32Array;
  /** Index in `words` of the first bitmap word. */
  readonly bitmapWordBase: number;

  private constructor(readonly buffer: SharedArrayBuffer, readonly unitCount: number, readonly arenaBasePtr: number) {
    this.bitmapWordBase = unitCount;
    this.words = new Int32Array(buffer);
    assert(this.words.length === FolioStateTable.wordCountFor(unitCount), 'table buffer size matches unit count');
  }

  static wordCountFor(unitCount: number): number {
    return unitCount + Math.ceil((unitCount * FOLIO_BITMAP_BITS_PER_UNIT) / 32);
  }

  static create(unitCount: number, arenaBasePtr: number): FolioStateTable {
    assert(Number.isInteger(unitCount) && unitCount > 0, 'unit count is positive');
    const buffer = new SharedArrayBuffer(4 * FolioStateTable.wordCountFor(unitCount));
    return new FolioStateTable(buffer, unitCount, arenaBasePtr);
  }

  static fromShare(share: FolioStateShare): FolioStateTable {
    return new FolioStateTable(share.buffer, share.unitCount, share.arenaBasePtr);
  }

  share(): FolioStateShare {
    return { buffer: this.buffer, unitCount: this.unitCount, arenaBasePtr: this.arenaBasePtr };
  }

  slotOfPtr(dataPtr: number): number {
    const offsetBytes = dataPtr - this.arenaBasePtr;
    assert(offsetBytes >= 0 && offsetBytes % PAGE_BYTES === 0, 'folio pointer on an arena unit');
    const slot = offsetBytes >>> PAGE_SHIFT;
    assert(slot < this.unitCount, 'folio pointer inside the arena');
    return slot;
  }

  /** Give a slot to a new folio (engine thread; rule 5): state IN_USE | order, bitmap cleared. */
  initSlot(slot: number, order: number): void {
    assert(Atomics.load(this.words, slot) === 0, 'slot is free');
    const unitEnd = slot + (1 << order);
    bitsClear(this.words, this.bitmapWordBase, slot * FOLIO_BITMAP_BITS_PER_UNIT, unitEnd * FOLIO_BITMAP_BITS_PER_UNIT);
    Atomics.store(this.words, slot, FOLIO_STATE_IN_USE | (order << FOLIO_STATE_ORDER_SHIFT));
  }

  /** Take a slot back (engine thread; rule 5): nobody may hold it. */
  freeSlot(slot: number): void {
    const state = Atomics.load(this.words, slot);
    assert((state & FOLIO_STATE_IN_USE) !== 0, 'slot was in use');
    assert((state & (FOLIO_STATE_LOCKED | FOLIO_STATE_WRITEBACK)) === 0, 'freed slot is neither locked nor under writeback');
    Atomics.store(this.words, slot, 0);
  }
}

// ─── The cross-thread protocol (any thread) ─────────────────────────────────────────────

export function folioWordOrder(state: number): number {
  return (state & FOLIO_STATE_ORDER_MASK) >>> FOLIO_STATE_ORDER_SHIFT;
}

/** Take LOCKED if it is clear (rule 1). */
export function folioWordTryLock(words: Int32Array, slot: number): boolean {
  for (;;) {
    const state = Atomics.load(words, slot);
    if ((state & FOLIO_STATE_LOCKED) !== 0) return false;
    if (Atomics.compareExchange(words, slot, state, state | FOLIO_STATE_LOCKED) === state) return true;
  }
}

/** Blocking lock for worker threads (Atomics.wait; never on the engine thread). */
export function folioWordLockBlocking(words: Int32Array, slot: number): void {
  for (;;) {
    if (folioWordTryLock(words, slot)) return;
    const expected = setWaitersBit(words, slot, FOLIO_STATE_LOCKED, FOLIO_STATE_LOCK_WAITERS);
    if (expected !== null) Atomics.wait(words, slot, expected);
  }
}

/** Release LOCKED and wake sleepers (rules 1, 2). */
export function folioWordUnlock(words: Int32Array, slot: number): void {
  const old = Atomics.and(words, slot, ~(FOLIO_STATE_LOCKED | FOLIO_STATE_LOCK_WAITERS));
  assert((old & FOLIO_STATE_LOCKED) !== 0, 'unlocking a locked folio');
  if ((old & FOLIO_STATE_LOCK_WAITERS) !== 0) Atomics.notify(words, slot);
}

/** Set WRITEBACK (rule 3); it must have been clear. */
export function folioWordStartWriteback(words: Int32Array, slot: number): void {
  const old = Atomics.or(words, slot, FOLIO_STATE_WRITEBACK);
  assert((old & FOLIO_STATE_WRITEBACK) === 0, 'folio was not already under writeback');
}

/** Clear WRITEBACK and wake its waiters (rules 2, 3); returns whether it was set. */
export function folioWordEndWriteback(words: Int32Array, slot: number): boolean {
  const old = Atomics.and(words, slot, ~(FOLIO_STATE_WRITEBACK | FOLIO_STATE_WRITEBACK_WAITERS));
  if ((old & FOLIO_STATE_WRITEBACK_WAITERS) !== 0) Atomics.notify(words, slot);
  return (old & FOLIO_STATE_WRITEBACK) !== 0;
}

/** Sleep until WRITEBACK is clear (worker threads only). */
export function folioWordWaitWritebackBlocking(words: Int32Array, slot: number): void {
  for (;;) {
    const expected = setWaitersBit(words, slot, FOLIO_STATE_WRITEBACK, FOLIO_STATE_WRITEBACK_WAITERS);
    if (expected === null) return;
    Atomics.wait(words, slot, expected);
  }
}

/**
 * Rule 2, the waiter's half: while `bit` is set, make sure `waitersBit` is too and return
 * the exact word value to wait on; null once `bit` is clear.
 */
export function setWaitersBit(words: Int32Array, slot: number, bit: number, waitersBit: number): number | null {
  for (;;) {
    const state = Atomics.load(words, slot);
    if ((state & bit) === 0) return null;
    if ((state & waitersBit) !== 0) return state;
    const wanted = state | waitersBit;
    if (Atomics.compareExchange(words, slot, state, wanted) === state) return wanted;
  }
}

// ─── Bit ranges over the shared bitmap (Atomics on whole words, rule 4) ─────────────────

// Bits [lo, hi) of one word, 0 ≤ lo < hi ≤ 32.
function wordMask(lo: number, hi: number): number {
  return hi - lo === 32 ? -1 : (((1 << (hi - lo)) - 1) << lo) | 0;
}

export function bitsSet(words: Int32Array, wordBase: number, bitStart: number, bitEnd: number): void {
  for (let bit = bitStart; bit < bitEnd; ) {
    const lo = bit & 31;
    const hi = Math.min(32, lo + (bitEnd - bit));
    Atomics.or(words, wordBase + (bit >>> 5), wordMask(lo, hi));
    bit += hi - lo;
  }
}

export function bitsClear(words: Int32Array, wordBase: number, bitStart: number, bitEnd: number): void {
  for (let bit = bitStart; bit < bitEnd; ) {
    const lo = bit & 31;
    const hi = Math.min(32, lo + (bitEnd - bit));
    Atomics.and(words, wordBase + (bit >>> 5), ~wordMask(lo, hi));
    bit += hi - lo;
  }
}

/** First bit in [bitStart, bitEnd) equal to `value`, or -1. */
export function bitsFind(words: Int32Array, wordBase: number, bitStart: number, bitEnd: number, value: boolean): number {
  for (let bit = bitStart; bit < bitEnd; ) {
    const lo = bit & 31;
    const hi = Math.min(32, lo + (bitEnd - bit));
    const word = Atomics.load(words, wordBase + (bit >>> 5));
    const hits = (value ? word : ~word) & wordMask(lo, hi);
    if (hits !== 0) return bit - lo + (31 - Math.clz32(hits & -hits));
    bit += hi - lo;
  }
  return -1;
}

// ─── Folio: the engine thread's handle ──────────────────────────────────────────────────

/** A half-open run of blocks inside one folio. */
export interface BlockRange {
  blockStart: number;
  blockEnd: number;
}

/** Which per-block bitmap: uptodate bits or dirty bits. */
export type FolioBitKind = 'uptodate' | 'dirty';

type WaitAsyncResult =
  | { async: false; value: 'not-equal' | 'timed-out' }
  | { async: true; value: Promise<'ok' | 'timed-out'> };
const atomicsWaitAsync = (Atomics as unknown as {
  waitAsync(words: Int32Array, index: number, value: number): WaitAsyncResult;
}).waitAsync;

const RESOLVED: Promise<void> = Promise.resolve();

export class Folio {
  /** Pages: [index, indexEnd). */
  readonly indexEnd: number;
  readonly lengthBytes: number;
  /** Filesystem blocks in this folio (lengthBytes >> mapping.blockShift). */
  readonly blockCount: number;
  /** Pins held by the engine (get/put); a pinned folio is never evicted or freed. */
  refCount = 0;
  /** The engine thread holds LOCKED for this folio (taken by tryLock/lock, kept across hand-offs). */
  lockedHere = false;
  /** Still in its mapping (false once deleted or evicted; memory goes when the last pin drops). */
  attached = true;
  /** Engine-side record that this folio's DIRTY bit is counted in the cache's dirty bytes. */
  dirtyAccounted = false;
  /** Engine-side record that startWriteback ran and endWriteback has not. */
  writebackAccounted = false;
  /**
   * Bytes of read / write I/O in flight for this folio, for the iomap layer's use (ifs
   * read_bytes_pending / write_bytes_pending): the folio's read or writeback ends when
   * its counter returns to 0. The page cache only asserts they are 0 when it frees.
   */
  readBytesPending = 0;
  writeBytesPending = 0;
  /** LRU links (page-cache.ts); inLru ⇔ evictable. */
  lruPrev: Folio | null = null;
  lruNext: Folio | null = null;
  inLru = false;
  private lockQueue: Array<() => void> | null = null;
  private lockWatching = false;
  private readonly bitBase: number;

  constructor(
    readonly mapping: AddressSpace,
    /** First page index (in 4 KiB pages), aligned to 2^order. */
    readonly index: number,
    readonly order: number,
    /** Byte address of the folio's data in the wasm memory. */
    readonly dataPtr: number,
    /** State-word slot (= the folio's first arena unit). */
    readonly slot: number,
  ) {
    assert(order >= 0 && order <= FOLIO_ORDER_MAX, 'folio order in [0, 11]');
    assert(index % (1 << order) === 0, 'folio index aligned to its order');
    this.indexEnd = index + (1 << order);
    this.lengthBytes = PAGE_BYTES << order;
    this.blockCount = this.lengthBytes >>> mapping.blockShift;
    this.bitBase = slot * FOLIO_BITMAP_BITS_PER_UNIT;
  }

  /** Byte offset of the folio in its file. */
  get positionBytes(): number {
    return this.index * PAGE_BYTES;
  }

  private get words(): Int32Array {
    return this.mapping.cache.states.words;
  }

  /** The folio's bytes: a view over the wasm memory (valid until the memory grows). */
  bytes(): Uint8Array {
    return this.mapping.cache.core.bytes().subarray(this.dataPtr, this.dataPtr + this.lengthBytes);
  }

  /**
   * Copy source into the folio at offsetBytes. A source inside the same wasm memory (an
   * I/O buffer from the engine) is copied by the wasm kernel (memory.copy); any other by
   * TypedArray.set (~11–15 GB/s across memories here).
   */
  copyIn(offsetBytes: number, source: Uint8Array): void {
    assert(offsetBytes >= 0 && offsetBytes + source.length <= this.lengthBytes, 'copy inside the folio');
    const core = this.mapping.cache.core;
    const memory = core.bytes();
    if (source.buffer === memory.buffer) core.kernels.bytesCopy(this.dataPtr + offsetBytes, source.byteOffset, source.length);
    else memory.set(source, this.dataPtr + offsetBytes);
  }

  /** Copy folio bytes [offsetBytes, offsetBytes + target.length) into target (same rule as copyIn). */
  copyOut(offsetBytes: number, target: Uint8Array): void {
    assert(offsetBytes >= 0 && offsetBytes + target.length <= this.lengthBytes, 'copy inside the folio');
    const core = this.mapping.cache.core;
    const memory = core.bytes();
    if (target.buffer === memory.buffer) core.kernels.bytesCopy(target.byteOffset, this.dataPtr + offsetBytes, target.length);
    else target.set(memory.subarray(this.dataPtr + offsetBytes, this.dataPtr + offsetBytes + target.length));
  }

  /** Zero folio bytes [fromBytes, toBytes) with the wasm kernel (memory.fill: ~30x TypedArray.fill here). */
  zeroBytes(fromBytes: number, toBytes: number): void {
    assert(fromBytes >= 0 && fromBytes <= toBytes && toBytes <= this.lengthBytes, 'zero range inside the folio');
    if (fromBytes < toBytes) this.mapping.cache.core.kernels.bytesZero(this.dataPtr + fromBytes, toBytes - fromBytes);
  }

  state(): number {
    return Atomics.load(this.words, this.slot);
  }
  isLocked(): boolean {
    return (this.state() & FOLIO_STATE_LOCKED) !== 0;
  }
  isUptodate(): boolean {
    return (this.state() & FOLIO_STATE_UPTODATE) !== 0;
  }
  isDirty(): boolean {
    return (this.state() & FOLIO_STATE_DIRTY) !== 0;
  }
  isWriteback(): boolean {
    return (this.state() & FOLIO_STATE_WRITEBACK) !== 0;
  }
  hasError(): boolean {
    return (this.state() & FOLIO_STATE_ERROR) !== 0;
  }
  setError(error: boolean): void {
    if (error) Atomics.or(this.words, this.slot, FOLIO_STATE_ERROR);
    else Atomics.and(this.words, this.slot, ~FOLIO_STATE_ERROR);
  }

  // ─── Pins ───

  /** Pin: the folio stays in memory (not evicted, not freed) until the matching put(). */
  get(): this {
    assert(this.refCount >= 0, 'reference count is not negative');
    this.refCount++;
    this.mapping.cache.folioChanged(this);
    return this;
  }

  put(): void {
    assert(this.refCount > 0, 'put matches a get');
    this.refCount--;
    if (this.refCount === 0) this.mapping.cache.folioChanged(this);
  }

  // ─── Lock ───

  /**
   * Take the lock now if it is free and nobody on this thread queues for it. The caller
   * holds a pin (a folio can be freed only when unpinned). After locking, check `attached`:
   * the folio may have been deleted from its mapping while you waited (as Linux rechecks
   * folio->mapping).
   */
  tryLock(): boolean {
    assert(this.refCount > 0, 'lock a pinned folio');
    if (this.lockQueue !== null || this.lockedHere) return false;
    if (!folioWordTryLock(this.words, this.slot)) return false;
    this.lockedHere = true;
    this.mapping.cache.folioChanged(this);
    return true;
  }

  /** Wait for the lock (FIFO among engine-thread waiters); see tryLock for the caller's duties. */
  lock(): Promise<void> {
    if (this.tryLock()) return RESOLVED;
    const queue = (this.lockQueue ??= []);
    assert(queue.length < FOLIO_LOCK_WAITERS_MAX, 'folio lock waiters within bound');
    return new Promise<void>((resolve) => {
      queue.push(resolve);
      this.pumpLock();
    });
  }

  /** Release the lock, handing it straight to the next engine-thread waiter if there is one. */
  unlock(): void {
    assert(this.lockedHere, 'unlock by the engine thread that holds the lock');
    const queue = this.lockQueue;
    if (queue !== null) {
      // Hand-off: LOCKED stays set, so neither a worker nor a later tryLock can barge in.
      const next = queue.shift()!;
      if (queue.length === 0) this.lockQueue = null;
      next();
      return;
    }
    this.lockedHere = false;
    folioWordUnlock(this.words, this.slot);
    this.mapping.cache.folioChanged(this);
  }

  // Grant the lock to the queue head, or sleep (waitAsync) until another thread releases it.
  private pumpLock(): void {
    const queue = this.lockQueue;
    if (queue === null || this.lockedHere || this.lockWatching) return;
    for (;;) {
      if (folioWordTryLock(this.words, this.slot)) {
        this.lockedHere = true;
        this.mapping.cache.folioChanged(this);
        const next = queue.shift()!;
        if (queue.length === 0) this.lockQueue = null;
        next();
        return;
      }
      const expected = setWaitersBit(this.words, this.slot, FOLIO_STATE_LOCKED, FOLIO_STATE_LOCK_WAITERS);
      if (expected === null) continue;
      const result = atomicsWaitAsync(this.words, this.slot, expected);
      if (!result.async) continue;
      this.lockWatching = true;
      void result.value.then(() => {
        this.lockWatching = false;
        this.pumpLock();
      });
      return;
    }
  }

  // ─── Per-block bits ───

  private bitRange(kind: FolioBitKind, blockStart: number, blockEnd: number): [number, number] {
    assert(Number.isInteger(blockStart) && blockStart >= 0, 'block range starts inside the folio');
    assert(Number.isInteger(blockEnd) && blockStart <= blockEnd && blockEnd <= this.blockCount, 'block range ends inside the folio');
    const base = this.bitBase + (kind === 'dirty' ? this.blockCount : 0);
    return [base + blockStart, base + blockEnd];
  }

  /** First block in [blockFrom, blockEnd) whose `kind` bit equals `value`, else blockEnd. */
  nextBlock(kind: FolioBitKind, value: boolean, blockFrom: number, blockEnd = this.blockCount): number {
    const [bitStart, bitEnd] = this.bitRange(kind, blockFrom, blockEnd);
    const bit = bitsFind(this.words, this.mapping.cache.states.bitmapWordBase, bitStart, bitEnd, value);
    return bit < 0 ? blockEnd : bit - bitStart + blockFrom;
  }

  /** Every block of [blockStart, blockEnd) is uptodate. */
  isRangeUptodate(blockStart: number, blockEnd: number): boolean {
    return this.nextBlock('uptodate', false, blockStart, blockEnd) === blockEnd;
  }

  /** Some block of [blockStart, blockEnd) is dirty. */
  isRangeDirty(blockStart: number, blockEnd: number): boolean {
    return this.nextBlock('dirty', true, blockStart, blockEnd) < blockEnd;
  }

  /** Mark blocks uptodate (caller holds the lock); returns whether the whole folio now is. */
  markUptodate(blockStart = 0, blockEnd = this.blockCount): boolean {
    const [bitStart, bitEnd] = this.bitRange('uptodate', blockStart, blockEnd);
    bitsSet(this.words, this.mapping.cache.states.bitmapWordBase, bitStart, bitEnd);
    if (!this.isRangeUptodate(0, this.blockCount)) return false;
    Atomics.or(this.words, this.slot, FOLIO_STATE_UPTODATE);
    return true;
  }

  /** Forget the folio's contents (a failed read, an invalidation under lock). */
  clearUptodate(): void {
    assert(!this.isDirty(), 'clearing uptodate of a clean folio');
    const [bitStart, bitEnd] = this.bitRange('uptodate', 0, this.blockCount);
    Atomics.and(this.words, this.slot, ~FOLIO_STATE_UPTODATE);
    bitsClear(this.words, this.mapping.cache.states.bitmapWordBase, bitStart, bitEnd);
  }

  /**
   * Mark blocks dirty (caller holds the lock, blocks are uptodate). The first dirty block
   * dirties the folio: DIRTY is set, the mapping tags it and the cache counts its bytes.
   */
  markDirty(blockStart = 0, blockEnd = this.blockCount): void {
    assert(this.attached, 'dirtying a folio that is still in its mapping');
    const [bitStart, bitEnd] = this.bitRange('dirty', blockStart, blockEnd);
    if (bitStart === bitEnd) return;
    bitsSet(this.words, this.mapping.cache.states.bitmapWordBase, bitStart, bitEnd);
    const old = Atomics.or(this.words, this.slot, FOLIO_STATE_DIRTY);
    if ((old & FOLIO_STATE_DIRTY) === 0) this.mapping.folioDirtied(this);
  }

  /** The first run of dirty blocks at or after blockFrom (before blockEnd), or null. */
  findDirtyRange(blockFrom = 0, blockEnd = this.blockCount): BlockRange | null {
    const blockStart = this.nextBlock('dirty', true, blockFrom, blockEnd);
    if (blockStart === blockEnd) return null;
    return { blockStart, blockEnd: this.nextBlock('dirty', false, blockStart, blockEnd) };
  }

  /** All runs of dirty blocks, in order. */
  dirtyRanges(): BlockRange[] {
    const ranges: BlockRange[] = [];
    for (let range = this.findDirtyRange(0); range !== null; range = this.findDirtyRange(range.blockEnd)) {
      ranges.push(range);
    }
    return ranges;
  }

  // ─── Writeback ───

  /**
   * Start writeback (caller holds the lock; not already under writeback): returns the dirty
   * block runs, clears every dirty bit and DIRTY, and sets WRITEBACK. The caller writes
   * those runs (or redirties what it cannot) and calls endWriteback() when they are on the
   * device. Writes that land after this (under the lock again) dirty the folio anew.
   */
  startWriteback(): BlockRange[] {
    assert(this.lockedHere, 'writeback starts under the folio lock');
    assert(!this.writebackAccounted, 'folio is not already under writeback');
    const ranges = this.dirtyRanges();
    const [bitStart, bitEnd] = this.bitRange('dirty', 0, this.blockCount);
    bitsClear(this.words, this.mapping.cache.states.bitmapWordBase, bitStart, bitEnd);
    const old = Atomics.and(this.words, this.slot, ~FOLIO_STATE_DIRTY);
    assert(((old & FOLIO_STATE_DIRTY) !== 0) === ranges.length > 0, 'DIRTY ⇔ some dirty block');
    folioWordStartWriteback(this.words, this.slot);
    this.writebackAccounted = true;
    this.mapping.folioWritebackStarted(this, (old & FOLIO_STATE_DIRTY) !== 0);
    return ranges;
  }

  /**
   * End writeback (engine thread, after the data — and any completion metadata — is
   * durable on the device): clears WRITEBACK (a worker may already have), wakes waiters.
   */
  endWriteback(): void {
    assert(this.writebackAccounted, 'endWriteback matches a startWriteback');
    folioWordEndWriteback(this.words, this.slot);
    this.writebackAccounted = false;
    this.mapping.folioWritebackEnded(this);
  }

  /** Resolve once WRITEBACK is clear (set by any thread, cleared by any thread). */
  async waitWriteback(): Promise<void> {
    for (;;) {
      const expected = setWaitersBit(this.words, this.slot, FOLIO_STATE_WRITEBACK, FOLIO_STATE_WRITEBACK_WAITERS);
      if (expected === null) return;
      const result = atomicsWaitAsync(this.words, this.slot, expected);
      if (result.async) await result.value;
    }
  }

  /** Drop the dirty state without writing (truncate: the caller holds the lock). */
  cancelDirty(): void {
    assert(this.lockedHere, 'dirty state is cancelled under the folio lock');
    const [bitStart, bitEnd] = this.bitRange('dirty', 0, this.blockCount);
    bitsClear(this.words, this.mapping.cache.states.bitmapWordBase, bitStart, bitEnd);
    const old = Atomics.and(this.words, this.slot, ~FOLIO_STATE_DIRTY);
    if ((old & FOLIO_STATE_DIRTY) !== 0) this.mapping.folioCleaned(this);
  }

  toString(): string {
    return `folio(index ${this.index}, order ${this.order}, slot ${this.slot}, state 0x${this.state().toString(16)})`;
  }
}
