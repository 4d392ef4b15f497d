/**
 * The file API over the buffered engine, on real images, with e2fsprogs as the oracle:
 * the size rules (i_size in memory, i_disksize on disk; punch and zero range reaching EOF
 * raise i_disksize; zeroing never raises i_size), delalloc reservations taken and given
 * back (write, truncate, punch, unlink), partial-block zeroing over unwritten extents,
 * SEEK_DATA / SEEK_HOLE, fiemap against debugfs, the mmap emulation, and bad input: each
 * a clear FsError with the file and image unchanged.
 *
 * Cost: a few 32 MiB memory images, each saved once or twice for e2fsck/debugfs.
 */
import { Buffer } from 'node:buffer';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ext4, FileDevice, FsError, MemoryDevice, constants, mkfs, type Ext4Filesystem, type FileHandle } from '@ext4ts/core';
import { checkReservations, inodeState } from '../../packages/core/src/ext4/map_blocks.js';
import { delallocAccount, delallocAvailable } from '../../packages/core/src/ext4/delalloc.js';
import { debugfsStat, e2fsck } from '../helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { seededRandom } from '../../packages/core/src/random.js';
import { ensureWritebackWorkerBuilt } from '../../packages/core/src/writeback/testing.js';

const MiB = 1024 * 1024;
const BS = 4096;
const { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, SEEK_DATA, SEEK_HOLE } = constants;

let tmp: TempDir;
beforeAll(() => { tmp = makeTempDir('ext4ts-file-api-'); });
afterAll(() => tmp.cleanup());

let imageCount = 0;

async function freshFs(options: { buffered?: 'iomap' | 'buffer_head'; largeFolios?: boolean } = {}): Promise<{ fs: Ext4Filesystem; device: MemoryDevice }> {
  const device = MemoryDevice.create({ sizeBytes: 32 * MiB });
  await mkfs(device, {});
  const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes: 8 * MiB, ...options });
  return { fs, device };
}

/** Unmount, save, e2fsck -fn must be clean; returns the image path for debugfs. */
async function checkImage(fs: Ext4Filesystem, device: MemoryDevice): Promise<string> {
  await fs.unmount();
  const img = join(tmp.dir, `img-${imageCount++}`);
  await device.saveImage(img);
  const fsck = await e2fsck(img);
  expect(fsck.clean, fsck.output).toBe(true);
  return img;
}

/** i_size of the inode as the mount last wrote it (its cached on-disk copy): i_disksize. */
function diskSize(fs: Ext4Filesystem, ino: number): number {
  return fs.mount.ext4.inodeCache.get(ino)?.size ?? -1;
}

function deviceBytes(device: MemoryDevice): Buffer {
  const out = Buffer.alloc(device.sizeBytes);
  device.readSync(0, out);
  return out;
}

function pattern(length: number, seed: number): Buffer {
  const rng = seededRandom(seed);
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = rng() & 0xff;
  return out;
}

async function expectFsError(promise: Promise<unknown>, code: string): Promise<FsError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(FsError.is(error), `expected FsError ${code}, got ${String(error)}`).toBe(true);
  expect((error as FsError).code).toBe(code);
  return error as FsError;
}

describe('sizes: i_size in memory, i_disksize on disk', () => {
  it('a write raises i_size at once and i_disksize only at writeback; stat shows i_size and the delayed blocks', async () => {
    const { fs, device } = await freshFs();
    const fh = await fs.open('/f', 'w+');
    await fh.write(pattern(3 * BS + 100, 1), 0, 3 * BS + 100, 0);
    const st = await fh.stat();
    expect(st.size).toBe(3 * BS + 100);
    expect(st.blocks).toBe(4 * (BS / 512)); // four delayed blocks, counted as ext4_getattr does
    const state = await inodeState(fs.mount, st.ino);
    expect(state.reservedDataBlocks).toBe(4);
    expect(state.diskSizeBytes).toBe(0);
    await fh.sync();
    expect(state.reservedDataBlocks).toBe(0);
    expect(state.diskSizeBytes).toBe(3 * BS + 100);
    expect(diskSize(fs, st.ino)).toBe(3 * BS + 100);
    await fh.close();
    const img = await checkImage(fs, device);
    const stat = await debugfsStat(img, '/f');
    expect(stat.size).toBe(BigInt(3 * BS + 100));
    expect(stat.extents?.map((e) => [e.logicalStart, e.blockCount, e.unwritten])).toEqual([[0, 4, false]]);
  });

  it('punch reaching EOF raises i_disksize to i_size first (the dirty tail it drops would have done it)', async () => {
    const { fs, device } = await freshFs();
    const fh = await fs.open('/f', 'w+');
    await fh.write(pattern(8 * BS, 2), 0, 8 * BS, 0);
    await fh.sync();
    await fh.write(pattern(4 * BS, 3), 0, 4 * BS, 8 * BS); // i_size 12 blocks, disk size 8
    const ino = (await fh.stat()).ino;
    const state = await inodeState(fs.mount, ino);
    expect(state.diskSizeBytes).toBe(8 * BS);
    await fh.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 6 * BS, 100 * BS);
    expect(state.sizeBytes).toBe(12 * BS);
    expect(state.diskSizeBytes).toBe(12 * BS);
    expect(state.reservedDataBlocks).toBe(0); // the delayed tail's reservation went back
    checkReservations(fs.mount);
    const back = Buffer.alloc(12 * BS);
    await fh.read(back, 0, back.length, 0);
    expect(back.subarray(0, 6 * BS)).toEqual(pattern(8 * BS, 2).subarray(0, 6 * BS));
    expect(back.subarray(6 * BS).every((b) => b === 0)).toBe(true);
    await fh.close();
    const img = await checkImage(fs, device);
    const stat = await debugfsStat(img, '/f');
    expect(stat.size).toBe(BigInt(12 * BS));
    expect(stat.extents?.map((e) => [e.logicalStart, e.blockCount])).toEqual([[0, 6]]);
  });

  it('zero range reaching EOF raises i_disksize; zero range with KEEP_SIZE never raises i_size', async () => {
    const { fs, device } = await freshFs();
    const fh = await fs.open('/f', 'w+');
    await fh.write(pattern(4 * BS, 4), 0, 4 * BS, 0);
    await fh.sync();
    await fh.write(pattern(2 * BS + 10, 5), 0, 2 * BS + 10, 4 * BS);
    const ino = (await fh.stat()).ino;
    const state = await inodeState(fs.mount, ino);
    await fh.fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 5 * BS + 7, 20 * BS);
    expect(state.sizeBytes).toBe(6 * BS + 10);
    expect(state.diskSizeBytes).toBe(6 * BS + 10);
    const back = Buffer.alloc(6 * BS + 10);
    await fh.read(back, 0, back.length, 0);
    const expected = Buffer.concat([pattern(4 * BS, 4), pattern(2 * BS + 10, 5)]);
    expected.fill(0, 5 * BS + 7);
    expect(back).toEqual(expected);
    // Without KEEP_SIZE the size grows to the end of the range, which reads as zeros.
    await fh.fallocate(FALLOC_FL_ZERO_RANGE, 7 * BS, 3 * BS + 1);
    expect((await fh.stat()).size).toBe(10 * BS + 1);
    const tail = Buffer.alloc(10 * BS + 1 - back.length, 1);
    await fh.read(tail, 0, tail.length, back.length);
    expect(tail.every((b) => b === 0)).toBe(true);
    await fh.close();
    const img = await checkImage(fs, device);
    expect((await debugfsStat(img, '/f')).size).toBe(BigInt(10 * BS + 1));
  });

  it('partial-block zeroing over an unwritten extent with dirty cache: the zeros and the data around them both land', async () => {
    const { fs, device } = await freshFs();
    const fh = await fs.open('/f', 'w+');
    await fh.fallocate(0, 0, 8 * BS); // unwritten, size 8 blocks
    await fh.write(pattern(8 * BS, 6), 0, 8 * BS, 0); // dirty cache over unwritten blocks
    await fh.fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, BS + 100, 2 * BS); // partial edges in blocks 1 and 3
    const expected = pattern(8 * BS, 6);
    expected.fill(0, BS + 100, 3 * BS + 100);
    await fh.sync();
    const back = Buffer.alloc(8 * BS);
    await fh.read(back, 0, back.length, 0);
    expect(back).toEqual(expected);
    await fh.close();
    const img = await checkImage(fs, device);
    // Remount and read from the disk alone.
    const again = await Ext4.mount(await MemoryDevice.loadImage(img), {});
    expect(await again.readFile('/f')).toEqual(expected);
    await again.unmount();
  });

  it('truncate gives back the delayed blocks past the new size; unlink of a dirty file gives back all of them', async () => {
    const { fs, device } = await freshFs();
    const before = delallocAccount(fs.mount).reservedBlocks;
    const fh = await fs.open('/f', 'w+');
    await fh.write(pattern(64 * BS, 7), 0, 64 * BS, 0);
    expect(delallocAccount(fs.mount).reservedBlocks).toBe(before + 64);
    // Block aligned, so no EOF block is written back (that would allocate the whole
    // delayed extent as unwritten, the seed's design, and consume its reservation).
    await fh.truncate(10 * BS);
    expect(delallocAccount(fs.mount).reservedBlocks).toBe(before + 10);
    checkReservations(fs.mount);
    await fh.close();
    await fs.writeFile('/g', pattern(32 * BS, 8));
    expect(delallocAccount(fs.mount).reservedBlocks).toBe(before + 10 + 32);
    await fs.unlink('/g');
    expect(delallocAccount(fs.mount).reservedBlocks).toBe(before + 10);
    checkReservations(fs.mount);
    const back = await fs.readFile('/f');
    expect(back).toEqual(pattern(64 * BS, 7).subarray(0, 10 * BS));
    await checkImage(fs, device);
  });
});

describe('growing past an unaligned EOF', () => {
  it.each<['iomap' | 'buffer_head']>([['iomap'], ['buffer_head']])('%s: truncate up puts the zeroed old EOF tail on the device before the new size commits', async (buffered) => {
    const { fs, device } = await freshFs({ buffered });
    const fh = await fs.open('/t', 'w+');
    await fh.write(pattern(100, 17), 0, 100, 0);
    await fh.sync();
    const [extent] = await fh.fiemap();
    // Junk past EOF on the disk (as another implementation, or a torn write, may leave).
    const junk = Buffer.alloc(BS, 0xee);
    pattern(100, 17).copy(junk);
    await device.write(extent.physicalBytes, junk);
    await fh.truncate(3 * BS);
    const onDisk = Buffer.alloc(BS);
    await device.read(extent.physicalBytes, onDisk);
    expect(onDisk.subarray(0, 100).equals(pattern(100, 17))).toBe(true);
    expect(onDisk.subarray(100).every((b) => b === 0)).toBe(true);
    await fh.close();
    await checkImage(fs, device);
  });
});

describe('SEEK_DATA / SEEK_HOLE and fiemap', () => {
  it('find written, delayed and unwritten-with-dirty-cache data, holes between, and agree with debugfs after sync', async () => {
    const { fs, device } = await freshFs();
    const fh = await fs.open('/s', 'w+');
    await fh.write(pattern(2 * BS, 9), 0, 2 * BS, 0); // blocks 0-1 (delayed)
    await fh.fallocate(FALLOC_FL_KEEP_SIZE, 8 * BS, 4 * BS); // 8-11 unwritten, past EOF
    await fh.write(pattern(BS, 10), 0, BS, 20 * BS); // block 20; size 21 blocks
    expect(await fh.seek(0, SEEK_DATA)).toBe(0);
    expect(await fh.seek(0, SEEK_HOLE)).toBe(2 * BS);
    expect(await fh.seek(2 * BS + 5, SEEK_DATA)).toBe(20 * BS); // unwritten 8-11 without cache is a hole
    expect(await fh.seek(20 * BS, SEEK_HOLE)).toBe(21 * BS); // EOF is a hole
    await expectFsError(fh.seek(21 * BS, SEEK_DATA), 'ENXIO');
    await expectFsError(fh.seek(21 * BS, SEEK_HOLE), 'ENXIO');
    const delayed = await fh.fiemap();
    expect(delayed.map((e) => [e.logicalBytes / BS, e.lengthBytes / BS, e.flags])).toEqual([
      [0, 2, constants.FIEMAP_EXTENT_DELALLOC | constants.FIEMAP_EXTENT_UNKNOWN],
      [8, 4, constants.FIEMAP_EXTENT_UNWRITTEN],
      [20, 1, constants.FIEMAP_EXTENT_DELALLOC | constants.FIEMAP_EXTENT_UNKNOWN | constants.FIEMAP_EXTENT_LAST],
    ]);
    await fh.sync();
    const mapped = await fh.fiemap();
    await fh.close();
    const img = await checkImage(fs, device);
    const extents = (await debugfsStat(img, '/s')).extents!;
    expect(mapped.map((e) => [e.logicalBytes / BS, e.physicalBytes / BS, e.lengthBytes / BS, (e.flags & constants.FIEMAP_EXTENT_UNWRITTEN) !== 0]))
      .toEqual(extents.map((e) => [e.logicalStart, e.physicalStart, e.blockCount, e.unwritten]));
  });
});

describe('mmap emulation', () => {
  it('stores fault through page_mkwrite and land on disk at msync; the EOF page past EOF is zero after growth; past it is EFAULT', async () => {
    const { fs, device } = await freshFs();
    const fh = await fs.open('/m', 'w+');
    await fh.write(pattern(3 * BS + 123, 11), 0, 3 * BS + 123, 0);
    const map = await fh.mmap(0, 8 * BS);
    await map.write(BS - 2, Buffer.from('ABCD'));
    // A store into the EOF page past EOF stays in the cache and is not file data.
    await map.write(3 * BS + 200, Buffer.from('garbage'));
    expect((await fh.stat()).size).toBe(3 * BS + 123);
    await expectFsError(map.read(4 * BS, 1), 'EFAULT');
    await expectFsError(map.write(5 * BS, Buffer.from('x')), 'EFAULT');
    await map.msync();
    await fh.truncate(4 * BS);
    const expected = Buffer.concat([pattern(3 * BS + 123, 11), Buffer.alloc(BS - 123)]);
    expected.write('ABCD', BS - 2, 'latin1');
    expect(Buffer.from(await map.read(0, 4 * BS))).toEqual(expected);
    await map.unmap();
    await fh.close();
    const img = await checkImage(fs, device);
    const again = await Ext4.mount(await MemoryDevice.loadImage(img), {});
    expect(await again.readFile('/m')).toEqual(expected);
    await again.unmount();
  });
});

describe('bad input: a clear FsError, the file and the image unchanged', () => {
  it('negative and overflowing offsets and lengths, past the largest file size, unknown modes, closed handles, read-only handles and mounts', async () => {
    const { fs, device } = await freshFs();
    const content = pattern(5 * BS + 17, 12);
    await fs.writeFile('/f', content);
    await fs.sync();
    const snapshot = deviceBytes(device);
    const fh = await fs.open('/f', 'r+');
    const max = fs.files.maxBytes;
    const calls: Array<[() => Promise<unknown>, string]> = [
      [() => fh.write(Buffer.from('x'), 0, 1, -5), 'EINVAL'],
      [() => fh.write(Buffer.from('x'), 0, 1, 2 ** 60), 'EINVAL'],
      [() => fh.write(Buffer.from('xy'), 0, 2, max - 1), 'EFBIG'],
      [() => fh.read(Buffer.alloc(4), 0, 4, -1.5), 'EINVAL'],
      [() => fh.read(Buffer.alloc(4), 2, 4, 0), 'EINVAL'],
      [() => fh.truncate(-1), 'EINVAL'],
      [() => fh.truncate(max + 1), 'EFBIG'],
      [() => fh.fallocate(0, -1, 10), 'EINVAL'],
      [() => fh.fallocate(0, 0, 0), 'EINVAL'],
      [() => fh.fallocate(0, 0, -4096), 'EINVAL'],
      [() => fh.fallocate(0, max, BS), 'EFBIG'],
      [() => fh.fallocate(0x40, 0, BS), 'ENOTSUP'],
      [() => fh.fallocate(FALLOC_FL_PUNCH_HOLE, 0, BS), 'EINVAL'],
      [() => fh.seek(0, 9), 'EINVAL'],
      [() => fh.seek(-1, SEEK_DATA), 'ENXIO'],
      [() => fh.mmap(100, BS), 'EINVAL'],
      [() => fh.mmap(0, 0), 'EINVAL'],
      [() => fh.mmap(0, max + BS), 'EOVERFLOW'],
    ];
    for (const [call, code] of calls) await expectFsError(call(), code);
    const map = await fh.mmap(0, 16 * BS);
    await expectFsError(map.write(6 * BS, Buffer.from('past EOF page')), 'EFAULT');
    await expectFsError(map.read(15 * BS, 10), 'EFAULT');
    await expectFsError(map.write(16 * BS - 1, Buffer.from('ab')), 'EFAULT');
    const ro = await fs.open('/f', 'r');
    await expectFsError(ro.write(Buffer.from('x'), 0, 1, 0), 'EBADF');
    await expectFsError(ro.truncate(0), 'EBADF');
    await expectFsError(ro.fallocate(0, 0, BS), 'EBADF');
    await expectFsError((await ro.mmap(0, BS)).write(0, Buffer.from('x')), 'EBADF');
    await ro.close();
    await fh.close();
    for (const call of [() => fh.read(Buffer.alloc(1), 0, 1, 0), () => fh.write(Buffer.from('x')), () => fh.truncate(0), () => fh.fallocate(0, 0, BS), () => fh.seek(0, SEEK_HOLE), () => fh.sync(), () => fh.fiemap(), () => fh.mmap(0, BS)]) {
      await expectFsError(call(), 'EBADF');
    }
    await fs.sync();
    expect(await fs.readFile('/f')).toEqual(content);
    expect(deviceBytes(device).equals(snapshot)).toBe(true);
    const img = await checkImage(fs, device);
    const readOnly = await Ext4.mount(await MemoryDevice.loadImage(img), { readOnly: true });
    const rofh = await readOnly.open('/f', 'r');
    await expectFsError(rofh.write(Buffer.from('x'), 0, 1, 0), 'EROFS');
    await expectFsError(rofh.truncate(0), 'EROFS');
    await expectFsError(rofh.fallocate(0, 0, BS), 'EROFS');
    await expectFsError(readOnly.open('/f', 'r+'), 'EROFS');
    expect(await rofh.readFile()).toEqual(content);
    await rofh.close();
    await readOnly.unmount();
  });
});

describe('writeback: the worker pool, and errors that reach fsync', () => {
  it('large writebacks go through the piscina pool from folio memory; the image reads back the same after a remount', async () => {
    ensureWritebackWorkerBuilt();
    const img = join(tmp.dir, 'pool.img');
    writeFileSync(img, '');
    truncateSync(img, 64 * MiB);
    let device = await FileDevice.open(img);
    await mkfs(device, {});
    const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes: 32 * MiB, writebackThreads: 1 });
    const data = pattern(8 * MiB + 12345, 13);
    const fh = await fs.open('/big', 'w+');
    // The first large batch starts the pool and is written inline while the workers boot.
    await fh.write(data, 0, data.length, 0);
    await fh.sync();
    expect(fs.files.writebackPoolStats()?.poolBytes).toBe(0);
    await fs.files.writebackPoolReady();
    data.set(pattern(8 * MiB, 14));
    await fh.write(data, 0, data.length, 0);
    await fh.sync();
    const stats = fs.files.writebackPoolStats();
    expect(stats?.mode, stats?.fallbackReason).toBe('pool');
    expect(stats!.poolBytes).toBeGreaterThanOrEqual(8 * MiB);
    expect(stats!.failedIoends).toBe(0);
    await fh.close();
    await fs.unmount();
    await device.close();
    expect((await e2fsck(img)).clean).toBe(true);
    device = await FileDevice.open(img);
    const again = await Ext4.mount(device, {});
    expect((await again.readFile('/big')).equals(data)).toBe(true);
    await again.unmount();
    await device.close();
  });

  it("writebackStart 'mount' starts the workers before mount resolves: the first large writeback already goes through them; a bad value is EINVAL", async () => {
    ensureWritebackWorkerBuilt();
    const device = MemoryDevice.create({ sizeBytes: 64 * MiB });
    await mkfs(device, {});
    await expectFsError(Ext4.mount(device, { readOnly: false, writebackStart: 'soon' as 'mount' }), 'EINVAL');
    const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes: 32 * MiB, writebackThreads: 1, writebackStart: 'mount' });
    expect(fs.files.writebackPoolStats()).toMatchObject({ mode: 'pool', batches: 0 });
    const data = pattern(8 * MiB, 15);
    const fh = await fs.open('/early', 'w+');
    await fh.write(data, 0, data.length, 0);
    await fh.sync();
    expect(fs.files.writebackPoolStats()).toMatchObject({ inlineBatches: 0, failedIoends: 0 });
    expect(fs.files.writebackPoolStats()!.poolBytes).toBeGreaterThanOrEqual(8 * MiB);
    expect(await fh.readFile()).toEqual(data);
    await fh.close();
    await checkImage(fs, device);
    // A read-only mount starts nothing.
    const readOnly = await Ext4.mount(device, { writebackStart: 'mount' });
    expect(readOnly.files.writebackPoolStats()).toBeUndefined();
    await readOnly.unmount();
  });

  it('an fsync waiting on the device does not hold the change lock: other files are written meanwhile; unmount waits for it', async () => {
    const device = MemoryDevice.create({ sizeBytes: 64 * MiB });
    await mkfs(device, {});
    // The same device, with its flushes held until released: an fsync's commit waits there.
    let release: () => void = () => undefined;
    let gate: Promise<void> | null = null;
    const gated = Object.create(device) as MemoryDevice;
    gated.flush = async () => {
      if (gate !== null) await gate;
      return device.flush();
    };
    const fs = await Ext4.mount(gated, { readOnly: false, commitIntervalMs: 0, cacheBytes: 32 * MiB, writebackThreads: 0 });
    const a = await fs.open('/a', 'w+');
    const b = await fs.open('/b', 'w+');
    const dataA = pattern(4 * MiB, 16);
    const dataB = pattern(1 * MiB + 7, 17);
    await a.write(dataA, 0, dataA.length, 0);
    gate = new Promise<void>((resolve) => { release = resolve; });
    let synced = false;
    const syncA = a.sync().then(() => { synced = true; });
    // While a's commit waits for its flush, b is written and truncated (both take the change lock).
    const sleep = (ms: number) => new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms));
    const wrote = await Promise.race([b.write(dataB, 0, dataB.length, 0).then(() => 'wrote'), sleep(3000)]);
    expect(wrote).toBe('wrote');
    expect(await Promise.race([b.truncate(dataB.length - 7).then(() => 'truncated'), sleep(3000)])).toBe('truncated');
    expect(synced).toBe(false);
    await a.close();
    await b.close();
    const unmounted = fs.unmount();
    expect(await Promise.race([unmounted.then(() => 'unmounted'), sleep(200)])).toBe('timeout'); // it waits for the fsync
    release();
    gate = null;
    await syncA;
    await unmounted;
    expect(synced).toBe(true);
    const img = join(tmp.dir, `img-${imageCount++}`);
    await device.saveImage(img);
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
    const again = await Ext4.mount(device, {});
    expect((await again.readFile('/a')).equals(dataA)).toBe(true);
    expect((await again.readFile('/b')).equals(dataB.subarray(0, dataB.length - 7))).toBe(true);
    await again.unmount();
  });

  it('a data write that fails: fsync reports EIO once, the journal aborts (no more changes), the old data stays on disk', async () => {
    const inner = MemoryDevice.create({ sizeBytes: 32 * MiB });
    await mkfs(inner, {});
    let failRange: [number, number] | undefined;
    const device = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'write') {
          return async (offsetBytes: number, source: Uint8Array, options?: unknown) => {
            if (failRange !== undefined && offsetBytes < failRange[1] && offsetBytes + source.length > failRange[0]) {
              throw new FsError('EIO', { syscall: 'write', detail: 'injected' });
            }
            return target.write(offsetBytes, source, options as never);
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes: 8 * MiB });
    const first = pattern(16 * BS, 14);
    const fh = await fs.open('/f', 'w+');
    await fh.write(first, 0, first.length, 0);
    await fh.sync();
    const [extent] = await fh.fiemap();
    failRange = [extent.physicalBytes, extent.physicalBytes + extent.lengthBytes];
    await fh.write(pattern(16 * BS, 15), 0, 16 * BS, 0);
    await expectFsError(fh.sync(), 'EIO');
    expect(fs.mount.journal?.isAborted).toBe(true);
    await expectFsError(fs.mkdir('/after'), 'EIO');
    const onDisk = Buffer.alloc(16 * BS);
    await inner.read(extent.physicalBytes, onDisk);
    expect(onDisk.equals(first)).toBe(true);
    failRange = undefined;
    await fs.unmount().catch(() => undefined);
  });
});

describe('reads beside truncate and punch (the invalidate lock)', () => {
  it.each<['iomap' | 'buffer_head']>([['iomap'], ['buffer_head']])('%s: reads racing a punch and a truncate never bring freed blocks back into the cache', async (buffered) => {
    const { fs, device } = await freshFs({ buffered });
    const data = pattern(2 * MiB, 16);
    await fs.writeFile('/r', data);
    await fs.unmount();
    // Every device call takes a timer turn, so the reader runs between the punch's steps.
    const slow = new Proxy(device, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        const method = (value as (...args: unknown[]) => unknown).bind(target);
        if (prop !== 'read' && prop !== 'write' && prop !== 'flush') return method;
        return async (...args: unknown[]) => { await new Promise((resolve) => setTimeout(resolve, 1)); return method(...args); };
      },
    });
    const again = await Ext4.mount(slow, { readOnly: false, commitIntervalMs: 0, cacheBytes: 8 * MiB, buffered, writebackThreads: 0 });
    const fh = await again.open('/r', 'r+');
    const reader = async (done: () => boolean): Promise<number> => {
      let reads = 0;
      const buf = Buffer.alloc(64 * 1024);
      while (!done()) {
        await fh.read(buf, 0, buf.length, (reads * 3 * 4096) % (2 * MiB - buf.length));
        reads++;
      }
      return reads;
    };
    let finished = false;
    const punch = fh.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * 1024, MiB).finally(() => { finished = true; });
    const [, reads] = await Promise.all([punch, reader(() => finished)]);
    expect(reads).toBeGreaterThan(0);
    finished = false;
    const truncate = fh.truncate(1536 * 1024).finally(() => { finished = true; });
    await Promise.all([truncate, reader(() => finished)]);
    await fh.truncate(2 * MiB);
    const expected = Buffer.from(data);
    expected.fill(0, 256 * 1024, 256 * 1024 + MiB);
    expected.fill(0, 1536 * 1024);
    expect((await again.readFile('/r')).equals(expected)).toBe(true);
    await fh.close();
    await checkImage(again, device);
  });
});

describe('delayed allocation keeps its space', () => {
  it('directories growing while writes hold reservations take ENOSPC themselves; the reserved data is written at fsync, e2fsck clean', async () => {
    const device = MemoryDevice.create({ sizeBytes: 16 * MiB });
    await mkfs(device, {});
    // A cache whose background threshold (20 %) lies above the write, so no writeback allocates the reservation early.
    const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes: 64 * MiB, writebackThreads: 0 });
    // Reserve all but a few blocks of what delalloc may take.
    const fh = await fs.open('/big', 'w+');
    const spare = 24;
    const blocks = delallocAvailable(fs.mount) - spare;
    const data = pattern(blocks * BS, 18);
    await fh.write(data, 0, data.length, 0);
    expect(delallocAccount(fs.mount).reservedBlocks).toBe(blocks);
    // Directories (one block each) until the allocator refuses: they must not eat the reservation.
    let made = 0;
    let refused: unknown;
    for (; made < 10_000; made++) {
      try { await fs.mkdir(`/d${made}`); } catch (error) { refused = error; break; }
    }
    expect(FsError.is(refused, 'ENOSPC'), String(refused)).toBe(true);
    await fh.sync();
    expect(delallocAccount(fs.mount).reservedBlocks).toBe(0);
    expect((await fs.readFile('/big')).equals(data)).toBe(true);
    await fh.close();
    console.log(`delalloc reservation: ${blocks} blocks held, ${made} directories made before ENOSPC`);
    await checkImage(fs, device);
  });
});

describe('I/O buffers in the engine memory', () => {
  it('reads into and writes from allocBuffer() buffers (memory.copy) give the same bytes as plain buffers; freed buffers are reused', async () => {
    const { fs, device } = await freshFs();
    const io = fs.allocBuffer(3 * BS + 5);
    const data = pattern(3 * BS + 5, 19);
    data.copy(io);
    const fh = await fs.open('/io', 'w+');
    await fh.write(io, 0, io.length, 7);
    const plain = Buffer.alloc(io.length);
    await fh.read(plain, 0, plain.length, 7);
    expect(plain.equals(data)).toBe(true);
    io.fill(0);
    await fh.read(io, 0, io.length, 7);
    expect(io.equals(data)).toBe(true);
    const ptr = io.byteOffset;
    fs.freeBuffer(io);
    const again = fs.allocBuffer(BS);
    expect(again.byteOffset).toBe(ptr);
    fs.freeBuffer(again);
    expect(() => fs.allocBuffer(64 * MiB)).toThrow(/ENOSPC/);
    await fh.close();
    await checkImage(fs, device);
  });
});
