/**
 * Ext4DirectoryWriter on real images (mkfs.ext4 -d), opened read-write: seeded random
 * sequences of renames (a name moves between a pool directory and the directory under
 * test, so every inode keeps exactly one link) against a model; after each phase the
 * mount is closed and debugfs (ls, htree) and e2fsck -fn judge the image; then the kernel
 * mounts it, lists, looks up, creates and deletes names.
 *
 * Directory blocks are appended by the real extent writer (extents-write.ts) over the
 * real block allocator, so bitmaps, i_blocks and extent trees are what ext4ts writes.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, writeFileSync, readdirSync, statSync, unlinkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { DirFileType } from '../format/dirent.js';
import { encodeExtentHeader } from '../format/extent.js';
import { InodeFlags } from '../format/inode.js';
import { FsError } from '../vfs/errors.js';
import { debugfs, e2fsck, mke2fsFromDir, parseDebugfsLs, requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import { loopMountSupport, withLoopMount } from '../../../../test/helpers/loop-mount.js';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { inodeAllocator } from './ialloc.js';
import { DIR_ADD_CREDITS_MAX, Ext4DirectoryWriter } from './dir-write.js';
import { leafSplitIndex } from './htree-write.js';
import { lookup, resolvePath } from './namei.js';
import { Ext4Mount } from './mount.js';
import { seededUnitRandom } from '../random.js';
import { extentWriter } from './extents-write.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-dirw-'); });
afterAll(() => tmp.cleanup());

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The project's seeded PRNG in [0, 1), so every failure reproduces from its seed. */
const rng = seededUnitRandom;

/** Directory blocks are mapped by the real extent writer (tree growth included). */
const dirs = new Ext4DirectoryWriter(extentWriter);

async function openRw(img: string): Promise<{ device: FileDevice; mount: Ext4Mount }> {
  const device = await FileDevice.open(img);
  const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
  return { device, mount };
}

async function closeRw(r: { device: FileDevice; mount: Ext4Mount }): Promise<void> {
  await r.mount.close();
  await r.device.close();
}

async function inoOf(mount: Ext4Mount, path: string): Promise<number> {
  return (await resolvePath(mount.ext4, path, { followLast: true, syscall: 'stat' })).inode.ino;
}

/** A random name of 1..255 bytes: ASCII, spaces, 2-, 3- and 4-byte UTF-8. */
function randomName(rand: () => number): string {
  const alphabet = ['a', 'Z', '0', '-', '_', ' ', '.', 'é', 'ж', '中', '😀', 'x', 'q'];
  const targetBytes = rand() < 0.3 ? 1 + Math.floor(rand() * 12) : 1 + Math.floor(rand() * 255);
  let s = '';
  while (enc.encode(s).length < targetBytes) {
    const c = alphabet[Math.floor(rand() * alphabet.length)];
    if (enc.encode(s + c).length > targetBytes) { s += 'y'; continue; }
    s += c;
  }
  return s === '.' || s === '..' ? 'dot' : s;
}

interface DirCheck { path: string; model: Map<string, number>; hashed?: boolean }

/** debugfs's listing (raw names) minus "." and "..". */
async function listing(img: string, path: string): Promise<Map<string, number>> {
  const out = parseDebugfsLs(await debugfs(img, [`ls -p -r ${path}`]));
  const m = new Map<string, number>();
  // debugfs also lists unused records (inode 0) at the start of a block.
  for (const e of out) if (e.inode !== 0 && e.name !== '.' && e.name !== '..') m.set(e.name, e.inode);
  return m;
}

/** Indirect levels of a hashed dir per `debugfs htree`, which must report no problem. */
async function htreeLevels(img: string, path: string): Promise<number> {
  // debugfs 1.47 prints "does not have space for checksum" for every htree root of a fs
  // without metadata_csum (kernel-made ones too): tolerate exactly that message.
  const out = await debugfs(img, [`htree ${path}`]).catch(async (error: Error) => {
    if (!/does not have space for checksum/.test(error.message) || /\n/.test(error.message.trim())) throw error;
    return debugfs(img, [`htree ${path}`], { allowErrors: true });
  });
  expect(out.split('\n').filter((l) => /\b(bad|corrupt|error|invalid|mismatch|problem|fail)/i.test(l.replace(/0x[0-9a-f]+(-[0-9a-f]+)?/gi, '')))).toEqual([]);
  const m = /Indirect levels: (\d+)/.exec(out);
  expect(m).not.toBeNull();
  return Number(m![1]);
}

async function checkImage(img: string, checks: DirCheck[]): Promise<Record<string, number>> {
  const levels: Record<string, number> = {};
  for (const c of checks) {
    const got = await listing(img, c.path);
    const extra = [...got.keys()].filter((k) => !c.model.has(k)).slice(0, 5);
    const missing = [...c.model.keys()].filter((k) => !got.has(k)).slice(0, 5);
    expect({ path: c.path, extra, missing }).toEqual({ path: c.path, extra: [], missing: [] });
    expect(new Map([...got].sort())).toEqual(new Map([...c.model].sort()));
    if (c.hashed === true) levels[c.path] = await htreeLevels(img, c.path);
  }
  const fsck = await e2fsck(img);
  expect(fsck.complaints, fsck.output).toEqual([]);
  expect(fsck.exitCode, fsck.output).toBe(0);
  return levels;
}

describe('Ext4DirectoryWriter', () => {
  it('leafSplitIndex splits by bytes, by count when one record would take the top half', () => {
    expect(leafSplitIndex(new Array(100).fill(40), 4096)).toBe(49);
    expect(leafSplitIndex([1000, 1000, 1000], 1024)).toBe(2);
    expect(leafSplitIndex([264, 264, 264], 1024)).toBe(1);
    expect(leafSplitIndex([12, 12], 4096)).toBe(1);
  });

  it('renames thousands of random names in and out of a dir: linear → htree, multi-block linear stays linear', async () => {
    const src = join(tmp.dir, 'src1');
    const POOL = 4600, LIN = 300;
    for (const d of ['pool', 'target', 'lin', 'coll']) mkdirSync(join(src, d), { recursive: true });
    for (let i = 0; i < POOL; i++) writeFileSync(join(src, 'pool', `p${String(i).padStart(5, '0')}`), '');
    for (let i = 0; i < LIN; i++) writeFileSync(join(src, 'lin', `l${String(i).padStart(4, '0')}`), '');
    const img = join(tmp.dir, 'a.img');
    await mke2fsFromDir(img, src, { sizeBytes: 256 * 1024 * 1024 });

    let r = await openRw(img);
    const poolIno = await inoOf(r.mount, '/pool');
    const targetIno = await inoOf(r.mount, '/target');
    const linIno = await inoOf(r.mount, '/lin');
    const pool = await listing(img, '/pool');
    const lin = await listing(img, '/lin');
    const target = new Map<string, number>();
    expect((await r.mount.inode(poolIno)).size).toBeGreaterThan(4096);
    const rand = rng(0xd1e);
    let returned = 0;

    const move = async (fromIno: number, from: Map<string, number>, name: string, toIno: number, to: Map<string, number>, newName: string): Promise<void> => {
      await r.mount.transact(DIR_ADD_CREDITS_MAX + 2, async (h) => {
        const ino = await dirs.removeEntry(r.mount, h, fromIno, enc.encode(name));
        expect(ino).toBe(from.get(name));
        from.delete(name);
        await dirs.addEntry(r.mount, h, toIno, enc.encode(newName), ino, DirFileType.REG);
        to.set(newName, ino);
      });
    };
    const pick = (m: Map<string, number>): string => {
      const keys = [...m.keys()];
      return keys[Math.floor(rand() * keys.length)];
    };
    const addRandom = async (n: number, dirIno: number, model: Map<string, number>): Promise<void> => {
      const poolNames = [...pool.keys()];
      for (let i = 0; i < n; i++) {
        let name = randomName(rand);
        while (model.has(name)) name = randomName(rand);
        const j = Math.floor(rand() * poolNames.length);
        const from = poolNames[j];
        poolNames[j] = poolNames[poolNames.length - 1];
        poolNames.pop();
        await move(poolIno, pool, from, dirIno, model, name);
      }
    };
    const removeRandom = async (n: number, dirIno: number, model: Map<string, number>): Promise<void> => {
      for (let i = 0; i < n; i++) await move(dirIno, model, pick(model), poolIno, pool, `r${returned++}`);
    };

    // Phase 1: 3000 names into an empty one-block dir (converted to htree on the way).
    const t0 = Date.now();
    await addRandom(3000, targetIno, target);
    // Duplicates and absent names.
    await r.mount.transact(DIR_ADD_CREDITS_MAX, async (h) => {
      const [name] = target.keys();
      await expect(dirs.addEntry(r.mount, h, targetIno, enc.encode(name), 12, DirFileType.REG)).rejects.toMatchObject({ code: 'EEXIST' });
      await expect(dirs.removeEntry(r.mount, h, targetIno, enc.encode('no such name'))).rejects.toBeInstanceOf(FsError);
      await expect(dirs.addEntry(r.mount, h, targetIno, enc.encode('..'), 12, DirFileType.REG)).rejects.toMatchObject({ code: 'EEXIST' });
    });
    expect(await dirs.isEmpty(r.mount, targetIno)).toBe(false);
    // Read-side lookups through the index.
    const targetInode = await r.mount.inode(targetIno);
    expect(targetInode.flags & InodeFlags.INDEX).toBe(InodeFlags.INDEX);
    for (const [name, ino] of [...target].slice(0, 300)) expect((await lookup(r.mount.ext4, targetInode, enc.encode(name)))?.ino).toBe(ino);
    const phase1Ms = Date.now() - t0;
    await closeRw(r);
    let levels = await checkImage(img, [{ path: '/pool', model: pool }, { path: '/target', model: target, hashed: true }]);
    console.log(`phase 1: 3000 adds in ${phase1Ms} ms; target levels ${levels['/target']}`);

    // Phase 2: remove 2000, re-add 1500, retarget pairs, churn the multi-block linear dir.
    r = await openRw(img);
    await removeRandom(2000, targetIno, target);
    await addRandom(1500, targetIno, target);
    for (let i = 0; i < 50; i++) {
      const a = pick(target), b = pick(target);
      const ia = target.get(a)!, ib = target.get(b)!;
      await r.mount.transact(4, async (h) => {
        await dirs.setEntry(r.mount, h, targetIno, enc.encode(a), ib, DirFileType.REG);
        await dirs.setEntry(r.mount, h, targetIno, enc.encode(b), ia, DirFileType.REG);
      });
      target.set(a, ib);
      target.set(b, ia);
    }
    await removeRandom(200, linIno, lin);
    await addRandom(400, linIno, lin);
    expect((await r.mount.inode(linIno)).flags & InodeFlags.INDEX).toBe(0);
    await closeRw(r);
    levels = await checkImage(img, [
      { path: '/pool', model: pool }, { path: '/target', model: target, hashed: true }, { path: '/lin', model: lin },
    ]);
    expect(levels['/target']).toBe(0);

    // Phase 3: empty the target dir completely, then refill some.
    r = await openRw(img);
    await removeRandom(target.size, targetIno, target);
    expect(await dirs.isEmpty(r.mount, targetIno)).toBe(true);
    await addRandom(500, targetIno, target);
    await closeRw(r);
    await checkImage(img, [{ path: '/pool', model: pool }, { path: '/target', model: target, hashed: true }, { path: '/lin', model: lin }]);

    // The kernel: list, look up, create and delete names in the htree dir.
    const loop = await loopMountSupport();
    if (!loop.ok) {
      console.warn(`skipping kernel mount check: ${loop.reason}`);
      return;
    }
    await withLoopMount(img, (mp) => {
      const names = new Set(readdirSync(join(mp, 'target')));
      expect(names).toEqual(new Set(target.keys()));
      for (const name of [...target.keys()].slice(0, 200)) expect(statSync(join(mp, 'target', name)).ino).toBe(target.get(name));
      for (let i = 0; i < 300; i++) writeFileSync(join(mp, 'target', `kernel-${i}-${'k'.repeat(i % 200)}`), 'x');
      for (let i = 0; i < 300; i += 2) unlinkSync(join(mp, 'target', `kernel-${i}-${'k'.repeat(i % 200)}`));
      const [gone] = target.keys();
      unlinkSync(join(mp, 'target', gone));
      expect(existsSync(join(mp, 'target', gone))).toBe(false);
      expect(readdirSync(join(mp, 'target')).length).toBe(target.size - 1 + 150);
    });
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    expect(fsck.exitCode, fsck.output).toBe(0);
  }, 120_000);

  it('initDir makes new directories (mkdir) that take names; without metadata_csum too (no tails)', async () => {
    for (const features of [[], ['-O', '^metadata_csum']]) {
      const src = join(tmp.dir, `src-mkdir${features.length}`);
      mkdirSync(join(src, 'pool'), { recursive: true });
      for (let i = 0; i < 400; i++) writeFileSync(join(src, 'pool', `p${i}`), '');
      const img = join(tmp.dir, `mkdir${features.length}.img`);
      await mke2fsFromDir(img, src, { sizeBytes: 64 * 1024 * 1024, extraArgs: features });
      const r = await openRw(img);
      const poolIno = await inoOf(r.mount, '/pool');
      const made = new Map<string, number>();
      const models = new Map<string, Map<string, number>>();
      for (let d = 0; d < 3; d++) {
        const name = `new-dir-${d}`;
        await r.mount.transact(DIR_ADD_CREDITS_MAX + 8, async (h) => {
          const ino = await inodeAllocator.allocate(r.mount, h, { parentIno: 2, isDir: true });
          await r.mount.writeInode(h, ino, (raw) => {
            raw.mode = 0o040755;
            raw.linksCount = 2;
            raw.dtime = 0;
            raw.size = 0;
            raw.blocks = 0;
            raw.flags = InodeFlags.EXTENTS;
            raw.extraIsize = 32;
            raw.block.fill(0);
            encodeExtentHeader(raw.block, { entries: 0, max: 4, depth: 0, generation: 0 });
            const now = Math.floor(Date.now() / 1000);
            raw.atime = raw.ctime = raw.mtime = raw.crtime = now;
          });
          await dirs.initDir(r.mount, h, ino, 2);
          await dirs.addEntry(r.mount, h, 2, enc.encode(name), ino, DirFileType.DIR);
          await r.mount.writeInode(h, 2, (raw) => { raw.linksCount += 1; });
          made.set(name, ino);
        });
        expect(await dirs.isEmpty(r.mount, made.get(name)!)).toBe(true);
        // Fill past one block (d = 2 stays linear within one block).
        const model = new Map<string, number>();
        const count = [300, 40, 0][d];
        for (let i = 0; i < count; i++) {
          await r.mount.transact(DIR_ADD_CREDITS_MAX + 2, async (h) => {
            const ino = await dirs.removeEntry(r.mount, h, poolIno, enc.encode(`p${d * 300 + i}`));
            const newName = `${'n'.repeat(1 + (i % 40))}-${i}`;
            await dirs.addEntry(r.mount, h, made.get(name)!, enc.encode(newName), ino, DirFileType.REG);
            model.set(newName, ino);
          });
        }
        models.set(name, model);
      }
      // ".." of a hashed and of a linear dir can be retargeted (here: to itself, unchanged).
      await r.mount.transact(4, async (h) => {
        await dirs.setEntry(r.mount, h, made.get('new-dir-0')!, enc.encode('..'), 2, DirFileType.DIR);
        await dirs.setEntry(r.mount, h, made.get('new-dir-1')!, enc.encode('..'), 2, DirFileType.DIR);
      });
      expect((await r.mount.inode(made.get('new-dir-0')!)).flags & InodeFlags.INDEX).toBe(InodeFlags.INDEX);
      expect((await r.mount.inode(made.get('new-dir-1')!)).flags & InodeFlags.INDEX).toBe(0);
      await closeRw(r);
      const checks: DirCheck[] = [...models].map(([name, model]) => ({ path: `/${name}`, model, hashed: name === 'new-dir-0' }));
      await checkImage(img, checks);
    }
  }, 60_000);
});
