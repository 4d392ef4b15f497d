/**
 * mapBlocks on real images: the ES tree first, the on-disk tree on a miss (cached), the
 * hole-length rule, delayed-only ranges, holes cached after a punch, CREATE through the
 * extent writer (consuming delayed reservations).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileDevice, MemoryDevice } from '../device/index.js';
import { requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { Ext4Mount } from './mount.js';
import { mkfs } from './mkfs.js';
import { createNode } from './namei-write.js';
import { mapBlock } from './extents.js';
import { extentWriter } from './extents-write.js';
import { EsStatus } from './extents_status.js';
import {
  MapFlags, MapStatus, checkReservations, forgetInodeState, inodeState, mapBlocks, punchInodeState, type Ext4InodeState,
} from './map_blocks.js';
import { delallocAccount, delallocReserve } from './delalloc.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-mapblocks-'); });
afterAll(() => tmp.cleanup());

async function freshFile(sizeMiB = 64): Promise<{ mount: Ext4Mount; ino: number; state: Ext4InodeState }> {
  const device = MemoryDevice.create({ sizeBytes: sizeMiB * 1024 * 1024 });
  await mkfs(device, { assumeZeroed: true });
  const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
  const ino = await createNode(mount, 2, 'f', { kind: 'file', mode: 0o644, uid: 0, gid: 0 });
  return { mount, ino, state: await inodeState(mount, ino) };
}

/** Make [lblk, lblk + len) delayed the way the da write ops do: reserve, then insert. */
async function makeDelayed(state: Ext4InodeState, lblk: number, len: number): Promise<void> {
  await delallocReserve(state, len);
  expect(state.es.insertDelayed(lblk, len)).toBe(len);
}

describe('mapBlocks', () => {
  it('hole length is cut at the next delayed range', async () => {
    const { mount, state } = await freshFile();
    await makeDelayed(state, 10, 4);
    const m = await mapBlocks(mount, state, 0, 100);
    expect(m).toMatchObject({ lblk: 0, len: 10, status: MapStatus.HOLE, pblk: 0 });
    // The hole is cached up to the delayed range, no further.
    expect(state.es.lookup(0)).toMatchObject({ found: true, lblk: 0, len: 10, status: EsStatus.HOLE });
    expect(state.es.lookup(10)).toMatchObject({ found: true, lblk: 10, len: 4, status: EsStatus.DELAYED });
    // Past the delayed range the hole runs to the end of the address space.
    expect(await mapBlocks(mount, state, 14, 1000)).toMatchObject({ len: 1000, status: MapStatus.HOLE });
    checkReservations(mount);
  });

  it('hole length is cut at the next on-disk extent and at a delayed range before it', async () => {
    const { mount, ino, state } = await freshFile();
    const m = await mapBlocks(mount, state, 50, 2, MapFlags.CREATE);
    expect(m).toMatchObject({ lblk: 50, len: 2, status: MapStatus.MAPPED, fresh: true });
    // A fresh state: the ES tree is empty, every answer comes from disk.
    forgetInodeState(mount, ino);
    const cold = await inodeState(mount, ino);
    expect(await mapBlocks(mount, cold, 20, 100)).toMatchObject({ lblk: 20, len: 30, status: MapStatus.HOLE });
    forgetInodeState(mount, ino);
    const cold2 = await inodeState(mount, ino);
    await makeDelayed(cold2, 30, 5);
    expect(await mapBlocks(mount, cold2, 20, 100)).toMatchObject({ lblk: 20, len: 10, status: MapStatus.HOLE });
    expect(await mapBlocks(mount, cold2, 35, 100)).toMatchObject({ lblk: 35, len: 15, status: MapStatus.HOLE });
    expect(await mapBlocks(mount, cold2, 50, 100)).toMatchObject({ lblk: 50, len: 2, status: MapStatus.MAPPED, pblk: m.pblk, fresh: false });
    checkReservations(mount);
  });

  it('delayed-only range maps as DELAYED', async () => {
    const { mount, state } = await freshFile();
    await makeDelayed(state, 5, 20);
    expect(await mapBlocks(mount, state, 7, 100)).toMatchObject({ lblk: 7, len: 18, status: MapStatus.DELAYED, pblk: 0 });
    expect(await mapBlocks(mount, state, 7, 3)).toMatchObject({ lblk: 7, len: 3, status: MapStatus.DELAYED });
  });

  it('hole cached after punch', async () => {
    const { mount, ino, state } = await freshFile();
    const m = await mapBlocks(mount, state, 0, 8, MapFlags.CREATE);
    expect(m.len).toBe(8);
    await makeDelayed(state, 8, 4);
    await mount.transact(64, (h) => extentWriter.removeRange(mount, h, ino, 2, 2));
    const seq = state.es.seq;
    expect(await punchInodeState(state, 2, 2)).toBe(0);
    expect(state.es.seq).toBeGreaterThan(seq);
    expect(state.es.lookup(2)).toMatchObject({ found: true, lblk: 2, len: 2, status: EsStatus.HOLE });
    expect(await mapBlocks(mount, state, 2, 10)).toMatchObject({ len: 2, status: MapStatus.HOLE });
    expect(await mapBlocks(mount, state, 4, 10)).toMatchObject({ len: 4, status: MapStatus.MAPPED, pblk: m.pblk + 4 });
    // Punching over delayed blocks releases their reservation; the hole merges with its
    // neighbours (the one before, and the one past the file cached by the first CREATE).
    expect(await punchInodeState(state, 4, 8)).toBe(4);
    expect(state.reservedDataBlocks).toBe(0);
    expect(delallocAccount(mount).reservedBlocks).toBe(0);
    expect(state.es.lookup(2)).toMatchObject({ found: true, lblk: 2, len: 2 ** 32 - 2, status: EsStatus.HOLE });
    checkReservations(mount);
  });

  it('an ES miss walks the on-disk tree of an mkfs.ext4 -d file and caches it', async () => {
    const src = join(tmp.dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'small'), new Uint8Array(40960).fill(7));
    const img = join(tmp.dir, 'd.img');
    execFileSync('truncate', ['-s', '32M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, img]);
    const device = await FileDevice.open(img);
    const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    const ino = Number(/Inode:\s+(\d+)/.exec(execFileSync('debugfs', ['-R', 'stat /small', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))![1]);
    const state = await inodeState(mount, ino);
    const disk = await mapBlock(mount.ext4, await mount.inode(ino), 0);
    expect(state.es.recordCount).toBe(0);
    const m = await mapBlocks(mount, state, 0, 100);
    expect(m).toMatchObject({ lblk: 0, len: 10, pblk: disk.pblk, status: MapStatus.MAPPED });
    expect(state.es.lookup(3)).toMatchObject({ found: true, lblk: 0, len: 10, pblk: disk.pblk, status: EsStatus.WRITTEN });
    const seq = state.es.seq;
    // Caching an on-disk answer does not bump the seq (it changes nothing a mapping said).
    expect(await mapBlocks(mount, state, 10, 5)).toMatchObject({ len: 5, status: MapStatus.HOLE });
    expect(state.es.seq).toBe(seq);
    // CREATE over a delayed range consumes its reservation.
    await makeDelayed(state, 10, 6);
    const created = await mapBlocks(mount, state, 10, 6, MapFlags.CREATE | MapFlags.UNWRIT_EXT | MapFlags.DELALLOC_RESERVE);
    expect(created).toMatchObject({ lblk: 10, len: 6, status: MapStatus.UNWRITTEN, fresh: true });
    expect(state.reservedDataBlocks).toBe(0);
    checkReservations(mount);
    await mount.close();
    await device.close();
  });
});
