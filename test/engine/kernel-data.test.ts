/**
 * The kernel as the oracle for file data written by the buffered engine, on both paths:
 * seeded random pwrite / truncate / fallocate (plain and KEEP_SIZE) / punch / zero range
 * on a few files, checked against an in-memory model; sync, unmount, e2fsck -fn; then the
 * Linux kernel loop-mounts the image and every file must read exactly as the model says,
 * and its SEEK_DATA / SEEK_HOLE answers (python's os.lseek on the mounted file) must
 * match ext4ts's on a remount of the same image.
 *
 * Skipped, with the reason printed, where loop mounts are not possible.
 * Cost: ~1–3 s per path (a 64 MiB image, ~400 ops, one loop mount).
 */
import { Buffer } from 'node:buffer';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Ext4, MemoryDevice, constants, mkfs, type BufferedPathName, type FileHandle } from '@ext4ts/core';
import { seededRandom } from '../../packages/core/src/random.js';
import { e2fsck } from '../helpers/e2fs.js';
import { loopMountSupport, withLoopMount } from '../helpers/loop-mount.js';
import { makeTempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;
const FILES = 4;
const OPS = 400;
const FILE_BYTES_MAX = 3 * MiB;
const { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, SEEK_DATA, SEEK_HOLE } = constants;

const loop = await loopMountSupport();
if (!loop.ok) console.warn(`kernel-data: skipping kernel checks: ${loop.reason}`);
const tmp = makeTempDir('ext4ts-kernel-data-');
afterAll(() => tmp.cleanup());

/** The model: a file's bytes (its length is the size). */
type Model = Buffer[];

function resize(model: Model, i: number, size: number): void {
  const old = model[i];
  if (size <= old.length) { model[i] = old.subarray(0, size); return; }
  const grown = Buffer.alloc(size);
  old.copy(grown);
  model[i] = grown;
}

async function randomOps(handles: FileHandle[], model: Model, seed: number): Promise<Record<string, number>> {
  const rng = seededRandom(seed);
  const below = (n: number): number => Math.floor((rng() / 2 ** 32) * n);
  const counts: Record<string, number> = {};
  for (let op = 0; op < OPS; op++) {
    const i = below(FILES);
    const fh = handles[i];
    const pos = below(FILE_BYTES_MAX);
    const len = 1 + below(256 * 1024);
    const end = Math.min(FILE_BYTES_MAX, pos + len);
    const r = rng() / 2 ** 32;
    let name: string;
    if (r < 0.45) {
      name = 'write';
      const data = Buffer.alloc(end - pos);
      for (let k = 0; k < data.length; k++) data[k] = rng() & 0xff;
      await fh.write(data, 0, data.length, pos);
      if (end > model[i].length) resize(model, i, end);
      data.copy(model[i], pos);
    } else if (r < 0.55) {
      name = 'truncate';
      await fh.truncate(pos);
      resize(model, i, pos);
    } else if (r < 0.65) {
      name = 'fallocate';
      await fh.fallocate(0, pos, end - pos);
      if (end > model[i].length) resize(model, i, end);
    } else if (r < 0.72) {
      name = 'fallocate-keep';
      await fh.fallocate(FALLOC_FL_KEEP_SIZE, pos, end - pos);
    } else if (r < 0.84) {
      name = 'punch';
      await fh.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pos, end - pos);
      model[i].fill(0, Math.min(pos, model[i].length), Math.min(end, model[i].length));
    } else if (r < 0.94) {
      name = 'zero';
      const keep = rng() & 1;
      await fh.fallocate(FALLOC_FL_ZERO_RANGE | (keep ? FALLOC_FL_KEEP_SIZE : 0), pos, end - pos);
      if (!keep && end > model[i].length) resize(model, i, end);
      model[i].fill(0, Math.min(pos, model[i].length), Math.min(end, model[i].length));
    } else {
      name = 'fsync';
      await fh.sync();
    }
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

/** Data/hole boundaries by lseek: [start of data, start of the hole after it)... */
function kernelSeekMap(path: string): number[][] {
  const script = [
    'import os, sys, json',
    'fd = os.open(sys.argv[1], os.O_RDONLY)',
    'size = os.fstat(fd).st_size',
    'out = []',
    'pos = 0',
    'while pos < size:',
    '    try: d = os.lseek(fd, pos, os.SEEK_DATA)',
    '    except OSError: break',
    '    h = os.lseek(fd, d, os.SEEK_HOLE)',
    '    out.append([d, h])',
    '    pos = h',
    'print(json.dumps(out))',
  ].join('\n');
  return JSON.parse(execFileSync('python3', ['-c', script, path], { encoding: 'utf8' })) as number[][];
}

async function ext4tsSeekMap(fh: FileHandle, size: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let pos = 0; pos < size;) {
    let d: number;
    try { d = await fh.seek(pos, SEEK_DATA); } catch { break; }
    const h = await fh.seek(d, SEEK_HOLE);
    out.push([d, h]);
    pos = h;
  }
  return out;
}

describe.each<[BufferedPathName, boolean]>([['iomap', true], ['buffer_head', false]])('engine-written data read by the kernel (%s)', (buffered, largeFolios) => {
  it('random writes, truncates, fallocates, punches and zero ranges: e2fsck clean; the kernel reads the model; SEEK_DATA/HOLE agree', async () => {
    const device = MemoryDevice.create({ sizeBytes: 64 * MiB });
    await mkfs(device, {});
    const fs = await Ext4.mount(device, { readOnly: false, buffered, largeFolios, cacheBytes: 4 * MiB, writebackThreads: 0 });
    const handles: FileHandle[] = [];
    const model: Model = [];
    for (let i = 0; i < FILES; i++) { handles.push(await fs.open(`/f${i}`, 'w+')); model.push(Buffer.alloc(0)); }
    const counts = await randomOps(handles, model, buffered === 'iomap' ? 41 : 42);
    for (let i = 0; i < FILES; i++) {
      expect((await fs.readFile(`/f${i}`)).equals(model[i]), `ext4ts /f${i} before unmount`).toBe(true);
      await handles[i].close();
    }
    await fs.unmount();
    const img = join(tmp.dir, `${buffered}.img`);
    await device.saveImage(img);
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
    console.log(`kernel-data ${buffered}: ${JSON.stringify(counts)}; sizes ${model.map((m) => m.length).join(', ')}`);
    // ext4ts's own view of the written image, from a fresh mount.
    const again = await Ext4.mount(await MemoryDevice.loadImage(img), { readOnly: true });
    const ours: number[][][] = [];
    for (let i = 0; i < FILES; i++) {
      expect((await again.readFile(`/f${i}`)).equals(model[i]), `ext4ts /f${i} after remount`).toBe(true);
      const fh = await again.open(`/f${i}`, 'r');
      ours.push(await ext4tsSeekMap(fh, model[i].length));
      await fh.close();
    }
    await again.unmount();
    if (!loop.ok) return;
    await withLoopMount(img, (mountPoint) => {
      for (let i = 0; i < FILES; i++) {
        const path = join(mountPoint, `f${i}`);
        // Before reading: the kernel counts uptodate cached folios over unwritten extents
        // as data, so a read first would turn those ranges into data.
        expect(kernelSeekMap(path), `SEEK_DATA/HOLE of /f${i}`).toEqual(ours[i]);
        expect(readFileSync(path).equals(model[i]), `kernel reads /f${i} as the model`).toBe(true);
      }
    }, { readOnly: true });
  }, 120_000);
});
