/**
 * layout.ts against the oracle: for each size, the real `mkfs.ext4 -b 4096` makes an image
 * on a sparse file, and every per-group position, flag and count dumpe2fs prints must equal
 * the plan, as must the journal's extents, the root / lost+found / resize DIND blocks and
 * the superblock counts. (ITABLE_ZEROED is masked: it depends on discard, not on layout.)
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { closeSync, openSync, ftruncateSync, rmSync } from 'node:fs';
import path from 'node:path';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { run } from '../../../../test/helpers/run.js';
import { debugfsBatch, dumpe2fsGroups, parseDebugfsStat, requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import {
  BlockSpace, GroupFlag, computeGeometry, defaultJournalBlocks, groupHasSuper, planLayout, reservedGdtBlocksFor,
  buildBlockBitmap, type Layout,
} from './layout.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

interface OracleGroup { bb: number; ib: number; it: number; flags: number; freeBlocks: number; freeInodes: number; dirs: number; unused: number }
interface Oracle { header: Record<string, string>; groups: OracleGroup[]; text: string }

const FLAG_BITS: Record<string, number> = { INODE_UNINIT: 1, BLOCK_UNINIT: 2, ITABLE_ZEROED: 4 };

/** Parses `dumpe2fs img`: header "Key: value" lines and one record per "Group N:" paragraph. */
export function parseDumpe2fs(text: string): Oracle {
  const header: Record<string, string> = {};
  const groups: OracleGroup[] = [];
  const paragraphs = text.split(/\n(?=Group \d+:)/);
  for (const line of paragraphs[0].split('\n')) {
    const m = /^([A-Za-z][^:]*?):\s+(.*)$/.exec(line);
    if (m && !(m[1] in header)) header[m[1]] = m[2].trim();
  }
  for (const p of paragraphs.slice(1)) {
    const flagText = /^Group \d+:.*?\[(.*)\]/m.exec(p)?.[1] ?? '';
    const counts = /(\d+) free blocks, (\d+) free inodes, (\d+) directories(?:, (\d+) unused inodes)?/.exec(p);
    if (!counts) throw new Error(`unparsed group paragraph:\n${p}`);
    groups.push({
      bb: Number(/Block bitmap at (\d+)/.exec(p)?.[1]),
      ib: Number(/Inode bitmap at (\d+)/.exec(p)?.[1]),
      it: Number(/Inode table at (\d+)/.exec(p)?.[1]),
      flags: flagText.split(',').map((s) => s.trim()).filter(Boolean).reduce((acc, name) => acc | (FLAG_BITS[name] ?? 0), 0),
      freeBlocks: Number(counts[1]), freeInodes: Number(counts[2]), dirs: Number(counts[3]), unused: Number(counts[4] ?? 0),
    });
  }
  return { header, groups, text };
}

/** Runs mkfs.ext4 on a fresh sparse file of sizeBytes; returns the dumpe2fs parse. */
async function oracleImage(dir: string, sizeBytes: number): Promise<{ img: string; oracle: Oracle }> {
  const img = path.join(dir, `oracle-${sizeBytes}.img`);
  rmSync(img, { force: true });
  const fd = openSync(img, 'w');
  ftruncateSync(fd, sizeBytes);
  closeSync(fd);
  await run('mkfs.ext4', ['-q', '-F', '-b', '4096', img], { timeoutMs: 120_000 });
  return { img, oracle: parseDumpe2fs(await dumpe2fsGroups(img)) };
}

function expectLayoutMatches(layout: Layout, oracle: Oracle): void {
  const g = layout.geometry;
  expect(Number(oracle.header['Block count'])).toBe(g.blocksCount);
  expect(Number(oracle.header['Blocks per group'])).toBe(g.blocksPerGroup);
  expect(Number(oracle.header['Inode count'])).toBe(g.inodesCount);
  expect(Number(oracle.header['Inodes per group'])).toBe(g.inodesPerGroup);
  expect(Number(oracle.header['Reserved GDT blocks'] ?? 0)).toBe(g.reservedGdtBlocks);
  expect(Number(oracle.header['Reserved block count'])).toBe(g.rBlocksCount);
  expect(Number(oracle.header['Overhead clusters'])).toBe(layout.overheadBlocks);
  expect(Number(oracle.header['Free blocks'])).toBe(layout.freeBlocksCount);
  expect(Number(oracle.header['Free inodes'])).toBe(layout.freeInodesCount);
  expect(Number(oracle.header['Total journal blocks'])).toBe(g.journalBlocks);
  expect(oracle.groups.length).toBe(g.groupCount);
  const mine = layout.groups.map((gl) => ({
    bb: gl.blockBitmap, ib: gl.inodeBitmap, it: gl.inodeTable, flags: gl.flags, freeBlocks: gl.freeBlocks,
    freeInodes: gl.freeInodes, dirs: gl.usedDirs, unused: gl.itableUnused,
  }));
  const theirs = oracle.groups.map((o) => ({ ...o, flags: o.flags & ~GroupFlag.ITABLE_ZEROED }));
  // Compare group by group so a failure names the first group that differs.
  for (let i = 0; i < mine.length; i++) expect({ group: i, ...mine[i] }).toEqual({ group: i, ...theirs[i] });
}

async function expectFilesMatch(img: string, layout: Layout): Promise<void> {
  const [root, resize, journal, lostFound] = (await debugfsBatch(img, ['stat <2>', 'stat <7>', 'stat <8>', 'stat <11>'])).map(parseDebugfsStat);
  expect(root.extents?.map((e) => e.physicalStart)).toEqual([layout.rootDirBlock]);
  expect(lostFound.extents).toEqual([{ logicalStart: 0, blockCount: 4, physicalStart: layout.lostFoundBlocks[0], unwritten: false }]);
  expect(layout.lostFoundBlocks).toEqual([0, 1, 2, 3].map((i) => layout.lostFoundBlocks[0] + i));
  expect(Number(/\(DIND\):(\d+)/.exec(resize.text)?.[1])).toBe(layout.resizeDindBlock);
  expect(journal.extents?.map((e) => ({ lblk: e.logicalStart, pblk: e.physicalStart, len: e.blockCount }))).toEqual(layout.journalExtents);
  expect(journal.extentTreeBlocks?.map((e) => e.block) ?? []).toEqual(layout.journalLeafBlock === null ? [] : [layout.journalLeafBlock]);
}

describe('layout helpers', () => {
  it('groupHasSuper marks 0, 1 and powers of 3, 5, 7 only', () => {
    const backups = [];
    for (let g = 0; g < 400; g++) if (groupHasSuper(g)) backups.push(g);
    expect(backups).toEqual([0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343]);
  });

  it('reservedGdtBlocksFor matches the sizes in ext4-format.md §1', () => {
    expect(reservedGdtBlocksFor(16384, 1)).toBe(7);
    expect(reservedGdtBlocksFor(262144, 1)).toBe(127);
    expect(reservedGdtBlocksFor(2097152, 1)).toBe(1023);
    expect(reservedGdtBlocksFor(2048, 1)).toBe(0);
    expect(reservedGdtBlocksFor(16777216, 8)).toBe(1024); // capped at bs/4
  });

  it('defaultJournalBlocks follows the mke2fs table at its edges', () => {
    expect([2048, 32767, 32768, 262143, 262144, 524288, 4194304, 8388608, 16777216, 33554432].map(defaultJournalBlocks))
      .toEqual([1024, 1024, 4096, 4096, 8192, 16384, 32768, 65536, 131072, 262144]);
  });

  it('computeGeometry rejects sizes below 8 MiB and drops a too-small last group', () => {
    expect(() => computeGeometry({ sizeBytes: 4 * MiB })).toThrow(/minimum/);
    // 1 GiB + 200 KiB: a 50-block last group cannot hold 2 bitmaps + 512 table blocks + 50.
    const g = computeGeometry({ sizeBytes: GiB + 200 * 1024 });
    expect(g.blocksCount).toBe(262144);
    expect(g.groupCount).toBe(8);
  });

  it('BlockSpace.findFree skips used runs and respects the candidate window', () => {
    const s = new BlockSpace(100);
    s.mark(0, 10);
    s.mark(12, 3);
    expect(s.findFree(0, 100, 2)).toBe(10);
    expect(s.findFree(0, 100, 3)).toBe(15);
    expect(s.findFree(0, 11, 3)).toBeNull();
    expect(s.findFree(99, 99, 1)).toBe(99);
    s.mark(15, 85);
    expect(s.findFree(50, 50, 1)).toBe(10); // wraps past the end
    expect(s.starts).toEqual([0, 12]);
    expect(s.usedIn(5, 20)).toBe(5 + 8);
  });

  it('buildBlockBitmap sets used blocks and padding past the fs end', () => {
    const layout = planLayout(computeGeometry({ sizeBytes: 8 * MiB }));
    const bitmap = new Uint8Array(4096);
    buildBlockBitmap(layout, 0, bitmap);
    let used = 0;
    for (let bit = 0; bit < 2048; bit++) used += (bitmap[bit >>> 3] >> (bit & 7)) & 1;
    expect(used).toBe(2048 - layout.groups[0].freeBlocks);
    expect(bitmap.subarray(256).every((b) => b === 0xff)).toBe(true);
  });
});

// Sizes chosen to hit each rule: single short group (8/9 MiB, 64 MiB), 'small' inode ratio
// groups shrunk below 32768 blocks (129/150 MiB), big tables spilling over group 1's backup (200/511 MiB), trimmed last groups,
// partial last flex, 'default' class, a 4-extent journal (64 GiB) and a journal with an
// extent leaf block (128 GiB), and a 'big'-class filesystem (5 TiB).
const ORACLE_SIZES = [
  8 * MiB, 9 * MiB + 12 * 1024, 64 * MiB, 129 * MiB, 150 * MiB, 200 * MiB, 511 * MiB, 513 * MiB, GiB, GiB + 200 * 1024,
  3 * GiB + 7 * MiB, 8 * GiB, 17 * GiB, 64 * GiB, 128 * GiB, 1024 * GiB, 5 * 1024 * GiB,
];

describe('planLayout against mkfs.ext4', () => {
  let temp: TempDir;
  beforeAll(async () => {
    await requireE2fsprogs();
    temp = makeTempDir('ext4ts-layout-', { freeBytesMin: 8 * GiB });
  });
  afterAll(() => temp?.cleanup());

  for (const sizeBytes of ORACLE_SIZES) {
    it(`planLayout matches mkfs.ext4 for ${(sizeBytes / MiB).toFixed(2)} MiB`, async () => {
      const { img, oracle } = await oracleImage(temp.dir, sizeBytes);
      try {
        const layout = planLayout(computeGeometry({ sizeBytes }));
        expectLayoutMatches(layout, oracle);
        await expectFilesMatch(img, layout);
      } finally {
        rmSync(img, { force: true });
      }
    });
  }
});
