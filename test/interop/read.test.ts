// ext4ts reads the shared fixture image (a generated tree put in by the real mkfs.ext4 -d,
// indexed by e2fsck -fyD, with debugfs-fallocated unwritten extents) and must show exactly
// the source tree: every name, type, mode, owner, size, link count, hard-link grouping,
// time (as mke2fs stores it), symlink target and byte (sha256). Fields mke2fs does not
// take from the host (i_blocks, crtime, extent maps) are checked against debugfs stat.
// Runs on the full-scale fixture (thousands of files, a 20,000-entry hashed directory);
// EXT4TS_FIXTURE_SMALL=1 picks the small one for quick local runs. Timings are printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ext4, FileDevice, type Ext4Filesystem } from '@ext4ts/core';
import { walkMappings } from '../../packages/core/src/ext4/extents.js';
import { readInode } from '../../packages/core/src/ext4/inode.js';
import { debugfsBatch, parseDebugfsStat, quoteDebugfsPath, requireE2fsprogs } from '../helpers/e2fs.js';
import { buildFixtureImage, type FixtureImage } from '../helpers/fixture-image.js';
import { diffTrees, expectedAfterMke2fs } from '../helpers/tree.js';
import { readImageTree } from '../helpers/image-tree.js';

await requireE2fsprogs();
const SCALE = process.env.EXT4TS_FIXTURE_SMALL === '1' ? 'small' : 'full';
const SEED = 20240601;

let fixture: FixtureImage;
let device: FileDevice;
let fs: Ext4Filesystem;
let mountMs = 0;

beforeAll(async () => {
  fixture = await buildFixtureImage({ seed: SEED, scale: SCALE });
  device = await FileDevice.open(fixture.imagePath, { readOnly: true });
  const t0 = performance.now();
  fs = await Ext4.mount(device, { readOnly: true });
  mountMs = performance.now() - t0;
});

afterAll(async () => {
  await fs?.unmount();
  await device?.close();
});

describe(`read-only mount of the ${SCALE} fixture`, () => {
  it('mount of the fixture reports no orphans and a clean journal', () => {
    expect(fs.info.lastOrphan).toBe(0);
    expect(fs.info.journalNeedsRecovery).toBe(false);
    console.log(`read.test [${SCALE}]: mount ${mountMs.toFixed(1)} ms, ${fs.info.groupCount} groups, ${fixture.hostTree.size} host entries`);
  });

  it('every name, type, mode, owner, size, nlink, hard link, time, target and sha256 matches the source tree', async () => {
    const t0 = performance.now();
    const { tree, bytesRead, files } = await readImageTree(fs);
    const ms = performance.now() - t0;
    console.log(`read.test [${SCALE}]: walk+read ${tree.size} entries, ${files} files, ${(bytesRead / 2 ** 20).toFixed(1)} MiB in ${ms.toFixed(0)} ms`);
    const differences = diffTrees(expectedAfterMke2fs(fixture.hostTree), tree, { ignore: ['lost+found'] });
    expect(differences).toEqual([]);
    expect(tree.size).toBe(fixture.hostTree.size + 1); // + lost+found
  });

  it('i_blocks, crtime and the extent map of sparse and unwritten files equal debugfs stat', async () => {
    const paths = [...new Set([
      ...fixture.unwritten.map((u) => u.path),
      ...[...fixture.hostTree].filter(([p, e]) => e.type === 'file' && p.startsWith('sparse/')).map(([p]) => p),
    ])].slice(0, 40);
    expect(paths.length).toBeGreaterThan(3);
    const outputs = await debugfsBatch(fixture.imagePath, paths.map((p) => `stat ${quoteDebugfsPath(`/${p}`)}`));
    for (const [i, p] of paths.entries()) {
      const oracle = parseDebugfsStat(outputs[i]);
      const s = await fs.lstat(`/${p}`, { bigint: true });
      expect(s.blocks, p).toBe(oracle.blockcount);
      if (oracle.times.crtime !== undefined) expect(s.birthtimeNs, p).toBe(oracle.times.crtime.ns);
      const inode = await readInode(fs.internals, Number(s.ino));
      // One mapping per on-disk extent (a lookup answers the rest of its extent), like debugfs's lines.
      const ours: { logicalStart: number; blockCount: number; physicalStart: number; unwritten: boolean }[] = [];
      for await (const m of walkMappings(fs.internals, inode, 0, 2 ** 32)) {
        if (m.kind !== 'hole') ours.push({ logicalStart: m.lblk, blockCount: m.len, physicalStart: m.pblk, unwritten: m.kind === 'unwritten' });
      }
      expect(ours, p).toEqual(oracle.extents ?? []);
    }
  });

  it('unwritten ranges read back as zeros', async () => {
    for (const u of fixture.unwritten) {
      const fh = await fs.open(`/${u.path}`);
      const { size } = await fh.stat();
      const start = u.startBlock * 4096;
      const buf = Buffer.alloc((u.endBlock - u.startBlock) * 4096, 0xaa);
      const { bytesRead } = await fh.read(buf, 0, buf.length, start);
      expect(bytesRead, u.path).toBe(Math.max(0, Math.min(buf.length, size - start)));
      expect(buf.subarray(0, bytesRead).every((b) => b === 0), u.path).toBe(true);
      await fh.close();
    }
  });
});
