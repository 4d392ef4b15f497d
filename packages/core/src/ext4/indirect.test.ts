/**
 * Block-mapped (pre-extent) files: an ext3-style image (no extent feature, 1 KiB blocks)
 * made by mkfs -d, with a sparse file whose data sits in the direct, single-, double- and
 * triple-indirect ranges (at 1 KiB: 12 | 256 | 65,536 | 16,777,216 blocks). Oracles: the
 * host bytes and `debugfs bmap`.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as hostFs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { Ext4 } from '../vfs/filesystem.js';
import { readInode, usesExtents } from './inode.js';
import { mapBlock } from './extents.js';

const env = { PATH: '/usr/sbin:/sbin:/usr/bin:/bin' };
const KiB = 1024;
/** Logical blocks holding data: direct, single, double, triple indirect, and a run across a pointer-block edge. */
const DATA_BLOCKS = [0, 5, 11, 12, 100, 267, 268, 269, 5000, 65803, 65804, 70000, 70001, 70002];
let work: string;
let img: string;
let device: FileDevice;

beforeAll(() => {
  work = hostFs.mkdtempSync(join(tmpdir(), 'ext4ts-indirect-'));
  const tree = join(work, 'tree');
  hostFs.mkdirSync(tree);
  const fd = hostFs.openSync(join(tree, 'sparse'), 'w');
  for (const lblk of DATA_BLOCKS) hostFs.writeSync(fd, Buffer.alloc(KiB, (lblk % 251) + 1), 0, KiB, lblk * KiB);
  hostFs.closeSync(fd);
  const dense = Buffer.alloc(300 * KiB + 17);
  for (let i = 0; i < dense.length; i++) dense[i] = (i * 7 + (i >> 10)) & 0xff;
  hostFs.writeFileSync(join(tree, 'dense'), dense);
  img = join(work, 'img');
  execFileSync('mkfs.ext4', ['-q', '-F', '-t', 'ext3', '-b', '1024', '-d', tree, img, '32M'], { env });
});

afterAll(async () => {
  await device?.close();
  hostFs.rmSync(work, { recursive: true, force: true });
});

describe('indirectMap', () => {
  it('block-mapped files read back byte for byte, holes as zeros', async () => {
    device = await FileDevice.open(img, { readOnly: true });
    const fs = await Ext4.mount(device);
    expect(fs.info.features).not.toContain('extent');
    for (const name of ['sparse', 'dense']) {
      const ours = await fs.readFile(`/${name}`);
      expect(ours.equals(hostFs.readFileSync(join(work, 'tree', name))), name).toBe(true);
    }
  });

  it('mapBlock agrees with debugfs bmap in every indirection range', async () => {
    const fs = await Ext4.mount(device);
    const ino = (await fs.stat('/sparse')).ino;
    const inode = await readInode(fs.internals, ino);
    expect(usesExtents(inode)).toBe(false);
    const probes = [...DATA_BLOCKS, 1, 13, 300, 65802, 69999, 70003, 16_000_000];
    const script = probes.map((b) => `bmap /sparse ${b}`).join('\n');
    hostFs.writeFileSync(join(work, 'cmds'), script);
    const out = execFileSync('debugfs', ['-f', join(work, 'cmds'), img], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const oracle = out.split('\n').filter((l) => /^\d+$/.test(l.trim())).map(Number);
    expect(oracle.length).toBe(probes.length);
    for (const [i, lblk] of probes.entries()) {
      const m = await mapBlock(fs.internals, inode, lblk);
      expect(m.kind === 'hole' ? 0 : m.pblk, `block ${lblk}`).toBe(oracle[i]);
      expect(m.len).toBeGreaterThan(0);
    }
    // A run never crosses into a block that is not physically next.
    const run = await mapBlock(fs.internals, inode, 70000);
    expect(run.kind).toBe('mapped');
    expect(run.len).toBeLessThanOrEqual(3);
  });
});
