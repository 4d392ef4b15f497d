// PageCache: the memory bound under a workload 16x the cache, LRU order, fragmentation
// fallback, waiting for memory, dirty throttling at the hard limit, and the flusher
// (expiry, background threshold, sync).
import { beforeAll, describe, expect, it } from 'vitest';
import { FsError } from '../vfs/errors.js';
import { loadWasmCore } from '../wasm/core.js';
import { ensureWasmBuilt, randomBelow, seededRandom } from '../wasm/testing.js';
import type { Folio } from './folio.js';
import type { AddressSpace } from './mapping.js';
import { type PageCache, createPageCache } from './page-cache.js';
import { FakeWriteback, eventually, sleep, withPageCache } from './testing.js';

beforeAll(() => ensureWasmBuilt());

const KiB = 1024;
const MiB = 1024 * KiB;

// Write one page-cache folio the way a buffered write would: throttle, get, lock, fill, dirty.
async function writeFolio(cache: PageCache, mapping: AddressSpace, index: number, order = 0, stamp = index & 0xff): Promise<Folio> {
  await cache.throttle();
  const folio = await mapping.getOrCreate(index, order);
  await folio.lock();
  folio.bytes().fill(stamp);
  folio.markUptodate();
  folio.markDirty();
  folio.unlock();
  folio.put();
  return folio;
}

// A buffered read's cache side: get, fill if not uptodate, done.
function readFolio(mapping: AddressSpace, index: number, order: number): Folio {
  const folio = mapping.tryGetOrCreate(index, order)!;
  expect(folio).not.toBeNull();
  if (!folio.isUptodate()) {
    expect(folio.tryLock()).toBe(true);
    folio.bytes()[0] = 0x77;
    folio.markUptodate();
    folio.unlock();
  }
  folio.put();
  return folio;
}

describe('PageCache options', () => {
  it('rejects sizes and thresholds that break the limits (EINVAL), and derives caps', () => {
    const core = loadWasmCore({ maximumPages: 512 });
    try {
      expect(() => createPageCache(core, { cacheBytesMax: 12345 })).toThrow(FsError);
      expect(() => createPageCache(core, { cacheBytesMax: 4 * MiB, dirtyBytesMax: 4 * MiB })).toThrow(FsError);
      expect(() => createPageCache(core, { cacheBytesMax: 4 * MiB, dirtyBytesMax: MiB, dirtyBackgroundBytes: MiB })).toThrow(FsError);
      const cache = createPageCache(core, { cacheBytesMax: 4 * MiB });
      expect(cache.folioOrderMax).toBe(8); // 4 MiB / 4 = 1 MiB = order 8
      expect(cache.dirtyBackgroundBytes).toBeLessThan(cache.dirtyBytesMax);
      cache.close();
    } finally {
      core.close();
    }
  });
});

describe('PageCache memory', () => {
  it('keeps bytesInUse ≤ cacheBytesMax over reads and writes touching 16x the cache; dirty data survives', async () => {
    const cacheBytesMax = 4 * MiB;
    await withPageCache({ cacheBytesMax, writebackIntervalMs: 60_000 }, async (cache) => {
      const writeback = new FakeWriteback(cache, 1); // writeback ends 1 ms after submission
      cache.setWritebackOps(writeback);
      const mappings = [0, 1, 2].map(() => cache.createMapping({ blockBytes: 4096 }));
      const random = seededRandom(0x9c00_0001);
      const touchedPagesTarget = (16 * cacheBytesMax) / 4096;
      let touchedPages = 0;
      let step = 0;
      const lastWritten = new Map<Folio, number>();
      while (touchedPages < touchedPagesTarget) {
        const mapping = mappings[randomBelow(random, mappings.length)];
        const order = randomBelow(random, 2) === 0 ? randomBelow(random, 3) : randomBelow(random, cache.folioOrderMax + 1);
        const index = randomBelow(random, 16384 >> order) << order;
        const writing = randomBelow(random, 5) === 0;
        const folio = writing ? await writeFolio(cache, mapping, index, order, step & 0xff) : readFolio(mapping, index, order);
        if (writing) lastWritten.set(folio, step & 0xff);
        touchedPages += 1 << folio.order;
        const stats = cache.stats();
        expect(stats.bytesInUse).toBeLessThanOrEqual(cacheBytesMax);
        // A write starts below the hard limit (throttle) and adds at most its folio.
        if (writing) expect(stats.dirtyBytes + stats.writebackBytes).toBeLessThan(cache.dirtyBytesMax + folio.lengthBytes);
        if (++step % 200 === 0) cache.checkInvariants();
      }
      cache.checkInvariants();
      const stats = cache.stats();
      expect(stats.evictedFolioCount).toBeGreaterThan(100);
      expect(writeback.calls.length).toBeGreaterThan(0);
      await cache.syncAll();
      expect(cache.stats().dirtyBytes + cache.stats().writebackBytes).toBe(0);
      // Folios still cached keep the last bytes written to them (no live folio's memory was reused).
      let checked = 0;
      for (const [folio, stamp] of lastWritten) {
        if (!folio.attached) continue;
        expect(folio.bytes()[folio.lengthBytes - 1]).toBe(stamp);
        checked++;
      }
      expect(checked).toBeGreaterThan(0);
    });
  });

  it('evicts the least recently used clean folio first; a lookup refreshes recency', async () => {
    await withPageCache({ cacheBytesMax: 64 * KiB }, (cache) => {
      const mapping = cache.createMapping({ blockBytes: 4096 });
      for (let index = 0; index < 16; index++) readFolio(mapping, index, 0);
      expect(cache.stats().bytesInUse).toBe(64 * KiB);
      expect(mapping.lookup(0)).not.toBeNull(); // page 0 becomes the newest
      readFolio(mapping, 16, 0);
      expect(mapping.lookup(0)).not.toBeNull();
      expect(mapping.lookup(1)).toBeNull();
      readFolio(mapping, 17, 0);
      expect(mapping.lookup(2)).toBeNull();
      expect(cache.stats().evictedFolioCount).toBe(2);
    });
  });

  it('falls back to a smaller order when no aligned region can be reclaimed, and reclaims a region when it can', async () => {
    await withPageCache({ cacheBytesMax: 1 * MiB }, (cache) => {
      const mapping = cache.createMapping({ blockBytes: 4096 });
      const folios: Folio[] = [];
      for (let index = 0; index < 256; index++) folios.push(mapping.tryGetOrCreate(index, 0)!);
      expect(cache.stats().bytesInUse).toBe(MiB);
      // Unpin the folios in odd arena slots: every 2-unit region still holds a pinned folio.
      for (const folio of folios) if (folio.slot % 2 === 1) folio.put();
      const small = mapping.tryGetOrCreate(4096, 4)!;
      expect(small.order).toBe(0);
      small.put();
      for (const folio of folios) if (folio.slot % 2 === 0) folio.put();
      const large = mapping.tryGetOrCreate(8192, 4)!;
      expect(large.order).toBe(4);
      large.put();
      cache.checkInvariants();
    });
  });

  it('getOrCreate waits for memory while every folio is pinned, and proceeds when one is put', async () => {
    await withPageCache({ cacheBytesMax: 64 * KiB }, async (cache) => {
      const mapping = cache.createMapping({ blockBytes: 4096 });
      const pinned: Folio[] = [];
      for (let index = 0; index < 16; index++) pinned.push(mapping.tryGetOrCreate(index, 0)!);
      expect(mapping.tryGetOrCreate(100, 0)).toBeNull();
      let got: Folio | null = null;
      const waiting = mapping.getOrCreate(100, 0).then((folio) => { got = folio; });
      await sleep(10);
      expect(got).toBeNull();
      pinned[5].put();
      await waiting;
      expect(got!.index).toBe(100);
      expect(mapping.lookup(5)).toBeNull();
    });
  });
});

describe('PageCache dirty limits and flusher', () => {
  it('throttle() blocks a writer at the hard limit and releases it when writeback cleans folios', async () => {
    const dirtyBytesMax = 256 * KiB;
    await withPageCache({ cacheBytesMax: MiB, dirtyBytesMax, dirtyBackgroundBytes: 128 * KiB, writebackIntervalMs: 60_000 }, async (cache) => {
      const writeback = new FakeWriteback(cache, 'manual');
      cache.setWritebackOps(writeback);
      const mapping = cache.createMapping({ blockBytes: 4096 });
      let written = 0;
      let done = false;
      const writer = (async () => {
        for (let index = 0; index < 200; index++) {
          await writeFolio(cache, mapping, index);
          written++;
        }
        done = true;
      })();
      expect(await eventually(() => cache.stats().throttledWriterCount === 1)).toBe(true);
      expect(written).toBe(dirtyBytesMax / 4096);
      // The flusher was woken (background threshold crossed) and started writeback, which is still in flight.
      expect(await eventually(() => writeback.pendingCount > 0)).toBe(true);
      const stats = cache.stats();
      expect(stats.dirtyBytes + stats.writebackBytes).toBe(dirtyBytesMax);
      await sleep(20);
      expect(written).toBe(dirtyBytesMax / 4096);
      let rounds = 0;
      while (!done) {
        // Let the flusher run (a macrotask), then end the writeback it started.
        expect(await eventually(() => done || writeback.pendingCount > 0)).toBe(true);
        writeback.completeAll();
        rounds++;
        await sleep(1);
        const now = cache.stats();
        expect(now.dirtyBytes + now.writebackBytes).toBeLessThanOrEqual(dirtyBytesMax);
      }
      await writer;
      expect(written).toBe(200);
      expect(rounds).toBeGreaterThan(0);
      writeback.completion = 'immediate';
      writeback.completeAll();
      await cache.syncAll();
      expect(cache.stats().dirtyBytes + cache.stats().writebackBytes).toBe(0);
    });
  });

  it('below the limit, a writer yields to the event loop once per ms while writeback is in flight (throttleDue says when)', async () => {
    let nowMs = 1000;
    await withPageCache({ cacheBytesMax: MiB, dirtyBackgroundBytes: 16 * KiB, writebackIntervalMs: 60_000, now: () => nowMs }, async (cache) => {
      const writeback = new FakeWriteback(cache, 'manual');
      cache.setWritebackOps(writeback);
      const mapping = cache.createMapping({ blockBytes: 4096 });
      expect(cache.throttleDue()).toBe(false); // nothing in flight: a resolved promise
      for (let index = 0; index < 8; index++) await writeFolio(cache, mapping, index);
      expect(await eventually(() => writeback.pendingCount > 0)).toBe(true);
      expect(cache.stats().writebackBytes).toBeGreaterThan(0);
      nowMs += 1; // (the writes above may have yielded already, at this clock)
      expect(cache.throttleDue()).toBe(true);
      // The yield is a macrotask: a setImmediate queued before it runs first.
      const order: string[] = [];
      setImmediate(() => order.push('event loop'));
      await cache.throttle();
      order.push('writer');
      expect(order).toEqual(['event loop', 'writer']);
      expect(cache.throttleDue()).toBe(false); // yielded within this millisecond
      nowMs += 1;
      expect(cache.throttleDue()).toBe(true);
      writeback.completion = 'immediate';
      writeback.completeAll();
      await cache.syncAll();
      expect(cache.throttleDue()).toBe(false); // nothing in flight again
    });
  });

  it('the flusher writes back dirty data once it is older than dirtyExpireMs, not before', async () => {
    const dirtyExpireMs = 80;
    await withPageCache({ cacheBytesMax: MiB, dirtyExpireMs, writebackIntervalMs: 10 }, async (cache) => {
      const writeback = new FakeWriteback(cache, 'immediate');
      cache.setWritebackOps(writeback);
      const older = cache.createMapping({ blockBytes: 4096 });
      const younger = cache.createMapping({ blockBytes: 4096 });
      await writeFolio(cache, older, 3);
      const olderDirtiedAtMs = older.dirtiedAtMs;
      await sleep(40);
      await writeFolio(cache, younger, 7);
      expect(writeback.calls.length).toBe(0); // below the background threshold, nothing expired yet
      expect(await eventually(() => older.dirtyFolioCount === 0)).toBe(true);
      const first = writeback.calls[0];
      expect(first.request.reason).toBe('expired');
      expect(first.mappingId).toBe(older.id);
      expect(first.atMs - olderDirtiedAtMs).toBeGreaterThanOrEqual(dirtyExpireMs);
      expect(writeback.written.get(older.id)).toEqual([3]);
      expect(await eventually(() => younger.dirtyFolioCount === 0)).toBe(true);
      expect(writeback.calls[writeback.calls.length - 1].atMs - younger.dirtiedAtMs).toBeGreaterThan(0);
      expect(cache.stats().dirtyBytes).toBe(0);
    });
  });

  it('crossing the background threshold wakes the flusher at once; syncMapping waits for writeback to end', async () => {
    await withPageCache({ cacheBytesMax: MiB, dirtyBackgroundBytes: 64 * KiB, writebackIntervalMs: 60_000 }, async (cache) => {
      const writeback = new FakeWriteback(cache, 5); // writeback ends 5 ms after submission
      cache.setWritebackOps(writeback);
      const mapping = cache.createMapping({ blockBytes: 4096 });
      for (let index = 0; index < 8; index++) await writeFolio(cache, mapping, index);
      expect(writeback.calls.length).toBe(0);
      await writeFolio(cache, mapping, 8, 0); // 36 KiB
      for (let index = 16; index < 32; index++) await writeFolio(cache, mapping, index); // > 64 KiB
      expect(await eventually(() => writeback.calls.some((call) => call.request.reason === 'background'))).toBe(true);
      const other = cache.createMapping({ blockBytes: 4096 });
      await writeFolio(cache, other, 0, 2);
      await cache.syncMapping(other);
      expect(other.dirtyFolioCount).toBe(0);
      expect(other.writebackFolioCount).toBe(0);
      expect(writeback.calls.some((call) => call.mappingId === other.id && call.request.reason === 'sync')).toBe(true);
      await cache.syncAll();
      expect(cache.stats().dirtyBytes + cache.stats().writebackBytes).toBe(0);
      cache.checkInvariants();
    });
  });
});
