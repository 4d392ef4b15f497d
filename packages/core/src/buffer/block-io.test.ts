/**
 * The generic buffer_head path over a fake filesystem: a MemoryDevice behind a counting
 * device, a per-file block map (DELAY / UNWRITTEN / MAPPED, absent = hole), a sequential
 * allocator, one reserved block per delayed block, and getBlock functions that count their
 * calls. One test per mechanism (getBlock per block, read-modify of partial blocks, merged
 * device reads and writes, holes/unwritten as zeros and the EOF tail, batches ending on
 * null, buffer discard on truncate, zeroing rules, page_mkwrite), then a seeded random
 * run against a model with 1 KiB and 4 KiB blocks and a cache small enough to evict.
 */
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import type { BlockDevice, WriteOptions } from '../device/block-device.js';
import { MemoryDevice } from '../device/memory-device.js';
import { PAGE_BYTES } from '../mm/constants.js';
import type { PageCache } from '../mm/page-cache.js';
import { withPageCache } from '../mm/testing.js';
import { seededUnitRandom } from '../random.js';
import { FsError } from '../vfs/errors.js';
import { blockRead, createBufferReadahead } from './block-read.js';
import {
  type BlockWriteOptions, blockPageMkwrite, blockRangeNeedsWriteback, blockTruncatePage, blockTruncatePagecacheRange,
  blockWrite, blockZeroRange,
} from './block-write.js';
import { type BlockWritepagesOptions, type WritebackBatch, blockCacheWritebackOps, blockWriteAndWait, blockWritebackErrorCheck } from './block-writepages.js';
import { type BlockMap, BufferHeadTable, BufferState, type BufferInode, type GetBlock, HOLE } from './buffer-head.js';

const KiB = 1024;

/** Passes everything to a MemoryDevice and counts reads and writes. */
class CountingDevice implements BlockDevice {
  reads = 0;
  writes = 0;
  failWrites = false;
  constructor(readonly inner: MemoryDevice) {}
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get sectorSizeBytes(): number { return this.inner.sectorSizeBytes; }
  get readOnly(): boolean { return false; }
  read(offsetBytes: number, target: Uint8Array): Promise<void> { this.reads++; return this.inner.read(offsetBytes, target); }
  write(offsetBytes: number, source: Uint8Array, options?: WriteOptions): Promise<void> {
    this.writes++;
    if (this.failWrites) return Promise.reject(new FsError('EIO', { syscall: 'write' }));
    return this.inner.write(offsetBytes, source, options);
  }
  flush(): Promise<void> { return this.inner.flush(); }
  discard(offsetBytes: number, lengthBytes: number): Promise<void> { return this.inner.discard(offsetBytes, lengthBytes); }
  zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> { return this.inner.zeroOut(offsetBytes, lengthBytes); }
  close(): Promise<void> { return this.inner.close(); }
}

type Kind = 'delay' | 'unwritten' | 'mapped';

class FakeFile implements BufferInode {
  sizeBytes = 0;
  readonly blocks = new Map<number, { kind: Kind; pblk: number }>();
  constructor(readonly mapping: import('../mm/mapping.js').AddressSpace, readonly blockSizeBytes: number) {}
}

class FakeFs {
  readonly device: CountingDevice;
  nextFree = 64;
  reserved = 0;
  readonly calls = { read: 0, write: 0, writeback: 0 };
  readonly batches: WritebackBatch[] = [];
  /** getBlock(create) calls one writeback batch may make before answering null. */
  creditsPerBatch = Infinity;
  private credits = Infinity;

  constructor(readonly cache: PageCache, readonly bs: number) {
    this.device = new CountingDevice(MemoryDevice.create({ sizeBytes: 16 * 1024 * KiB }));
  }

  file(): FakeFile {
    return new FakeFile(this.cache.createMapping({ blockBytes: this.bs, orderMax: 0 }), this.bs);
  }

  private static mapOf(block: { kind: Kind; pblk: number } | undefined): BlockMap {
    if (block === undefined) return HOLE;
    if (block.kind === 'delay') return { state: BufferState.DELAY, blocknr: 0 };
    return { state: BufferState.MAPPED | (block.kind === 'unwritten' ? BufferState.UNWRITTEN : 0), blocknr: block.pblk };
  }

  readonly readGetBlock: GetBlock = (inode, lblk) => {
    this.calls.read++;
    return FakeFs.mapOf((inode as FakeFile).blocks.get(lblk));
  };

  /** Delalloc write: a hole reserves one block (answered asynchronously, as a real reservation is). */
  readonly writeGetBlock: GetBlock = async (inode, lblk) => {
    this.calls.write++;
    const file = inode as FakeFile;
    const block = file.blocks.get(lblk);
    if (block !== undefined) return FakeFs.mapOf(block);
    this.reserved++;
    file.blocks.set(lblk, { kind: 'delay', pblk: 0 });
    return { state: BufferState.DELAY | BufferState.NEW, blocknr: 0 };
  };

  readonly writebackOps = {
    getBlock: (async (inode, lblk) => {
      if (this.credits-- <= 0) return null;
      this.calls.writeback++;
      const block = (inode as FakeFile).blocks.get(lblk);
      if (block === undefined) return HOLE;
      if (block.kind === 'delay') {
        block.kind = 'mapped';
        block.pblk = this.nextFree++;
        this.reserved--;
        return { state: BufferState.MAPPED | BufferState.NEW, blocknr: block.pblk };
      }
      block.kind = 'mapped';
      return { state: BufferState.MAPPED, blocknr: block.pblk };
    }) as GetBlock,
    mapBatch: async (_inode: BufferInode, batch: WritebackBatch, body: () => Promise<void>): Promise<void> => {
      this.batches.push(batch);
      this.credits = this.creditsPerBatch;
      await body();
    },
  };

  get writeOptions(): BlockWriteOptions {
    return { getBlock: this.writeGetBlock, readGetBlock: this.readGetBlock, device: this.device };
  }

  get writeback(): BlockWritepagesOptions {
    return { ops: this.writebackOps, device: this.device };
  }

  diskBytes(pblk: number, length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    this.device.inner.readSync(pblk * this.bs, bytes);
    return bytes;
  }

  delayedCount(files: readonly FakeFile[]): number {
    let count = 0;
    for (const file of files) for (const block of file.blocks.values()) if (block.kind === 'delay') count++;
    return count;
  }

  /** The filesystem half of truncate: blocks from ceil(size) go (delayed ones give back their reservation). */
  removeBlocksFrom(file: FakeFile, lblk: number): void {
    for (const [at, block] of [...file.blocks]) {
      if (at < lblk) continue;
      if (block.kind === 'delay') this.reserved--;
      file.blocks.delete(at);
    }
  }
}

async function withFake(options: { bs?: number; cacheBytesMax?: number }, body: (fs: FakeFs) => Promise<void>): Promise<void> {
  await withPageCache({ cacheBytesMax: options.cacheBytesMax ?? 4 * 1024 * KiB }, async (cache) => {
    await body(new FakeFs(cache, options.bs ?? 4 * KiB));
  });
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = ((i * 31 + seed * 7) % 251) + 1;
  return bytes;
}

async function readAll(fs: FakeFs, file: FakeFile, pos = 0, length = file.sizeBytes - pos): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  const done = await blockRead(file, pos, out, { getBlock: fs.readGetBlock, device: fs.device });
  return out.subarray(0, done);
}

describe('buffer heads', () => {
  it('live in typed arrays per arena slot; a folio reusing a freed slot finds none attached', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      const table = BufferHeadTable.of(fs.cache);
      const folio = await file.mapping.getOrCreate(0, 0);
      expect(table.has(folio)).toBe(false);
      await folio.lock();
      table.setMap(folio, 0, { state: BufferState.MAPPED, blocknr: 77 });
      expect(table.snapshot(folio, 0)).toMatchObject({ attached: true, mapped: true, blocknr: 77, delay: false, dirty: false });
      const slot = folio.slot;
      table.detach(folio);
      file.mapping.deleteFolio(folio);
      folio.unlock();
      folio.put();
      const again = await file.mapping.getOrCreate(5, 0);
      expect(again.slot).toBe(slot); // the freed memory is reused …
      expect(table.has(again)).toBe(false); // … without the old buffers
      again.put();
    });
  });
});

describe('blockWrite', () => {
  it('calls getBlock once per block and reserves one block each; writeback maps each delayed block once, in one batch and one merged device write', async () => {
    await withFake({ bs: KiB }, async (fs) => {
      const file = fs.file();
      const data = pattern(10 * KiB, 1);
      expect(await blockWrite(file, 512, data, fs.writeOptions)).toBe(data.length);
      expect(fs.calls.write).toBe(11); // blocks 0..10 at 1 KiB
      expect(fs.reserved).toBe(11);
      expect(file.sizeBytes).toBe(512 + data.length);
      const table = BufferHeadTable.of(fs.cache);
      const first = file.mapping.lookup(0)!;
      expect(table.snapshot(first, 0)).toMatchObject({ delay: true, dirty: true, uptodate: true, new: false, mapped: false });
      // Overwriting asks nothing: the buffers are DELAY already.
      await blockWrite(file, 2000, pattern(100, 2), fs.writeOptions);
      expect(fs.calls.write).toBe(11);
      data.set(pattern(100, 2), 2000 - 512);
      expect(await readAll(fs, file, 512)).toEqual(data);
      expect(fs.device.reads).toBe(0); // new blocks are zero-filled, never read

      const writesBefore = fs.device.writes;
      await blockWriteAndWait(file, 0, Infinity, fs.writeback);
      expect(fs.calls.writeback).toBe(11);
      expect(fs.batches).toHaveLength(1);
      expect(fs.batches[0]).toMatchObject({ mapBlockCount: 11, endBytes: file.sizeBytes });
      await expect(fs.batches[0].written).resolves.toBeUndefined();
      expect(fs.device.writes - writesBefore).toBe(1); // 11 contiguous blocks in contiguous folio memory
      expect(fs.reserved).toBe(0);
      expect(table.snapshot(first, 1)).toMatchObject({ mapped: true, blocknr: file.blocks.get(1)!.pblk, dirty: false, req: false });
      const disk = fs.diskBytes(file.blocks.get(0)!.pblk, 11 * KiB);
      expect(disk.subarray(512, 512 + data.length)).toEqual(data);
      expect(disk.subarray(0, 512)).toEqual(new Uint8Array(512));
    });
  });

  it('reads a written block before a partial overwrite; a new block is zero-filled, not read', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      fs.device.inner.writeSync(300 * 4 * KiB, pattern(4 * KiB, 3));
      file.blocks.set(0, { kind: 'mapped', pblk: 300 });
      file.sizeBytes = 4 * KiB;
      await blockWrite(file, 10, pattern(100, 4), fs.writeOptions);
      expect(fs.device.reads).toBe(1);
      const expected = pattern(4 * KiB, 3);
      expected.set(pattern(100, 4), 10);
      expect(await readAll(fs, file)).toEqual(expected);
      await blockWrite(file, 4 * KiB + 10, pattern(100, 5), fs.writeOptions); // block 1: a hole
      expect(fs.device.reads).toBe(1);
      const tail = await readAll(fs, file, 4 * KiB);
      expect(tail.subarray(0, 10)).toEqual(new Uint8Array(10));
      expect(tail.subarray(10)).toEqual(pattern(100, 5));
    });
  });

  it('a getBlock failure after the first block ends the write short there; at the first block it throws', async () => {
    await withFake({ bs: KiB }, async (fs) => {
      const file = fs.file();
      let allowed = 6;
      const options = { ...fs.writeOptions, getBlock: (async (inode, lblk, create) => {
        if (allowed-- <= 0) throw new FsError('ENOSPC', { syscall: 'write' });
        return fs.writeGetBlock(inode, lblk, create);
      }) as GetBlock };
      expect(await blockWrite(file, 0, pattern(8 * KiB, 6), options)).toBe(6 * KiB);
      expect(file.sizeBytes).toBe(6 * KiB);
      expect(fs.reserved).toBe(6);
      await expect(blockWrite(file, 6 * KiB, pattern(KiB, 7), options)).rejects.toMatchObject({ code: 'ENOSPC' });
      expect(file.sizeBytes).toBe(6 * KiB);
    });
  });
});

describe('blockRead', () => {
  it('maps every block, merges contiguous device reads, reads hole/unwritten as zeros and the EOF tail as zeros; cached pages cost nothing', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      const bs = 4 * KiB;
      fs.device.inner.writeSync(200 * bs, pattern(8 * bs, 8));
      fs.device.inner.writeSync(500 * bs, new Uint8Array(bs).fill(0xee)); // unwritten: stale bytes
      fs.device.inner.writeSync(900 * bs, pattern(bs, 9)); // the EOF block, its tail non-zero on disk
      for (let lblk = 0; lblk < 8; lblk++) file.blocks.set(lblk, { kind: 'mapped', pblk: 200 + lblk });
      file.blocks.set(8, { kind: 'unwritten', pblk: 500 });
      file.blocks.set(10, { kind: 'mapped', pblk: 900 });
      file.sizeBytes = 10 * bs + 100;
      const got = await readAll(fs, file);
      expect(fs.calls.read).toBe(11);
      expect(fs.device.reads).toBe(2); // [200, 208) in one, 900 in another
      expect(got.subarray(0, 8 * bs)).toEqual(pattern(8 * bs, 8));
      expect(got.subarray(8 * bs, 10 * bs)).toEqual(new Uint8Array(2 * bs));
      expect(got.subarray(10 * bs)).toEqual(pattern(bs, 9).subarray(0, 100));
      const eofFolio = file.mapping.lookup(10)!;
      expect(eofFolio.bytes().subarray(100)).toEqual(new Uint8Array(bs - 100));
      await readAll(fs, file);
      expect(fs.calls.read).toBe(11);
      expect(fs.device.reads).toBe(2);
    });
  });

  it('reads ahead on sequential reads (the window doubles) and a later read finds the pages cached', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      const bs = 4 * KiB;
      fs.device.inner.writeSync(1000 * bs, pattern(64 * bs, 10));
      for (let lblk = 0; lblk < 64; lblk++) file.blocks.set(lblk, { kind: 'mapped', pblk: 1000 + lblk });
      file.sizeBytes = 64 * bs;
      const readahead = createBufferReadahead();
      const target = new Uint8Array(bs);
      for (let lblk = 0; lblk < 4; lblk++) {
        await blockRead(file, lblk * bs, target, { getBlock: fs.readGetBlock, device: fs.device, readahead });
        expect(target).toEqual(pattern(64 * bs, 10).subarray(lblk * bs, (lblk + 1) * bs));
      }
      expect(readahead.windowPages).toBe(16); // 1 (a first read is random), 4, 8, 16
      expect(file.mapping.folioCount).toBeGreaterThanOrEqual(16);
      const reads = fs.device.reads;
      await blockRead(file, 8 * bs, target, { getBlock: fs.readGetBlock, device: fs.device });
      expect(fs.device.reads).toBe(reads);
    });
  });
});

describe('blockWritepages', () => {
  it('a getBlock answering null ends the batch there; the next batch goes on; everything is written', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      const data = pattern(10 * 4 * KiB, 11);
      await blockWrite(file, 0, data, fs.writeOptions);
      fs.creditsPerBatch = 3;
      await blockWriteAndWait(file, 0, Infinity, fs.writeback);
      expect(fs.batches.length).toBe(4);
      expect(fs.batches.map((batch) => batch.mapBlockCount)).toEqual([10, 7, 4, 1]);
      expect(fs.calls.writeback).toBe(10);
      expect(fs.reserved).toBe(0);
      for (let lblk = 0; lblk < 10; lblk++) {
        expect(fs.diskBytes(file.blocks.get(lblk)!.pblk, 4 * KiB)).toEqual(data.subarray(lblk * 4 * KiB, (lblk + 1) * 4 * KiB));
      }
      expect(file.mapping.dirtyFolioCount).toBe(0);
    });
  });

  it('a failed device write is recorded once for fsync and rejects the batch\'s written promise; overwrites take no getBlock', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      await blockWrite(file, 0, pattern(8 * KiB, 12), fs.writeOptions);
      await blockWriteAndWait(file, 0, Infinity, fs.writeback);
      const calls = fs.calls.writeback;
      await blockWrite(file, 100, pattern(100, 13), fs.writeOptions);
      fs.device.failWrites = true;
      await blockWriteAndWait(file, 0, Infinity, fs.writeback);
      expect(fs.calls.writeback).toBe(calls); // an overwrite maps nothing
      expect(fs.batches.at(-1)!.mapBlockCount).toBe(0);
      await expect(fs.batches.at(-1)!.written).rejects.toMatchObject({ code: 'EIO' });
      expect(() => blockWritebackErrorCheck(file.mapping)).toThrow(/writeback failed/);
      expect(() => blockWritebackErrorCheck(file.mapping)).not.toThrow();
    });
  });

  it('the page cache\'s flusher reaches it through blockCacheWritebackOps', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      fs.cache.setWritebackOps(blockCacheWritebackOps(() => file, fs.writeback));
      await blockWrite(file, 0, pattern(12 * KiB, 14), fs.writeOptions);
      await fs.cache.syncMapping(file.mapping);
      expect(file.mapping.dirtyFolioCount).toBe(0);
      expect(fs.reserved).toBe(0);
      fs.cache.setWritebackOps(null);
    });
  });
});

describe('truncation and zeroing', () => {
  it('blockTruncatePagecacheRange discards the buffers and dirty bits of whole blocks and keeps the rest (1 KiB blocks)', async () => {
    await withFake({ bs: KiB }, async (fs) => {
      const file = fs.file();
      await blockWrite(file, 0, pattern(4 * KiB, 15), fs.writeOptions);
      await blockTruncatePagecacheRange(file, 1000, 3 * KiB);
      const folio = file.mapping.lookup(0)!;
      const table = BufferHeadTable.of(fs.cache);
      expect(table.snapshot(folio, 0)).toMatchObject({ delay: true, dirty: true });
      expect(table.snapshot(folio, 1)).toMatchObject({ delay: false, mapped: false, dirty: false, uptodate: true });
      expect(table.snapshot(folio, 2)).toMatchObject({ delay: false, dirty: false });
      expect(table.snapshot(folio, 3)).toMatchObject({ delay: true, dirty: true });
      expect(folio.bytes().subarray(1000, 3 * KiB)).toEqual(new Uint8Array(3 * KiB - 1000));
      expect(blockRangeNeedsWriteback(file, KiB, 3 * KiB)).toBe(false);
      expect(blockRangeNeedsWriteback(file, 0, KiB)).toBe(true);
      await blockTruncatePagecacheRange(file, 0, 4 * KiB);
      expect(file.mapping.folioCount).toBe(0);
    });
  });

  it('blockZeroRange leaves holes and clean unwritten blocks alone; zeroes written and delayed data and dirties it', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      const bs = 4 * KiB;
      fs.device.inner.writeSync(700 * bs, pattern(bs, 16));
      file.blocks.set(1, { kind: 'unwritten', pblk: 600 });
      file.blocks.set(2, { kind: 'mapped', pblk: 700 });
      file.sizeBytes = 4 * bs;
      await blockZeroRange(file, 100, 200, fs.writeOptions); // hole
      await blockZeroRange(file, bs + 100, 200, fs.writeOptions); // unwritten, no cache
      expect(file.mapping.folioCount).toBe(0);
      await blockZeroRange(file, 2 * bs + 100, 200, fs.writeOptions); // written
      const expected = pattern(bs, 16);
      expected.fill(0, 100, 300);
      expect(await readAll(fs, file, 2 * bs, bs)).toEqual(expected);
      expect(blockRangeNeedsWriteback(file, 2 * bs, 3 * bs)).toBe(true);
      await blockWrite(file, 3 * bs, pattern(bs, 17), fs.writeOptions); // delayed
      await blockZeroRange(file, 3 * bs + 10, 20, fs.writeOptions);
      const delayed = pattern(bs, 17);
      delayed.fill(0, 10, 30);
      expect(await readAll(fs, file, 3 * bs, bs)).toEqual(delayed);
    });
  });

  it('blockTruncatePage zeroes the tail of the new EOF block and writes that block back', async () => {
    await withFake({}, async (fs) => {
      const file = fs.file();
      await blockWrite(file, 0, pattern(3 * 4 * KiB, 18), fs.writeOptions);
      await blockTruncatePage(file, 4 * KiB + 10, { readGetBlock: fs.readGetBlock, device: fs.device, writeback: fs.writeback });
      const block = file.blocks.get(1)!;
      expect(block.kind).toBe('mapped');
      const disk = fs.diskBytes(block.pblk, 4 * KiB);
      expect(disk.subarray(0, 10)).toEqual(pattern(3 * 4 * KiB, 18).subarray(4 * KiB, 4 * KiB + 10));
      expect(disk.subarray(10)).toEqual(new Uint8Array(4 * KiB - 10));
      expect(file.blocks.get(0)!.kind).toBe('delay'); // only that block was written
    });
  });
});

describe('blockPageMkwrite', () => {
  it('returns the folio locked and uptodate with its blocks inside EOF reserved and dirty; past EOF is EFAULT', async () => {
    await withFake({ bs: KiB }, async (fs) => {
      const file = fs.file();
      file.sizeBytes = 2500;
      const folio = await blockPageMkwrite(file, 100, fs.writeOptions);
      expect(folio.lockedHere).toBe(true);
      expect(folio.isRangeUptodate(0, 4)).toBe(true);
      expect(folio.bytes()).toEqual(new Uint8Array(4 * KiB));
      const table = BufferHeadTable.of(fs.cache);
      for (const block of [0, 1, 2]) expect(table.snapshot(folio, block)).toMatchObject({ delay: true, dirty: true, new: false });
      expect(table.snapshot(folio, 3)).toMatchObject({ delay: false, dirty: false });
      expect(fs.reserved).toBe(3);
      folio.unlock();
      folio.put();
      await expect(blockPageMkwrite(file, 4 * KiB, fs.writeOptions)).rejects.toMatchObject({ code: 'EFAULT' });
    });
  });
});

describe('random operations against a model', () => {
  for (const bs of [KiB, 4 * KiB]) {
    it(`writes, reads, truncates, zeroes, punches, mmap stores, writebacks and evictions match (block ${bs / KiB} KiB, 256 KiB cache)`, async () => {
      await withFake({ bs, cacheBytesMax: 256 * KiB }, async (fs) => {
        const random = seededUnitRandom(0xb4 + bs);
        const file = fs.file();
        fs.cache.setWritebackOps(blockCacheWritebackOps(() => file, fs.writeback));
        const maxBytes = 1024 * KiB;
        const model = new Uint8Array(maxBytes);
        let size = 0;
        for (let step = 0; step < 1500; step++) {
          const op = random();
          if (op < 0.45) {
            const pos = Math.floor(random() * (maxBytes - 64 * KiB));
            const data = pattern(1 + Math.floor(random() * 40 * KiB), step);
            if (pos > size) model.fill(0, size, pos);
            expect(await blockWrite(file, pos, data, {
              ...fs.writeOptions, zeroTail: (at, length) => blockZeroRange(file, at, length, fs.writeOptions),
            })).toBe(data.length);
            model.set(data, pos);
            size = Math.max(size, pos + data.length);
          } else if (op < 0.7) {
            const pos = Math.floor(random() * (size + 1));
            const length = Math.floor(random() * 64 * KiB);
            const got = await readAll(fs, file, pos, Math.min(length, size - pos));
            expect(Buffer.compare(got, model.subarray(pos, Math.min(size, pos + length))), `step ${step}: read at ${pos}`).toBe(0);
          } else if (op < 0.8) {
            const newSize = Math.floor(random() * maxBytes * 0.8);
            if (newSize < size) {
              await blockTruncatePage(file, newSize, { readGetBlock: fs.readGetBlock, device: fs.device, writeback: fs.writeback });
              file.sizeBytes = newSize;
              await blockTruncatePagecacheRange(file, newSize, Infinity);
              fs.removeBlocksFrom(file, Math.ceil(newSize / bs));
            } else {
              const tailEnd = Math.min(newSize, Math.ceil(size / bs) * bs);
              if (tailEnd > size) await blockZeroRange(file, size, tailEnd - size, fs.writeOptions);
              model.fill(0, size, newSize);
              file.sizeBytes = newSize;
            }
            size = newSize;
          } else if (op < 0.84 && size > 0) {
            const pos = Math.floor(random() * size);
            const length = 1 + Math.floor(random() * Math.min(size - pos, 3 * bs));
            await blockZeroRange(file, pos, length, fs.writeOptions);
            model.fill(0, pos, pos + length);
          } else if (op < 0.88 && size > 0) {
            // punch: partial edge blocks zeroed, whole blocks dropped from the cache, then from the "disk"
            const pos = Math.floor(random() * size);
            const end = Math.min(size, pos + 1 + Math.floor(random() * 64 * KiB));
            const innerStart = Math.ceil(pos / bs) * bs;
            const innerEnd = Math.floor(end / bs) * bs;
            if (innerStart >= innerEnd) await blockZeroRange(file, pos, end - pos, fs.writeOptions);
            else {
              if (pos < innerStart) await blockZeroRange(file, pos, innerStart - pos, fs.writeOptions);
              if (innerEnd < end) await blockZeroRange(file, innerEnd, end - innerEnd, fs.writeOptions);
              await blockTruncatePagecacheRange(file, innerStart, innerEnd);
              for (let lblk = innerStart / bs; lblk < innerEnd / bs; lblk++) {
                if (file.blocks.get(lblk)?.kind === 'delay') fs.reserved--;
                file.blocks.delete(lblk);
              }
            }
            model.fill(0, pos, end);
          } else if (op < 0.91 && size > 0) {
            // an mmap store: page_mkwrite, then bytes stored straight into the folio (inside EOF)
            const pos = Math.floor(random() * size);
            const folio = await blockPageMkwrite(file, pos, fs.writeOptions);
            const stop = Math.min(size, folio.positionBytes + folio.lengthBytes, pos + 1 + Math.floor(random() * 3000));
            const data = pattern(stop - pos, step + 1000);
            folio.bytes().set(data, pos - folio.positionBytes);
            folio.unlock();
            folio.put();
            model.set(data, pos);
          } else if (op < 0.96) {
            await blockWriteAndWait(file, 0, Infinity, fs.writeback);
          } else {
            await blockWriteAndWait(file, 0, Infinity, fs.writeback);
            file.mapping.invalidateRange(0, 2 ** 32); // drop the clean cache: the next reads come from the device
          }
          expect(file.sizeBytes).toBe(size);
          expect(fs.reserved).toBe(fs.delayedCount([file]));
          fs.cache.checkInvariants();
        }
        await blockWriteAndWait(file, 0, Infinity, fs.writeback);
        file.mapping.invalidateRange(0, 2 ** 32);
        expect(Buffer.compare(await readAll(fs, file), model.subarray(0, size))).toBe(0);
        expect(fs.reserved).toBe(0);
        expect(fs.cache.stats().evictedFolioCount).toBeGreaterThan(0);
        fs.cache.setWritebackOps(null);
        expect(PAGE_BYTES).toBe(4 * KiB);
      });
    });
  }
});
