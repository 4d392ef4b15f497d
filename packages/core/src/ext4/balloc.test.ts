/**
 * blockAllocator and inodeAllocator on real images (mkfs.ext4 and ext4ts mkfs), opened
 * read-write: seeded random allocate/free against a model of allocated runs, then
 * everything freed, unmounted, and checked by e2fsck -fn; free counts return to mkfs's.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { GroupFlags } from '../format/group-desc.js';
import { FsError } from '../vfs/errors.js';
import { e2fsck, requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { Ext4Mount } from './mount.js';
import { mkfs } from './mkfs.js';
import { allocateBlocksNow, blockAllocator, isBlockInUse, isParked } from './balloc.js';
import { inodeAllocator } from './ialloc.js';
import type { BlockRun } from './write-api.js';
import { seededUnitRandom } from '../random.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-balloc-'); });
afterAll(() => tmp.cleanup());

/** The project's seeded PRNG in [0, 1), so every failure reproduces from its seed. */
const rng = seededUnitRandom;

function mkfsExt4(name: string, size: string, extra: string[] = []): string {
  const img = join(tmp.dir, name);
  execFileSync('truncate', ['-s', size, img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', ...extra, img]);
  return img;
}

async function openRw(img: string): Promise<{ device: FileDevice; mount: Ext4Mount }> {
  const device = await FileDevice.open(img);
  const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
  return { device, mount };
}

function counts(mount: Ext4Mount): { blocks: number[]; inodes: number[]; dirs: number[] } {
  return {
    blocks: mount.ext4.groups.map((g) => g.freeBlocksCount),
    inodes: mount.ext4.groups.map((g) => g.freeInodesCount),
    dirs: mount.ext4.groups.map((g) => g.usedDirsCount),
  };
}

function overlaps(a: BlockRun, b: BlockRun): boolean {
  return a.start < b.start + b.count && b.start < a.start + a.count;
}

async function randomAllocFree(mount: Ext4Mount, seed: number, steps: number): Promise<void> {
  const random = rng(seed);
  const model: BlockRun[] = [];
  const bpg = mount.ext4.sb.blocksPerGroup;
  for (let step = 0; step < steps; step++) {
    await mount.transact(32, async (h) => {
      for (let k = 0; k < 4; k++) {
        if (model.length > 0 && random() < 0.4) {
          const i = Math.floor(random() * model.length);
          const run = model[i];
          // Free a random piece: head, tail or all of the run.
          const cut = 1 + Math.floor(random() * run.count);
          const piece = random() < 0.5 ? { start: run.start, count: cut } : { start: run.start + run.count - cut, count: cut };
          await blockAllocator.free(mount, h, piece);
          expect(isParked(mount, piece.start)).toBe(true);
          model.splice(i, 1);
          if (piece.start > run.start) model.push({ start: run.start, count: piece.start - run.start });
          const end = run.start + run.count, pieceEnd = piece.start + piece.count;
          if (pieceEnd < end) model.push({ start: pieceEnd, count: end - pieceEnd });
        } else {
          const goal = Math.floor(random() * mount.ext4.groupCount) * bpg + Math.floor(random() * bpg);
          const count = 1 + Math.floor(random() * (random() < 0.1 ? 5000 : 200));
          const run = await blockAllocator.allocate(mount, h, { goal: Math.min(goal, mount.ext4.blocksCount - 1), count, minCount: 1 });
          expect(run.count).toBeGreaterThanOrEqual(1);
          expect(run.count).toBeLessThanOrEqual(count);
          for (const other of model) expect(overlaps(run, other), `seed ${seed} step ${step}: ${run.start}+${run.count} overlaps ${other.start}+${other.count}`).toBe(false);
          expect(isParked(mount, run.start)).toBe(false);
          expect(await isBlockInUse(mount, run.start + run.count - 1)).toBe(true);
          model.push(run);
        }
      }
    });
    const groupsFree = (): number => mount.ext4.groups.reduce((n, g) => n + g.freeBlocksCount, 0);
    expect(blockAllocator.freeBlocks(mount, true)).toBeLessThanOrEqual(groupsFree()); // parked blocks are not free yet
    if (random() < 0.2) {
      await mount.sync();
      expect(blockAllocator.freeBlocks(mount, true)).toBe(groupsFree()); // the running sums agree with the descriptors
    }
  }
  await mount.transact(64, async (h) => {
    for (const run of model) await blockAllocator.free(mount, h, run);
  });
  await mount.sync();
  expect(blockAllocator.freeBlocks(mount, true)).toBe(mount.ext4.groups.reduce((n, g) => n + g.freeBlocksCount, 0));
}

describe('blockAllocator', () => {
  it('blockAllocator random allocate/free on mkfs.ext4 1 GiB: BLOCK_UNINIT groups materialised, e2fsck clean, counts back to mkfs', async () => {
    const img = mkfsExt4('a.img', '1G');
    const { device, mount } = await openRw(img);
    const before = counts(mount);
    const uninitBefore = mount.ext4.groups.filter((g) => (g.flags & GroupFlags.BLOCK_UNINIT) !== 0).length;
    expect(uninitBefore).toBeGreaterThan(0);
    await randomAllocFree(mount, 1234, 150);
    const uninitAfter = mount.ext4.groups.filter((g) => (g.flags & GroupFlags.BLOCK_UNINIT) !== 0).length;
    expect(uninitAfter).toBeLessThan(uninitBefore);
    expect(counts(mount)).toEqual(before);
    await mount.close();
    await device.close();
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    expect(fsck.exitCode).toBe(0);
  });

  it('blockAllocator random allocate/free on an ext4ts-mkfs image: e2fsck clean', async () => {
    const img = join(tmp.dir, 'b.img');
    execFileSync('truncate', ['-s', '300M', img]);
    const device0 = await FileDevice.open(img);
    await mkfs(device0, { assumeZeroed: true });
    await device0.close();
    const { device, mount } = await openRw(img);
    const before = counts(mount);
    await randomAllocFree(mount, 99, 80);
    expect(counts(mount)).toEqual(before);
    await mount.close();
    await device.close();
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
  });

  it('blockAllocator never reuses a block freed by an uncommitted transaction; after commit it may', async () => {
    const img = mkfsExt4('c.img', '64M');
    const { device, mount } = await openRw(img);
    const run = await mount.transact(8, (h) => blockAllocator.allocate(mount, h, { goal: 5000, count: 10 }));
    await mount.transact(8, (h) => blockAllocator.free(mount, h, run));
    const again = await mount.transact(8, (h) => blockAllocator.allocate(mount, h, { goal: run.start, count: 10 }));
    expect(overlaps(again, run)).toBe(false);
    await mount.sync();
    expect(isParked(mount, run.start)).toBe(false);
    const third = await mount.transact(8, (h) => blockAllocator.allocate(mount, h, { goal: run.start, count: 10 }));
    expect(third.start).toBe(run.start);
    await mount.transact(8, async (h) => { await blockAllocator.free(mount, h, again); await blockAllocator.free(mount, h, third); });
    await mount.close();
    await device.close();
    expect((await e2fsck(img)).complaints).toEqual([]);
  });

  it('blockAllocator fills the fs to the last block, then ENOSPC leaves everything consistent', async () => {
    const img = mkfsExt4('d.img', '32M');
    const { device, mount } = await openRw(img);
    const before = counts(mount);
    const reserve = mount.ext4.sb.rBlocksCount;
    const runs: BlockRun[] = [];
    // Without useReserved the allocator stops at the 5% reserve.
    for (;;) {
      try {
        runs.push(await mount.transact(8, (h) => blockAllocator.allocate(mount, h, { goal: 0, count: 4096 })));
      } catch (error) {
        expect((error as FsError).code).toBe('ENOSPC');
        break;
      }
    }
    expect(blockAllocator.freeBlocks(mount, false)).toBe(0);
    expect(blockAllocator.freeBlocks(mount, true)).toBe(reserve);
    for (;;) {
      try {
        runs.push(await mount.transact(8, (h) => blockAllocator.allocate(mount, h, { goal: 0, count: 4096, useReserved: true })));
      } catch (error) {
        expect((error as FsError).code).toBe('ENOSPC');
        break;
      }
    }
    expect(mount.ext4.groups.reduce((n, g) => n + g.freeBlocksCount, 0)).toBe(0);
    const full = counts(mount);
    await expect(mount.transact(8, (h) => blockAllocator.allocate(mount, h, { goal: 0, count: 1, useReserved: true }))).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(counts(mount)).toEqual(full);
    await mount.transact(64, async (h) => { for (const r of runs) await blockAllocator.free(mount, h, r); });
    expect(counts(mount)).toEqual(before);
    await mount.close();
    await device.close();
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
  });
});

describe('inodeAllocator', () => {
  it('inodeAllocator spreads dirs, keeps files near the parent, initialises INODE_UNINIT groups; freed inodes leave e2fsck clean', async () => {
    // nodiscard + lazy_itable_init: groups other than 0 are not ITABLE_ZEROED, so slots get zeroed.
    const img = mkfsExt4('e.img', '1G', ['-E', 'nodiscard,lazy_itable_init=1']);
    const { device, mount } = await openRw(img);
    const before = counts(mount);
    const ipg = mount.ext4.inodesPerGroup;
    const made: { ino: number; isDir: boolean }[] = [];
    const dirGroups = new Set<number>();
    for (let i = 0; i < 12; i++) {
      const ino = await mount.transact(16, async (h) => {
        const n = await inodeAllocator.allocate(mount, h, { parentIno: 2, isDir: true });
        await mount.writeInode(h, n, (raw) => {
          raw.mode = 0o40755; raw.linksCount = 2; raw.extraIsize = 32; raw.generation = n * 7;
        });
        return n;
      });
      expect(ino).toBeGreaterThanOrEqual(11);
      dirGroups.add(Math.floor((ino - 1) / ipg));
      made.push({ ino, isDir: true });
      for (let f = 0; f < 5; f++) {
        const file = await mount.transact(16, async (h) => {
          const n = await inodeAllocator.allocate(mount, h, { parentIno: ino, isDir: false });
          await mount.writeInode(h, n, (raw) => { raw.mode = 0o100644; raw.linksCount = 1; raw.extraIsize = 32; });
          return n;
        });
        expect(Math.floor((file - 1) / ipg)).toBe(Math.floor((ino - 1) / ipg));
        made.push({ ino: file, isDir: false });
      }
    }
    expect(dirGroups.size).toBeGreaterThan(3);
    for (const g of dirGroups) expect(mount.ext4.groups[g].flags & GroupFlags.INODE_UNINIT).toBe(0);
    for (const { ino, isDir } of made) {
      await mount.transact(16, async (h) => {
        await mount.writeInode(h, ino, (raw) => { raw.linksCount = 0; raw.dtime = 1_700_000_000; });
        await inodeAllocator.free(mount, h, ino, isDir);
      });
    }
    expect(counts(mount)).toEqual(before);
    await mount.close();
    await device.close();
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    expect(fsck.exitCode).toBe(0);
  });
});

describe('concurrent allocations', () => {
  it('two handles allocating at once from the same goal get disjoint runs (the search awaits bitmap reads)', async () => {
    const img = mkfsExt4('race.img', '256M');
    const { device, mount } = await openRw(img);
    try {
      const goal = mount.ext4.groups[1].blockBitmap + 1000;
      const runs = await Promise.all([0, 1, 2, 3].map((i) => mount.transact(32, (h) => blockAllocator.allocate(mount, h, { goal: goal + i, count: 64 }))));
      for (let i = 0; i < runs.length; i++) for (let j = i + 1; j < runs.length; j++) expect(overlaps(runs[i], runs[j]), `${JSON.stringify(runs[i])} vs ${JSON.stringify(runs[j])}`).toBe(false);
      for (const run of runs) for (let b = run.start; b < run.start + run.count; b++) expect(await isBlockInUse(mount, b)).toBe(true);
      await mount.close();
    } finally {
      await device.close();
    }
  });

  it('allocateBlocksNow takes exactly the goal run when its blocks are in the journal, and nothing otherwise', async () => {
    const img = mkfsExt4('now.img', '256M', ['-E', 'lazy_itable_init=1']);
    const { device, mount } = await openRw(img);
    try {
      await mount.transact(16, async (h) => {
        // Nothing of group 1 in the journal yet: its bitmap would need a read (or to be computed).
        expect(allocateBlocksNow(mount, h, { goal: mount.ext4.sb.blocksPerGroup + 1000, count: 4 })).toBeUndefined();
        const first = await blockAllocator.allocate(mount, h, { goal: mount.ext4.sb.blocksPerGroup + 1000, count: 4 });
        const goal = first.start;
        expect(first.count).toBe(4);
        const credits = h.creditsLeft;
        expect(allocateBlocksNow(mount, h, { goal: goal + 4, count: 2 })).toEqual({ start: goal + 4, count: 2 });
        expect(h.creditsLeft).toBe(credits); // bitmap, GDT block and superblock were in the transaction already
        expect(allocateBlocksNow(mount, h, { goal: goal + 2, count: 4 })).toBeUndefined(); // taken: nothing changed
        expect(await isBlockInUse(mount, goal + 6)).toBe(false);
        // An allocation in flight (it awaits): the synchronous path stands aside.
        const pending = blockAllocator.allocate(mount, h, { goal: goal + 100, count: 1 });
        expect(allocateBlocksNow(mount, h, { goal: goal + 6, count: 1 })).toBeUndefined();
        await pending;
        expect(allocateBlocksNow(mount, h, { goal: goal + 6, count: 1 })).toEqual({ start: goal + 6, count: 1 });
        await blockAllocator.free(mount, h, { start: goal, count: 7 });
        // Parked (freed, uncommitted): not reusable.
        expect(allocateBlocksNow(mount, h, { goal, count: 1 })).toBeUndefined();
        await blockAllocator.free(mount, h, { start: goal + 100, count: 1 });
      });
      // BLOCK_UNINIT group: its bitmap is not on disk.
      const uninit = mount.ext4.groups.findIndex((gd) => (gd.flags & 0x2) !== 0);
      if (uninit >= 0) {
        await mount.transact(8, (h) => {
          expect(allocateBlocksNow(mount, h, { goal: uninit * mount.ext4.sb.blocksPerGroup + 100, count: 1 })).toBeUndefined();
          return Promise.resolve();
        });
      }
      await mount.sync();
      expect(blockAllocator.freeBlocks(mount, true)).toBe(mount.ext4.groups.reduce((n, g) => n + g.freeBlocksCount, 0));
      await mount.close();
    } finally {
      await device.close();
    }
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
  });
});
