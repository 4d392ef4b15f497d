/**
 * htree-write on real images (mkfs.ext4 -d), opened read-write:
 * - a split that lands between two names of equal hash sets the collision bit, and both
 *   names stay reachable (lookup follows the continuation) — the names are found by a
 *   birthday search over ~10^5 hashes and the leaf's contents are chosen so the split
 *   point falls between them;
 * - sixty thousand long names grow the index a level (indirect_levels 1) and split dx_nodes.
 * Every name points at one file whose link count is set to match, so e2fsck -fn is clean.
 * Judged by debugfs (ls, htree), e2fsck -fn and the kernel.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, writeFileSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { DirFileType, dirEntryMinLen, DIR_TAIL_BYTES } from '../format/dirent.js';
import { dirHash } from '../format/dirhash.js';
import { InodeFlags } from '../format/inode.js';
import { debugfs, e2fsck, mke2fsFromDir, parseDebugfsLs, requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import { loopMountSupport, withLoopMount } from '../../../../test/helpers/loop-mount.js';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { DIR_ADD_CREDITS_MAX, Ext4DirectoryWriter } from './dir-write.js';
import { leafSplitIndex } from './htree-write.js';
import { lookup, resolvePath } from './namei.js';
import { Ext4Mount } from './mount.js';
import { seededUnitRandom } from '../random.js';
import { extentWriter } from './extents-write.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-htreew-'); });
afterAll(() => tmp.cleanup());

const enc = new TextEncoder();

/** The project's seeded PRNG in [0, 1), so every failure reproduces from its seed. */
const rng = seededUnitRandom;

/** Directory blocks are mapped by the real extent writer (tree growth included). */
const dirs = new Ext4DirectoryWriter(extentWriter);

interface Opened { device: FileDevice; mount: Ext4Mount }

async function openRw(img: string): Promise<Opened> {
  const device = await FileDevice.open(img);
  return { device, mount: await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 }) };
}

async function closeRw(r: Opened): Promise<void> {
  await r.mount.close();
  await r.device.close();
}

async function inoOf(mount: Ext4Mount, path: string): Promise<number> {
  return (await resolvePath(mount.ext4, path, { followLast: true, syscall: 'stat' })).inode.ino;
}

/** An image with /d (empty, one block) and /f (a file every name will link to). */
async function makeImage(name: string): Promise<string> {
  const src = join(tmp.dir, `${name}-src`);
  mkdirSync(join(src, 'd'), { recursive: true });
  writeFileSync(join(src, 'f'), 'target\n');
  const img = join(tmp.dir, `${name}.img`);
  // A fixed hash seed and UUID: the same names hash (and split) the same way every run.
  await mke2fsFromDir(img, src, { sizeBytes: 256 * 1024 * 1024, extraArgs: ['-U', '6c1b8a52-3f0e-4d7a-9c2b-5e8f1a0d4b37', '-E', 'hash_seed=0f4e2d1c-8b7a-4c3d-9e5f-1a2b3c4d5e6f'] });
  return img;
}

async function addNames(r: Opened, dirIno: number, fileIno: number, names: Iterable<string>): Promise<void> {
  for (const name of names) {
    await r.mount.transact(DIR_ADD_CREDITS_MAX, (h) => dirs.addEntry(r.mount, h, dirIno, enc.encode(name), fileIno, DirFileType.REG));
  }
}

async function removeNames(r: Opened, dirIno: number, fileIno: number, names: Iterable<string>): Promise<void> {
  for (const name of names) {
    await r.mount.transact(2, async (h) => expect(await dirs.removeEntry(r.mount, h, dirIno, enc.encode(name))).toBe(fileIno));
  }
}

async function setLinks(r: Opened, fileIno: number, links: number): Promise<void> {
  await r.mount.transact(1, (h) => r.mount.writeInode(h, fileIno, (raw) => { raw.linksCount = links; }));
}

/** debugfs ls of /d (live names only) must equal `names`; debugfs htree must be clean; e2fsck -fn clean. */
async function check(img: string, names: Set<string>): Promise<string> {
  const listed = parseDebugfsLs(await debugfs(img, ['ls -p -r /d'])).filter((e) => e.inode !== 0 && e.name !== '.' && e.name !== '..');
  expect(listed.length).toBe(names.size);
  expect(new Set(listed.map((e) => e.name))).toEqual(names);
  const htree = await debugfs(img, ['htree /d']);
  // Entry lines ("ino 0xhash-minor (rec_len) name") carry random names: judge the others.
  const complaints = htree.split('\n').filter((l) => !/^\d+ 0x/.test(l) && /\b(bad|corrupt|error|invalid|mismatch|problem|fail)/i.test(l));
  expect(complaints).toEqual([]);
  const fsck = await e2fsck(img);
  expect(fsck.complaints, fsck.output).toEqual([]);
  expect(fsck.exitCode, fsck.output).toBe(0);
  return htree;
}

async function kernelCheck(img: string, names: Set<string>, fileIno: number): Promise<void> {
  const loop = await loopMountSupport();
  if (!loop.ok) {
    console.warn(`skipping kernel mount check: ${loop.reason}`);
    return;
  }
  await withLoopMount(img, (mp) => {
    const d = join(mp, 'd');
    expect(new Set(readdirSync(d))).toEqual(names);
    let i = 0;
    for (const name of names) {
      if (i++ % 50 === 0) expect(statSync(join(d, name)).ino).toBe(fileIno);
    }
    for (let k = 0; k < 400; k++) writeFileSync(join(d, `kernel-${k}-${'k'.repeat(k % 230)}`), 'x');
    for (let k = 0; k < 400; k += 2) unlinkSync(join(d, `kernel-${k}-${'k'.repeat(k % 230)}`));
    const [first] = names;
    unlinkSync(join(d, first));
    expect(readdirSync(d).length).toBe(names.size - 1 + 200);
  });
  const fsck = await e2fsck(img);
  expect(fsck.complaints, fsck.output).toEqual([]);
  expect(fsck.exitCode, fsck.output).toBe(0);
}

describe('htree-write', () => {
  it('a split between equal hashes sets the collision bit; both names stay reachable', async () => {
    const img = await makeImage('coll');
    let r = await openRw(img);
    const dirIno = await inoOf(r.mount, '/d');
    const fileIno = await inoOf(r.mount, '/f');
    const { ext4 } = r.mount;
    const version = ext4.sb.defHashVersion + (ext4.hashUnsigned ? 3 : 0);
    const hashOf = (name: string): number => dirHash(enc.encode(name), version, ext4.hashSeed).hash;

    // Birthday search for two 12-byte names of equal hash, in the middle of the hash space.
    const NAME_BYTES = 12;
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; pair === undefined && i < 1_000_000; i++) {
      const name = `k${String(i).padStart(NAME_BYTES - 1, '0')}`;
      const hash = hashOf(name);
      const other = seen.get(hash);
      if (other !== undefined && hash > 0x20000000 && hash < 0xe0000000) pair = [other, name];
      seen.set(hash, name);
    }
    expect(pair).toBeDefined();
    const [a, b] = pair!;
    const H = hashOf(a);

    // Block 0 holds "." (12), ".." (12) and `fit` names of 20 bytes; the next add converts.
    const recBytes = dirEntryMinLen(NAME_BYTES);
    const fit = Math.floor((ext4.blockSizeBytes - DIR_TAIL_BYTES - 24) / recBytes);
    const split = leafSplitIndex(new Array(fit).fill(recBytes), ext4.blockSizeBytes);
    const lower: string[] = [], upper: string[] = [];
    for (let i = 0; lower.length < split - 1 || upper.length < fit - split - 1; i++) {
      const name = `m${String(i).padStart(NAME_BYTES - 1, '0')}`;
      const hash = hashOf(name);
      if (hash < H && lower.length < split - 1) lower.push(name);
      if (hash > H && upper.length < fit - split - 1) upper.push(name);
    }
    const names = new Set([...lower, a, b, ...upper]);
    expect(names.size).toBe(fit);
    await addNames(r, dirIno, fileIno, names);
    expect((await r.mount.inode(dirIno)).flags & InodeFlags.INDEX).toBe(0);
    expect((await r.mount.inode(dirIno)).size).toBe(ext4.blockSizeBytes);
    await addNames(r, dirIno, fileIno, ['the one that converts']);
    names.add('the one that converts');
    const dir = await r.mount.inode(dirIno);
    expect(dir.flags & InodeFlags.INDEX).toBe(InodeFlags.INDEX);
    expect(dir.size).toBe(3 * ext4.blockSizeBytes);
    for (const name of [a, b]) expect((await lookup(ext4, dir, enc.encode(name)))?.ino).toBe(fileIno);
    // The second of the pair sits in block 2, reached by following the collision bit.
    await removeNames(r, dirIno, fileIno, [b]);
    expect(await lookup(ext4, await r.mount.inode(dirIno), enc.encode(b))).toBeUndefined();
    await addNames(r, dirIno, fileIno, [b]);
    await setLinks(r, fileIno, 1 + names.size);
    await closeRw(r);

    const htree = await check(img, names);
    const entry1 = /Entry #1: Hash 0x([0-9a-f]{8}), block (\d+)/.exec(htree);
    expect(entry1).not.toBeNull();
    expect(Number.parseInt(entry1![1], 16)).toBe((H | 1) >>> 0);
    expect(Number(entry1![2])).toBe(2);
    console.log(`collision pair ${a} / ${b} hash 0x${H.toString(16)}; split at ${split} of ${fit}; root entry 1 = 0x${entry1![1]}`);
    await kernelCheck(img, names, fileIno);
    r = await openRw(img);
    await closeRw(r);
  }, 60_000);

  it('sixty thousand long names add an index level and split dx_nodes; removes and re-adds keep it valid', async () => {
    const N = Number(process.env.EXT4TS_HTREE_NAMES ?? 60_000);
    const img = await makeImage('deep');
    let r = await openRw(img);
    const dirIno = await inoOf(r.mount, '/d');
    const fileIno = await inoOf(r.mount, '/f');
    const rand = rng(0x4e5);
    const names = new Set<string>();
    while (names.size < N) {
      const len = 200 + Math.floor(rand() * 56);
      let s = '';
      while (s.length < len) s += String.fromCharCode(0x21 + Math.floor(rand() * 94)).replace('/', '_');
      names.add(s);
    }
    const t0 = Date.now();
    await addNames(r, dirIno, fileIno, names);
    const addMs = Date.now() - t0;
    const dir = await r.mount.inode(dirIno);
    let k = 0;
    for (const name of names) if (k++ % 97 === 0) expect((await lookup(r.mount.ext4, dir, enc.encode(name)))?.ino).toBe(fileIno);
    await setLinks(r, fileIno, 1 + names.size);
    await closeRw(r);
    let htree = await check(img, names);
    expect(/Indirect levels: (\d+)/.exec(htree)?.[1]).toBe('1');
    const rootCount = Number(/Number of entries \(count\): (\d+)/.exec(htree)?.[1]);
    expect(rootCount).toBeGreaterThanOrEqual(2);
    console.log(`${N} names of 200-255 bytes added in ${addMs} ms; indirect levels 1, root count ${rootCount}, dir ${dir.size / 4096} blocks`);

    r = await openRw(img);
    const all = [...names];
    const gone = all.filter(() => rand() < 0.5);
    await removeNames(r, dirIno, fileIno, gone);
    for (const name of gone) names.delete(name);
    const back = gone.filter(() => rand() < 0.5);
    await addNames(r, dirIno, fileIno, back);
    for (const name of back) names.add(name);
    await setLinks(r, fileIno, 1 + names.size);
    await closeRw(r);
    htree = await check(img, names);
    expect(/Indirect levels: (\d+)/.exec(htree)?.[1]).toBe('1');
    await kernelCheck(img, names, fileIno);
  }, 120_000);
});
