/**
 * The buffer_head path on real images (mkfs onto a MemoryDevice, read-write mounts),
 * driven through ext4/file.ts's operations with `bufferHeadPath` injected: one block
 * reserved per getBlock, delayed blocks allocated one by one at writeback as written
 * extents (contiguous, so they merge), i_disksize raised by writeback; reservations given
 * back by truncate and punch; a seeded random run of writes, reads, overwrites, truncates,
 * punches, zero ranges, fallocates and mmap stores against a model, then unmount, e2fsck
 * -fn clean, remount (on both paths) and compare; and data=ordered: on a slow device, a
 * commit that raced the writeback of the blocks it allocated writes its commit block only
 * after their data.
 */
import { Buffer } from 'node:buffer';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockDevice, WriteOptions } from '../device/block-device.js';
import { MemoryDevice } from '../device/memory-device.js';
import { RecordingDevice, type RecordedWrite } from '../device/recording-device.js';
import { BlockType, JBD2_MAGIC, decodeJournalHeader } from '../format/jbd2.js';
import { seededUnitRandom } from '../random.js';
import { e2fsck, requireE2fsprogs } from '../../../../test/helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../../../../test/helpers/tmp.js';
import { createBufferHeadPath } from './bh_path.js';
import { delallocAccount } from './delalloc.js';
import { walkMappings } from './extents.js';
import { Ext4Files, FALLOC_FL_KEEP_SIZE } from './file.js';
import { EsStatus } from './extents_status.js';
import { blockAllocator } from './balloc.js';
import { nondaSwitch } from './delalloc.js';
import { checkReservations } from './map_blocks.js';
import { mkfs } from './mkfs.js';
import { Ext4Mount } from './mount.js';
import { createNode } from './namei-write.js';
import { createWritebackPool, type WritebackPool } from '../writeback/pool.js';
import { ensureWritebackWorkerBuilt } from '../writeback/testing.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-bhpath-'); });
afterAll(() => tmp.cleanup());

const BS = 4096;
const KiB = 1024;
const MiB = 1024 * KiB;

function openFiles(mount: Ext4Mount, buffered: 'buffer_head' | 'iomap' = 'buffer_head', cacheBytes = 8 * MiB): Ext4Files {
  return Ext4Files.open(mount, {
    buffered, cacheBytes, writebackThreads: 0,
    bufferHeadPath: (m, cache) => createBufferHeadPath(m, { cache }),
  });
}

async function setup(device: BlockDevice, cacheBytes = 8 * MiB, commitIntervalMs = 0): Promise<{ mount: Ext4Mount; files: Ext4Files }> {
  const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs });
  return { mount, files: openFiles(mount, 'buffer_head', cacheBytes) };
}

async function freshDevice(): Promise<MemoryDevice> {
  const device = MemoryDevice.create({ sizeBytes: 64 * MiB });
  await mkfs(device, { assumeZeroed: true });
  return device;
}

async function newFile(mount: Ext4Mount, name: string): Promise<number> {
  return createNode(mount, 2, name, { kind: 'file', mode: 0o644, uid: 0, gid: 0 });
}

async function diskRuns(mount: Ext4Mount, ino: number, endLblk: number): Promise<string[]> {
  const out: string[] = [];
  for await (const m of walkMappings(mount.ext4, await mount.inode(ino), 0, endLblk)) {
    if (m.kind !== 'hole') out.push(`${m.lblk}+${m.len}${m.kind === 'unwritten' ? 'u' : ''}`);
  }
  return out;
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = ((i * 31 + seed * 7) % 251) + 1;
  return bytes;
}

async function readFile(files: Ext4Files, ino: number, sizeBytes: number): Promise<Uint8Array> {
  const out = new Uint8Array(sizeBytes);
  expect(await files.read(ino, 0, out)).toBe(sizeBytes);
  return out;
}

describe('ext4 buffer_head path', () => {
  it('reserves one block per getBlock at write; writeback allocates them one by one as written blocks that merge into one extent, and raises i_disksize', async () => {
    const { mount, files } = await setup(await freshDevice());
    const ino = await newFile(mount, 'f');
    const data = pattern(10 * BS + 100, 1);
    expect(await files.write(ino, 0, data)).toBe(data.length);
    const state = await files.state(ino);
    expect(state.reservedDataBlocks).toBe(11);
    expect(state.es.delayedBlockCount).toBe(11);
    expect(state.sizeBytes).toBe(data.length);
    expect((await mount.inode(ino)).size).toBe(0);
    checkReservations(mount);
    await files.fsync(ino);
    expect(state.reservedDataBlocks).toBe(0);
    expect(delallocAccount(mount).reservedBlocks).toBe(0);
    expect(await diskRuns(mount, ino, 64)).toEqual(['0+11']);
    expect((await mount.inode(ino)).size).toBe(data.length);
    expect(state.diskSizeBytes).toBe(data.length);
    expect(await readFile(files, ino, data.length)).toEqual(data);
    await files.close();
    await mount.close();
  });

  it('truncate and punch give back the reservations of the delayed blocks they drop', async () => {
    const { mount, files } = await setup(await freshDevice());
    const ino = await newFile(mount, 'f');
    await files.write(ino, 0, pattern(64 * BS, 2));
    const state = await files.state(ino);
    expect(state.reservedDataBlocks).toBe(64);
    await files.punchHole(ino, 8 * BS, 8 * BS);
    expect(state.reservedDataBlocks).toBe(56);
    checkReservations(mount);
    await files.truncate(ino, 20 * BS + 5);
    // Blocks 0..19 less the 8 punched; block 20, the new EOF block, was written back by truncate.
    expect(state.reservedDataBlocks).toBe(12);
    checkReservations(mount);
    await files.fsync(ino);
    expect(state.reservedDataBlocks).toBe(0);
    const mapped: number[] = [];
    for await (const m of walkMappings(mount.ext4, await mount.inode(ino), 0, 64)) {
      if (m.kind === 'mapped') for (let lblk = m.lblk; lblk < m.lblk + m.len; lblk++) mapped.push(lblk);
    }
    expect(mapped).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20]);
    const expected = pattern(64 * BS, 2).slice(0, 20 * BS + 5);
    expected.fill(0, 8 * BS, 16 * BS);
    expect(Buffer.compare(await readFile(files, ino, 20 * BS + 5), expected)).toBe(0);
    await files.close();
    await mount.close();
  });

  it('random writes, reads, overwrites, truncates, punches, zero ranges, fallocates and mmap stores match a model; e2fsck clean; a remount on either path reads the same', async () => {
    const device = await freshDevice();
    // A small cache (the flusher, throttling and eviction all run) and a 2 ms commit timer
    // (commits race writeback, so the ordered waits are exercised).
    const { mount, files } = await setup(device, 2 * MiB, 2);
    const random = seededUnitRandom(0xb0ff);
    // One file: allocations of two files racing (flusher on one, fallocate on another) trip
    // a race in balloc.allocate (two allocations can pick the same free run across its
    // awaits) that is not this path's; one file's allocations are serialised by i_data_sem.
    const names = ['a'];
    const inos = [];
    for (const name of names) inos.push(await newFile(mount, name));
    const maxBytes = 4 * MiB;
    const models = inos.map(() => new Uint8Array(maxBytes));
    const sizes = inos.map(() => 0);
    for (let step = 0; step < 1500; step++) {
      const k = Math.floor(random() * inos.length);
      const ino = inos[k];
      const model = models[k];
      const size = sizes[k];
      const op = random();
      if (op < 0.4) {
        const pos = Math.floor(random() * (maxBytes - 200 * KiB));
        const data = pattern(1 + Math.floor(random() * 160 * KiB), step);
        expect(await files.write(ino, pos, data)).toBe(data.length);
        if (pos > size) model.fill(0, size, pos);
        model.set(data, pos);
        sizes[k] = Math.max(size, pos + data.length);
      } else if (op < 0.6) {
        const pos = Math.floor(random() * (size + 1));
        const out = new Uint8Array(Math.floor(random() * 200 * KiB));
        const done = await files.read(ino, pos, out);
        expect(done).toBe(Math.max(0, Math.min(out.length, size - pos)));
        expect(Buffer.compare(out.subarray(0, done), model.subarray(pos, pos + done)), `step ${step}: read ${pos}+${out.length}`).toBe(0);
      } else if (op < 0.68) {
        const newSize = Math.floor(random() * maxBytes * 0.9);
        await files.truncate(ino, newSize);
        if (newSize > size) model.fill(0, size, newSize);
        sizes[k] = newSize;
      } else if (op < 0.76 && size > 0) {
        const pos = Math.floor(random() * size);
        const length = 1 + Math.floor(random() * 100 * KiB);
        await files.punchHole(ino, pos, length);
        model.fill(0, pos, Math.min(size, pos + length));
      } else if (op < 0.82 && size > 0) {
        const pos = Math.floor(random() * size);
        const length = 1 + Math.floor(random() * 100 * KiB);
        const keepSize = random() < 0.5;
        await files.zeroRange(ino, pos, length, keepSize);
        const end = keepSize ? Math.min(size, pos + length) : pos + length;
        model.fill(0, pos, end);
        if (!keepSize) sizes[k] = Math.max(size, end);
      } else if (op < 0.87) {
        const pos = Math.floor(random() * (maxBytes - 300 * KiB));
        const length = 1 + Math.floor(random() * 256 * KiB);
        const keepSize = random() < 0.5;
        await files.fallocate(ino, keepSize ? FALLOC_FL_KEEP_SIZE : 0, pos, length);
        if (!keepSize && pos + length > size) {
          model.fill(0, size, pos + length);
          sizes[k] = pos + length;
        }
      } else if (op < 0.93 && size > 0) {
        const pos = Math.floor(random() * size);
        const data = pattern(1 + Math.floor(Math.min(size - pos - 1, random() * 20 * KiB)), step + 5000);
        await files.mapWrite(ino, pos, data);
        model.set(data, pos);
      } else {
        await files.fsync(ino);
      }
      checkReservations(mount);
    }
    for (const [k, ino] of inos.entries()) {
      expect(Buffer.compare(await readFile(files, ino, sizes[k]), models[k].subarray(0, sizes[k]))).toBe(0);
    }
    await files.syncAll();
    expect(delallocAccount(mount).reservedBlocks).toBe(0);
    expect(files.cache.stats().evictedFolioCount).toBeGreaterThan(0);
    await files.close();
    await mount.close();
    const img = join(tmp.dir, 'random.img');
    await device.saveImage(img);
    const fsck = await e2fsck(img);
    expect(fsck.complaints).toEqual([]);
    expect(fsck.clean, fsck.output).toBe(true);
    for (const buffered of ['buffer_head', 'iomap'] as const) {
      const again = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
      const reopened = openFiles(again, buffered);
      for (const [k, ino] of inos.entries()) {
        expect((await again.inode(ino)).size).toBe(sizes[k]);
        expect(Buffer.compare(await readFile(reopened, ino, sizes[k]), models[k].subarray(0, sizes[k])), `${buffered}: file ${names[k]}`).toBe(0);
      }
      await reopened.close();
      await again.close();
    }
  });
});

describe('ext4 buffer_head path, edge cases', () => {
  it('with free space low, writes allocate unwritten blocks at once (no reservation); writeback converts them; ENOSPC ends a write short; e2fsck clean', async () => {
    const device = MemoryDevice.create({ sizeBytes: 16 * MiB });
    await mkfs(device, { assumeZeroed: true });
    const { mount, files } = await setup(device);
    const filler = await newFile(mount, 'filler');
    // Fill the filesystem until the non-delalloc switch flips.
    let fillerSize = 0;
    while (!nondaSwitch(mount)) {
      await files.write(filler, fillerSize, pattern(64 * BS, fillerSize));
      fillerSize += 64 * BS;
      await files.fsync(filler);
    }
    const ino = await newFile(mount, 'f');
    const state = await files.state(ino);
    await files.write(ino, 0, pattern(3 * BS, 4));
    expect(state.reservedDataBlocks).toBe(0);
    expect(state.es.lookup(0).status).toBe(EsStatus.UNWRITTEN);
    expect(await diskRuns(mount, ino, 8)).toEqual(['0+3u']);
    await files.fsync(ino);
    expect(await diskRuns(mount, ino, 8)).toEqual(['0+3']);
    // Write until the space runs out: a short write, then ENOSPC; what was written survives.
    let size = 3 * BS;
    const expected = [pattern(3 * BS, 4)];
    for (;;) {
      const data = pattern(16 * BS, size);
      const done = await files.write(ino, size, data).catch((error: unknown) => {
        expect((error as { code?: string }).code).toBe('ENOSPC');
        return -1;
      });
      if (done < 0) break;
      expected.push(data.subarray(0, done));
      size += done;
      if (done < data.length) break;
    }
    expect(blockAllocator.freeBlocks(mount, false)).toBeLessThan(16);
    await files.fsync(ino);
    expect(Buffer.compare(await readFile(files, ino, size), Buffer.concat(expected))).toBe(0);
    checkReservations(mount);
    await files.close();
    await mount.close();
    const img = join(tmp.dir, 'nonda.img');
    await device.saveImage(img);
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
  });

  it('truncate up zeroes the old EOF block\'s tail on the device before the new size can commit (data=ordered for the size change)', async () => {
    const device = await freshDevice();
    const { mount, files } = await setup(device);
    const ino = await newFile(mount, 'f');
    await files.write(ino, 0, pattern(100, 5));
    await files.fsync(ino);
    const [run] = await diskRuns(mount, ino, 4);
    expect(run).toBe('0+1');
    const inode = await mount.inode(ino);
    let pblk = -1;
    for await (const m of walkMappings(mount.ext4, inode, 0, 1)) pblk = m.pblk;
    const stale = pattern(100, 5).slice();
    const staleBlock = new Uint8Array(BS).fill(0xee);
    staleBlock.set(stale);
    device.writeSync(pblk * BS, staleBlock); // a stale tail on disk past EOF
    await files.truncate(ino, 3 * BS);
    const onDisk = new Uint8Array(BS);
    device.readSync(pblk * BS, onDisk);
    expect(onDisk.subarray(0, 100)).toEqual(pattern(100, 5));
    expect(onDisk.subarray(100)).toEqual(new Uint8Array(BS - 100));
    const expected = new Uint8Array(3 * BS);
    expected.set(pattern(100, 5));
    expect(Buffer.compare(await readFile(files, ino, 3 * BS), expected)).toBe(0);
    await files.close();
    await mount.close();
  });

  it('writeback through the worker pool (options.submit): the runs go as MAPPED ioends, the file reads back, e2fsck clean', async () => {
    ensureWritebackWorkerBuilt();
    const device = await freshDevice();
    const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    let pool: WritebackPool | undefined;
    const files = Ext4Files.open(mount, {
      buffered: 'buffer_head', cacheBytes: 16 * MiB, writebackThreads: 0,
      bufferHeadPath: (m, cache) => {
        pool = createWritebackPool({ core: cache.core, device: m.ext4.device, threads: 1, inlineBytesMax: 0 });
        return createBufferHeadPath(m, { cache, submit: pool.submit });
      },
    });
    const ino = await newFile(mount, 'f');
    const data = pattern(8 * MiB + 123, 6);
    await files.write(ino, 0, data);
    await files.fsync(ino);
    expect(pool!.stats()).toMatchObject({ mode: 'pool', failedIoends: 0 });
    expect(pool!.stats().poolBytes).toBeGreaterThanOrEqual(8 * MiB);
    await files.close();
    await pool!.close();
    await mount.close();
    const again = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    const reopened = openFiles(again);
    expect(Buffer.compare(await readFile(reopened, ino, data.length), data)).toBe(0);
    await reopened.close();
    await again.close();
    const img = join(tmp.dir, 'pool.img');
    await device.saveImage(img);
    expect((await e2fsck(img)).clean).toBe(true);
  });

  it('on a 1 KiB-block image (mkfs.ext4 -b 1024: four buffers per page), a random run matches the model, e2fsck clean, remount reads the same', async () => {
    const img = join(tmp.dir, 'bs1k.img');
    execFileSync('mkfs.ext4', ['-q', '-F', '-b', '1024', img, '32M'], { env: { PATH: '/usr/sbin:/sbin:/usr/bin:/bin' }, stdio: 'ignore' });
    const device = await MemoryDevice.loadImage(img);
    const { mount, files } = await setup(device, 2 * MiB, 2);
    expect(mount.ext4.blockSizeBytes).toBe(1024);
    const ino = await newFile(mount, 'f');
    const random = seededUnitRandom(0x1b1c);
    const maxBytes = 2 * MiB;
    const model = new Uint8Array(maxBytes);
    let size = 0;
    for (let step = 0; step < 800; step++) {
      const op = random();
      if (op < 0.45) {
        const pos = Math.floor(random() * (maxBytes - 100 * KiB));
        const data = pattern(1 + Math.floor(random() * 60 * KiB), step);
        expect(await files.write(ino, pos, data)).toBe(data.length);
        if (pos > size) model.fill(0, size, pos);
        model.set(data, pos);
        size = Math.max(size, pos + data.length);
      } else if (op < 0.65) {
        const pos = Math.floor(random() * (size + 1));
        const out = new Uint8Array(Math.floor(random() * 80 * KiB));
        const done = await files.read(ino, pos, out);
        expect(Buffer.compare(out.subarray(0, done), model.subarray(pos, pos + done)), `step ${step}`).toBe(0);
        expect(done).toBe(Math.max(0, Math.min(out.length, size - pos)));
      } else if (op < 0.75) {
        const newSize = Math.floor(random() * maxBytes * 0.9);
        await files.truncate(ino, newSize);
        if (newSize > size) model.fill(0, size, newSize);
        size = newSize;
      } else if (op < 0.85 && size > 0) {
        const pos = Math.floor(random() * size);
        const length = 1 + Math.floor(random() * 20 * KiB);
        await files.punchHole(ino, pos, length);
        model.fill(0, pos, Math.min(size, pos + length));
      } else if (op < 0.92 && size > 0) {
        const pos = Math.floor(random() * size);
        const data = pattern(1 + Math.floor(Math.min(size - pos - 1, random() * 5000)), step + 9000);
        await files.mapWrite(ino, pos, data);
        model.set(data, pos);
      } else {
        await files.fsync(ino);
      }
      checkReservations(mount);
    }
    await files.syncAll();
    await files.close();
    await mount.close();
    await device.saveImage(img);
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
    const again = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    const reopened = openFiles(again);
    expect((await again.inode(ino)).size).toBe(size);
    expect(Buffer.compare(await readFile(reopened, ino, size), model.subarray(0, size))).toBe(0);
    await reopened.close();
    await again.close();
  });
});

/** Delays every write by a few ms, so a commit can race data in flight. */
class SlowDevice implements BlockDevice {
  constructor(private readonly inner: MemoryDevice, private readonly delayMs: number) {}
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get sectorSizeBytes(): number { return this.inner.sectorSizeBytes; }
  get readOnly(): boolean { return false; }
  read(offsetBytes: number, target: Uint8Array): Promise<void> { return this.inner.read(offsetBytes, target); }
  async write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void> {
    const copy = source.slice(); // as a device that DMAs at issue time
    await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    await this.inner.write(offsetBytes, copy, options);
  }
  flush(): Promise<void> { return this.inner.flush(); }
  discard(offsetBytes: number, lengthBytes: number): Promise<void> { return this.inner.discard(offsetBytes, lengthBytes); }
  zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> { return this.inner.zeroOut(offsetBytes, lengthBytes); }
  close(): Promise<void> { return this.inner.close(); }
}

function isCommitBlock(event: RecordedWrite): boolean {
  if (event.bytes === null || event.bytes.length < 12) return false;
  if (new DataView(event.bytes.buffer, event.bytes.byteOffset).getUint32(0) !== JBD2_MAGIC) return false;
  return decodeJournalHeader(event.bytes).blockType === BlockType.COMMIT;
}

describe('data=ordered', () => {
  it('a commit racing writeback writes its commit block only after the data of the blocks it allocated (and the flush after them)', async () => {
    const memory = await freshDevice();
    const recorder = new RecordingDevice(new SlowDevice(memory, 3));
    const { mount, files } = await setup(recorder);
    const ino = await newFile(mount, 'f');
    const data = pattern(256 * KiB, 3);
    await files.write(ino, 0, data);
    await mount.sync(); // the create is committed; only the allocation is left for the next commit
    const state = await files.state(ino);
    const writeback = files.writeAndWait(ino, 0, Infinity, 'fsync');
    while (state.reservedDataBlocks > 0) await new Promise((resolve) => setImmediate(resolve)); // the batch has allocated
    const raced = recorder.mark('commit requested');
    await mount.sync();
    await writeback;
    const runs = [];
    for await (const m of walkMappings(mount.ext4, await mount.inode(ino), 0, 64)) runs.push(m);
    expect(runs.map((m) => `${m.lblk}+${m.len}${m.kind}`)).toEqual(['0+64mapped']);
    const firstPblk = runs[0].pblk;
    const events = recorder.events;
    const isData = (event: RecordedWrite): boolean => event.offsetBytes < (firstPblk + 64) * BS && event.offsetBytes + event.lengthBytes > firstPblk * BS;
    const dataWrites = events.filter((event): event is RecordedWrite => event.kind === 'write' && isData(event));
    const commit = events.find((event): event is RecordedWrite => event.kind === 'write' && event.seq > raced.seq && isCommitBlock(event));
    expect(commit).toBeDefined();
    expect(dataWrites.length).toBeGreaterThan(0);
    // The data was still in flight when the commit was asked for …
    expect(dataWrites.every((event) => event.seq > raced.seq)).toBe(true);
    // … and every data write completed, then a flush, before the commit block.
    const lastData = Math.max(...dataWrites.map((event) => event.seq));
    const flush = events.find((event) => event.kind === 'flush' && event.seq > lastData);
    expect(flush).toBeDefined();
    expect(flush!.seq).toBeLessThan(commit!.seq);
    let covered = 0;
    for (const event of dataWrites) covered += event.lengthBytes;
    expect(covered).toBe(64 * BS);
    expect(Buffer.compare(await readFile(files, ino, data.length), data)).toBe(0);
    await files.close();
    await mount.close();
  });
});
