/**
 * Memory stays within the configured cache however large the file: a 4 GiB sequential
 * write (+ fsync) and read-back through a 256 MiB page cache, in a child process
 * (memory-child.mjs) on an image file, so the peak RSS measured is the engine's alone.
 * The bound: the cache plus a fixed allowance for Node itself, the wasm reserved region
 * and the JS heap (ENGINE_OVERHEAD_BYTES_MAX). Every MiB read back is checked.
 *
 * Cost: ~25 s (4 GiB written and read through pwrite/pread on tmpfs); the image is sparse.
 */
import { execFile } from 'node:child_process';
import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/tmp.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const FILE_BYTES = 4 * GiB;
const CACHE_BYTES = 256 * MiB;
/** Node's own RSS (~45 MiB), the wasm region below the arena, the JS heap and buffers. */
const ENGINE_OVERHEAD_BYTES_MAX = 192 * MiB;
const CHILD = fileURLToPath(new URL('./memory-child.mjs', import.meta.url));

const tmp = makeTempDir('ext4ts-memory-', { freeBytesMin: FILE_BYTES + GiB });
afterAll(() => tmp.cleanup());

interface ChildReport {
  writeMs: number; readMs: number; mismatches: number; maxRssBytes: number;
  cacheBytesInUseAfterWrite: number; evictedFolios: number;
}

function runChild(image: string, path: string): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CHILD, image, String(FILE_BYTES), String(CACHE_BYTES), path], { maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error) { reject(new Error(`${error.message}\n${stderr}`)); return; }
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as ChildReport);
    });
  });
}

describe('memory: a 4 GiB file through a 256 MiB cache', () => {
  it('sequential write + fsync and read back: every MiB correct, peak RSS under cache + overhead', async () => {
    const image = join(tmp.dir, 'mem.img');
    writeFileSync(image, '');
    truncateSync(image, FILE_BYTES + GiB / 2);
    try {
      const report = await runChild(image, 'iomap');
      const mibPerS = (ms: number) => (FILE_BYTES / MiB / (ms / 1000)).toFixed(0);
      console.log(`4 GiB through a 256 MiB cache (iomap): write+fsync ${mibPerS(report.writeMs)} MiB/s, read ${mibPerS(report.readMs)} MiB/s, `
        + `peak RSS ${(report.maxRssBytes / MiB).toFixed(0)} MiB (cache ${CACHE_BYTES / MiB} MiB), ${report.evictedFolios} folios evicted`);
      expect(report.mismatches).toBe(0);
      expect(report.cacheBytesInUseAfterWrite).toBeLessThanOrEqual(CACHE_BYTES);
      expect(report.maxRssBytes).toBeLessThan(CACHE_BYTES + ENGINE_OVERHEAD_BYTES_MAX);
    } finally {
      rmSync(image, { force: true });
    }
  }, 300_000);
});
