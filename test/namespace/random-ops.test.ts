// Seeded random sequences of namespace and size operations on an ext4ts-mkfs image,
// checked against a model (model.ts) after every step (error codes) and at checkpoints
// (the whole tree through readImageTree), then by e2fsck -fn, debugfs (ls -l, stat, cat
// of a sample), and — when this machine can loop-mount — by the kernel's view of the tree
// (mounted -o noatime, so reading moves no atime). Every failure reproduces from its seed.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Ext4, FileDevice, FsError, mkfs, type Ext4Filesystem } from '@ext4ts/core';
import { debugfs, e2fsck, requireE2fsprogs } from '../helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { contentBytes, diffTrees, makeRng, readHostTree, type HostEntryField } from '../helpers/tree.js';
import { readImageTree } from '../helpers/image-tree.js';
import { loopMountSupport, withLoopMount } from '../helpers/loop-mount.js';
import { Model } from './model.js';

const FIELDS: HostEntryField[] = ['type', 'mode', 'size', 'nlink', 'linkGroup', 'target', 'sha256'];
const IMAGE_BYTES = 64 * 2 ** 20;
const NAMES = ['a', 'b', 'c', 'd', 'e', 'f', 'sub', 'x'.repeat(40)];

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-ns-random-'); });
afterAll(() => tmp.cleanup());

async function codeOf(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (error) {
    if (!FsError.is(error)) throw error;
    return error.code;
  }
}

async function mountRw(device: FileDevice): Promise<Ext4Filesystem> {
  return Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, uid: 0, gid: 0, umask: 0o022 });
}

interface RunStats { steps: number; errors: number; byOp: Record<string, number> }

/** One seeded sequence; returns the mounted fs (caller unmounts) and the model. */
async function runSequence(fs: Ext4Filesystem, model: Model, seed: number, steps: number, stats: RunStats, check: () => Promise<void>): Promise<void> {
  const rng = makeRng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)];
  const anyPath = (): string => {
    const r = rng();
    const base = r < 0.1 && model.files().length > 0 ? pick(model.files()) : pick(model.dirs());
    return base === '' ? pick(NAMES) : `${base}/${pick(NAMES)}`;
  };
  const existing = (): string => pick([...model.nodes.keys()].filter((k) => k !== '')) ?? anyPath();
  const size = (): number => (rng() < 0.7 ? Math.floor(rng() * 9000) : rng() < 0.9 ? Math.floor(rng() * 200_000) : Math.floor(rng() * 1_500_000));
  let dataCounter = 0;
  const data = (n: number): Buffer => contentBytes(seed, `d${dataCounter++}`, 0, n);
  for (let step = 0; step < steps; step++) {
    const r = rng();
    let op: string, expected: string | null, actual: string | null;
    if (r < 0.2) {
      op = 'write';
      const p = anyPath();
      if (model.get(p)?.type === 'symlink') continue;
      const d = data(size());
      const append = rng() < 0.3;
      actual = await codeOf(append ? fs.appendFile(`/${p}`, d) : fs.writeFile(`/${p}`, d));
      expected = model.write(p, d, append);
    } else if (r < 0.3) {
      op = 'truncate';
      const files = model.files();
      if (files.length === 0) continue;
      const p = pick(files);
      const len = rng() < 0.5 ? Math.floor(rng() * 20000) : size();
      actual = await codeOf(fs.truncate(`/${p}`, len));
      expected = model.truncate(p, len);
    } else if (r < 0.42) {
      op = 'mkdir';
      const p = anyPath();
      actual = await codeOf(fs.mkdir(`/${p}`));
      expected = model.mkdir(p);
    } else if (r < 0.5) {
      op = 'rmdir';
      const p = rng() < 0.7 ? pick(model.dirs().filter((d) => d !== '')) ?? anyPath() : anyPath();
      actual = await codeOf(fs.rmdir(`/${p}`));
      expected = model.rmdir(p);
    } else if (r < 0.6) {
      op = 'unlink';
      const p = rng() < 0.8 ? existing() : anyPath();
      if (rng() < 0.2 && model.get(p)?.type === 'file') {
        // Unlink while open: the handle still reads and writes the inode; close frees it.
        op = 'unlink-open';
        const fh = await fs.open(`/${p}`, 'r+');
        actual = await codeOf(fs.unlink(`/${p}`));
        const n = model.get(p);
        expected = model.unlink(p);
        if (n?.type === 'file') {
          const before = n.file.data;
          expect(Buffer.compare(await fh.readFile() as Buffer, before)).toBe(0);
          await fh.write(Buffer.from('tail'), 0, 4, before.length);
          // Other names of the inode (hard links) see the write.
          n.file.data = Buffer.concat([before, Buffer.from('tail')]);
        }
        await fh.close();
      } else {
        actual = await codeOf(fs.unlink(`/${p}`));
        expected = model.unlink(p);
      }
    } else if (r < 0.75) {
      op = 'rename';
      const a = rng() < 0.8 ? existing() : anyPath();
      const b = rng() < 0.6 ? anyPath() : existing();
      actual = await codeOf(fs.rename(`/${a}`, `/${b}`));
      expected = model.rename(a, b);
    } else if (r < 0.83) {
      op = 'link';
      const a = rng() < 0.8 && model.files().length > 0 ? pick(model.files()) : existing();
      if (model.get(a)?.type === 'symlink') continue;
      const b = anyPath();
      actual = await codeOf(fs.link(`/${a}`, `/${b}`));
      expected = model.link(a, b);
    } else if (r < 0.9) {
      op = 'symlink';
      const target = rng() < 0.6 ? `t${step}` : `/long/${'y'.repeat(Math.floor(rng() * 300))}/${step}`;
      const p = anyPath();
      actual = await codeOf(fs.symlink(target, `/${p}`));
      expected = model.symlink(target, p);
    } else if (r < 0.95) {
      op = 'chmod';
      const p = existing();
      if (model.get(p)?.type === 'symlink') continue;
      const mode = Math.floor(rng() * 0o1000) | 0o600;
      actual = await codeOf(fs.chmod(`/${p}`, mode));
      expected = model.chmod(p, mode);
    } else {
      op = 'many';
      // Enough names in one directory to turn it into an htree and split leaves.
      await codeOf(fs.mkdir('/many'));
      model.mkdir('many');
      for (let i = 0; i < 40; i++) {
        const p = `many/${'n'.repeat(30)}${Math.floor(rng() * 400)}`;
        // A rename may have put a symlink or directory on one of these names.
        if (model.get(p) !== undefined && model.get(p)?.type !== 'file') continue;
        const e = rng() < 0.75 ? [model.write(p, data(Math.floor(rng() * 3000)), false), 'w'] : [model.unlink(p), 'u'];
        const act = e[1] === 'w' ? await codeOf(fs.writeFile(`/${p}`, (model.get(p) as { file: { data: Buffer } }).file.data)) : await codeOf(fs.unlink(`/${p}`));
        expect(act, `step ${step} many ${e[1]} ${p}`).toBe(e[0]);
        if (process.env.NS_DEBUG) {
          const names = await fs.readdir('/many');
          for (const n of names) {
            const c = await codeOf(fs.lstat(`/many/${n}`));
            if (c !== null) throw new Error(`step ${step} sub ${i} ${e[1]} ${p}: ${n} listed but lstat ${c}; dir has ${names.length}, ${(await fs.stat('/many')).size} bytes`);
          }
        }
      }
      actual = expected = null;
    }
    expect(actual, `seed ${seed} step ${step} ${op}`).toBe(expected);
    if (process.env.NS_DEBUG) {
      for (const f of model.files().filter((x) => x.startsWith('many') && step > 100)) {
        const got = await fs.readFile(`/${f}`);
        const want = (model.get(f) as { file: { data: Buffer } }).file.data;
        if (Buffer.compare(got, want) !== 0) {
          let at = 0;
          while (at < got.length && got[at] === want[at]) at++;
          throw new Error(`step ${step} op ${op}: ${f} differs at byte ${at} of ${want.length}/${got.length}`);
        }
      }
      for (const d of model.dirs()) {
        const names = await fs.readdir(`/${d}`);
        for (const n of names) {
          const c = await codeOf(fs.lstat(d === '' ? `/${n}` : `/${d}/${n}`));
          if (c !== null) throw new Error(`step ${step} op ${op}: ${d}/${n} listed but lstat ${c}; dir has ${names.length}`);
        }
        if (new Set(names).size !== names.length) throw new Error(`step ${step} op ${op}: duplicate names in ${d}`);
      }
    }
    stats.steps++;
    stats.byOp[op] = (stats.byOp[op] ?? 0) + 1;
    if (expected !== null) stats.errors++;
    if ((step + 1) % 500 === 0) await check();
  }
  // The open-unlinked writes appended 'tail' to data the model already dropped: nothing to fix up.
}

describe('namespace: seeded random sequences vs a model, e2fsck, debugfs, the kernel', () => {
  it('2 seeds × 1500 steps: every error code and the whole tree match the model; e2fsck -fn clean; debugfs and the kernel agree', async () => {
    const started = performance.now();
    const img = path.join(tmp.dir, 'ns.img');
    const device = await FileDevice.open(img, { create: true, sizeBytes: IMAGE_BYTES });
    await mkfs(device, { sizeBytes: IMAGE_BYTES, assumeZeroed: true });
    const model = new Model();
    const stats: RunStats = { steps: 0, errors: 0, byOp: {} };
    let fs = await mountRw(device);
    const check = async (): Promise<void> => {
      const seen = (await readImageTree(fs)).tree;
      expect(diffTrees(model.expected(), seen, { fields: FIELDS, ignore: ['lost+found'] })).toEqual([]);
    };
    for (const seed of [11, 12]) {
      await runSequence(fs, model, seed, 1500, stats, check);
      // Remount between seeds: everything must come back from disk the same.
      await fs.unmount();
      fs = await mountRw(device);
      await check();
    }
    const imageTree = (await readImageTree(fs)).tree;
    await fs.unmount();
    await device.close();
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    expect(fsck.clean, fsck.output).toBe(true);

    // debugfs: ls -l of the root and a sample of entries, stat and cat of sampled files.
    const files = [...imageTree].filter(([, e]) => e.type === 'file').map(([p]) => p).sort().slice(0, 12);
    for (const p of files) {
      // debugfs dump (cat's stdout would pass through a text decoder).
      const out = path.join(tmp.dir, 'dumped');
      await debugfs(img, [`dump "/${p}" ${out}`]);
      const bytes = readFileSync(out);
      expect(createHash('sha256').update(bytes).digest('hex'), p).toBe(imageTree.get(p)?.sha256);
      const st = await debugfs(img, [`stat "/${p}"`]);
      expect(st).toMatch(new RegExp(`Links: ${imageTree.get(p)?.nlink}\\b`));
      expect(st).toMatch(new RegExp(`Size: ${imageTree.get(p)?.size}\\b`));
    }
    const rootLs = await debugfs(img, ['ls -l /']);
    for (const [p] of [...imageTree].filter(([q]) => !q.includes('/'))) expect(rootLs, p).toContain(` ${p}`);

    const loop = await loopMountSupport();
    if (!loop.ok) console.warn(`skipping the kernel comparison: ${loop.reason}`);
    else {
      await withLoopMount(img, (mnt) => {
        const kernel = readHostTree(mnt);
        expect(diffTrees(imageTree, kernel, { ignore: ['lost+found'], fields: [...FIELDS, 'uid', 'gid', 'mtimeNs', 'atimeNs', 'ctimeNs', 'blocks'] })).toEqual([]);
      }, { mountOptions: ['noatime'] });
      const after = await e2fsck(img);
      expect(after.clean, after.output).toBe(true);
    }
    console.log(`random ops: ${stats.steps} steps (${stats.errors} expected errors) ${JSON.stringify(stats.byOp)}; ${imageTree.size} entries; ${(performance.now() - started).toFixed(0)} ms`);
  });
});
