/**
 * Extent trees deeper than the inode root: a sparse file of 400 one-block islands
 * (mkfs -d keeps the holes) needs a depth-1 tree with two leaf blocks. Oracles: the host
 * bytes and `debugfs stat` (its extent list and tree blocks); damaged leaves must fail
 * with EBADMSG (checksum) or EUCLEAN (index rule).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as hostFs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { FsError } from '../vfs/errors.js';
import { Ext4 } from '../vfs/filesystem.js';
import { readInode } from './inode.js';
import { mapBlock, walkMappings } from './extents.js';
import { decodeExtentIndex } from '../format/extent.js';

const env = { PATH: '/usr/sbin:/sbin:/usr/bin:/bin' };
const BS = 4096;
const ISLANDS = 400;
let work: string;
let img: string;
const devices: FileDevice[] = [];

function tool(name: string, args: string[]): string {
  return execFileSync(name, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function mount(path: string) {
  const device = await FileDevice.open(path, { readOnly: true });
  devices.push(device);
  return Ext4.mount(device);
}

/** debugfs stat's leaf extents "(lblk[-end]):pblk[-end]" and tree blocks "(ETBn):block". */
function debugfsExtents(path: string): { extents: [number, number, number][]; treeBlocks: number[] } {
  const text = tool('debugfs', ['-R', 'stat /islands', path]);
  const extents: [number, number, number][] = [];
  for (const m of text.matchAll(/\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?/g)) {
    const start = Number(m[1]);
    extents.push([start, (m[2] === undefined ? start : Number(m[2])) - start + 1, Number(m[3])]);
  }
  const treeBlocks = [...text.matchAll(/\(ETB\d+\):(\d+)/g)].map((m) => Number(m[1]));
  return { extents, treeBlocks };
}

beforeAll(() => {
  work = hostFs.mkdtempSync(join(tmpdir(), 'ext4ts-extents-'));
  const tree = join(work, 'tree');
  hostFs.mkdirSync(tree);
  const fd = hostFs.openSync(join(tree, 'islands'), 'w');
  for (let i = 0; i < ISLANDS; i++) hostFs.writeSync(fd, Buffer.alloc(BS, (i % 250) + 1), 0, BS, i * 2 * BS);
  hostFs.closeSync(fd);
  img = join(work, 'img');
  tool('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, img, '32M']);
});

afterAll(async () => {
  for (const d of devices) await d.close();
  hostFs.rmSync(work, { recursive: true, force: true });
});

describe('extentMap', () => {
  it('a depth-1 tree maps every extent where debugfs says, with holes between', async () => {
    const fs = await mount(img);
    const inode = await readInode(fs.internals, (await fs.stat('/islands')).ino);
    const oracle = debugfsExtents(img);
    expect(oracle.treeBlocks.length).toBeGreaterThanOrEqual(2);
    const ours: [number, number, number][] = [];
    let holes = 0;
    for await (const m of walkMappings(fs.internals, inode, 0, ISLANDS * 2)) {
      if (m.kind === 'hole') holes++;
      else ours.push([m.lblk, m.len, m.pblk]);
    }
    expect(ours).toEqual(oracle.extents);
    expect(holes).toBe(ISLANDS); // between islands, and block 799 after the last
    expect((await mapBlock(fs.internals, inode, ISLANDS * 2 + 5)).kind).toBe('hole');
    const bytes = await fs.readFile('/islands');
    expect(bytes.equals(hostFs.readFileSync(join(work, 'tree', 'islands')))).toBe(true);
  });

  it('a leaf block with a stale checksum fails with EBADMSG, not wrong data', async () => {
    const copy = join(work, 'crc.img');
    hostFs.copyFileSync(img, copy);
    const leaf = debugfsExtents(copy).treeBlocks[1];
    const fd = hostFs.openSync(copy, 'r+');
    const at = leaf * BS + 12 + 8; // first extent's start_lo
    const byte = Buffer.alloc(1);
    hostFs.readSync(fd, byte, 0, 1, at);
    byte[0] ^= 0xff; // a change whatever the byte was
    hostFs.writeSync(fd, byte, 0, 1, at);
    hostFs.closeSync(fd);
    const fs = await mount(copy);
    const error = await fs.readFile('/islands').then(() => undefined, (e: unknown) => e);
    expect(FsError.is(error, 'EBADMSG')).toBe(true);
  });

  it('a root index whose ei_block disagrees with its child fails with EUCLEAN', async () => {
    const copy = join(work, 'index.img');
    hostFs.copyFileSync(img, copy);
    // Root index entry 1's ei_block is i_block word 6 (header 3 words, entry 0 3 words).
    // Lowering it by one sends that block's lookup into a child that starts later.
    const clean = await mount(img);
    const root = await readInode(clean.internals, (await clean.stat('/islands')).ino);
    const second = decodeExtentIndex(root.block, 1).lblk;
    tool('debugfs', ['-w', '-R', `sif /islands block[6] ${second - 1}`, copy]);
    const fs = await mount(copy);
    const error = await fs.readFile('/islands').then(() => undefined, (e: unknown) => e);
    expect(FsError.is(error, 'EUCLEAN'), String(error)).toBe(true);
  });
});
