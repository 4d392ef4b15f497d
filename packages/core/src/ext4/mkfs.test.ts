/**
 * mkfs against the oracles. The strongest check: given mkfs.ext4's own UUID, hash seed and
 * time (E2FSPROGS_FAKE_TIME), our image equals mkfs.ext4's byte for byte, except the
 * informational s_kbytes_written and, with it, each superblock's checksum. Then e2fsck
 * -fn, dumpe2fs -h, debugfs, and a kernel mount judge the image on their own.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import {
  debugfsBatch, dumpe2fsGroups, dumpe2fsHeader, e2fsck, parseDebugfsStat, requireE2fsprogs,
} from '../../../../test/helpers/e2fs.js';
import { loopMountSupport, withLoopMount } from '../../../../test/helpers/loop-mount.js';
import { FileDevice, MemoryDevice } from '../device/index.js';
import type { BlockDevice } from '../device/block-device.js';
import { decodeSuperblock, verifySuperblock } from '../format/superblock.js';
import { mkfs, type MkfsOptions, type MkfsResult } from './mkfs.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const FEATURES = 'has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum';
const UUID = '0c4b0ec3-5df4-4d9b-ad8d-5d8110b0582a';
const HASH_SEED = '72ec60fd-9dea-45ca-955c-529660aea996';
const NOW_SEC = 1700000000;
/** Superblock bytes that may differ: s_kbytes_written (0x178, 8 B) and s_checksum (0x3FC). */
const SB_MASKED = [[0x178, 0x180], [0x3fc, 0x400]];

function uuidBytes(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/-/g, ''), 'hex'));
}

const FIXED: MkfsOptions = { uuid: uuidBytes(UUID), hashSeed: uuidBytes(HASH_SEED), now: new Date(NOW_SEC * 1000) };

function sparseFile(img: string, sizeBytes: number): void {
  rmSync(img, { force: true });
  const fd = openSync(img, 'w');
  closeSync(fd);
  execFileSync('truncate', ['-s', String(sizeBytes), img]);
}

/** mkfs.ext4 with our fixed UUID, hash seed and time, on a fresh sparse file (it discards). */
function oracleMkfs(img: string, sizeBytes: number): void {
  sparseFile(img, sizeBytes);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-U', UUID, '-E', `hash_seed=${HASH_SEED}`, img], {
    env: { ...process.env, E2FSPROGS_FAKE_TIME: String(NOW_SEC), PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
    stdio: 'pipe',
  });
}

async function ourMkfs(img: string, sizeBytes: number, options: MkfsOptions = {}): Promise<{ result: MkfsResult; ms: number }> {
  sparseFile(img, sizeBytes);
  const device = await FileDevice.open(img);
  try {
    const t0 = performance.now();
    const result = await mkfs(device, { ...FIXED, assumeZeroed: true, ...options });
    return { result, ms: performance.now() - t0 };
  } finally {
    await device.close();
  }
}

/** Byte offsets of every superblock copy, from the image's own geometry. */
function superblockOffsets(img: string): number[] {
  const raw = new Uint8Array(1024);
  const fd = openSync(img, 'r');
  try { readSync(fd, raw, 0, 1024, 1024); } finally { closeSync(fd); }
  const sb = decodeSuperblock(raw);
  const offsets = [1024];
  const groups = Math.ceil(sb.blocksCount / sb.blocksPerGroup);
  for (let g = 1; g < groups; g++) {
    const isBackup = g === 1 || [3, 5, 7].some((b) => { let n = g; while (n % b === 0) n /= b; return n === 1; });
    if (isBackup) offsets.push(g * sb.blocksPerGroup * 4096);
  }
  return offsets;
}

/**
 * Compares two images over the byte ranges given (default: everything), masking the
 * superblock bytes allowed to differ. Returns the differing offsets (at most 20).
 */
function imageDifferences(a: string, b: string, ranges: [number, number][], sbOffsets: number[]): number[] {
  const masked = (offset: number): boolean => sbOffsets.some((sb) => SB_MASKED.some(([s, e]) => offset >= sb + s && offset < sb + e));
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  const chunk = 8 * MiB;
  const ba = Buffer.alloc(chunk);
  const bb = Buffer.alloc(chunk);
  const diffs: number[] = [];
  try {
    for (const [start, end] of ranges) {
      for (let off = start; off < end && diffs.length < 20; off += chunk) {
        const len = Math.min(chunk, end - off);
        readSync(fa, ba, 0, len, off);
        readSync(fb, bb, 0, len, off);
        if (ba.subarray(0, len).equals(bb.subarray(0, len))) continue;
        for (let i = 0; i < len && diffs.length < 20; i++) if (ba[i] !== bb[i] && !masked(off + i)) diffs.push(off + i);
      }
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
  return diffs;
}

/** Byte ranges holding written data (filefrag -v), unwritten (zero-reading) extents left out. */
function dataRanges(img: string): [number, number][] {
  const out = execFileSync('filefrag', ['-v', '-b4096', img], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
  const ranges: [number, number][] = [];
  for (const m of out.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*(\d+):.*$/gm)) {
    if (/unwritten/.test(m[0])) continue;
    ranges.push([Number(m[1]) * 4096, (Number(m[2]) + 1) * 4096]);
  }
  return ranges;
}

async function expectCleanFsck(img: string): Promise<string> {
  const fsck = await e2fsck(img);
  expect(fsck.complaints, fsck.output).toEqual([]);
  expect(fsck.exitCode, fsck.output).toBe(0);
  return fsck.output;
}

async function expectHeader(img: string, result: MkfsResult): Promise<void> {
  const h = await dumpe2fsHeader(img);
  expect(h.fields['Filesystem features']).toBe(FEATURES);
  expect(Number(h.fields['Block count'])).toBe(result.blocksCount);
  expect(Number(h.fields['Inode count'])).toBe(result.inodesCount);
  expect(Number(h.fields['Free blocks'])).toBe(result.freeBlocksCount);
  expect(Number(h.fields['Free inodes'])).toBe(result.inodesCount - 11);
  expect(Number(h.fields['Overhead clusters'])).toBe(result.overheadBlocks);
  expect(Number(h.fields['Total journal blocks'])).toBe(result.journalBlocks);
  expect(h.fields['Filesystem state']).toBe('clean');
  expect(h.journalFeatures.size).toBe(0);
}

/** dumpe2fs text with the lines that may differ (lifetime writes, superblock checksum) dropped. */
function comparableDump(text: string): string {
  return text.split('\n').filter((l) => !/^(Lifetime writes|Checksum):/.test(l)).join('\n');
}

describe('mkfs matches mkfs.ext4 byte for byte', () => {
  let temp: TempDir;
  beforeAll(async () => {
    await requireE2fsprogs();
    temp = makeTempDir('ext4ts-mkfs-', { freeBytesMin: 4 * GiB });
  });
  afterAll(() => temp?.cleanup());

  for (const sizeBytes of [8 * MiB, 64 * MiB, 129 * MiB, GiB]) {
    it(`mkfs of ${sizeBytes / MiB} MiB equals mkfs.ext4's image and passes e2fsck -fn`, async () => {
      const theirs = path.join(temp.dir, `theirs-${sizeBytes}.img`);
      const ours = path.join(temp.dir, `ours-${sizeBytes}.img`);
      try {
        oracleMkfs(theirs, sizeBytes);
        const { result, ms } = await ourMkfs(ours, sizeBytes);
        console.log(`mkfs ${sizeBytes / MiB} MiB: ${ms.toFixed(1)} ms, ${result.bytesWritten} bytes written, ${result.groupCount} groups`);
        expect(imageDifferences(theirs, ours, [[0, sizeBytes]], superblockOffsets(theirs))).toEqual([]);
        expect(comparableDump(await dumpe2fsGroups(ours))).toBe(comparableDump(await dumpe2fsGroups(theirs)));
        await expectCleanFsck(ours);
        await expectHeader(ours, result);
      } finally {
        rmSync(theirs, { force: true });
        rmSync(ours, { force: true });
      }
    });
  }
});

describe('mkfs of 64 and 128 GiB on sparse files', () => {
  let dir: string;
  beforeAll(async () => {
    await requireE2fsprogs();
    // os.tmpdir(): a disk filesystem, so filefrag can list the written extents.
    dir = path.join(os.tmpdir(), `ext4ts-mkfs64-${process.pid}`);
    mkdirSync(dir, { recursive: true });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // 128 GiB: a 262144-block journal needs 8 extents, so an extent leaf block.
  for (const sizeBytes of [64 * GiB, 128 * GiB]) {
    it(`mkfs of ${sizeBytes / GiB} GiB writes < 8 MiB in seconds, matches mkfs.ext4, passes e2fsck -fn`, async () => {
    const theirs = path.join(dir, 'theirs.img');
    const ours = path.join(dir, 'ours.img');
    try {
      oracleMkfs(theirs, sizeBytes);
      const { result, ms } = await ourMkfs(ours, sizeBytes);
      console.log(`mkfs ${sizeBytes / GiB} GiB: ${ms.toFixed(1)} ms, ${result.bytesWritten} bytes written, ${result.groupCount} groups`);
      expect(result.bytesWritten).toBeLessThan(8 * MiB);
      expect(result.bytesZeroed).toBe(0);
      expect(ms).toBeLessThan(5000);
      expect(comparableDump(await dumpe2fsGroups(ours))).toBe(comparableDump(await dumpe2fsGroups(theirs)));
      const ranges = [...dataRanges(theirs), ...dataRanges(ours)];
      expect(ranges.length).toBeGreaterThan(10);
      expect(imageDifferences(theirs, ours, ranges, superblockOffsets(theirs))).toEqual([]);
      const t0 = performance.now();
      const fsckOutput = await expectCleanFsck(ours);
      console.log(`e2fsck -fn ${sizeBytes / GiB} GiB: ${(performance.now() - t0).toFixed(0)} ms\n${fsckOutput.trim()}`);
      await expectHeader(ours, result);
    } finally {
      rmSync(theirs, { force: true });
      rmSync(ours, { force: true });
    }
  });
  }
});

describe('mkfs on other devices and options', () => {
  let temp: TempDir;
  beforeAll(async () => {
    await requireE2fsprogs();
    temp = makeTempDir('ext4ts-mkfs-dev-');
  });
  afterAll(() => temp?.cleanup());

  it('mkfs zeroes inode tables and journal on a device holding old data', async () => {
    const sizeBytes = 64 * MiB;
    const theirs = path.join(temp.dir, 'theirs.img');
    const ours = path.join(temp.dir, 'dirty.img');
    oracleMkfs(theirs, sizeBytes);
    writeFileSync(ours, Buffer.alloc(sizeBytes, 0xa5));
    const device = await FileDevice.open(ours);
    const result = await mkfs(device, FIXED);
    await device.close();
    // 1024 inode-table blocks + 1024 journal blocks.
    expect(result.bytesZeroed).toBe(2048 * 4096);
    await expectCleanFsck(ours);
    expect(comparableDump(await dumpe2fsGroups(ours))).toBe(comparableDump(await dumpe2fsGroups(theirs)));
    const image = readFileSync(ours);
    for (const e of result.journalExtents) {
      const body = image.subarray((e.pblk + (e.lblk === 0 ? 1 : 0)) * 4096, (e.pblk + e.len) * 4096);
      expect(body.every((b) => b === 0)).toBe(true);
    }
  });

  it('mkfs on a 64 GiB MemoryDevice (discard) is quick and yields a valid superblock', async () => {
    const device = MemoryDevice.create({ sizeBytes: 64 * GiB, chunkSizeBytes: MiB });
    const t0 = performance.now();
    const result = await mkfs(device, { discard: true, label: 'mem64' });
    const ms = performance.now() - t0;
    console.log(`mkfs 64 GiB MemoryDevice: ${ms.toFixed(1)} ms, ${result.bytesWritten} bytes written`);
    expect(ms).toBeLessThan(5000);
    expect(result.bytesZeroed).toBe(0);
    const raw = new Uint8Array(1024);
    await device.read(1024, raw);
    const sb = decodeSuperblock(raw);
    verifySuperblock(sb, device.sizeBytes);
    expect(sb.blocksCount).toBe(16777216);
    expect(sb.freeBlocksCount).toBe(result.freeBlocksCount);
    expect(sb.uuid).toEqual(result.uuid);
    expect(new TextDecoder().decode(sb.volumeName).replace(/\0+$/, '')).toBe('mem64');
    await device.close();
  });

  it('mkfs gives random version-4 UUIDs and hash seeds, and writes the label', async () => {
    const img = path.join(temp.dir, 'label.img');
    const { result } = await ourMkfs(img, 8 * MiB, { uuid: undefined, hashSeed: undefined, label: 'ext4ts-label' });
    const again = await ourMkfs(path.join(temp.dir, 'label2.img'), 8 * MiB, { uuid: undefined, hashSeed: undefined });
    expect(result.uuid).not.toEqual(again.result.uuid);
    expect(result.uuid).not.toEqual(result.hashSeed);
    expect(result.uuid[6] >> 4).toBe(4);
    const h = await dumpe2fsHeader(img);
    expect(h.fields['Filesystem volume name']).toBe('ext4ts-label');
    expect(h.fields['Filesystem UUID']).toBe(Buffer.from(result.uuid).toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-'));
    await expectCleanFsck(img);
  });

  it('mkfs rejects read-only devices, sizes out of range and long labels', async () => {
    const ro: BlockDevice = MemoryDevice.create({ sizeBytes: 16 * MiB, readOnly: true });
    await expect(mkfs(ro)).rejects.toMatchObject({ code: 'EROFS' });
    const small = MemoryDevice.create({ sizeBytes: 4 * MiB });
    await expect(mkfs(small)).rejects.toMatchObject({ code: 'EINVAL' });
    const dev = MemoryDevice.create({ sizeBytes: 16 * MiB });
    await expect(mkfs(dev, { sizeBytes: 32 * MiB })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(mkfs(dev, { label: 'x'.repeat(17) })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(mkfs(dev, { journalBlocks: 100 })).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('debugfs sees root, lost+found, the resize inode and the journal as mke2fs makes them', async () => {
    const img = path.join(temp.dir, 'debugfs.img');
    const { result } = await ourMkfs(img, 64 * MiB);
    const [lsRoot, resizeText, journalText, lsLf] = await debugfsBatch(img, ['ls -l /', 'stat <7>', 'stat <8>', 'ls -l /lost+found']);
    const rows = (text: string): string[][] => text.trim().split('\n').map((l) => l.trim().split(/\s+/));
    expect(rows(lsRoot).map((r) => [r[0], r[1], r.at(-1)])).toEqual([['2', '40755', '.'], ['2', '40755', '..'], ['11', '40700', 'lost+found']]);
    const lfRows = rows(lsLf);
    expect(lfRows.filter((r) => r[0] !== '0').map((r) => [r[0], r[1], r.at(-1)])).toEqual([['11', '40700', '.'], ['2', '40755', '..']]);
    // debugfs also lists the one empty slot of each of lost+found's 3 other blocks.
    expect(lfRows.filter((r) => r[0] === '0')).toHaveLength(3);
    const resize = parseDebugfsStat(resizeText);
    expect([resize.type, resize.mode, resize.links, resize.size]).toEqual(['regular', 0o600, 1, 4299210752n]);
    expect(resize.blockcount).toBe(BigInt((1 + 7) * 8)); // DIND + 7 reserved GDT blocks, no backups
    expect(resize.text).toMatch(/\(DIND\):\d+, \(IND\):2, \(IND\):3/);
    const journal = parseDebugfsStat(journalText);
    expect([journal.type, journal.mode, journal.links, journal.size]).toEqual(['regular', 0o600, 1, 1024n * 4096n]);
    expect(journal.extents?.map((e) => [e.logicalStart, e.physicalStart, e.blockCount]))
      .toEqual(result.journalExtents.map((e) => [e.lblk, e.pblk, e.len]));
    expect(journal.extents?.map((e) => [e.physicalStart, e.blockCount])).toEqual([[15, 10], [26, 15], [1066, 999]]);
  });

  it('the kernel mounts a mkfs image, takes a file and a directory, and e2fsck stays clean', async (ctx) => {
    const loop = await loopMountSupport();
    if (!loop.ok) {
      console.warn(`skipping kernel mount test: ${loop.reason}`);
      ctx.skip();
      return;
    }
    const img = path.join(temp.dir, 'mount.img');
    await ourMkfs(img, 64 * MiB, { uuid: undefined, hashSeed: undefined });
    await withLoopMount(img, async (mnt) => {
      writeFileSync(path.join(mnt, 'hello.txt'), 'hello from the kernel\n');
      mkdirSync(path.join(mnt, 'dir'));
      writeFileSync(path.join(mnt, 'dir', 'big.bin'), Buffer.alloc(3 * MiB, 7));
    });
    await expectCleanFsck(img);
    const ls = await debugfsBatch(img, ['ls -l /', 'cat /hello.txt']);
    expect(ls[0]).toMatch(/hello\.txt/);
    expect(ls[0]).toMatch(/\bdir\b/);
    expect(ls[1]).toBe('hello from the kernel\n');
  });
});
