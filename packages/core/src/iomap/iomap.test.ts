/**
 * The generic iomap mechanisms of the seed's patch list, one test each, over the fake
 * filesystem (testing.ts): unwritten reads as zeros, stale cookie re-map, short writes,
 * ioend building and merging, partial-block zeroing over unwritten ranges with dirty
 * cache, zeroing never raises i_size, the EOF folio tail zeroed at writeback, readahead
 * growing the folio order, writeback errors reaching fsync as EIO, page_mkwrite past EOF.
 */
import { describe, expect, it } from 'vitest';
import type { BlockDevice } from '../device/block-device.js';
import type { MemoryDevice } from '../device/memory-device.js';
import { FsError } from '../vfs/errors.js';
import { createReadaheadState, iomapRead } from './buffered-read.js';
import { iomapWrite } from './buffered-write.js';
import { iomapPageMkwrite } from './mkwrite.js';
import { withFakeFs } from './testing.js';
import { type Ioend, IomapType } from './types.js';
import { iomapSortMergeIoends } from './writeback.js';
import { iomapZeroRange } from './zero.js';

const KiB = 1024;

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = ((i * 31 + seed * 7) % 251) + 1;
  return bytes;
}

function diskBytes(device: MemoryDevice, addrBytes: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  device.readSync(addrBytes, bytes);
  return bytes;
}

describe('iomap buffered read', () => {
  it('reads UNWRITTEN blocks as zeros whatever the device holds there', async () => {
    await withFakeFs({}, async ({ createFile, device, fs }) => {
      device.writeSync(0, new Uint8Array(64 * KiB).fill(0xee)); // stale garbage where blocks will be allocated
      const file = createFile();
      await file.fallocate(0, 16 * KiB, false);
      expect(fs.lookup(file.file, 0, 16 * KiB).type).toBe(IomapType.UNWRITTEN);
      expect(await file.read(0, 16 * KiB)).toEqual(new Uint8Array(16 * KiB));
    });
  });

  it('reads an uncached HOLE by zeroing the caller buffer: no folio is made there, cached folios inside the hole still answer', async () => {
    await withFakeFs({}, async ({ createFile, fs }) => {
      const file = createFile();
      const MiB = 1024 * KiB;
      await file.truncate(2 * MiB);
      await file.write(0, pattern(16 * KiB, 2));
      await file.write(MiB, pattern(8 * KiB, 3)); // dirty, never written back: a folio in the middle of the hole
      expect(fs.lookup(file.file, 64 * KiB, 4 * KiB).type).toBe(IomapType.HOLE);
      const state = createReadaheadState();
      const target = new Uint8Array(2 * MiB).fill(0xaa);
      let done = 0;
      while (done < target.length) {
        done += await iomapRead(file.file, done, target.subarray(done, done + 256 * KiB), { ops: file.fs.readOps, device: file.fs.device, readahead: state });
      }
      const expected = new Uint8Array(2 * MiB);
      expected.set(pattern(16 * KiB, 2), 0);
      expected.set(pattern(8 * KiB, 3), MiB);
      expect(Buffer.compare(target, expected)).toBe(0);
      // Folios only where data was written: none over the hole, read or read ahead.
      const mapping = file.file.mapping;
      for (const folio of mapping.folios(0, 2 ** 32)) {
        const start = folio.positionBytes;
        const end = start + folio.lengthBytes;
        expect(end <= 16 * KiB || (start >= MiB && end <= MiB + 8 * KiB), `folio [${start}, ${end})`).toBe(true);
      }
      expect(mapping.firstCachedIndex(4, 256)).toBe(256);
      expect(mapping.firstCachedIndex(4, 512)).toBe(256);
    });
  });

  it('reads a wholly cached, uptodate range without asking the filesystem; a partly cached or locked one goes the slow way', async () => {
    await withFakeFs({}, async ({ createFile }) => {
      const file = createFile();
      const data = pattern(64 * KiB, 4);
      await file.write(0, data);
      let begins = 0;
      const base = file.fs.readOps;
      const ops = { ...base, begin: (...args: Parameters<typeof base.begin>) => { begins++; return base.begin(...args); } };
      const read = (pos: number, length: number) => {
        const target = new Uint8Array(length);
        return iomapRead(file.file, pos, target, { ops, device: file.fs.device }).then((done) => target.subarray(0, done));
      };
      expect(await read(1000, 30 * KiB)).toEqual(data.subarray(1000, 1000 + 30 * KiB));
      expect(begins).toBe(0);
      // Past EOF is clipped, still from the cache.
      expect(await read(60 * KiB, 16 * KiB)).toEqual(data.subarray(60 * KiB));
      expect(begins).toBe(0);
      // Dropped from the cache: the slow path maps and reads the device.
      await file.fsync();
      file.dropCache();
      expect(await read(8 * KiB, 8 * KiB)).toEqual(data.subarray(8 * KiB, 16 * KiB));
      expect(begins).toBeGreaterThan(0);
      // A locked folio (a write in progress) is waited for, not read around.
      const folio = file.file.mapping.lookup(2)!;
      folio.get();
      await folio.lock();
      begins = 0;
      let settled = false;
      const pending = read(8 * KiB, 4 * KiB).then((bytes) => { settled = true; return bytes; });
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(settled).toBe(false);
      folio.unlock();
      folio.put();
      expect(await pending).toEqual(data.subarray(8 * KiB, 12 * KiB));
      expect(begins).toBeGreaterThan(0);
    });
  });

  it('grows the folio order with sequential reads and never creates a folio past EOF', async () => {
    await withFakeFs({ cacheBytesMax: 8 * 1024 * KiB }, async ({ createFile }) => {
      const file = createFile();
      const sizeBytes = 2 * 1024 * KiB + 5000;
      await file.write(0, pattern(sizeBytes, 1));
      await file.fsync();
      file.dropCache();
      const state = createReadaheadState();
      const orders: number[] = [];
      const target = new Uint8Array(16 * KiB);
      for (let pos = 0; pos < sizeBytes; pos += target.length) {
        const done = await iomapRead(file.file, pos, target, { ops: file.fs.readOps, device: file.fs.device, readahead: state });
        expect(target.subarray(0, done)).toEqual(pattern(sizeBytes, 1).subarray(pos, pos + done));
        orders.push(state.orderPrevious);
      }
      expect(orders[0]).toBeLessThan(orders[orders.length - 1]);
      const mapping = file.file.mapping;
      const eofIndexEnd = Math.ceil(sizeBytes / 4096);
      for (const folio of mapping.folios(0, 2 ** 32)) expect(folio.indexEnd).toBeLessThanOrEqual(eofIndexEnd);
      expect(Math.max(...[...mapping.folios(0, 2 ** 32)].map((folio) => folio.order))).toBeGreaterThanOrEqual(4);
    });
  });
});

describe('iomap buffered write', () => {
  it('re-maps when the cookie went stale between begin() and the folio lock', async () => {
    await withFakeFs({}, async ({ createFile, fs }) => {
      const file = createFile();
      let bumps = 0;
      fs.onBegin = (inode) => {
        if (bumps++ === 0) queueMicrotask(() => inode.seq++); // a racing writeback/truncate changes the map
      };
      const data = pattern(20 * KiB, 2);
      expect(await file.write(100, data)).toBe(data.length);
      expect(fs.stats.begins).toBeGreaterThanOrEqual(2);
      expect(await file.read(100, data.length)).toEqual(data);
      await file.fsync();
      expect(file.diskImage().subarray(100)).toEqual(data);
    });
  });

  it('a short copy ends the write short: i_size covers only what was copied, the unused reservation is punched', async () => {
    await withFakeFs({}, async ({ createFile, fs }) => {
      const file = createFile({ orderMax: 0 });
      const data = new FaultingBytes(16 * KiB, 2); // the third folio's copy faults
      const done = await iomapWrite(file.file, 0, data, { ops: fs.writeOps, device: fs.device });
      expect(done).toBe(8 * KiB);
      expect(file.sizeBytes).toBe(8 * KiB);
      expect(fs.reservedBlocks).toBe(2);
      expect(fs.lookup(file.file, 8 * KiB, 8 * KiB).type).toBe(IomapType.HOLE);
      // Nothing copied at all: the error itself.
      await expect(iomapWrite(file.file, 0, new FaultingBytes(4 * KiB, 0), { ops: fs.writeOps, device: fs.device })).rejects.toThrow('copy fault');
    });
  });

  it('read-modify-writes a partial block over MAPPED data that is not cached', async () => {
    await withFakeFs({}, async ({ createFile }) => {
      const file = createFile();
      const data = pattern(8 * KiB, 3);
      await file.write(0, data);
      await file.fsync();
      expect(file.dropCache()).toBeGreaterThan(0);
      await file.write(1000, new Uint8Array(10).fill(7));
      const expected = data.slice();
      expected.fill(7, 1000, 1010);
      expect(await file.read(0, 8 * KiB)).toEqual(expected);
    });
  });
});

describe('iomap writeback', () => {
  it('allocates the delayed extent whole as UNWRITTEN, merges contiguous folios into one ioend, converts at completion', async () => {
    await withFakeFs({}, async ({ createFile, fs }) => {
      const file = createFile({ orderMax: 0 });
      await file.write(0, pattern(32 * KiB, 4));
      expect(fs.lookup(file.file, 0, 32 * KiB).type).toBe(IomapType.DELALLOC);
      await file.fsync();
      const ioends = fs.stats.ioendsCompleted;
      expect(ioends).toHaveLength(1);
      expect(ioends[0]).toMatchObject({ offsetBytes: 0, lengthBytes: 32 * KiB, type: IomapType.UNWRITTEN });
      expect(fs.stats.mapBlocksCalls).toBe(1);
      expect(fs.lookup(file.file, 0, 32 * KiB)).toMatchObject({ type: IomapType.MAPPED, lengthBytes: 32 * KiB });
      expect(file.file.diskSizeBytes).toBe(32 * KiB);
    });
  });

  it('sort+merge joins only same-type, logically and physically contiguous ioends', () => {
    const inode = {} as Ioend['inode'];
    const make = (offsetBytes: number, addrBytes: number, type: IomapType = IomapType.UNWRITTEN): Ioend =>
      ({ inode, offsetBytes, lengthBytes: 4096, addrBytes, type, pieces: [{ ptr: 1_000_000 + offsetBytes, lengthBytes: 4096 }] });
    const merged = iomapSortMergeIoends([make(8192, 8192), make(0, 0), make(4096, 4096), make(12288, 40960), make(16384, 45056, IomapType.MAPPED)]);
    expect(merged.map((ioend) => [ioend.offsetBytes, ioend.lengthBytes, ioend.pieces.length])).toEqual([[0, 12288, 1], [12288, 4096, 1], [16384, 4096, 1]]);
  });

  it('zeroes the EOF folio past i_size before writing it', async () => {
    await withFakeFs({}, async ({ createFile, fs, device }) => {
      const file = createFile();
      await file.write(0, pattern(1000, 5));
      const folio = file.file.mapping.lookup(0)!;
      folio.bytes().fill(0xab, 1000); // an mmap store past EOF
      await file.fsync();
      const { addrBytes } = fs.lookup(file.file, 0, 4096);
      const block = diskBytes(device, addrBytes, 4096);
      expect(block.subarray(0, 1000)).toEqual(pattern(1000, 5));
      expect(block.subarray(1000)).toEqual(new Uint8Array(4096 - 1000));
    });
  });

  it('records a device write error on the mapping and fsync reports EIO once', async () => {
    let failWrites = false;
    await withFakeFs({ wrapDevice: (device) => flaky(device, () => failWrites) }, async ({ createFile }) => {
      const file = createFile();
      await file.write(0, pattern(8 * KiB, 6));
      failWrites = true;
      const error = await file.fsync().then(() => null, (e: unknown) => e);
      expect(error).toBeInstanceOf(FsError);
      expect((error as FsError).code).toBe('EIO');
      failWrites = false;
      await file.fsync();
    });
  });
});

describe('iomap zero range and truncate', () => {
  it('flushes dirty cache over an UNWRITTEN range before zeroing its partial blocks', async () => {
    await withFakeFs({}, async ({ createFile, fs }) => {
      const file = createFile();
      await file.fallocate(0, 8 * KiB, false);
      const data = pattern(8 * KiB, 7);
      await file.write(0, data); // dirty cache over UNWRITTEN blocks
      expect(fs.lookup(file.file, 0, 4096).type).toBe(IomapType.UNWRITTEN);
      await iomapZeroRange(file.file, 100, 200, file.zero);
      const expected = data.slice();
      expected.fill(0, 100, 300);
      expect(fs.lookup(file.file, 0, 4096).type).toBe(IomapType.MAPPED); // written back first
      expect(await file.read(0, 8 * KiB)).toEqual(expected);
      await file.fsync();
      file.dropCache();
      expect(await file.read(0, 8 * KiB)).toEqual(expected);
      expect(file.diskImage()).toEqual(expected);
    });
  });

  it('skips a HOLE or UNWRITTEN range with no dirty cache (no folio, no flush)', async () => {
    await withFakeFs({}, async ({ createFile, fs }) => {
      const file = createFile();
      await file.fallocate(0, 8 * KiB, false);
      await iomapZeroRange(file.file, 100, 6000, file.zero);
      expect(file.file.mapping.folioCount).toBe(0);
      expect(fs.stats.mapBlocksCalls).toBe(0);
    });
  });

  it('never raises i_size, even zeroing past EOF', async () => {
    await withFakeFs({}, async ({ createFile }) => {
      const file = createFile();
      await file.write(0, pattern(1000, 8));
      await iomapZeroRange(file.file, 500, 10_000, file.zero);
      expect(file.sizeBytes).toBe(1000);
      expect(await file.read(0, 1000)).toEqual(new Uint8Array(1000).fill(0, 500).map((_, i) => (i < 500 ? pattern(1000, 8)[i] : 0)));
    });
  });

  it('truncate down makes the zeroed tail durable; growing again reads zeros from the disk', async () => {
    await withFakeFs({}, async ({ createFile }) => {
      const file = createFile();
      const data = pattern(12 * KiB, 9);
      await file.write(0, data);
      await file.fsync();
      await file.truncate(5000);
      file.dropCache();
      await file.truncate(12 * KiB);
      const expected = new Uint8Array(12 * KiB);
      expected.set(data.subarray(0, 5000));
      expect(await file.read(0, 12 * KiB)).toEqual(expected);
    });
  });

  it('page_mkwrite refuses a folio past EOF and dirties the in-size blocks of one inside', async () => {
    await withFakeFs({}, async ({ createFile, fs }) => {
      const file = createFile();
      await file.truncate(6000);
      await expect(iomapPageMkwrite(file.file, 8192, { ops: fs.writeOps, device: fs.device })).rejects.toThrow(FsError);
      const folio = await iomapPageMkwrite(file.file, 4096, { ops: fs.writeOps, device: fs.device });
      expect(folio.isDirty()).toBe(true);
      expect(fs.lookup(file.file, 4096, 4096).type).toBe(IomapType.DELALLOC);
      folio.unlock();
      folio.put();
    });
  });
});

/** A source buffer whose copy "faults" (like copy_from_user) from the Nth folio-sized subarray on. */
class FaultingBytes extends Uint8Array {
  private calls = 0;
  constructor(length: number, private readonly faultAt: number) {
    super(length);
  }
  override subarray(begin?: number, end?: number): Uint8Array<ArrayBuffer> {
    if (this.calls++ >= this.faultAt) throw new Error('copy fault');
    return new Uint8Array(this.buffer as ArrayBuffer, this.byteOffset + (begin ?? 0), (end ?? this.length) - (begin ?? 0));
  }
}

function flaky(device: MemoryDevice, failWrites: () => boolean): BlockDevice {
  return {
    sizeBytes: device.sizeBytes, sectorSizeBytes: device.sectorSizeBytes, readOnly: false,
    read: (offset, target) => device.read(offset, target),
    write: async (offset, source, options) => {
      if (failWrites()) throw new FsError('EIO', { syscall: 'write' });
      await device.write(offset, source, options);
    },
    flush: () => device.flush(),
    discard: (offset, length) => device.discard(offset, length),
    zeroOut: (offset, length) => device.zeroOut(offset, length),
    close: () => device.close(),
  };
}
