/**
 * fsx over the generic iomap buffered I/O + page cache + fake filesystem (iomap-target.ts):
 * 20,000+ ops per run against fsx's model, with the flusher, throttling and eviction of a
 * small cache interleaved, every fsync checking the disk image, and clean folios dropped
 * every few fsyncs; large folios on (orders up to the cache cap) and off (order 0).
 */
import { describe, expect, it } from 'vitest';
import { withFakeFs } from '../../packages/core/src/iomap/testing.js';
import { IomapFsxTarget } from './iomap-target.js';
import { runFsx } from '../../packages/cli/src/fsx/run.js';

const OPS = 20_000;

async function runIomapFsx(label: string, settings: { orderMax?: number; cacheBytesMax: number; seed: number; blockBytes?: number }) {
  let summary = '';
  await withFakeFs({ cacheBytesMax: settings.cacheBytesMax, blockBytes: settings.blockBytes, writebackIntervalMs: 5 }, async (env) => {
    const target = new IomapFsxTarget(env, { orderMax: settings.orderMax, verifyDisk: true, dropCacheEvery: 3 });
    const result = await runFsx(target, { seed: settings.seed, numOps: OPS, maxFileLen: 256 * 1024, maxOpLen: 64 * 1024 });
    const stats = env.cache.stats();
    summary = `${label}: ${result.opsRun} ops ${JSON.stringify(result.opCounts)}; fsyncs ${target.fsyncCount}, disk checks ${target.file.diskChecks}, ` +
      `evicted ${stats.evictedFolioCount}, dropped ${target.droppedFolios}, flusher passes ${stats.flushPassCount}, ioends ${env.fs.stats.ioendsCompleted.length}`;
    expect(result.opsRun).toBe(OPS);
    expect(target.file.diskChecks).toBeGreaterThan(100);
    env.cache.checkInvariants();
  });
  console.log(summary);
}

describe('fsx over iomap + mm + fake fs', () => {
  it('large folios, 128 KiB cache (evicts and re-reads), 4 KiB blocks', async () => {
    await runIomapFsx('large folios', { cacheBytesMax: 128 * 1024, seed: 11 });
  });
  it('order-0 folios, 64 KiB cache', async () => {
    await runIomapFsx('order 0', { orderMax: 0, cacheBytesMax: 64 * 1024, seed: 12 });
  });
  it('large folios, 1 KiB blocks (several blocks per page)', async () => {
    await runIomapFsx('1 KiB blocks', { cacheBytesMax: 256 * 1024, seed: 13, blockBytes: 1024 });
  });
});
