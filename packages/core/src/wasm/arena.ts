/**
 * BuddyArena: the allocator of page-cache folio memory inside the shared wasm memory.
 * Blocks are 4 KiB × 2^order, order 0..11 (4 KiB..8 MiB), each aligned to its size (the
 * arena starts on an 8 MiB boundary, layout.ts). The memory is grown once, when the arena
 * is created, to cover the whole arena: growing maps address space cheaply, but touching
 * fresh pages runs at ~0.5 GiB/s here, so nothing is grown or pre-touched per allocation.
 *
 * Cost: alloc and free are O(ARENA_ORDER_MAX) list operations (< 1 µs). Book-keeping
 * lives in ordinary TS arrays, 9 bytes per 4 KiB unit (9 MiB for a 4 GiB arena), and is
 * owned by one thread (the engine's); the folio bytes themselves are shared.
 *
 * A buddy split, order 2 → 0 (units):   [0 1 2 3] → [0 1][2 3] → [0][1][2 3]
 * Freeing unit 1 while unit 0 is free merges back to [0 1], then with [2 3] if free.
 */
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import type { WasmCore } from './core.js';
import {
  ARENA_ORDER_MAX, ARENA_UNIT_BYTES, ARENA_UNIT_SHIFT, CONTROL_ARENA_CLAIM_INDEX, WASM_MAXIMUM_BYTES,
  arenaBaseOf, controlWordPtrOf,
} from './layout.js';

// unitState of a unit that heads a block: a flag and the block's order; 0 for other units.
const UNIT_FREE = 0x80;
const UNIT_USED = 0x40;
const UNIT_ORDER_MASK = 0x3f;
const NONE = -1;

export interface ArenaOptions {
  /** Arena size in bytes: a positive multiple of 4 KiB (need not be a power of two). */
  sizeBytes: number;
}

export interface ArenaStats {
  bytesTotal: number;
  bytesInUse: number;
  bytesFree: number;
  /** Order of the largest free block, or -1 when nothing is free. */
  largestFreeOrder: number;
  /** freeBlockCounts[order] = free blocks of that order. */
  freeBlockCounts: number[];
  blocksInUse: number;
}

/** Smallest order whose block holds lengthBytes (1 ≤ lengthBytes ≤ 8 MiB). */
export function arenaOrderForBytes(lengthBytes: number): number {
  assert(lengthBytes >= 1, 'block length is positive');
  assert(lengthBytes <= ARENA_UNIT_BYTES << ARENA_ORDER_MAX, 'block length is at most 8 MiB');
  const units = Math.ceil(lengthBytes / ARENA_UNIT_BYTES);
  return 32 - Math.clz32(units - 1);
}

/** Create the (one) arena of this memory, growing the memory to cover it. */
export function createArena(core: WasmCore, options: ArenaOptions): BuddyArena {
  const basePtr = arenaBaseOf(core.heapBase);
  const { sizeBytes } = options;
  const valid = Number.isInteger(sizeBytes) && sizeBytes > 0 && sizeBytes % ARENA_UNIT_BYTES === 0;
  if (!valid || basePtr + sizeBytes > WASM_MAXIMUM_BYTES) {
    const detail = `arena size ${sizeBytes} must be a positive multiple of 4096 ending within 4 GiB`;
    throw new FsError('EINVAL', { syscall: 'createArena', detail });
  }
  const words = new Int32Array(core.memory.buffer);
  const claimIndex = controlWordPtrOf(core.heapBase, CONTROL_ARENA_CLAIM_INDEX) >> 2;
  if (Atomics.compareExchange(words, claimIndex, 0, 1) !== 0) {
    throw new FsError('EBUSY', { syscall: 'createArena', detail: 'this wasm memory already has an arena' });
  }
  try {
    core.ensureMemoryBytes(basePtr + sizeBytes);
  } catch (error) {
    Atomics.store(words, claimIndex, 0);
    throw error;
  }
  return new BuddyArena(core, basePtr, sizeBytes);
}

export class BuddyArena {
  readonly unitCount: number;
  private readonly unitState: Uint8Array;
  private readonly freeNext: Int32Array;
  private readonly freePrev: Int32Array;
  private readonly freeHead = new Int32Array(ARENA_ORDER_MAX + 1).fill(NONE);
  private readonly freeCounts = new Int32Array(ARENA_ORDER_MAX + 1);
  private bytesInUse = 0;
  private blocksInUse = 0;

  constructor(private readonly core: WasmCore, readonly basePtr: number, readonly sizeBytes: number) {
    assert(basePtr % (ARENA_UNIT_BYTES << ARENA_ORDER_MAX) === 0, 'arena base aligned to the largest block');
    this.unitCount = sizeBytes >>> ARENA_UNIT_SHIFT;
    this.unitState = new Uint8Array(this.unitCount);
    this.freeNext = new Int32Array(this.unitCount);
    this.freePrev = new Int32Array(this.unitCount);
    this.carveFreeBlocks();
  }

  /** A block of 4 KiB << order (its old contents), as a byte pointer aligned to its size; -1 when full. */
  alloc(order: number): number {
    assert(Number.isInteger(order) && order >= 0 && order <= ARENA_ORDER_MAX, 'order in [0, 11]');
    let freeOrder = order;
    while (freeOrder <= ARENA_ORDER_MAX && this.freeHead[freeOrder] === NONE) freeOrder++;
    if (freeOrder > ARENA_ORDER_MAX) return -1;
    const unit = this.freeHead[freeOrder];
    this.removeFree(unit, freeOrder);
    // Split down: keep the lower half, free the upper half at each step.
    while (freeOrder > order) {
      freeOrder--;
      this.pushFree(unit + (1 << freeOrder), freeOrder);
    }
    this.unitState[unit] = UNIT_USED | order;
    this.bytesInUse += ARENA_UNIT_BYTES << order;
    this.blocksInUse++;
    return this.basePtr + unit * ARENA_UNIT_BYTES;
  }

  /** Return a block from alloc; merges it with its free buddies. */
  free(ptr: number): void {
    let unit = this.usedUnitOf(ptr);
    let order = this.unitState[unit] & UNIT_ORDER_MASK;
    this.unitState[unit] = 0;
    this.bytesInUse -= ARENA_UNIT_BYTES << order;
    this.blocksInUse--;
    while (order < ARENA_ORDER_MAX) {
      const buddy = unit ^ (1 << order);
      if (buddy >= this.unitCount || this.unitState[buddy] !== (UNIT_FREE | order)) break;
      this.removeFree(buddy, order);
      unit = Math.min(unit, buddy);
      order++;
    }
    this.pushFree(unit, order);
  }

  /** Order of an allocated block. */
  orderOf(ptr: number): number {
    return this.unitState[this.usedUnitOf(ptr)] & UNIT_ORDER_MASK;
  }

  stats(): ArenaStats {
    let largestFreeOrder = ARENA_ORDER_MAX;
    while (largestFreeOrder >= 0 && this.freeHead[largestFreeOrder] === NONE) largestFreeOrder--;
    return {
      bytesTotal: this.sizeBytes,
      bytesInUse: this.bytesInUse,
      bytesFree: this.sizeBytes - this.bytesInUse,
      largestFreeOrder,
      freeBlockCounts: Array.from(this.freeCounts),
      blocksInUse: this.blocksInUse,
    };
  }

  /** Give the memory's arena claim back (the blocks' bytes stay where they are). */
  close(): void {
    const words = new Int32Array(this.core.memory.buffer);
    Atomics.store(words, controlWordPtrOf(this.core.heapBase, CONTROL_ARENA_CLAIM_INDEX) >> 2, 0);
  }

  private usedUnitOf(ptr: number): number {
    const offsetBytes = ptr - this.basePtr;
    assert(offsetBytes >= 0 && offsetBytes < this.sizeBytes, 'pointer inside the arena');
    assert(offsetBytes % ARENA_UNIT_BYTES === 0, 'pointer on a unit boundary');
    const unit = offsetBytes >>> ARENA_UNIT_SHIFT;
    assert((this.unitState[unit] & UNIT_USED) !== 0, 'block is allocated (double free or foreign pointer)');
    return unit;
  }

  // Cover [0, unitCount) with the largest aligned blocks that fit, left to right.
  private carveFreeBlocks(): void {
    let unit = 0;
    while (unit < this.unitCount) {
      let order = ARENA_ORDER_MAX;
      while (unit % (1 << order) !== 0 || unit + (1 << order) > this.unitCount) order--;
      this.pushFree(unit, order);
      unit += 1 << order;
    }
  }

  private pushFree(unit: number, order: number): void {
    const head = this.freeHead[order];
    this.freeNext[unit] = head;
    this.freePrev[unit] = NONE;
    if (head !== NONE) this.freePrev[head] = unit;
    this.freeHead[order] = unit;
    this.unitState[unit] = UNIT_FREE | order;
    this.freeCounts[order]++;
  }

  private removeFree(unit: number, order: number): void {
    assert(this.unitState[unit] === (UNIT_FREE | order), 'removing a free block of that order');
    const next = this.freeNext[unit];
    const prev = this.freePrev[unit];
    if (prev === NONE) this.freeHead[order] = next;
    else this.freeNext[prev] = next;
    if (next !== NONE) this.freePrev[next] = prev;
    this.unitState[unit] = 0;
    this.freeCounts[order]--;
  }
}
