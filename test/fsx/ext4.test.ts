/**
 * fsx on the ext4 engine (Ext4FsxTarget: one file in a fresh in-memory ext4ts image, public
 * FileHandle API), as `ext4ts fsx` runs it, on each buffered path:
 *
 *   iomap + large folios    iomap, order-0 folios    buffer_head
 *
 * - 100,000 ops per path: every op fsx knows (read, write, mapread, mapwrite, truncate,
 *   fallocate ± keep_size, punch, zero range ± keep_size, fsync), EOF-page checks after
 *   every mapped op, a whole-file check every 1,000 ops, close/reopen 1 in 1,000 ops with
 *   every 3rd reopen an unmount + mount (the file re-read from the device). The cache is
 *   the engine's smallest (1 MiB) and the file grows to 2 MiB with ops up to 256 KiB, so
 *   folios are evicted and re-read and writers meet the dirty limits (the counts are
 *   printed and checked). At the end: fsync, unmount, the image saved and `e2fsck -fn`
 *   clean, and the file read back after a fresh mount equals fsx's model.
 * - fsx -e: garbage stored past EOF through a mapping must be zeroed when the size grows
 *   (and a direct check that such a store lands, so the -e runs cannot pass vacuously).
 * - Replay: a recorded log replays exactly (same ops, same file bytes), also on another path.
 *
 * Cost (2 shared cores, measured): 100,000 ops take ~25 s on iomap with large folios, ~30 s
 * without, ~60 s on buffer_head; the -e and replay runs ~15 s together; e2fsck ~1 s each.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ext4, FileDevice } from '@ext4ts/core';
import { e2fsck, requireE2fsprogs } from '../helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { Ext4FsxTarget, type Ext4FsxTargetOptions } from '../../packages/cli/src/fsx/ext4-target.js';
import { parseOpLog } from '../../packages/cli/src/fsx/log.js';
import { runFsx, type FsxResult, type FsxRunOptions } from '../../packages/cli/src/fsx/run.js';

const LONG_OPS = 100_000;
/** The engine's smallest cache; the file may grow to twice that, so the cache must evict. */
const CACHE_BYTES = 1024 * 1024;
const LONG_RUN = {
  numOps: LONG_OPS, maxFileLen: 2 * 1024 * 1024, maxOpLen: 256 * 1024,
  checkEveryOps: 1000, closeOpenProb: 1000,
} satisfies Partial<FsxRunOptions>;
const REMOUNT_EVERY = 3;

const PATHS = [
  { label: 'iomap, large folios', buffered: 'iomap', largeFolios: true, seed: 4101 },
  { label: 'iomap, no large folios', buffered: 'iomap', largeFolios: false, seed: 4102 },
  { label: 'buffer_head', buffered: 'buffer_head', largeFolios: false, seed: 4103 },
] as const;

let temp: TempDir;

beforeAll(async () => {
  await requireE2fsprogs();
  temp = makeTempDir('ext4ts-fsx-ext4-');
});
afterAll(() => temp?.cleanup());

interface Ext4Run {
  result: FsxResult;
  /** The file as the run's last mount read it, before close. */
  bytes: Uint8Array;
  target: Ext4FsxTarget;
  imagePath: string;
  elapsedMs: number;
}

/** Runs fsx on a fresh in-memory image, closes (fsync, unmount), saves the image and e2fscks it. */
async function runOnExt4(name: string, targetOptions: Ext4FsxTargetOptions, runOptions: Partial<FsxRunOptions>): Promise<Ext4Run> {
  const imagePath = path.join(temp.dir, `${name}.img`);
  const target = await Ext4FsxTarget.create({ ...targetOptions, saveImagePath: imagePath });
  const startedMs = performance.now();
  let result: FsxResult;
  let bytes: Uint8Array;
  try {
    result = await runFsx(target, { ...runOptions, outputDir: path.join(temp.dir, `${name}-failure`), fileName: name });
    bytes = await target.read(0, await target.size());
  } finally {
    await target.close();
  }
  const elapsedMs = performance.now() - startedMs;
  const fsck = await e2fsck(imagePath);
  expect(fsck.complaints, fsck.output).toEqual([]);
  expect(fsck.clean, fsck.output).toBe(true);
  return { result, bytes, target, imagePath, elapsedMs };
}

/** The file as a fresh read-only mount of the saved image shows it. */
async function readBackFromImage(imagePath: string, filePath = '/fsxfile'): Promise<Uint8Array> {
  const device = await FileDevice.open(imagePath, { readOnly: true });
  try {
    const fs = await Ext4.mount(device, { readOnly: true });
    try {
      return new Uint8Array((await fs.readFile(filePath)) as Buffer);
    } finally {
      await fs.unmount();
    }
  } finally {
    await device.close();
  }
}

function summary(label: string, run: Ext4Run): string {
  const { result, target } = run;
  const cache = target.cacheCounters();
  return `${label}: ${result.opsRun} ops in ${(run.elapsedMs / 1000).toFixed(1)} s ${JSON.stringify(result.opCounts)}; ` +
    `${target.stats.mappedOps} mappings, ${target.stats.fsyncs} fsyncs, ${target.stats.reopens} reopens, ${target.stats.remounts} remounts, ` +
    `${cache?.evictedFolios ?? '?'} folios evicted, ${cache?.flusherPasses ?? '?'} flusher passes; final size 0x${result.finalSizeBytes.toString(16)}`;
}

describe('fsx on ext4ts, 100,000 ops per buffered path, e2fsck -fn clean', () => {
  for (const p of PATHS) {
    it(`${p.label}: ${LONG_OPS} ops with mmap, fallocate, punch, zero range, EOF-page checks and remounts pass; the image is e2fsck clean`, async () => {
      const name = `long-${p.buffered}-${p.largeFolios ? 'lf' : 'order0'}`;
      const run = await runOnExt4(name,
        { buffered: p.buffered, largeFolios: p.largeFolios, cacheBytes: CACHE_BYTES, remountEvery: REMOUNT_EVERY },
        { ...LONG_RUN, seed: p.seed });
      console.log(summary(p.label, run));
      expect(run.result.opsRun).toBe(LONG_OPS);
      // Every op family ran: nothing was probed away or silently skipped.
      for (const [op, count] of Object.entries(run.result.opCounts)) expect(count, op).toBeGreaterThan(LONG_OPS / 20);
      expect(run.target.capabilities).toEqual({ fallocate: true, punch: true, zero: true, mmap: true, eofPage: true });
      expect(run.target.stats.remounts).toBeGreaterThan(10);
      const cache = run.target.cacheCounters();
      expect(cache?.evictedFolios ?? 0).toBeGreaterThan(1000);
      expect(Buffer.from(await readBackFromImage(run.imagePath)).equals(run.bytes)).toBe(true);
    }, 600_000);
  }
});

describe('fsx -e on ext4ts: garbage stored past EOF through a mapping is zeroed when the size grows', () => {
  for (const p of PATHS) {
    it(`${p.label}: a store past EOF lands in the EOF page (readPastEof shows it), and truncate up reads zero over it`, async () => {
      // Without this the -e runs below could pass vacuously (pollution that never lands).
      const target = await Ext4FsxTarget.create({ buffered: p.buffered, largeFolios: p.largeFolios });
      try {
        await target.write(0, new Uint8Array(0x1100).fill(7));
        expect(await target.pollutePastEof(new Uint8Array(0x2000).fill(0xab))).toBe(0xf00);
        expect(await target.size()).toBe(0x1100);
        expect(Array.from(new Set(await target.readPastEof()))).toEqual([0xab]);
        await target.truncate(0x1800);
        expect((await target.read(0x1000, 0x800)).every((b, i) => b === (i < 0x100 ? 7 : 0))).toBe(true);
      } finally {
        await target.close();
      }
    });

    it(`${p.label}: 10,000 ops polluting the EOF page before every size change pass`, async () => {
      const name = `pollute-${p.buffered}-${p.largeFolios ? 'lf' : 'order0'}`;
      const run = await runOnExt4(name,
        { buffered: p.buffered, largeFolios: p.largeFolios, cacheBytes: CACHE_BYTES },
        { numOps: 10_000, seed: p.seed + 100, maxFileLen: 256 * 1024, maxOpLen: 64 * 1024, polluteEof: true, checkEveryOps: 500 });
      console.log(summary(`-e ${p.label}`, run));
      expect(run.result.notes).toEqual([]);
    }, 300_000);
  }
});

describe('fsx op logs on ext4ts replay exactly', () => {
  it('a recorded 5,000-op log replays to the same ops and the same file, on the same path and on the others', async () => {
    const logPath = path.join(temp.dir, 'recorded.fsxops');
    const settings = { seed: 977, numOps: 5000, maxFileLen: 512 * 1024, maxOpLen: 64 * 1024, closeOpenProb: 200 };
    const first = await runOnExt4('record', { buffered: 'iomap', largeFolios: true, remountEvery: 2 }, { ...settings, recordOpsPath: logPath });
    const log = parseOpLog(readFileSync(logPath, 'utf8'));
    expect(log.header).toEqual({ seed: 977, maxFileLen: 512 * 1024 });
    expect(log.ops).toEqual(first.result.ops);
    for (const p of PATHS) {
      const again = await runOnExt4(`replay-${p.buffered}-${p.largeFolios ? 'lf' : 'order0'}`,
        { buffered: p.buffered, largeFolios: p.largeFolios, remountEvery: 2 },
        { replayOps: log.ops, numOps: log.ops.length, seed: log.header.seed, maxFileLen: log.header.maxFileLen });
      expect(again.result.ops, p.label).toEqual(first.result.ops);
      expect(Buffer.from(again.bytes).equals(first.bytes), p.label).toBe(true);
    }
  }, 300_000);
});
