/**
 * Delalloc accounting on real ext4ts images: one reservation for a whole write, released
 * on truncate; ENOSPC once free − reserved − margin is exhausted (nothing leaks); the
 * retry after a commit that frees parked blocks; the nonda switch.
 */
import { describe, it, expect } from 'vitest';
import { MemoryDevice } from '../device/index.js';
import type { AddressSpace } from '../mm/mapping.js';
import { IomapOp, IomapType } from '../iomap/types.js';
import { FsError } from '../vfs/errors.js';
import { Ext4Mount } from './mount.js';
import { mkfs } from './mkfs.js';
import { createNode } from './namei-write.js';
import { extentWriter } from './extents-write.js';
import { blockAllocator } from './balloc.js';
import { MapFlags, checkReservations, inodeState, mapBlocks, truncateInodeState } from './map_blocks.js';
import { delallocAccount, delallocAvailable, delallocMarginBlocks, delallocReserve, nondaSwitch } from './delalloc.js';
import { Ext4IomapInode, chooseWriteOps, ext4IomapDaWriteOps, ext4IomapWriteOps } from './iomap_ops.js';

const BS = 4096;

async function setup(sizeMiB: number): Promise<{ mount: Ext4Mount; file: (name: string) => Promise<Ext4IomapInode> }> {
  const device = MemoryDevice.create({ sizeBytes: sizeMiB * 1024 * 1024 });
  await mkfs(device, { assumeZeroed: true });
  const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
  const file = async (name: string): Promise<Ext4IomapInode> => {
    const ino = await createNode(mount, 2, name, { kind: 'file', mode: 0o644, uid: 0, gid: 0 });
    return new Ext4IomapInode(await inodeState(mount, ino), undefined as unknown as AddressSpace);
  };
  return { mount, file };
}

describe('delalloc', () => {
  it('multi-block reservation for a whole write and its release on truncate', async () => {
    const { mount, file } = await setup(64);
    const a = await file('a');
    const b = await file('b');
    const available = delallocAvailable(mount);
    await ext4IomapDaWriteOps.begin(a, 0, 300 * BS, IomapOp.WRITE);
    await ext4IomapDaWriteOps.begin(b, 5 * BS, 20 * BS, IomapOp.WRITE);
    expect(a.state.reservedDataBlocks).toBe(300);
    expect(a.state.es.delayedRecordCount).toBe(1);
    expect(b.state.reservedDataBlocks).toBe(20);
    expect(delallocAccount(mount).reservedBlocks).toBe(320);
    expect(delallocAvailable(mount)).toBe(available - 320);
    checkReservations(mount);
    expect(await truncateInodeState(a.state, 100)).toBe(200);
    expect(await truncateInodeState(b.state, 0)).toBe(20);
    expect(a.state.reservedDataBlocks).toBe(100);
    expect(delallocAccount(mount).reservedBlocks).toBe(100);
    expect(delallocAvailable(mount)).toBe(available - 100);
    checkReservations(mount);
  });

  it('ENOSPC with reservations: free − reserved − margin bounds them, and a failure leaks nothing', async () => {
    const { mount, file } = await setup(16);
    const a = await file('a');
    const available = delallocAvailable(mount);
    expect(available).toBe(blockAllocator.freeBlocks(mount, false) - delallocMarginBlocks(mount));
    await expect(ext4IomapDaWriteOps.begin(a, 0, (available + 1) * BS, IomapOp.WRITE)).rejects.toSatisfy((e) => FsError.is(e, 'ENOSPC'));
    expect(a.state.reservedDataBlocks).toBe(0);
    expect(a.state.es.delayedBlockCount).toBe(0);
    const map = await ext4IomapDaWriteOps.begin(a, 0, available * BS, IomapOp.WRITE);
    expect(map).toMatchObject({ type: IomapType.DELALLOC, lengthBytes: available * BS });
    await expect(ext4IomapDaWriteOps.begin(a, available * BS, BS, IomapOp.WRITE)).rejects.toSatisfy((e) => FsError.is(e, 'ENOSPC'));
    // Non-delalloc allocations may not take reserved space either.
    const b = await file('b');
    const unreserved = blockAllocator.freeBlocks(mount, false) - delallocAccount(mount).reservedBlocks;
    const m = await mapBlocks(mount, b.state, 0, unreserved + 10, MapFlags.CREATE | MapFlags.UNWRIT_EXT);
    expect(m.len).toBeLessThanOrEqual(unreserved);
    expect(nondaSwitch(mount)).toBe(true);
    expect(chooseWriteOps(b)).toBe(ext4IomapWriteOps);
    checkReservations(mount);
    // Writeback still finds the space for every reserved block (the margin is for tree blocks).
    let lblk = 0;
    while (lblk < available) {
      const done = await mapBlocks(mount, a.state, lblk, available - lblk, MapFlags.CREATE | MapFlags.UNWRIT_EXT | MapFlags.DELALLOC_RESERVE);
      lblk += done.len;
    }
    expect(delallocAccount(mount).reservedBlocks).toBe(0);
    checkReservations(mount);
  });

  it('a reservation that only parked blocks could satisfy succeeds after the forced commit', async () => {
    const { mount, file } = await setup(16);
    const filler = await file('filler');
    const a = await file('a');
    const fillerBlocks = delallocAvailable(mount) - 10;
    let lblk = 0;
    while (lblk < fillerBlocks) {
      lblk += (await mapBlocks(mount, filler.state, lblk, fillerBlocks - lblk, MapFlags.CREATE)).len;
    }
    await mount.sync();
    expect(delallocAvailable(mount)).toBe(10);
    // Free the filler: its blocks are parked until the transaction commits.
    await mount.transact(256, (h) => extentWriter.removeRange(mount, h, filler.state.ino, 0, fillerBlocks));
    await truncateInodeState(filler.state, 0);
    expect(delallocAvailable(mount)).toBe(10);
    expect(nondaSwitch(mount)).toBe(true);
    await delallocReserve(a.state, 500);
    expect(a.state.reservedDataBlocks).toBe(500);
    expect(delallocAvailable(mount)).toBe(fillerBlocks + 10 - 500);
    expect(nondaSwitch(mount)).toBe(false);
    expect(chooseWriteOps(a)).toBe(ext4IomapDaWriteOps);
    expect(a.state.es.insertDelayed(0, 500)).toBe(500);
    checkReservations(mount);
  });
});
