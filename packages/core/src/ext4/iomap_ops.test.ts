/**
 * The ext4 iomap ops on real images, driven by a small stand-in for the generic iomap
 * code (the begin → copy → end loop of iomap/types.ts, a map of dirty blocks for the page
 * cache, and a writeback that writes the blocks itself at addrBytes and hands ioends to
 * completion). Checks the seed's mechanisms one by one, then a seeded random run of
 * delalloc and non-delalloc writes on three files, written back, compared with a model,
 * free counts exact, e2fsck -fn clean after unmount.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { MemoryDevice } from '../device/index.js';
import type { AddressSpace } from '../mm/mapping.js';
import { IomapFlags, IomapOp, IomapType, type Ioend, type IomapOps } from '../iomap/types.js';
import { e2fsck, requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { Ext4Mount } from './mount.js';
import { mkfs } from './mkfs.js';
import { createNode } from './namei-write.js';
import { walkMappings } from './extents.js';
import { blockAllocator } from './balloc.js';
import { EsStatus } from './extents_status.js';
import { checkReservations, inodeState, punchInodeState } from './map_blocks.js';
import { delallocAccount } from './delalloc.js';
import { seededUnitRandom } from '../random.js';
import {
  Ext4IomapInode, ext4IomapDaWriteOps, ext4IomapReadOps, ext4IomapWriteOps, ext4WritebackOps,
} from './iomap_ops.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-iomapops-'); });
afterAll(() => tmp.cleanup());

const BS = 4096;
/** The ops never touch the page cache mapping; the stand-in keeps its own dirty blocks. */
const NO_MAPPING = undefined as unknown as AddressSpace;

/** The project's seeded PRNG in [0, 1), so every failure reproduces from its seed. */
const rng = seededUnitRandom;

interface File { inode: Ext4IomapInode; dirty: Map<number, Uint8Array> }

async function setup(sizeMiB = 64): Promise<{ device: MemoryDevice; mount: Ext4Mount }> {
  const device = MemoryDevice.create({ sizeBytes: sizeMiB * 1024 * 1024 });
  await mkfs(device, { assumeZeroed: true });
  const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
  return { device, mount };
}

async function newFile(mount: Ext4Mount, name: string): Promise<File> {
  const ino = await createNode(mount, 2, name, { kind: 'file', mode: 0o644, uid: 0, gid: 0 });
  return { inode: new Ext4IomapInode(await inodeState(mount, ino), NO_MAPPING), dirty: new Map() };
}

/**
 * The generic buffered write loop: begin, copy into "folios" (dirty blocks), end. Stops
 * after `limitBytes` (a short copy, e.g. a fault in the user buffer). Returns bytes written.
 */
async function bufferedWrite(mount: Ext4Mount, file: File, ops: IomapOps, positionBytes: number, data: Uint8Array, limitBytes = data.length): Promise<number> {
  const end = positionBytes + data.length;
  let pos = positionBytes;
  let written = 0;
  while (pos < end) {
    const map = await ops.begin(file.inode, pos, end - pos, IomapOp.WRITE);
    expect(ops.valid?.(file.inode, map)).toBe(true);
    const mapEnd = Math.min(end, map.offsetBytes + map.lengthBytes);
    const done = Math.max(0, Math.min(mapEnd - pos, limitBytes - written));
    for (let at = pos; at < pos + done;) {
      const lblk = Math.floor(at / BS);
      let block = file.dirty.get(lblk);
      if (block === undefined) {
        block = new Uint8Array(BS);
        if (map.type === IomapType.MAPPED && (map.flags & IomapFlags.NEW) === 0) {
          await mount.ext4.device.read(map.addrBytes + (lblk * BS - map.offsetBytes), block);
        }
        file.dirty.set(lblk, block);
      }
      const stop = Math.min(pos + done, (lblk + 1) * BS);
      block.set(data.subarray(at - positionBytes, stop - positionBytes), at - lblk * BS);
      at = stop;
    }
    await ops.end?.(file.inode, pos, end - pos, done, IomapOp.WRITE, map);
    pos += done;
    written += done;
    if (done === 0) break;
  }
  file.inode.sizeBytes = Math.max(file.inode.sizeBytes, positionBytes + written);
  return written;
}

/** Writeback of every dirty block: map, write at addrBytes, then complete the ioends. */
async function writebackAll(mount: Ext4Mount, file: File): Promise<Ioend[]> {
  const lblks = [...file.dirty.keys()].sort((a, b) => a - b);
  const ioends: Ioend[] = [];
  let i = 0;
  while (i < lblks.length) {
    let runEnd = i + 1;
    while (runEnd < lblks.length && lblks[runEnd] === lblks[runEnd - 1] + 1) runEnd++;
    const map = await ext4WritebackOps.mapBlocks(file.inode, lblks[i] * BS, (lblks[runEnd - 1] + 1 - lblks[i]) * BS);
    expect(map.type === IomapType.MAPPED || map.type === IomapType.UNWRITTEN).toBe(true);
    const mapEndLblk = (map.offsetBytes + map.lengthBytes) / BS;
    const first = lblks[i];
    let j = i;
    while (j < runEnd && lblks[j] < mapEndLblk) {
      const addrBytes = map.addrBytes + (lblks[j] * BS - map.offsetBytes);
      await mount.ext4.device.write(addrBytes, file.dirty.get(lblks[j])!);
      j++;
    }
    ioends.push({
      inode: file.inode, offsetBytes: first * BS, lengthBytes: (lblks[j - 1] + 1 - first) * BS,
      addrBytes: map.addrBytes + (first * BS - map.offsetBytes), type: map.type, pieces: [],
    });
    i = j;
  }
  await ext4WritebackOps.ioendsCompleted(ioends);
  file.dirty.clear();
  return ioends;
}

async function diskRuns(mount: Ext4Mount, ino: number, endLblk: number): Promise<string[]> {
  const out: string[] = [];
  for await (const m of walkMappings(mount.ext4, await mount.inode(ino), 0, endLblk)) {
    if (m.kind !== 'hole') out.push(`${m.lblk}+${m.len}${m.kind === 'unwritten' ? 'u' : ''}`);
  }
  return out;
}

describe('ext4 iomap ops', () => {
  it('delalloc write reserves the whole write at once and reports DELALLOC (NEW)', async () => {
    const { mount } = await setup();
    const file = await newFile(mount, 'f');
    const map = await ext4IomapDaWriteOps.begin(file.inode, 100, 40 * BS, IomapOp.WRITE);
    expect(map).toMatchObject({ offsetBytes: 0, lengthBytes: 41 * BS, type: IomapType.DELALLOC, addrBytes: -1, flags: IomapFlags.NEW });
    expect(file.inode.state.reservedDataBlocks).toBe(41);
    expect(file.inode.state.es.delayedRecordCount).toBe(1);
    // Asking again reports the delayed range, not NEW, and reserves nothing more.
    const again = await ext4IomapDaWriteOps.begin(file.inode, 0, 10 * BS, IomapOp.WRITE);
    expect(again).toMatchObject({ type: IomapType.DELALLOC, flags: 0, lengthBytes: 10 * BS });
    expect(delallocAccount(mount).reservedBlocks).toBe(41);
    // The read ops see it as DELALLOC too; zeroing does not reserve over a hole.
    expect((await ext4IomapReadOps.begin(file.inode, 0, BS, IomapOp.READ)).type).toBe(IomapType.DELALLOC);
    const zero = await ext4IomapDaWriteOps.begin(file.inode, 50 * BS, BS, IomapOp.ZERO);
    expect(zero.type).toBe(IomapType.HOLE);
    expect(delallocAccount(mount).reservedBlocks).toBe(41);
    checkReservations(mount);
  });

  it('short write punches the untouched delayed tail and releases its reservation', async () => {
    const { mount } = await setup();
    const file = await newFile(mount, 'f');
    const data = new Uint8Array(16 * BS).fill(0xab);
    // Copy stops 100 bytes into block 5: blocks 0..5 keep their reservation, 6..15 are punched.
    const written = await bufferedWrite(mount, file, ext4IomapDaWriteOps, 0, data, 5 * BS + 100);
    expect(written).toBe(5 * BS + 100);
    expect(file.inode.state.reservedDataBlocks).toBe(6);
    expect(file.inode.state.es.lookup(5)).toMatchObject({ found: true, lblk: 0, len: 6, status: EsStatus.DELAYED });
    expect(file.inode.state.es.lookup(6).status).not.toBe(EsStatus.DELAYED);
    // Nothing copied at all into a new range: the whole range goes, from the write's first block.
    const none = await bufferedWrite(mount, file, ext4IomapDaWriteOps, 20 * BS + 10, data, 0);
    expect(none).toBe(0);
    expect(file.inode.state.reservedDataBlocks).toBe(6);
    // A short write into an existing delayed range punches nothing (the range is not NEW).
    await bufferedWrite(mount, file, ext4IomapDaWriteOps, 0, data.subarray(0, 6 * BS), 10);
    expect(file.inode.state.reservedDataBlocks).toBe(6);
    expect(delallocAccount(mount).reservedBlocks).toBe(6);
    checkReservations(mount);
  });

  it('writeback allocates a whole delayed extent as unwritten', async () => {
    const { mount } = await setup();
    const file = await newFile(mount, 'f');
    const freeBefore = blockAllocator.freeBlocks(mount, false);
    await bufferedWrite(mount, file, ext4IomapDaWriteOps, 0, new Uint8Array(64 * BS).fill(1));
    expect(blockAllocator.freeBlocks(mount, false)).toBe(freeBefore);
    // Only one block is dirty as far as this call knows; the whole 64-block extent is allocated.
    const map = await ext4WritebackOps.mapBlocks(file.inode, 0, BS);
    expect(map).toMatchObject({ offsetBytes: 0, lengthBytes: 64 * BS, type: IomapType.UNWRITTEN, flags: IomapFlags.NEW });
    expect(file.inode.state.reservedDataBlocks).toBe(0);
    expect(delallocAccount(mount).reservedBlocks).toBe(0);
    expect(blockAllocator.freeBlocks(mount, false)).toBe(freeBefore - 64);
    expect(await diskRuns(mount, file.inode.state.ino, 100)).toEqual(['0+64u']);
    // The next dirty offset reuses the cached mapping (same object, seq unchanged).
    expect(await ext4WritebackOps.mapBlocks(file.inode, 10 * BS, BS)).toBe(map);
    checkReservations(mount);
  });

  it('completion converts unwritten and raises i_disksize to min(end, i_size)', async () => {
    const { mount } = await setup();
    const file = await newFile(mount, 'f');
    const sizeBytes = 40 * BS - 100;
    await bufferedWrite(mount, file, ext4IomapDaWriteOps, 0, new Uint8Array(sizeBytes).fill(2));
    expect(file.inode.sizeBytes).toBe(sizeBytes);
    expect((await mount.inode(file.inode.state.ino)).size).toBe(0);
    const map = await ext4WritebackOps.mapBlocks(file.inode, 0, 40 * BS);
    // Complete the first half only: converted there, disksize = its end.
    const half: Ioend = { inode: file.inode, offsetBytes: 0, lengthBytes: 20 * BS, addrBytes: map.addrBytes, type: IomapType.UNWRITTEN, pieces: [] };
    await ext4WritebackOps.ioendsCompleted([half]);
    expect(await diskRuns(mount, file.inode.state.ino, 100)).toEqual(['0+20', '20+20u']);
    expect((await mount.inode(file.inode.state.ino)).size).toBe(20 * BS);
    expect(file.inode.state.diskSizeBytes).toBe(20 * BS);
    const rest: Ioend = { ...half, offsetBytes: 20 * BS, addrBytes: map.addrBytes + 20 * BS };
    await ext4WritebackOps.ioendsCompleted([rest]);
    expect(await diskRuns(mount, file.inode.state.ino, 100)).toEqual(['0+40']);
    expect((await mount.inode(file.inode.state.ino)).size).toBe(sizeBytes);
    expect(file.inode.state.es.lookup(30)).toMatchObject({ found: true, status: EsStatus.WRITTEN, lblk: 0, len: 40 });
    // A failed ioend converts nothing.
    const other = await newFile(mount, 'g');
    await bufferedWrite(mount, other, ext4IomapDaWriteOps, 0, new Uint8Array(BS));
    const otherMap = await ext4WritebackOps.mapBlocks(other.inode, 0, BS);
    await ext4WritebackOps.ioendsCompleted([{ inode: other.inode, offsetBytes: 0, lengthBytes: BS, addrBytes: otherMap.addrBytes, type: IomapType.UNWRITTEN, pieces: [], error: new Error('EIO') }]);
    expect(await diskRuns(mount, other.inode.state.ino, 10)).toEqual(['0+1u']);
    expect((await mount.inode(other.inode.state.ino)).size).toBe(0);
  });

  it('a stale validity cookie after ES change', async () => {
    const { mount } = await setup();
    const file = await newFile(mount, 'f');
    const read = await ext4IomapReadOps.begin(file.inode, 0, 100 * BS, IomapOp.READ);
    expect(read.type).toBe(IomapType.HOLE);
    expect(ext4IomapReadOps.valid!(file.inode, read)).toBe(true);
    const write = await ext4IomapDaWriteOps.begin(file.inode, 10 * BS, BS, IomapOp.WRITE);
    expect(ext4IomapReadOps.valid!(file.inode, read)).toBe(false);
    expect(ext4IomapDaWriteOps.valid!(file.inode, write)).toBe(true);
    // Writeback's allocation invalidates the write's mapping; so does a punch the writeback one.
    const wb = await ext4WritebackOps.mapBlocks(file.inode, 10 * BS, BS);
    expect(ext4IomapDaWriteOps.valid!(file.inode, write)).toBe(false);
    await punchInodeState(file.inode.state, 50, 1);
    expect(wb.validityCookie).not.toBe(file.inode.state.es.seq);
    expect(await ext4WritebackOps.mapBlocks(file.inode, 10 * BS, BS)).not.toBe(wb);
    // Caching what the disk says does not invalidate anything.
    const cookie = file.inode.state.es.seq;
    await ext4IomapReadOps.begin(file.inode, 200 * BS, BS, IomapOp.READ);
    expect(file.inode.state.es.seq).toBe(cookie);
  });

  it('non-delalloc write allocates unwritten in a stopped handle, reports existing mappings without one', async () => {
    const { mount } = await setup();
    const file = await newFile(mount, 'f');
    const freeBefore = blockAllocator.freeBlocks(mount, false);
    const map = await ext4IomapWriteOps.begin(file.inode, 0, 8 * BS, IomapOp.WRITE);
    expect(map).toMatchObject({ offsetBytes: 0, lengthBytes: 8 * BS, type: IomapType.UNWRITTEN, flags: IomapFlags.NEW });
    expect(blockAllocator.freeBlocks(mount, false)).toBe(freeBefore - 8);
    // The handle is stopped: a commit can run now.
    await mount.sync();
    const again = await ext4IomapWriteOps.begin(file.inode, 2 * BS, 2 * BS, IomapOp.WRITE);
    expect(again).toMatchObject({ offsetBytes: 2 * BS, lengthBytes: 2 * BS, type: IomapType.UNWRITTEN, flags: 0, addrBytes: map.addrBytes + 2 * BS });
    expect(delallocAccount(mount).reservedBlocks).toBe(0);
  });

  it('random delalloc and non-delalloc writes, written back and completed: data, free counts, e2fsck', async () => {
    const { device, mount } = await setup(64);
    const random = rng(20240601);
    const freeBefore = blockAllocator.freeBlocks(mount, false);
    const files = [await newFile(mount, 'a'), await newFile(mount, 'b'), await newFile(mount, 'c')];
    const models = files.map(() => new Uint8Array(2 * 1024 * 1024));
    const sizes = files.map(() => 0);
    for (let step = 0; step < 200; step++) {
      const k = Math.floor(random() * files.length);
      const pos = Math.floor(random() * (models[k].length - 70000));
      const len = 1 + Math.floor(random() * 65536);
      const data = new Uint8Array(len).map((_, i) => (step + i) & 0xff);
      const ops = random() < 0.25 ? ext4IomapWriteOps : ext4IomapDaWriteOps;
      const short = random() < 0.1 ? Math.floor(random() * len) : len;
      const written = await bufferedWrite(mount, files[k], ops, pos, data, short);
      models[k].set(data.subarray(0, written), pos);
      sizes[k] = Math.max(sizes[k], pos + written);
      checkReservations(mount);
      if (random() < 0.1) await writebackAll(mount, files[k]);
    }
    for (const file of files) await writebackAll(mount, file);
    checkReservations(mount);
    expect(delallocAccount(mount).reservedBlocks).toBe(0);
    let usedBlocks = 0;
    for (const [k, file] of files.entries()) {
      const disk = await mount.inode(file.inode.state.ino);
      expect(disk.size).toBe(sizes[k]);
      usedBlocks += disk.sectors512 / (BS / 512);
      // Every block below EOF reads back as the model says (holes and unwritten as zeros).
      for await (const m of walkMappings(mount.ext4, disk, 0, Math.ceil(sizes[k] / BS))) {
        const bytes = new Uint8Array(m.len * BS);
        if (m.kind === 'mapped') await device.read(m.pblk * BS, bytes);
        const endBytes = Math.min(sizes[k], (m.lblk + m.len) * BS);
        expect(Buffer.compare(bytes.subarray(0, endBytes - m.lblk * BS), models[k].subarray(m.lblk * BS, endBytes))).toBe(0);
      }
    }
    await mount.sync();
    expect(blockAllocator.freeBlocks(mount, false)).toBe(freeBefore - usedBlocks);
    await mount.close();
    const img = join(tmp.dir, 'random.img');
    await device.saveImage(img);
    const fsck = await e2fsck(img);
    expect(fsck.complaints).toEqual([]);
    expect(fsck.clean).toBe(true);
  });
});
