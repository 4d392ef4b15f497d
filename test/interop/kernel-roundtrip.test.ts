// The Linux kernel as the oracle for both directions of the foundation:
//  1. an image made by ext4ts mkfs is mounted read-write by the kernel, which fills it with
//     a varied tree (files of many sizes, sparse and fallocated files, a directory big enough
//     that the kernel indexes it, deep paths, fast and slow symlinks, hard links, nanosecond
//     times, owners > 65535); after unmount e2fsck -fn is clean;
//  2. ext4ts mounts the kernel-written image and must show exactly what the kernel showed
//     while mounted: every name, type, mode, owner, size, link count, hard link grouping,
//     symlink target, byte, and all three times to the nanosecond.
// Skips with a printed reason where loop mounts are not possible.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, symlinkSync, linkSync, openSync, writeSync, closeSync, ftruncateSync, chmodSync, lchownSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { Ext4, FileDevice, mkfs } from '@ext4ts/core';
import { e2fsck, debugfs } from '../helpers/e2fs.js';
import { loopMountSupport, withLoopMount } from '../helpers/loop-mount.js';
import { makeRng, readHostTree, diffTrees, type HostTree } from '../helpers/tree.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { readImageTree } from '../helpers/image-tree.js';

const loop = await loopMountSupport();
if (!loop.ok) console.warn(`kernel-roundtrip: skipping kernel tests: ${loop.reason}`);

const BIG_DIR_ENTRIES = 3000;
let temp: TempDir;
let img: string;
let kernelView: HostTree;

/** Fill `root` (a kernel mount) with a seeded tree of every kind the read path handles. */
function populate(root: string, seed: number): void {
  const rng = makeRng(seed);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rng() * 256)));
  mkdirSync(path.join(root, 'files'));
  for (const size of [0, 1, 59, 4095, 4096, 4097, 65536, 1 << 20, (3 << 20) + 123]) {
    writeFileSync(path.join(root, 'files', `size-${size}`), bytes(size));
  }
  // Sparse: data, a hole in the middle, data at 9 MiB, then a hole to EOF at 12 MiB.
  const fd = openSync(path.join(root, 'files', 'sparse'), 'w');
  writeSync(fd, bytes(5000), 0, 5000, 0);
  writeSync(fd, bytes(4096), 0, 4096, 9 << 20);
  ftruncateSync(fd, 12 << 20);
  closeSync(fd);
  // Unwritten extents: a preallocated file with a little data, and one preallocated past EOF.
  writeFileSync(path.join(root, 'files', 'prealloc'), bytes(100));
  execFileSync('fallocate', ['-o', '65536', '-l', String(1 << 20), path.join(root, 'files', 'prealloc')]);
  writeFileSync(path.join(root, 'files', 'prealloc-keep'), bytes(3000));
  execFileSync('fallocate', ['-n', '-o', '8192', '-l', String(256 << 10), path.join(root, 'files', 'prealloc-keep')]);
  // A directory the kernel turns into an htree as it outgrows one block.
  mkdirSync(path.join(root, 'big'));
  for (let i = 0; i < BIG_DIR_ENTRIES; i++) writeFileSync(path.join(root, 'big', `entry-${i.toString(36)}-${'x'.repeat(i % 40)}`), String(i));
  // Deep path, symlinks of both kinds, hard links.
  let deep = path.join(root, 'deep');
  for (let d = 0; d < 35; d++) deep = path.join(deep, `d${d}`);
  mkdirSync(deep, { recursive: true });
  writeFileSync(path.join(deep, 'leaf'), 'bottom\n');
  mkdirSync(path.join(root, 'links'));
  symlinkSync('../files/size-1', path.join(root, 'links', 'fast'));
  symlinkSync('t'.repeat(59), path.join(root, 'links', 'fast-59'));
  symlinkSync('t'.repeat(60), path.join(root, 'links', 'slow-60'));
  symlinkSync(`/${'long/'.repeat(600)}end`, path.join(root, 'links', 'slow-long'));
  linkSync(path.join(root, 'files', 'size-4096'), path.join(root, 'links', 'hard-a'));
  linkSync(path.join(root, 'files', 'size-4096'), path.join(root, 'big', 'hard-b'));
  // Modes, owners and times with nanoseconds (set with touch: node's utimes keeps microseconds).
  chmodSync(path.join(root, 'files', 'size-1'), 0o4751);
  chmodSync(path.join(root, 'files', 'size-59'), 0);
  lchownSync(path.join(root, 'files', 'size-4097'), 70000, 4000000000);
  execFileSync('touch', ['-h', '-d', '@1700000000.123456789', path.join(root, 'files', 'size-0')]);
  execFileSync('touch', ['-h', '-d', '@-1000000000.5', path.join(root, 'files', 'size-65536')]);
  execFileSync('touch', ['-h', '-d', '@4102444800.999999999', path.join(root, 'links', 'fast')]);
  utimesSync(path.join(root, 'deep'), new Date('1999-12-31T23:59:59Z'), new Date('2001-01-01T00:00:00Z'));
}

beforeAll(async () => {
  temp = makeTempDir('ext4ts-kernel-');
  img = path.join(temp.dir, 'k.img');
  const device = await FileDevice.open(img, { create: true, sizeBytes: 256 << 20 });
  await mkfs(device, { assumeZeroed: true });
  await device.close();
  if (!loop.ok) return;
  await withLoopMount(img, (mountPoint) => {
    populate(mountPoint, 11);
    execFileSync('sync');
    // The kernel's view, read while mounted (readHostTree uses O_NOATIME, so reading moves no atime).
    kernelView = readHostTree(mountPoint);
    // noatime: reading the tree for the oracle must not move the atimes being compared.
  }, { mountOptions: ['noatime'] });
}, 300_000);

afterAll(() => temp?.cleanup());

describe('kernel round trip', () => {
  it.skipIf(!loop.ok)('after the kernel wrote into an ext4ts mkfs image and unmounted, e2fsck -fn is clean', async () => {
    const result = await e2fsck(img);
    expect(result.complaints).toEqual([]);
    expect(result.clean).toBe(true);
  });

  it.skipIf(!loop.ok)('the kernel indexed the big directory (so ext4ts reads a kernel-made htree)', async () => {
    const out = await debugfs(img, ['htree big'], { allowErrors: true });
    expect(out).toMatch(/Number of entries \(count\): \d+/);
  });

  it.skipIf(!loop.ok)('ext4ts shows exactly the tree the kernel showed: names, stat fields, times to the ns, targets, bytes', async () => {
    const device = await FileDevice.open(img, { readOnly: true });
    try {
      const fs = await Ext4.mount(device, { readOnly: true });
      const { tree } = await readImageTree(fs);
      await fs.unmount();
      // Directory sizes are the same filesystem here, so compare them too ('size' on dirs is skipped by diffTrees).
      expect(diffTrees(kernelView, tree, { fields: ['type', 'mode', 'uid', 'gid', 'size', 'blocks', 'nlink', 'linkGroup', 'mtimeNs', 'atimeNs', 'ctimeNs', 'target', 'sha256'] })).toEqual([]);
      expect(tree.size).toBe(kernelView.size);
      expect(tree.size).toBeGreaterThan(BIG_DIR_ENTRIES + 50);
    } finally {
      await device.close();
    }
  });
});
