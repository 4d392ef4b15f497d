/**
 * extentWriter on files made by mkfs.ext4 -d: fragmented growth to depth-2 trees,
 * unwritten extents converted in pieces, random punches and truncation — each step
 * compared with a model through the read path (walkMappings), and at checkpoints with
 * debugfs `ex` after a clean unmount; e2fsck -fn clean at the end. Trees of many leaves
 * built in random, ascending and descending order, at 4 KiB and 1 KiB blocks, stay as
 * narrow and as short as e2fsck wants them, through punches too; with the journal
 * refusing more credits they stay valid.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { decodeExtentHeader, decodeExtentIndex, nodeMaxEntries } from '../format/extent.js';
import { e2fsck, requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { Ext4Mount } from './mount.js';
import { walkMappings } from './extents.js';
import { extentWriter, mapOrAllocateNow } from './extents-write.js';
import { blockAllocator } from './balloc.js';
import { writeCredits } from './map_blocks.js';
import { REMOVE_CREDITS } from './truncate.js';
import { seededUnitRandom } from '../random.js';
import type { JournalHandle } from '../jbd2/handle.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-extw-'); });
afterAll(() => tmp.cleanup());

/** The project's seeded PRNG in [0, 1), so every failure reproduces from its seed. */
const rng = seededUnitRandom;

/**
 * An image with /small (40960 bytes) and /empty (0 blocks), plus more empty files if
 * asked; returns the path and their inodes.
 */
function makeImage(name: string, size: string, options: { blockSize?: number; emptyFiles?: readonly string[] } = {}): { img: string; small: number; empty: number; inodes: Map<string, number> } {
  const src = join(tmp.dir, `${name}.d`);
  mkdirSync(src);
  writeFileSync(join(src, 'small'), new Uint8Array(40960).fill(7));
  writeFileSync(join(src, 'empty'), new Uint8Array(0));
  for (const f of options.emptyFiles ?? []) writeFileSync(join(src, f), new Uint8Array(0));
  const img = join(tmp.dir, `${name}.img`);
  execFileSync('truncate', ['-s', size, img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', String(options.blockSize ?? 4096), '-d', src, img]);
  const ino = (p: string): number => Number(/Inode:\s+(\d+)/.exec(execFileSync('debugfs', ['-R', `stat ${p}`, img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))![1]);
  const inodes = new Map((options.emptyFiles ?? []).map((f) => [f, ino(`/${f}`)] as const));
  return { img, small: ino('/small'), empty: ino('/empty'), inodes };
}

/** Model: lblk → { pblk, unwritten }. */
type Model = Map<number, { pblk: number; unwritten: boolean }>;

/** The model as maximal runs, the way walkMappings reports them (contiguous, same kind). */
function modelRuns(model: Model): string[] {
  const keys = [...model.keys()].sort((a, b) => a - b);
  const out: string[] = [];
  let cur: { l: number; p: number; n: number; u: boolean } | undefined;
  for (const l of keys) {
    const { pblk, unwritten } = model.get(l)!;
    if (cur !== undefined && cur.l + cur.n === l && cur.p + cur.n === pblk && cur.u === unwritten) { cur.n++; continue; }
    if (cur !== undefined) out.push(`${cur.l}+${cur.n}@${cur.p}${cur.u ? 'u' : ''}`);
    cur = { l, p: pblk, n: 1, u: unwritten };
  }
  if (cur !== undefined) out.push(`${cur.l}+${cur.n}@${cur.p}${cur.u ? 'u' : ''}`);
  return out;
}

async function readRuns(mount: Ext4Mount, ino: number, endLblk: number): Promise<string[]> {
  const inode = await mount.inode(ino);
  const out: string[] = [];
  let cur: { l: number; p: number; n: number; u: boolean } | undefined;
  for await (const m of walkMappings(mount.ext4, inode, 0, endLblk)) {
    if (m.kind === 'hole') continue;
    const u = m.kind === 'unwritten';
    if (cur !== undefined && cur.l + cur.n === m.lblk && cur.p + cur.n === m.pblk && cur.u === u) { cur.n += m.len; continue; }
    if (cur !== undefined) out.push(`${cur.l}+${cur.n}@${cur.p}${cur.u ? 'u' : ''}`);
    cur = { l: m.lblk, p: m.pblk, n: m.len, u };
  }
  if (cur !== undefined) out.push(`${cur.l}+${cur.n}@${cur.p}${cur.u ? 'u' : ''}`);
  return out;
}

/** debugfs `ex` leaf lines → runs like modelRuns (merging what the tree keeps apart). */
function debugfsRuns(img: string, ino: number): string[] {
  const text = execFileSync('debugfs', ['-R', `ex <${ino}>`, img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 });
  const model: Model = new Map();
  for (const line of text.split('\n')) {
    // Leaf lines: "Level Entries  Logical  Physical Length Flags" e.g. " 1/ 1   1/340     0 -     0  2066 -  2066      1 Uninit"
    const m = /^\s*(\d+)\/\s*(\d+)\s+\d+\/\s*\d+\s+(\d+)\s+-\s+(\d+)\s+(\d+)\s+-\s+(\d+)\s+(\d+)\s*(Uninit)?/.exec(line);
    if (m === null || m[1] !== m[2]) continue;
    const l0 = Number(m[3]), p0 = Number(m[5]), n = Number(m[7]);
    for (let i = 0; i < n; i++) model.set(l0 + i, { pblk: p0 + i, unwritten: m[8] !== undefined });
  }
  return modelRuns(model);
}

async function openRw(img: string): Promise<{ device: FileDevice; mount: Ext4Mount }> {
  const device = await FileDevice.open(img);
  return { device, mount: await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 }) };
}

async function setSize(mount: Ext4Mount, ino: number, model: Model): Promise<void> {
  let last = -1;
  for (const [l, v] of model) if (!v.unwritten && l > last) last = l;
  const blockSize = mount.ext4.blockSizeBytes;
  await mount.transact(4, (h) => mount.writeInode(h, ino, (raw) => { raw.size = (last + 1) * blockSize; }));
}

function sectorsOf(model: Model, treeBlocks: number, blockSize = 4096): number {
  return (model.size + treeBlocks) * (blockSize / 512);
}

/**
 * e2fsck's view of a tree, level by level from the root (level 0): the nodes, their
 * entries, and the free slots it counts (a block node not full is taken to hold one
 * fewer than its max) — "could be narrower" when a level's free slots exceed one
 * block's worth of entries.
 */
async function treeLevels(mount: Ext4Mount, ino: number): Promise<{ nodes: number; entries: number; free: number }[]> {
  const cap = nodeMaxEntries(mount.ext4.blockSizeBytes);
  const root = (await mount.inode(ino)).block;
  const levels: { nodes: number; entries: number; free: number }[] = [];
  let nodes: Uint8Array[] = [root];
  for (let level = 0; nodes.length > 0; level++) {
    const stats = { nodes: nodes.length, entries: 0, free: 0 };
    const next: Uint8Array[] = [];
    for (const node of nodes) {
      const h = decodeExtentHeader(node);
      stats.entries += h.entries;
      stats.free += level === 0 || h.entries === h.max ? h.max - h.entries : h.max - 1 - h.entries;
      if (h.depth > 0) for (let i = 0; i < h.entries; i++) next.push(await mount.ext4.cache.read(decodeExtentIndex(node, i).leaf, 'extent node'));
      expect(h.max).toBe(level === 0 ? 4 : cap);
    }
    levels.push(stats);
    nodes = next;
  }
  return levels;
}

/** e2fsck's two rules over treeLevels: no level with more than a block of free slots, none that fits in the levels above. */
function narrowness(levels: { nodes: number; entries: number; free: number }[], cap: number): string[] {
  const out: string[] = [];
  levels.forEach((l, i) => {
    if (l.free > cap) out.push(`level ${i}: ${l.free} free slots in ${l.nodes} nodes (> ${cap}): could be narrower`);
    for (let j = 0; j < i; j++) if (l.entries < levels[j].entries + levels[j].free) out.push(`level ${i}: ${l.entries} entries fit in level ${j}: could be shorter`);
  });
  return out;
}

describe('extentWriter', () => {
  it('extentWriter builds a fragmented depth-2 tree, converts unwritten pieces, punches and truncates; read path, debugfs and e2fsck agree', async () => {
    const { img, small } = makeImage('a', '128M');
    let { device, mount } = await openRw(img);
    const random = rng(42);
    const model: Model = new Map();
    for await (const m of walkMappings(mount.ext4, await mount.inode(small), 0, 10)) {
      for (let i = 0; i < m.len; i++) model.set(m.lblk + i, { pblk: m.pblk + i, unwritten: false });
    }
    // Every other block from a base: each new block is its own extent.
    const base = 20000;
    const extents = 3000;
    for (let i = 0; i < extents; i += 25) {
      await mount.transact(80, async (h) => {
        for (let j = i; j < Math.min(extents, i + 25); j++) {
          const lblk = 10 + j;
          const runs = await extentWriter.mapOrAllocate(mount, h, small, lblk, 1, { unwritten: j % 7 === 3, goal: base + 2 * j });
          expect(runs).toHaveLength(1);
          expect(runs[0].fresh).toBe(true);
          model.set(lblk, { pblk: runs[0].pblk, unwritten: j % 7 === 3 });
        }
      });
    }
    const end = 10 + extents + 100;
    expect(await readRuns(mount, small, end)).toEqual(modelRuns(model));
    const depth = decodeExtentHeader((await mount.inode(small)).block).depth;
    expect(depth).toBe(2);
    await setSize(mount, small, model);

    // Re-mapping a mapped range allocates nothing and reports what is there.
    const again = await mount.transact(8, (h) => extentWriter.mapOrAllocate(mount, h, small, 0, 12, { unwritten: false }));
    expect(again.every((r) => !r.fresh)).toBe(true);

    await mount.close();
    await device.close();
    expect(debugfsRuns(img, small)).toEqual(modelRuns(model));
    let fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    ({ device, mount } = await openRw(img));

    // Convert unwritten pieces, fill holes with unwritten then convert half of them.
    for (let step = 0; step < 30; step++) {
      const lblk = Math.floor(random() * end);
      const count = 1 + Math.floor(random() * 40);
      await mount.transact(120, async (h) => {
        if (step % 2 === 0) {
          await extentWriter.convertUnwritten(mount, h, small, lblk, count);
          for (let l = lblk; l < lblk + count; l++) { const v = model.get(l); if (v !== undefined) v.unwritten = false; }
        } else {
          const runs = await extentWriter.mapOrAllocate(mount, h, small, lblk, count, { unwritten: true });
          for (const r of runs) {
            for (let i = 0; i < r.count; i++) {
              const l = r.lblk + i;
              if (r.fresh) model.set(l, { pblk: r.pblk + i, unwritten: true });
              else expect(model.get(l)).toEqual({ pblk: r.pblk + i, unwritten: r.unwritten });
            }
          }
        }
      });
      expect(await readRuns(mount, small, end + 100), `convert step ${step}`).toEqual(modelRuns(model));
    }

    // Random punches.
    for (let step = 0; step < 60; step++) {
      const lblk = Math.floor(random() * end);
      const count = 1 + Math.floor(random() * (step % 10 === 0 ? 600 : 30));
      await mount.transact(200, (h) => extentWriter.removeRange(mount, h, small, lblk, count));
      for (let l = lblk; l < lblk + count; l++) model.delete(l);
      expect(await readRuns(mount, small, end + 100), `punch step ${step}`).toEqual(modelRuns(model));
    }
    await setSize(mount, small, model);
    await mount.close();
    await device.close();
    expect(debugfsRuns(img, small)).toEqual(modelRuns(model));
    fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    ({ device, mount } = await openRw(img));

    // Truncate from the middle, then to zero: the tree collapses back into i_block.
    const cut = Math.floor(end / 3);
    await mount.transact(200, (h) => extentWriter.removeRange(mount, h, small, cut, 2 ** 32 - cut));
    for (const l of [...model.keys()]) if (l >= cut) model.delete(l);
    expect(await readRuns(mount, small, end + 100)).toEqual(modelRuns(model));
    await setSize(mount, small, model);
    await mount.close();
    await device.close();
    expect(debugfsRuns(img, small)).toEqual(modelRuns(model));
    fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    ({ device, mount } = await openRw(img));

    await mount.transact(200, (h) => extentWriter.removeRange(mount, h, small, 0, 2 ** 32));
    model.clear();
    const inode = await mount.inode(small);
    expect(decodeExtentHeader(inode.block)).toMatchObject({ depth: 0, entries: 0 });
    expect(inode.sectors512).toBe(sectorsOf(model, 0));
    await setSize(mount, small, model);
    await mount.close();
    await device.close();
    fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
  });

  it('extentWriter grows the extent before a hole in place, in a leaf block too, without new entries; debugfs and e2fsck agree', async () => {
    const { img, empty } = makeImage('c', '128M');
    let { device, mount } = await openRw(img);
    const model: Model = new Map();
    const put = (runs: { lblk: number; count: number; pblk: number; unwritten: boolean }[]): void => {
      for (const r of runs) for (let i = 0; i < r.count; i++) model.set(r.lblk + i, { pblk: r.pblk + i, unwritten: r.unwritten });
    };
    // Ten one-block extents 100 blocks apart, physically apart too: depth 1 (one leaf block).
    await mount.transact(64, async (h) => {
      for (let j = 0; j < 10; j++) put(await extentWriter.mapOrAllocate(mount, h, empty, 100 * j, 1, { unwritten: false, goal: 20000 + 500 * j }));
    });
    const leafEntries = async (): Promise<number> => {
      const root = (await mount.inode(empty)).block;
      expect(decodeExtentHeader(root).depth).toBe(1);
      const leaf = new DataView(root.buffer, root.byteOffset).getUint32(12 + 4, true);
      return decodeExtentHeader(await mount.ext4.cache.read(leaf, 'leaf')).entries;
    };
    expect(await leafEntries()).toBe(10);
    // Block by block after the last extent and after a middle one (its hole ends at the next extent).
    for (let l = 901; l < 960; l++) {
      await mount.transact(16, async (h) => put(await extentWriter.mapOrAllocate(mount, h, empty, l, 1, { unwritten: false })));
    }
    for (let l = 301; l < 400; l++) {
      await mount.transact(16, async (h) => put(await extentWriter.mapOrAllocate(mount, h, empty, l, 1, { unwritten: false })));
    }
    expect(await leafEntries()).toBe(10); // grown in place: no entry added
    expect(modelRuns(model)).toHaveLength(10);
    // An unwritten block after a written extent cannot join it: a new entry.
    await mount.transact(16, async (h) => put(await extentWriter.mapOrAllocate(mount, h, empty, 960, 1, { unwritten: true })));
    expect(await leafEntries()).toBe(11);
    expect(await readRuns(mount, empty, 1000)).toEqual(modelRuns(model));
    expect((await mount.inode(empty)).sectors512).toBe(sectorsOf(model, 1));
    await setSize(mount, empty, model);
    await mount.close();
    await device.close();
    expect(debugfsRuns(img, empty)).toEqual(modelRuns(model));
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    ({ device, mount } = await openRw(img));
    expect(await readRuns(mount, empty, 1000)).toEqual(modelRuns(model));
    await mount.close();
    await device.close();
  });

  it('mapOrAllocateNow appends in place with no promise once the blocks it dirties are in the journal, and changes nothing when it cannot', async () => {
    const { img, empty } = makeImage('d', '128M');
    let { device, mount } = await openRw(img);
    const model: Model = new Map();
    const put = (runs: { lblk: number; count: number; pblk: number; unwritten: boolean }[]): void => {
      for (const r of runs) for (let i = 0; i < r.count; i++) model.set(r.lblk + i, { pblk: r.pblk + i, unwritten: r.unwritten });
    };
    const written = { unwritten: false };
    await mount.transact(64, async (h) => {
      expect(mapOrAllocateNow(mount, h, empty, 0, 1, written)).toBeUndefined(); // an empty tree: no extent to grow
      put(await extentWriter.mapOrAllocate(mount, h, empty, 0, 1, written));
      for (let l = 1; l < 40; l++) {
        const runs = mapOrAllocateNow(mount, h, empty, l, 1, written);
        expect(runs, `block ${l}`).toEqual([{ lblk: l, count: 1, pblk: model.get(0)!.pblk + l, unwritten: false, fresh: true }]);
        put(runs!);
      }
      // Already mapped: answered as it is.
      expect(mapOrAllocateNow(mount, h, empty, 5, 3, written)).toEqual([{ lblk: 5, count: 3, pblk: model.get(5)!.pblk, unwritten: false, fresh: false }]);
      // Not contiguous (a hole before it), or a different kind: nothing done.
      const sectors = (await mount.inode(empty)).sectors512;
      expect(mapOrAllocateNow(mount, h, empty, 50, 1, written)).toBeUndefined();
      expect(mapOrAllocateNow(mount, h, empty, 40, 1, { unwritten: true })).toBeUndefined();
      // The blocks after the extent taken by someone else: nothing done either.
      const taken = model.get(39)!.pblk + 1;
      await blockAllocator.allocate(mount, h, { goal: taken, count: 1 });
      expect(mapOrAllocateNow(mount, h, empty, 40, 1, written)).toBeUndefined();
      expect((await mount.inode(empty)).sectors512).toBe(sectors);
      await blockAllocator.free(mount, h, { start: taken, count: 1 });
    });
    expect(await readRuns(mount, empty, 100)).toEqual(modelRuns(model));
    // A depth-1 tree: the leaf block joins the journal at the first change, then appends go without a promise.
    await mount.transact(64, async (h) => {
      for (let j = 1; j < 6; j++) put(await extentWriter.mapOrAllocate(mount, h, empty, 100 * j, 1, { unwritten: false, goal: 20000 + 500 * j }));
    });
    expect(decodeExtentHeader((await mount.inode(empty)).block).depth).toBe(1);
    await mount.sync();
    await mount.journal!.checkpoint(); // the leaf leaves the journal: a read is needed again
    await mount.transact(64, async (h) => {
      expect(mapOrAllocateNow(mount, h, empty, 501, 1, written)).toBeUndefined();
      put(await extentWriter.mapOrAllocate(mount, h, empty, 501, 1, written));
      for (let l = 502; l < 520; l++) put(mapOrAllocateNow(mount, h, empty, l, 1, written)!);
    });
    expect(await readRuns(mount, empty, 1000)).toEqual(modelRuns(model));
    expect((await mount.inode(empty)).sectors512).toBe(sectorsOf(model, 1));
    await setSize(mount, empty, model);
    await mount.close();
    await device.close();
    expect(debugfsRuns(img, empty)).toEqual(modelRuns(model));
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    ({ device, mount } = await openRw(img));
    await mount.close();
    await device.close();
  });

  it('extentWriter inserts an extent that merges with no neighbour in place, in random order, in the root and in a leaf block; debugfs and e2fsck agree', async () => {
    const { img, empty } = makeImage('e', '256M');
    let { device, mount } = await openRw(img);
    const random = rng(7);
    const model: Model = new Map();
    // Every other block: no two extents touch. 300 extents: the root, then one leaf block.
    // (Random inserts over many leaves, and what e2fsck says of them: the many-leaf test below.)
    const order = Array.from({ length: 300 }, (_, i) => 2 * i);
    for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
    for (let k = 0; k < order.length; k += 50) {
      await mount.transact(120, async (h) => {
        for (const lblk of order.slice(k, k + 50)) {
          // A goal away from any neighbour's blocks, so nothing merges.
          const runs = await extentWriter.mapOrAllocate(mount, h, empty, lblk, 1, { unwritten: lblk % 3 === 0, goal: 30000 + 7 * lblk });
          expect(runs).toHaveLength(1);
          model.set(lblk, { pblk: runs[0].pblk, unwritten: lblk % 3 === 0 });
        }
      });
      if (k % 100 === 0) expect(await readRuns(mount, empty, 700), `after ${k + 50}`).toEqual(modelRuns(model));
    }
    expect(await readRuns(mount, empty, 700)).toEqual(modelRuns(model));
    const root = decodeExtentHeader((await mount.inode(empty)).block);
    expect([root.depth, root.entries]).toEqual([1, 1]); // one leaf took every insert after the root's four
    expect((await mount.inode(empty)).sectors512).toBe(sectorsOf(model, 1));
    await setSize(mount, empty, model);
    await mount.close();
    await device.close();
    expect(debugfsRuns(img, empty)).toEqual(modelRuns(model));
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    ({ device, mount } = await openRw(img));
    await mount.close();
    await device.close();
  });

  it('extentWriter merges contiguous appends into one extent, splits long runs at 32768/32767, and fills to ENOSPC cleanly', async () => {
    const { img, empty } = makeImage('b', '512M');
    const { device, mount } = await openRw(img);
    // Appending one block at a time with the default goal stays contiguous: one extent.
    await mount.transact(64, async (h) => {
      for (let l = 0; l < 50; l++) await extentWriter.mapOrAllocate(mount, h, empty, l, 1, { unwritten: false });
    });
    let runs = await readRuns(mount, empty, 1000);
    expect(runs).toHaveLength(1);
    expect((await mount.inode(empty)).block[2]).toBe(1); // one entry in the root
    // 70000 unwritten blocks need ≥ 3 extents (32767 max each).
    await mount.transact(64, (h) => extentWriter.mapOrAllocate(mount, h, empty, 50, 70000, { unwritten: true }));
    const inode = await mount.inode(empty);
    expect(decodeExtentHeader(inode.block).entries).toBeGreaterThanOrEqual(4);
    expect(inode.sectors512).toBe(70050 * 8);
    await mount.transact(64, (h) => extentWriter.convertUnwritten(mount, h, empty, 0, 70050));
    runs = await readRuns(mount, empty, 80000);
    expect(runs.every((r) => !r.endsWith('u'))).toBe(true);
    // Fill the rest of the fs (past the reserve, data respects it): ENOSPC, then consistent.
    let lblk = 70050;
    let error: unknown;
    try {
      for (;;) {
        await mount.transact(64, async (h) => {
          const got = await extentWriter.mapOrAllocate(mount, h, empty, lblk, 30000, { unwritten: true });
          lblk = got[got.length - 1].lblk + got[got.length - 1].count;
        });
      }
    } catch (e) { error = e; }
    expect((error as { code?: string }).code).toBe('ENOSPC');
    expect(blockAllocator.freeBlocks(mount, false)).toBe(0);
    await mount.transact(8, (h) => mount.writeInode(h, empty, (raw) => { raw.size = 70050 * 4096; }));
    await mount.close();
    await device.close();
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
  });
  /**
   * Many one-block extents that never touch (every other block), inserted one per handle
   * of the credits writeback reserves: in random order, ascending, descending, then odd
   * blocks in random order into the full leaves of the ascending file; then punches of
   * single extents and of ranges. After each phase every tree reads back as the model,
   * debugfs agrees, and e2fsck -fn has nothing to say (no level "could be narrower" or
   * "could be shorter").
   */
  for (const blockSize of [4096, 1024] as const) {
    it(`extentWriter keeps every level of a many-leaf tree as narrow as e2fsck wants: random, ascending, descending inserts, then punches (${blockSize}-byte blocks)`, async () => {
      const cap = nodeMaxEntries(blockSize);
      // 4 KiB: ≥ 9 leaves of 340 under one index block. 1 KiB: ≥ 91 leaves of 84, more than
      // an index block holds: the leaf level hangs from two, and windows cross between them.
      const extents = blockSize === 4096 ? 3000 : 7600;
      const { img, inodes } = makeImage(`narrow${blockSize}`, blockSize === 4096 ? '256M' : '128M', { blockSize, emptyFiles: ['random', 'up', 'down'] });
      let { device, mount } = await openRw(img);
      const random = rng(blockSize);
      const shuffled = (xs: number[]): number[] => {
        for (let i = xs.length - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [xs[i], xs[j]] = [xs[j], xs[i]]; }
        return xs;
      };
      const files = [...inodes.keys()];
      const models = new Map(files.map((f) => [f, new Map() as Model]));
      const end = 2 * extents + 2;
      const insert = async (file: string, lblk: number, goal?: number): Promise<void> => {
        const ino = inodes.get(file)!;
        const runs = await mount.transact(writeCredits(mount, 1), (h) => extentWriter.mapOrAllocate(mount, h, ino, lblk, 1, { unwritten: lblk % 5 === 0, goal }));
        expect(runs).toHaveLength(1);
        models.get(file)!.set(lblk, { pblk: runs[0].pblk, unwritten: lblk % 5 === 0 });
      };
      const check = async (phase: string, minLeaves = 0): Promise<void> => {
        for (const file of files) {
          const ino = inodes.get(file)!;
          const model = models.get(file)!;
          expect(await readRuns(mount, ino, end), `${phase}: ${file}`).toEqual(modelRuns(model));
          const levels = await treeLevels(mount, ino);
          expect(levels[levels.length - 1].nodes, `${phase}: ${file} leaves`).toBeGreaterThanOrEqual(minLeaves);
          if (minLeaves > cap) expect(levels[levels.length - 2].nodes, `${phase}: ${file} index blocks over the leaves`).toBeGreaterThanOrEqual(2);
          expect(narrowness(levels, cap), `${phase}: ${file} ${JSON.stringify(levels)}`).toEqual([]);
          expect((await mount.inode(ino)).sectors512, `${phase}: ${file} i_blocks`).toBe(sectorsOf(model, levels.slice(1).reduce((n, l) => n + l.nodes, 0), blockSize));
          await setSize(mount, ino, model);
        }
        await mount.close();
        await device.close();
        for (const file of files) expect(debugfsRuns(img, inodes.get(file)!), `${phase}: ${file} debugfs`).toEqual(modelRuns(models.get(file)!));
        const fsck = await e2fsck(img);
        expect(fsck.complaints, `${phase}: ${fsck.output}`).toEqual([]);
        ({ device, mount } = await openRw(img));
      };

      const evens = Array.from({ length: extents }, (_, i) => 2 * i);
      for (const lblk of shuffled(evens.slice())) await insert('random', lblk);
      for (const lblk of evens) await insert('up', lblk);
      for (const lblk of evens.slice().reverse()) await insert('down', lblk);
      await check('inserts', Math.ceil(extents / cap));
      // Odd blocks into the full leaves of the ascending file, away from their neighbours' blocks (no merge).
      const groupBlocks = blockSize * 8;
      for (const lblk of shuffled(evens.map((l) => l + 1)).slice(0, Math.floor(extents / 3))) await insert('up', lblk, groupBlocks + 3 * lblk);
      await check('odd inserts');
      // Punches: single extents everywhere, then ranges.
      for (const file of files) {
        const ino = inodes.get(file)!;
        const model = models.get(file)!;
        for (let step = 0; step < 200; step++) {
          const lblk = Math.floor(random() * end);
          const count = step < 150 ? 1 + Math.floor(random() * 3) : 1 + Math.floor(random() * 120);
          await mount.transact(REMOVE_CREDITS + writeCredits(mount, 1), (h) => extentWriter.removeRange(mount, h, ino, lblk, count));
          for (let l = lblk; l < lblk + count; l++) model.delete(l);
        }
      }
      await check('punches');
      // Refill some of the holes in random order, then punch most of each file away.
      for (const file of files) {
        const model = models.get(file)!;
        for (const lblk of shuffled(evens.filter((l) => !model.has(l))).slice(0, 300)) await insert(file, lblk);
      }
      await check('refill');
      for (const file of files) {
        const ino = inodes.get(file)!;
        const model = models.get(file)!;
        for (let step = 0; step < 40; step++) {
          const lblk = Math.floor(random() * end);
          const count = 1 + Math.floor(random() * 400);
          await mount.transact(REMOVE_CREDITS + writeCredits(mount, 1), (h) => extentWriter.removeRange(mount, h, ino, lblk, count));
          for (let l = lblk; l < lblk + count; l++) model.delete(l);
        }
      }
      await check('big punches');
      await mount.close();
      await device.close();
    }, 60_000);
  }

  it('extentWriter keeps the tree valid when the journal will not extend the handle: a split instead of a wide rewrite', async () => {
    const { img, inodes } = makeImage('stingy', '64M', { blockSize: 1024, emptyFiles: ['up'] });
    const { device, mount } = await openRw(img);
    const ino = inodes.get('up')!;
    const model: Model = new Map();
    let refused = 0;
    // The journal's handle, except that extend always says no.
    const stingy = (h: JournalHandle): JournalHandle => new Proxy(h, {
      get(target, key) {
        if (key === 'extend') return () => { refused++; return false; };
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const insert = async (lblk: number, goal?: number): Promise<void> => {
      const runs = await mount.transact(writeCredits(mount, 1), (h) => extentWriter.mapOrAllocate(mount, stingy(h), ino, lblk, 1, { unwritten: false, goal }));
      model.set(lblk, { pblk: runs[0].pblk, unwritten: false });
    };
    // 1500 extents written in order: 18 full leaves of 84. Then odd blocks in random order
    // into them: each needs room from far away, more credits than one block's handle has.
    for (let i = 0; i < 1500; i++) await insert(2 * i);
    const random = rng(11);
    const odd = Array.from({ length: 1500 }, (_, i) => 2 * i + 1);
    for (let i = odd.length - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [odd[i], odd[j]] = [odd[j], odd[i]]; }
    for (const lblk of odd.slice(0, 400)) await insert(lblk, 8192 + 3 * lblk);
    expect(refused).toBeGreaterThan(0);
    expect(await readRuns(mount, ino, 3100)).toEqual(modelRuns(model));
    const levels = await treeLevels(mount, ino);
    expect((await mount.inode(ino)).sectors512).toBe(sectorsOf(model, levels.slice(1).reduce((n, l) => n + l.nodes, 0), 1024));
    await setSize(mount, ino, model);
    await mount.close();
    await device.close();
    expect(debugfsRuns(img, ino)).toEqual(modelRuns(model));
    // Valid: nothing for e2fsck to say but, perhaps, that a level could be narrower.
    const fsck = await e2fsck(img);
    expect(fsck.complaints.filter((line) => !/extent tree \(at level \d+\) could be narrower/.test(line)), fsck.output).toEqual([]);
  });
});
