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
import { run } from '../../../../test/helpers/run.js';
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
