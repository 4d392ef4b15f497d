/**
 * extentWriter on files made by mkfs.ext4 -d: fragmented growth to depth-2 trees,
 * unwritten extents converted in pieces, random punches and truncation — each step
 * compared with a model through the read path (walkMappings), and at checkpoints with
 * debugfs `ex` after a clean unmount; e2fsck -fn clean at the end.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { decodeExtentHeader } from '../format/extent.js';
import { e2fsck, requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { Ext4Mount } from './mount.js';
import { walkMappings } from './extents.js';
import { extentWriter, mapOrAllocateNow } from './extents-write.js';
import { blockAllocator } from './balloc.js';
import { seededUnitRandom } from '../random.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-extw-'); });
afterAll(() => tmp.cleanup());

/** The project's seeded PRNG in [0, 1), so every failure reproduces from its seed. */
const rng = seededUnitRandom;

/** An image with /small (10 blocks) and /empty (0 blocks); returns the path and their inodes. */
function makeImage(name: string, size: string): { img: string; small: number; empty: number } {
  const src = join(tmp.dir, `${name}.d`);
  mkdirSync(src);
  writeFileSync(join(src, 'small'), new Uint8Array(40960).fill(7));
  writeFileSync(join(src, 'empty'), new Uint8Array(0));
  const img = join(tmp.dir, `${name}.img`);
  execFileSync('truncate', ['-s', size, img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, img]);
  const ino = (p: string): number => Number(/Inode:\s+(\d+)/.exec(execFileSync('debugfs', ['-R', `stat ${p}`, img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))![1]);
  return { img, small: ino('/small'), empty: ino('/empty') };
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
  await mount.transact(4, (h) => mount.writeInode(h, ino, (raw) => { raw.size = (last + 1) * 4096; }));
}

function sectorsOf(model: Model, treeBlocks: number): number {
  return (model.size + treeBlocks) * 8;
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
    // (Random-order inserts over many leaves leave a level e2fsck calls "could be
    // narrower" with or without the in-place path: a split keeps the left node full.)
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
});
