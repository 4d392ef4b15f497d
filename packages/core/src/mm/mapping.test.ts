// AddressSpace against a model (a list of [index, order] folios) on seeded random sequences
// of create / lookup / dirty / walk / invalidate / delete: no overlap, alignment, and the
// largest order that the wanted order, alignment, neighbours and EOF allow.
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureWasmBuilt, randomBelow, seededRandom } from '../wasm/testing.js';
import type { Folio } from './folio.js';
import type { AddressSpace } from './mapping.js';
import { withPageCache } from './testing.js';

beforeAll(() => ensureWasmBuilt());

const MiB = 1024 * 1024;
const FILE_PAGES = 8192; // 32 MiB of file: fits the 64 MiB cache, so nothing is evicted

interface ModelFolio {
  index: number;
  order: number;
  dirty: boolean;
}

class MappingModel {
  readonly folios = new Map<number, ModelFolio>(); // by index

  covering(index: number): ModelFolio | undefined {
    for (const folio of this.folios.values()) {
      if (folio.index <= index && index < folio.index + (1 << folio.order)) return folio;
    }
    return undefined;
  }

  overlapping(start: number, end: number): ModelFolio[] {
    return [...this.folios.values()]
      .filter((folio) => folio.index < end && start < folio.index + (1 << folio.order))
      .sort((a, b) => a.index - b.index);
  }

  expectedOrder(index: number, wanted: number, orderCap: number, indexLimit: number | undefined): number {
    for (let order = Math.min(wanted, orderCap); order > 0; order--) {
      if (index % (1 << order) !== 0) continue;
      if (indexLimit !== undefined && index + (1 << order) > indexLimit) continue;
      if (this.overlapping(index, index + (1 << order)).length > 0) continue;
      return order;
    }
    return 0;
  }
}

function summary(folios: Iterable<Folio | ModelFolio>): string[] {
  return [...folios].map((folio) => `${folio.index}/${folio.order}`);
}

function runSequence(mapping: AddressSpace, seed: number, steps: number): void {
  const random = seededRandom(seed);
  const model = new MappingModel();
  const orderCap = Math.min(mapping.orderMax, mapping.cache.folioOrderMax);
  const ordersSeen = new Set<number>();
  const randomIndex = () => {
    // Mostly aligned indices so large orders happen; sometimes any index.
    const align = 1 << randomBelow(random, 12);
    return randomBelow(random, 8) === 0 ? randomBelow(random, FILE_PAGES) : Math.floor(randomBelow(random, FILE_PAGES) / align) * align;
  };
  for (let step = 0; step < steps; step++) {
    const op = randomBelow(random, 100);
    const index = randomIndex();
    if (op < 45) {
      const wanted = randomBelow(random, 12);
      const indexLimit = randomBelow(random, 3) === 0 ? index + randomBelow(random, 3000) : undefined;
      const existing = model.covering(index);
      const expectedOrder = existing?.order ?? model.expectedOrder(index, wanted, orderCap, indexLimit);
      const folio = mapping.tryGetOrCreate(index, wanted, { indexLimit })!;
      expect(folio).not.toBeNull();
      expect(folio.index <= index && index < folio.indexEnd).toBe(true);
      expect(folio.order).toBe(expectedOrder);
      expect(folio.index % (1 << folio.order)).toBe(0);
      if (existing === undefined) {
        ordersSeen.add(folio.order);
        expect(folio.index).toBe(index);
        model.folios.set(index, { index, order: folio.order, dirty: false });
      } else {
        expect(folio.index).toBe(existing.index);
      }
      if (randomBelow(random, 3) === 0) {
        expect(folio.tryLock()).toBe(true);
        folio.markUptodate();
        folio.markDirty(randomBelow(random, folio.blockCount), folio.blockCount);
        folio.unlock();
        model.folios.get(folio.index)!.dirty = true;
      }
      folio.put();
    } else if (op < 65) {
      const expected = model.covering(index);
      const folio = mapping.lookup(index);
      expect(folio === null ? null : `${folio.index}/${folio.order}`).toBe(expected === undefined ? null : `${expected.index}/${expected.order}`);
    } else if (op < 80) {
      const end = index + randomBelow(random, 4096);
      expect(summary(mapping.folios(index, end))).toEqual(summary(model.overlapping(index, end)));
      expect(summary(mapping.dirtyFolios(index, end))).toEqual(summary(model.overlapping(index, end).filter((f) => f.dirty)));
    } else if (op < 95) {
      const end = index + randomBelow(random, 3000);
      const overlapping = model.overlapping(index, end);
      const result = mapping.invalidateRange(index, end);
      const inside = (f: ModelFolio) => f.index >= index && f.index + (1 << f.order) <= end;
      const dropped = overlapping.filter((f) => !f.dirty && inside(f));
      expect(result.droppedCount).toBe(dropped.length);
      expect(summary(result.dirty)).toEqual(summary(overlapping.filter((f) => f.dirty)));
      expect(summary(result.busy)).toEqual(summary(overlapping.filter((f) => !f.dirty && !inside(f))));
      for (const folio of dropped) model.folios.delete(folio.index);
    } else {
      // Truncate one folio whatever its state: lock, delete (discarding dirty data), unlock.
      const folio = mapping.lookup(index);
      if (folio !== null) {
        folio.get();
        expect(folio.tryLock()).toBe(true);
        mapping.deleteFolio(folio);
        folio.unlock();
        folio.put();
        model.folios.delete(folio.index);
        expect(mapping.lookup(index)).toBeNull();
      }
    }
    if (step % 50 === 0) {
      mapping.checkInvariants();
      expect(mapping.folioCount).toBe(model.folios.size);
      expect(mapping.dirtyFolioCount).toBe([...model.folios.values()].filter((f) => f.dirty).length);
    }
  }
  mapping.checkInvariants();
  expect(summary(mapping.folios(0, 2 ** 32))).toEqual(summary(model.overlapping(0, 2 ** 32)));
  // The sequence exercised small and large folios (up to the cap, or near it).
  expect(ordersSeen.has(0)).toBe(true);
  expect(Math.max(...ordersSeen)).toBeGreaterThanOrEqual(Math.min(orderCap, 7));
}

describe('AddressSpace', () => {
  it('create/lookup/walk/invalidate/delete match a model on seeded random sequences (4 KiB blocks)', async () => {
    await withPageCache({ cacheBytesMax: 64 * MiB }, (cache) => {
      for (const seed of [0x3a11_0001, 0x3a11_0002, 0x3a11_0003]) {
        const mapping = cache.createMapping({ blockBytes: 4096 });
        runSequence(mapping, seed, 1500);
        cache.checkInvariants();
        expect(cache.stats().evictedFolioCount).toBe(0);
        // Drop everything: cancel dirty data, then release.
        for (const folio of [...mapping.dirtyFolios(0, 2 ** 32)]) {
          folio.get();
          expect(folio.tryLock()).toBe(true);
          mapping.deleteFolio(folio);
          folio.unlock();
          folio.put();
        }
        cache.releaseMapping(mapping);
        expect(cache.stats().bytesInUse).toBe(0);
      }
    });
  });

  it('respects a mapping order cap and the 2048-blocks-per-folio cap at 1 KiB blocks', async () => {
    await withPageCache({ cacheBytesMax: 64 * MiB }, (cache) => {
      const small = cache.createMapping({ blockBytes: 1024 });
      expect(small.orderMax).toBe(9);
      runSequence(small, 0x3a11_0010, 600);
      const single = cache.createMapping({ blockBytes: 4096, orderMax: 0 });
      runSequence(single, 0x3a11_0011, 600);
      expect([...single.folios(0, 2 ** 32)].every((folio) => folio.order === 0)).toBe(true);
      cache.checkInvariants();
    });
  });

  it('readaheadOrder grows by 2 per round, capped by the window, the mapping and the cache', async () => {
    await withPageCache({ cacheBytesMax: 64 * MiB }, (cache) => {
      const mapping = cache.createMapping({ blockBytes: 4096 });
      expect(mapping.readaheadOrder(0, 3)).toBe(0);
      expect(mapping.readaheadOrder(0, 4)).toBe(2);
      expect(mapping.readaheadOrder(2, 32)).toBe(4);
      expect(mapping.readaheadOrder(4, 32)).toBe(5);
      expect(mapping.readaheadOrder(10, 1 << 20)).toBe(11);
      expect(cache.createMapping({ blockBytes: 1024 }).readaheadOrder(10, 1 << 20)).toBe(9);
      expect(cache.createMapping({ blockBytes: 4096, orderMax: 0 }).readaheadOrder(4, 64)).toBe(0);
      // At an unaligned index and near EOF getOrCreate takes it down further.
      const folio = mapping.tryGetOrCreate(12, mapping.readaheadOrder(4, 64), { indexLimit: 30 })!;
      expect(folio.order).toBe(2);
      folio.put();
    });
  });

  it('a folio deleted while pinned keeps its memory until the last put', async () => {
    await withPageCache({ cacheBytesMax: 1 * 1024 * 1024 }, (cache) => {
      const mapping = cache.createMapping({ blockBytes: 4096 });
      const folio = mapping.tryGetOrCreate(0, 2)!;
      expect(cache.stats().bytesInUse).toBe(16384);
      expect(folio.tryLock()).toBe(true);
      mapping.deleteFolio(folio);
      folio.unlock();
      expect(mapping.lookup(0)).toBeNull();
      expect(cache.stats().bytesInUse).toBe(16384);
      folio.put();
      expect(cache.stats().bytesInUse).toBe(0);
    });
  });
});
