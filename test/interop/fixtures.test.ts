// Sanity tests of the interop helpers against the real tools: the fixture image is what
// the helpers claim, and the helpers can tell a good image from a bad one.
// Set EXT4TS_FIXTURE_FULL=1 to also check the full-scale fixture (~30 s to build once).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  debugfs,
  debugfsBatch,
  debugfsFallocate,
  debugfsLs,
  debugfsStat,
  dumpe2fsGroups,
  dumpe2fsHeader,
  e2fsck,
  mke2fsFromDir,
  parseDebugfsStat,
  requireE2fsprogs,
} from '../helpers/e2fs.js';
import { buildFixtureImage, copyFixtureImage, type FixtureImage } from '../helpers/fixture-image.js';
import { loopMountSupport, withLoopMount } from '../helpers/loop-mount.js';
import { run } from '../helpers/run.js';
import { makeTempDir } from '../helpers/tmp.js';
import { diffTrees, expectedAfterMke2fs, generateTree, mke2fsStoredTimeNs, readHostTree } from '../helpers/tree.js';

const E2FSPROGS_VERSION = await requireE2fsprogs();
const loop = await loopMountSupport();
if (!loop.ok) console.warn(`fixtures.test: skipping kernel loop-mount checks: ${loop.reason}`);

const SCALES = process.env.EXT4TS_FIXTURE_FULL === '1' ? (['small', 'full'] as const) : (['small'] as const);
const SEED = 20240601;
const INDEX_FL = 0x1000;
const EXTENTS_FL = 0x80000;

describe('e2fs helpers', () => {
  it('requireE2fsprogs reports the installed version', () => {
    expect(E2FSPROGS_VERSION).toMatch(/^1\.\d+/);
  });

  it('e2fsck is clean on a fresh mkfs image and flags a corrupted link count', async () => {
    const temp = makeTempDir('ext4ts-e2fs-');
    try {
      mkdirSync(path.join(temp.dir, 'src'));
      writeFileSync(path.join(temp.dir, 'src', 'a'), 'hello');
      const img = path.join(temp.dir, 'img');
      await mke2fsFromDir(img, path.join(temp.dir, 'src'), { sizeBytes: 16 * 1024 * 1024 });
      expect((await e2fsck(img)).clean).toBe(true);
      await debugfs(img, ['sif /a links_count 7'], { write: true });
      const broken = await e2fsck(img);
      expect(broken.clean).toBe(false);
      expect(broken.exitCode).not.toBe(0);
      expect(broken.complaints.join('\n')).toMatch(/Fix\? no/);
    } finally {
      temp.cleanup();
    }
  });

  it('debugfs throws on an error line unless allowErrors', async () => {
    const fixture = await buildFixtureImage({ seed: SEED, scale: 'small' });
    await expect(debugfs(fixture.imagePath, ['stat /no/such/file'])).rejects.toThrow(/not found/i);
    await expect(debugfs(fixture.imagePath, ['stat /no/such/file'], { allowErrors: true })).resolves.toBe('');
  });

  it('debugfsBatch splits the output per command', async () => {
    const fixture = await buildFixtureImage({ seed: SEED, scale: 'small' });
    const [a, b] = await debugfsBatch(fixture.imagePath, ['stat /links/len1', 'stat /links/len60']);
    expect(a).toMatch(/Fast link dest: "t"/);
    expect(b).not.toMatch(/Fast link dest/);
    expect(b).toMatch(/Size: 60\n/);
  });

  it('mke2fsStoredTimeNs floors to seconds and wraps past 2038 like mke2fs 1.47', () => {
    const s = 1_000_000_000n;
    expect(mke2fsStoredTimeNs(1_234_567_890_123_456_789n)).toBe(1_234_567_890n * s);
    expect(mke2fsStoredTimeNs(-1_500_000_000n)).toBe(-2n * s);
    // 2050-06-01T00:00:00Z = 2537654400 s reads back as 1914-04-25T17:31:44Z (seen with debugfs).
    expect(mke2fsStoredTimeNs(2_537_654_400n * s)).toBe(-1_757_312_896n * s);
  });
});

describe('generateTree', () => {
  it('generateTree is deterministic for a seed and differs across seeds', async () => {
    const dirs = [makeTempDir('ext4ts-tree-a-'), makeTempDir('ext4ts-tree-b-'), makeTempDir('ext4ts-tree-c-')];
    try {
      const [ma, mb] = [await generateTree(dirs[0].dir, { seed: 7, scale: 'small' }), await generateTree(dirs[1].dir, { seed: 7, scale: 'small' })];
      const mc = await generateTree(dirs[2].dir, { seed: 8, scale: 'small' });
      expect(ma).toEqual(mb);
      expect(mc.entries).not.toEqual(ma.entries);
      const fields = ['type', 'mode', 'uid', 'gid', 'size', 'nlink', 'linkGroup', 'mtimeNs', 'atimeNs', 'target', 'sha256'] as const;
      expect(diffTrees(readHostTree(dirs[0].dir), readHostTree(dirs[1].dir), { fields })).toEqual([]);
      expect(diffTrees(readHostTree(dirs[0].dir), readHostTree(dirs[2].dir), { fields }).length).toBeGreaterThan(0);
    } finally {
      for (const d of dirs) d.cleanup();
    }
  });
});

describe.each(SCALES)('fixture image (%s)', (scale) => {
  const fixture = (): Promise<FixtureImage> => buildFixtureImage({ seed: SEED, scale });

  it('buildFixtureImage produces an e2fsck -fn clean image with the default ext4 features', async () => {
    const f = await fixture();
    const check = await e2fsck(f.imagePath);
    expect(check.complaints).toEqual([]);
    expect(check.clean).toBe(true);
    const header = await dumpe2fsHeader(f.imagePath);
    for (const feature of ['has_journal', 'extent', '64bit', 'flex_bg', 'metadata_csum', 'dir_index']) {
      expect(header.features.has(feature)).toBe(true);
    }
    expect(Number(header.fields['Block size'])).toBe(4096);
    expect(Number(header.fields['Block count']) * 4096).toBe(f.sizeBytes);
    expect(Number(header.fields['Inode count'])).toBeGreaterThanOrEqual(f.inodeCount);
    expect(await dumpe2fsGroups(f.imagePath)).toMatch(/Group 0: \(Blocks 0-/);
  });

  it('buildFixtureImage returns the cached fixture on a second call', async () => {
    const [a, b] = [await fixture(), await fixture()];
    expect(b.imagePath).toBe(a.imagePath);
    expect(existsSync(a.imagePath)).toBe(true);
    expect(a.hostTree.size).toBe(new Set(a.manifest.entries.map((e) => e.path)).size);
  });

  it('debugfs ls of the big directory lists every name and htree shows it indexed', async () => {
    const f = await fixture();
    const expected = f.manifest.entries.filter((e) => e.path.startsWith(`${f.manifest.bigDir.path}/`)).map((e) => e.path.slice(7));
    expect(expected.length).toBe(f.manifest.bigDir.entryCount);
    const listed = (await debugfsLs(f.imagePath, `/${f.manifest.bigDir.path}`)).map((e) => e.name);
    expect(listed.filter((n) => n !== '.' && n !== '..').sort()).toEqual(expected.sort());
    const stat = await debugfsStat(f.imagePath, `/${f.manifest.bigDir.path}`);
    expect(stat.flags & INDEX_FL).toBe(INDEX_FL);
    const htree = await debugfs(f.imagePath, [`htree /${f.manifest.bigDir.path}`]);
    expect(htree).toMatch(/Root node dump:/);
    expect(htree).toMatch(/Indirect levels: \d/);
  });

  it('debugfsStat shows the planned unwritten extents and unchanged sizes', async () => {
    const f = await fixture();
    expect(f.unwritten.length).toBeGreaterThanOrEqual(3);
    expect(f.unwritten.some((u) => u.pastEof)).toBe(true);
    expect(f.unwritten.some((u) => !u.pastEof)).toBe(true);
    for (const u of f.unwritten) {
      const stat = await debugfsStat(f.imagePath, `/${u.path}`);
      const unwritten = (stat.extents ?? []).filter((e) => e.unwritten);
      expect(unwritten.map((e) => [e.logicalStart, e.logicalStart + e.blockCount])).toEqual([[u.startBlock, u.endBlock]]);
      expect(stat.size).toBe(BigInt(f.hostTree.get(u.path)?.size ?? -1));
    }
  });

  it('debugfsStat of preserved fields matches the host snapshot through the mke2fs model', async () => {
    const f = await fixture();
    const expected = expectedAfterMke2fs(f.hostTree);
    const g = f.manifest.groups;
    const paths = [...g.specialModes, ...g.bigUidGid.slice(0, 5), ...g.pre1970.slice(0, 5), ...g.post2038.slice(0, 5), ...g.exactNs];
    const stats = await debugfsBatch(f.imagePath, paths.map((p) => `stat "/${p}"`));
    paths.forEach((p, i) => {
      const e = expected.get(p);
      const stat = parseDebugfsStat(stats[i]);
      expect({ mode: stat.mode, uid: stat.uid, gid: stat.gid }, p).toEqual({ mode: e?.mode, uid: e?.uid, gid: e?.gid });
    });
    const bigIds = paths.map((p) => expected.get(p)?.uid ?? 0).filter((uid) => uid > 0x7fffffff);
    expect(bigIds.length).toBeGreaterThan(0);
    for (const p of [...g.pre1970.slice(0, 3), ...g.post2038.slice(0, 3), ...g.exactNs.slice(0, 2)]) {
      const stat = await debugfsStat(f.imagePath, `/${p}`);
      expect(stat.times.mtime?.ns, p).toBe(expected.get(p)?.mtimeNs);
      expect(stat.times.atime?.ns, p).toBe(expected.get(p)?.atimeNs);
      expect(stat.times.ctime?.ns, p).toBe(expected.get(p)?.ctimeNs);
    }
  });

  it('debugfsStat distinguishes fast and slow symlinks and counts hard links', async () => {
    const f = await fixture();
    const fast = await debugfsStat(f.imagePath, '/links/len59');
    expect(fast.fastLinkTarget).toBe('t'.repeat(59));
    expect(fast.flags & EXTENTS_FL).toBe(0);
    const slow = await debugfsStat(f.imagePath, '/links/len60');
    expect(slow.fastLinkTarget).toBeUndefined();
    expect(slow.extents).toHaveLength(1);
    const group = f.manifest.groups.hardLinkGroups[0];
    const stats = await Promise.all(group.map((p) => debugfsStat(f.imagePath, `/${p}`)));
    expect(new Set(stats.map((s) => s.inode)).size).toBe(1);
    expect(stats[0].links).toBe(group.length);
  });

  it('copyFixtureImage gives a writable copy and leaves the cached image alone', async () => {
    const f = await fixture();
    const copy = copyFixtureImage(f);
    try {
      await debugfsFallocate(copy.imagePath, '/sparse/hole-only', 0, 2);
      const stat = await debugfsStat(copy.imagePath, '/sparse/hole-only');
      expect(stat.extents?.[0]).toMatchObject({ logicalStart: 0, blockCount: 2, unwritten: true });
      expect((await debugfsStat(f.imagePath, '/sparse/hole-only')).extents).toEqual([]);
    } finally {
      copy.cleanup();
    }
  });

  it.skipIf(!loop.ok)('the loop-mounted image matches the host snapshot for the fields mke2fs preserves', async () => {
    const f = await fixture();
    const expected = expectedAfterMke2fs(f.hostTree);
    const copy = copyFixtureImage(f); // never mount the shared image: other workers e2fsck it
    const mounted = await withLoopMount(copy.imagePath, (mnt) => readHostTree(mnt), { readOnly: true }).finally(copy.cleanup);
    expect(diffTrees(expected, mounted, { ignore: ['lost+found'] })).toEqual([]);
    // The comparison has teeth: the raw host times (nanoseconds, post-2038) are not what mounts.
    const raw = diffTrees(f.hostTree, mounted, { ignore: ['lost+found'], fields: ['mtimeNs'], differencesMax: 1e6 });
    expect(raw.length).toBeGreaterThan(f.manifest.groups.post2038.length / 2);
    expect(mounted.has('lost+found')).toBe(true);
  });
});

describe('withLoopMount', () => {
  it.skipIf(!loop.ok)('withLoopMount unmounts, frees the loop device and removes the mount point', async () => {
    const copy = copyFixtureImage(await buildFixtureImage({ seed: SEED, scale: 'small' }));
    let mountPoint = '';
    let device = '';
    await expect(
      withLoopMount(copy.imagePath, async (mnt) => {
        mountPoint = mnt;
        device = (await run('losetup', ['-j', copy.imagePath])).stdout;
        expect(existsSync(path.join(mnt, 'lost+found'))).toBe(true);
        throw new Error('inside');
      }, { readOnly: true }),
    ).rejects.toThrow('inside');
    expect(device).toMatch(/^\/dev\/loop\d+:/);
    expect(existsSync(mountPoint)).toBe(false);
    expect((await run('losetup', ['-j', copy.imagePath])).stdout.trim()).toBe('');
    copy.cleanup();
  });
});
