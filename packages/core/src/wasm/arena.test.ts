// BuddyArena against a simple model: a map of live blocks, checked for overlap, size
// alignment and byte accounting after every step; everything freed must merge back.
import { beforeAll, describe, expect, it } from 'vitest';
import { AssertionError } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import { BuddyArena, arenaOrderForBytes, createArena } from './arena.js';
import { loadWasmCore, type WasmCore } from './core.js';
import { ARENA_ORDER_MAX, ARENA_UNIT_BYTES } from './layout.js';
import { ensureWasmBuilt, randomBelow, seededRandom } from './testing.js';

beforeAll(() => ensureWasmBuilt());

function withArena(sizeBytes: number, body: (arena: BuddyArena, core: WasmCore) => void): void {
  const core = loadWasmCore({ maximumPages: 2048 });
  const arena = createArena(core, { sizeBytes });
  try {
    body(arena, core);
  } finally {
    arena.close();
    core.close();
  }
}

// Live blocks as [startByte, endByte) intervals; checks a new block against all of them.
class LiveBlocks {
  readonly blocks = new Map<number, number>();
  add(ptr: number, lengthBytes: number): void {
    const overlapping = [...this.blocks].find(([start, length]) => ptr < start + length && start < ptr + lengthBytes);
    expect(overlapping, `block ${ptr}+${lengthBytes} overlaps a live block`).toBeUndefined();
    this.blocks.set(ptr, lengthBytes);
  }
  bytesInUse(): number {
    let total = 0;
    for (const length of this.blocks.values()) total += length;
    return total;
  }
}

describe('BuddyArena', () => {
  it('alloc/free random sequences: no overlap, size alignment, exact accounting, full recovery', () => {
    const sizeBytes = 40 * 1024 * 1024 + 12 * ARENA_UNIT_BYTES; // not a power of two
    withArena(sizeBytes, (arena) => {
      const initial = arena.stats();
      const random = seededRandom(0xa4e4_0001);
      const live = new LiveBlocks();
      for (let step = 0; step < 3000; step++) {
        const freeing = live.blocks.size > 0 && randomBelow(random, 100) < (step % 1000 < 600 ? 35 : 70);
        if (freeing) {
          const ptrs = [...live.blocks.keys()];
          const ptr = ptrs[randomBelow(random, ptrs.length)];
          expect(arena.orderOf(ptr)).toBe(arenaOrderForBytes(live.blocks.get(ptr)!));
          arena.free(ptr);
          live.blocks.delete(ptr);
        } else {
          const order = randomBelow(random, 4) === 0 ? randomBelow(random, ARENA_ORDER_MAX + 1) : randomBelow(random, 4);
          const ptr = arena.alloc(order);
          const lengthBytes = ARENA_UNIT_BYTES << order;
          if (ptr === -1) {
            expect(arena.stats().largestFreeOrder).toBeLessThan(order);
            continue;
          }
          expect(ptr % lengthBytes, `alignment of order ${order}`).toBe(0);
          expect(ptr).toBeGreaterThanOrEqual(arena.basePtr);
          expect(ptr + lengthBytes).toBeLessThanOrEqual(arena.basePtr + sizeBytes);
          live.add(ptr, lengthBytes);
        }
        expect(arena.stats().bytesInUse).toBe(live.bytesInUse());
      }
      for (const ptr of live.blocks.keys()) arena.free(ptr);
      expect(arena.stats()).toEqual(initial);
    });
  });

  it('alloc hands out the whole arena in order-0 blocks, then returns -1', () => {
    withArena(8 * 1024 * 1024 + 3 * ARENA_UNIT_BYTES, (arena) => {
      const ptrs = new Set<number>();
      for (let i = 0; i < arena.unitCount; i++) ptrs.add(arena.alloc(0));
      expect(ptrs.size).toBe(arena.unitCount);
      expect(ptrs.has(-1)).toBe(false);
      expect(arena.alloc(0)).toBe(-1);
      expect(arena.stats()).toMatchObject({ bytesFree: 0, largestFreeOrder: -1 });
      for (const ptr of ptrs) arena.free(ptr);
      expect(arena.stats().freeBlockCounts[ARENA_ORDER_MAX]).toBe(1);
      expect(arena.stats().largestFreeOrder).toBe(ARENA_ORDER_MAX);
    });
  });

  it('free merges buddies back into the largest block', () => {
    withArena(8 * 1024 * 1024, (arena) => {
      const a = arena.alloc(0);
      const b = arena.alloc(0);
      expect(b - a).toBe(ARENA_UNIT_BYTES); // the split keeps the lower half first
      expect(arena.stats().largestFreeOrder).toBe(ARENA_ORDER_MAX - 1);
      arena.free(a);
      arena.free(b);
      expect(arena.stats().freeBlockCounts).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    });
  });

  it('free asserts on a double free, an interior pointer and a pointer outside the arena', () => {
    withArena(8 * 1024 * 1024, (arena) => {
      const ptr = arena.alloc(2);
      expect(() => arena.free(ptr + ARENA_UNIT_BYTES)).toThrowError(AssertionError);
      expect(() => arena.free(ptr + 1)).toThrowError(AssertionError);
      expect(() => arena.free(arena.basePtr - ARENA_UNIT_BYTES)).toThrowError(AssertionError);
      arena.free(ptr);
      expect(() => arena.free(ptr)).toThrowError(AssertionError);
    });
  });

  it('blocks are usable memory: the wasm kernels read and write them', () => {
    withArena(8 * 1024 * 1024, (arena, core) => {
      const ptr = arena.alloc(ARENA_ORDER_MAX);
      core.kernels.bytesZero(ptr, ARENA_UNIT_BYTES << ARENA_ORDER_MAX);
      core.kernels.bitmapSetRange(ptr, 0, 8 * (ARENA_UNIT_BYTES << ARENA_ORDER_MAX));
      expect(core.kernels.bitmapCountSet(ptr, 0, 64)).toBe(64);
    });
  });

  it('createArena rejects bad sizes with EINVAL and a second arena on one memory with EBUSY', () => {
    const core = loadWasmCore({ maximumPages: 512 });
    expect(() => createArena(core, { sizeBytes: 1000 })).toThrowError(FsError);
    expect(() => createArena(core, { sizeBytes: 512 * 65536 })).toThrowError(/EINVAL/); // past maximumPages
    const arena = createArena(core, { sizeBytes: 1024 * 1024 });
    expect(() => createArena(core, { sizeBytes: 1024 * 1024 })).toThrowError(/EBUSY/);
    arena.close();
    core.close();
  });

  it('arenaOrderForBytes picks the smallest block that holds the length', () => {
    expect(arenaOrderForBytes(1)).toBe(0);
    expect(arenaOrderForBytes(4096)).toBe(0);
    expect(arenaOrderForBytes(4097)).toBe(1);
    expect(arenaOrderForBytes(3 * 4096)).toBe(2);
    expect(arenaOrderForBytes(8 * 1024 * 1024)).toBe(11);
    expect(() => arenaOrderForBytes(8 * 1024 * 1024 + 1)).toThrowError(AssertionError);
  });
});
