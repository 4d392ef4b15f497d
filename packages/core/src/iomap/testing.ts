/**
 * A fake filesystem for iomap tests (not part of the public API): an in-memory disk
 * (MemoryDevice), a first-fit block allocator, one block map per file whose entries are
 * DELALLOC / UNWRITTEN / MAPPED (absent = HOLE) with a per-file seq counter (the validity
 * cookie), delalloc reserved at write for the whole hole, whole delayed extents allocated
 * as UNWRITTEN by mapBlocks, converted at ioendsCompleted, and an on-disk size raised there.
 *
 * FakeFsFile puts the file operations together the way ext4's iomap path does (write,
 * truncate up/down, punch, zero range, fallocate, mmap store, fsync), so fsx and the unit
 * tests drive exactly the generic code the ext4 side will call.
 *
 * Cost: per-block Map entries (fine for test files of a few MiB).
 */
import { assert } from '../assert.js';
import { MemoryDevice } from '../device/memory-device.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_INDEX_LIMIT } from '../mm/constants.js';
import { type PageCache, type PageCacheOptions, createPageCache } from '../mm/page-cache.js';
import { FsError } from '../vfs/errors.js';
import { type WasmCore, loadWasmCore } from '../wasm/core.js';
import { type ReadaheadState, createReadaheadState, iomapRead } from './buffered-read.js';
import { iomapWrite } from './buffered-write.js';
import { roundDown, roundUp } from './folio-io.js';
import { iomapPageMkwrite } from './mkwrite.js';
import {
  type Ioend, type Iomap, IomapFlags, type IomapInode, IomapOp, type IomapOps, IomapType, type WritebackOps,
} from './types.js';
import { type IomapWritebackOptions, iomapCacheWritebackOps, iomapWriteAndWait, writebackErrorCheck } from './writeback.js';
import { type IomapZeroOptions, iomapTruncatePage, iomapZeroRange, truncatePagecache, truncatePagecacheRange } from './zero.js';
import type { AddressSpace } from '../mm/mapping.js';

type BlockType = typeof IomapType.DELALLOC | typeof IomapType.UNWRITTEN | typeof IomapType.MAPPED;

interface BlockState {
  type: BlockType;
  /** Physical block (−1 for DELALLOC). */
  physical: number;
}

/** Longest mapping begin() returns (blocks). */
const MAPPING_BLOCKS_MAX = 4096;

export class FakeFile implements IomapInode {
  sizeBytes = 0;
  /** The size the disk's inode holds (i_disksize): raised at writeback completion. */
  diskSizeBytes = 0;
  /** Mapping sequence number (ES seq): any map change bumps it. */
  seq = 1;
  readonly blocks = new Map<number, BlockState>();
  constructor(readonly mapping: AddressSpace, readonly blockSizeBytes: number) {}
}

export interface FakeFsStats {
  begins: number;
  staleRemaps: number;
  mapBlocksCalls: number;
  ioendsCompleted: Ioend[];
  reservedBlocks: number;
}

export class FakeFs {
  readonly blockCount: number;
  readonly used: Uint8Array;
  reservedBlocks = 0;
  private allocGoal = 0;
  readonly stats: FakeFsStats = { begins: 0, staleRemaps: 0, mapBlocksCalls: 0, ioendsCompleted: [], reservedBlocks: 0 };
  /** Test hook: called at the start of every begin() (e.g. to bump seq and force a stale cookie). */
  onBegin: ((file: FakeFile, offsetBytes: number, op: number) => void) | null = null;

  readonly readOps: IomapOps;
  readonly writeOps: IomapOps;
  readonly writebackOps: WritebackOps;

  constructor(readonly device: BlockDevice, readonly blockBytes: number) {
    this.blockCount = Math.floor(device.sizeBytes / blockBytes);
    this.used = new Uint8Array(this.blockCount);
    const valid = (inode: IomapInode, iomap: Iomap): boolean => iomap.validityCookie === (inode as FakeFile).seq;
    this.readOps = { begin: async (inode, offset, length, op) => this.lookup(inode as FakeFile, offset, length, op), valid };
    this.writeOps = {
      begin: async (inode, offset, length, op) => this.beginWrite(inode as FakeFile, offset, length, op),
      end: async (inode, offset, length, done, op, iomap) => this.endWrite(inode as FakeFile, offset, length, done, iomap),
      valid,
    };
    this.writebackOps = {
      mapBlocks: async (inode, offset, length) => this.mapBlocks(inode as FakeFile, offset, length),
      ioendsCompleted: async (ioends) => this.ioendsCompleted(ioends),
      valid,
    };
  }

  // ─── Mapping ───

  /** The run at offsetBytes of blocks alike (same type, physically contiguous), capped at the request. */
  lookup(file: FakeFile, offsetBytes: number, lengthBytes: number, op: number = IomapOp.READ): Iomap {
    this.stats.begins++;
    this.onBegin?.(file, offsetBytes, op);
    const bs = this.blockBytes;
    const first = Math.floor(offsetBytes / bs);
    const limit = Math.min(Math.ceil((offsetBytes + Math.max(lengthBytes, 1)) / bs), first + MAPPING_BLOCKS_MAX);
    const state = file.blocks.get(first);
    let end = first + 1;
    while (end < limit && alike(state, file.blocks.get(end), end - first)) end++;
    return {
      offsetBytes: first * bs, lengthBytes: (end - first) * bs,
      type: state === undefined ? IomapType.HOLE : state.type,
      addrBytes: state === undefined || state.type === IomapType.DELALLOC ? -1 : state.physical * bs,
      flags: 0, validityCookie: file.seq,
    };
  }

  private beginWrite(file: FakeFile, offsetBytes: number, lengthBytes: number, op: number): Iomap {
    const iomap = this.lookup(file, offsetBytes, lengthBytes, op);
    if (iomap.type !== IomapType.HOLE || (op & IomapOp.ZERO) !== 0 || (op & IomapOp.WRITE) === 0) return iomap;
    // Reserve the whole hole run at once (multi-block delalloc).
    const first = iomap.offsetBytes / this.blockBytes;
    const count = iomap.lengthBytes / this.blockBytes;
    if (this.freeCount() - this.reservedBlocks < count) throw new FsError('ENOSPC', { syscall: 'write' });
    for (let b = first; b < first + count; b++) file.blocks.set(b, { type: IomapType.DELALLOC, physical: -1 });
    this.reservedBlocks += count;
    file.seq++;
    return { ...iomap, type: IomapType.DELALLOC, flags: IomapFlags.NEW, validityCookie: file.seq };
  }

  // A short write punches the reservation of the new delayed blocks it did not reach.
  private endWrite(file: FakeFile, offsetBytes: number, lengthBytes: number, doneBytes: number, iomap: Iomap): void {
    if ((iomap.flags & IomapFlags.NEW) === 0 || doneBytes >= lengthBytes) return;
    const bs = this.blockBytes;
    const from = Math.ceil((offsetBytes + doneBytes) / bs);
    const to = (iomap.offsetBytes + iomap.lengthBytes) / bs;
    this.releaseBlocks(file, from, to, (state) => state.type === IomapType.DELALLOC);
  }

  /** Writeback's mapping: a delayed extent is allocated whole, as UNWRITTEN. */
  mapBlocks(file: FakeFile, offsetBytes: number, dirtyLengthBytes: number): Iomap {
    this.stats.mapBlocksCalls++;
    const bs = this.blockBytes;
    const block = Math.floor(offsetBytes / bs);
    const state = file.blocks.get(block);
    if (state?.type === IomapType.DELALLOC) {
      let first = block;
      while (file.blocks.get(first - 1)?.type === IomapType.DELALLOC) first--;
      let end = block + 1;
      while (file.blocks.get(end)?.type === IomapType.DELALLOC) end++;
      for (let at = first; at < end;) {
        const run = this.allocate(end - at, true);
        for (let i = 0; i < run.count; i++) file.blocks.set(at + i, { type: IomapType.UNWRITTEN, physical: run.physical + i });
        at += run.count;
      }
      file.seq++;
    }
    // Like ext4: map as far as the extent goes (not just the dirty run), so later folios reuse it.
    const iomap = this.lookup(file, offsetBytes, Math.max(dirtyLengthBytes, MAPPING_BLOCKS_MAX * bs));
    this.stats.begins--;
    assert(iomap.type !== IomapType.DELALLOC, 'mapBlocks allocated the delayed extent');
    return iomap;
  }

  ioendsCompleted(ioends: readonly Ioend[]): void {
    const bs = this.blockBytes;
    for (const ioend of ioends) {
      this.stats.ioendsCompleted.push(ioend);
      if (ioend.error !== undefined) continue;
      const file = ioend.inode as FakeFile;
      const first = ioend.offsetBytes / bs;
      const physicalFirst = ioend.addrBytes / bs;
      let changed = false;
      for (let i = 0; i < ioend.lengthBytes / bs; i++) {
        const state = file.blocks.get(first + i);
        if (state?.type === IomapType.UNWRITTEN && state.physical === physicalFirst + i) {
          state.type = IomapType.MAPPED;
          changed = true;
        }
      }
      if (changed) file.seq++;
      const end = ioend.offsetBytes + ioend.lengthBytes;
      file.diskSizeBytes = Math.max(file.diskSizeBytes, Math.min(end, file.sizeBytes));
    }
  }

  // ─── Block-range operations (fallocate, punch, truncate) ───

  /** Allocate UNWRITTEN blocks for the holes of [first, end) (fallocate; delayed blocks stay delayed). */
  preallocate(file: FakeFile, first: number, end: number): void {
    for (let at = first; at < end;) {
      if (file.blocks.has(at)) {
        at++;
        continue;
      }
      let holeEnd = at + 1;
      while (holeEnd < end && !file.blocks.has(holeEnd)) holeEnd++;
      const run = this.allocate(holeEnd - at, false);
      for (let i = 0; i < run.count; i++) file.blocks.set(at + i, { type: IomapType.UNWRITTEN, physical: run.physical + i });
      at += run.count;
    }
    file.seq++;
  }

  /** Remove blocks [first, end) from the map (free or unreserve). */
  punchBlocks(file: FakeFile, first: number, end: number): void {
    this.releaseBlocks(file, first, end, () => true);
  }

  /** Remove every block at or past `first` (truncate). */
  truncateBlocks(file: FakeFile, first: number): void {
    const beyond = [...file.blocks.keys()].filter((block) => block >= first);
    for (const block of beyond) this.releaseBlocks(file, block, block + 1, () => true);
    file.seq++;
  }

  private releaseBlocks(file: FakeFile, first: number, end: number, which: (state: BlockState) => boolean): void {
    for (let block = first; block < end; block++) {
      const state = file.blocks.get(block);
      if (state === undefined || !which(state)) continue;
      if (state.type === IomapType.DELALLOC) this.reservedBlocks--;
      else this.used[state.physical] = 0;
      file.blocks.delete(block);
    }
    file.seq++;
  }

  private freeCount(): number {
    let free = 0;
    for (const u of this.used) free += u === 0 ? 1 : 0;
    return free;
  }

  // First-fit from the goal: a run of up to `count` free blocks (at least one), or ENOSPC.
  private allocate(count: number, fromReservation: boolean): { physical: number; count: number } {
    for (let probe = 0; probe < this.blockCount; probe++) {
      const start = (this.allocGoal + probe) % this.blockCount;
      if (this.used[start] !== 0) continue;
      let n = 1;
      while (n < count && start + n < this.blockCount && this.used[start + n] === 0) n++;
      this.used.fill(1, start, start + n);
      if (fromReservation) this.reservedBlocks -= n;
      this.allocGoal = start + n;
      return { physical: start, count: n };
    }
    throw new FsError('ENOSPC', { syscall: 'allocate' });
  }
}

// Whether block `next` continues the run that starts with `first` (`distance` blocks on).
function alike(first: BlockState | undefined, next: BlockState | undefined, distance: number): boolean {
  if (first === undefined || next === undefined) return first === next;
  if (first.type !== next.type) return false;
  return first.type === IomapType.DELALLOC || next.physical === first.physical + distance;
}

// ─── The file operations, as ext4's iomap path composes them ───

export interface FakeFsFileOptions {
  /** Default 4096. */
  blockBytes?: number;
  /** Folio order cap for the file (0 = single pages). */
  orderMax?: number;
}

export class FakeFsFile {
  readonly file: FakeFile;
  readonly readahead: ReadaheadState = createReadaheadState();
  readonly writeback: IomapWritebackOptions;
  readonly zero: IomapZeroOptions;
  /** Disk-image checks done by fsync (verifyDisk). */
  diskChecks = 0;

  constructor(readonly fs: FakeFs, readonly cache: PageCache, options: FakeFsFileOptions = {}) {
    const mapping = cache.createMapping({ blockBytes: fs.blockBytes, orderMax: options.orderMax });
    this.file = new FakeFile(mapping, fs.blockBytes);
    this.writeback = { ops: fs.writebackOps, device: fs.device };
    this.zero = { ops: fs.writeOps, device: fs.device, writeback: this.writeback };
  }

  get sizeBytes(): number {
    return this.file.sizeBytes;
  }

  async read(posBytes: number, lengthBytes: number): Promise<Uint8Array> {
    const target = new Uint8Array(Math.max(0, Math.min(lengthBytes, this.file.sizeBytes - posBytes)));
    const done = await iomapRead(this.file, posBytes, target, { ops: this.fs.readOps, device: this.fs.device, readahead: this.readahead });
    assert(done === target.length, 'read returned every byte inside EOF');
    return target;
  }

  async write(posBytes: number, data: Uint8Array): Promise<number> {
    return iomapWrite(this.file, posBytes, data, {
      ops: this.fs.writeOps, device: this.fs.device,
      zeroTail: (pos, length) => iomapZeroRange(this.file, pos, length, this.zero),
    });
  }

  async truncate(sizeBytes: number): Promise<void> {
    const file = this.file;
    if (sizeBytes >= file.sizeBytes) {
      await this.extendTo(sizeBytes);
      return;
    }
    // Zero the new EOF block's tail and make it durable before the smaller size commits.
    await iomapTruncatePage(file, sizeBytes, this.zero);
    file.sizeBytes = sizeBytes;
    await truncatePagecache(file, sizeBytes);
    this.fs.truncateBlocks(file, Math.ceil(sizeBytes / this.fs.blockBytes));
    file.diskSizeBytes = sizeBytes;
  }

  async fallocate(posBytes: number, lengthBytes: number, keepSize: boolean): Promise<void> {
    const bs = this.fs.blockBytes;
    this.fs.preallocate(this.file, Math.floor(posBytes / bs), Math.ceil((posBytes + lengthBytes) / bs));
    if (!keepSize) await this.extendTo(posBytes + lengthBytes);
  }

  async punchHole(posBytes: number, lengthBytes: number): Promise<void> {
    const [first, end] = await this.zeroEdgesAndDropCache(posBytes, posBytes + lengthBytes);
    this.fs.punchBlocks(this.file, first, end);
  }

  async zeroRange(posBytes: number, lengthBytes: number, keepSize: boolean): Promise<void> {
    const endBytes = posBytes + lengthBytes;
    if (!keepSize) await this.extendTo(endBytes);
    const [first, end] = await this.zeroEdgesAndDropCache(posBytes, endBytes);
    // Whole blocks become unwritten (ext4 converts; here: punch, then preallocate).
    this.fs.punchBlocks(this.file, first, end);
    this.fs.preallocate(this.file, first, end);
  }

  /** fsx's mapwrite: grow the file if needed, store through page_mkwrite'd folios, msync. */
  async mapWrite(posBytes: number, data: Uint8Array): Promise<void> {
    const endBytes = posBytes + data.length;
    if (endBytes > this.file.sizeBytes) await this.truncate(endBytes);
    for (let at = posBytes; at < endBytes;) {
      const folio = await iomapPageMkwrite(this.file, at, { ops: this.fs.writeOps, device: this.fs.device });
      const folioEnd = Math.min(endBytes, folio.positionBytes + folio.lengthBytes);
      folio.bytes().set(data.subarray(at - posBytes, folioEnd - posBytes), at - folio.positionBytes);
      folio.unlock();
      folio.put();
      at = folioEnd;
    }
    await iomapWriteAndWait(this.file, posBytes, endBytes, this.writeback);
    writebackErrorCheck(this.file.mapping, 'msync');
  }

  /** Write back and wait for everything, check the writeback error, "commit" the size. */
  async fsync(): Promise<void> {
    await iomapWriteAndWait(this.file, 0, Infinity, this.writeback);
    writebackErrorCheck(this.file.mapping);
  }

  /** Drop every clean folio (echo 1 > drop_caches): later reads come from the disk. */
  dropCache(): number {
    return this.file.mapping.invalidateRange(0, PAGE_INDEX_LIMIT).droppedCount;
  }

  /** The file as the disk alone holds it: [0, diskSize), MAPPED blocks from the device, the rest zeros. */
  diskImage(): Uint8Array {
    const bs = this.fs.blockBytes;
    const image = new Uint8Array(this.file.diskSizeBytes);
    const device = this.fs.device as MemoryDevice;
    for (let block = 0; block * bs < image.length; block++) {
      const state = this.file.blocks.get(block);
      if (state?.type !== IomapType.MAPPED) continue;
      const bytes = new Uint8Array(bs);
      device.readSync(state.physical * bs, bytes);
      image.set(bytes.subarray(0, Math.min(bs, image.length - block * bs)), block * bs);
    }
    return image;
  }

  // Raise the size: the old EOF block's tail zeroed and durable first, then size and disk size (one "transaction").
  private async extendTo(sizeBytes: number): Promise<void> {
    const file = this.file;
    const oldSize = file.sizeBytes;
    if (sizeBytes <= oldSize) return;
    const bs = this.fs.blockBytes;
    if (oldSize % bs !== 0) {
      const tailEnd = Math.min(sizeBytes, roundUp(oldSize, bs));
      await iomapZeroRange(file, oldSize, tailEnd - oldSize, this.zero);
      await iomapWriteAndWait(file, roundDown(oldSize, bs), roundUp(oldSize, bs), this.writeback);
    }
    file.sizeBytes = sizeBytes;
    file.diskSizeBytes = Math.max(file.diskSizeBytes, sizeBytes);
  }

  // Zero the partial edge blocks of [start, end) inside EOF in the cache; drop/zero the cache over the whole blocks; return them.
  private async zeroEdgesAndDropCache(startBytes: number, endBytes: number): Promise<[number, number]> {
    const bs = this.fs.blockBytes;
    const sizeBytes = this.file.sizeBytes;
    // ext4_update_disksize_before_punch: the data that would have raised the disk size at
    // writeback completion is going away, so the size reaches the disk now.
    if (endBytes >= sizeBytes) this.file.diskSizeBytes = Math.max(this.file.diskSizeBytes, sizeBytes);
    const zeroEnd = Math.min(endBytes, sizeBytes);
    const innerStart = roundUp(startBytes, bs);
    // Past EOF the EOF block can go whole: its bytes inside EOF are all in the range.
    const innerEnd = endBytes >= sizeBytes ? Math.max(innerStart, roundUp(endBytes, bs)) : roundDown(endBytes, bs);
    if (startBytes < zeroEnd) {
      if (innerStart >= innerEnd) {
        await iomapZeroRange(this.file, startBytes, zeroEnd - startBytes, this.zero);
      } else {
        if (startBytes < innerStart) await iomapZeroRange(this.file, startBytes, Math.min(innerStart, zeroEnd) - startBytes, this.zero);
        if (innerEnd < zeroEnd) await iomapZeroRange(this.file, innerEnd, zeroEnd - innerEnd, this.zero);
      }
    }
    if (innerStart < innerEnd) await truncatePagecacheRange(this.file, innerStart, innerEnd);
    return [innerStart / bs, Math.max(innerStart, innerEnd) / bs];
  }
}

export interface FakeFsEnv {
  core: WasmCore;
  cache: PageCache;
  device: MemoryDevice;
  fs: FakeFs;
  /** Files created with createFile get the cache's flusher (iomapCacheWritebackOps). */
  createFile(options?: FakeFsFileOptions): FakeFsFile;
}

export interface FakeFsEnvOptions extends Partial<PageCacheOptions> {
  deviceBytes?: number;
  blockBytes?: number;
  /** Wrap the device (e.g. a FaultDevice) before the fs sees it. */
  wrapDevice?: (device: MemoryDevice) => BlockDevice;
}

/** A wasm core, a page cache (with the iomap flusher), a MemoryDevice and a FakeFs; closed after body. */
export async function withFakeFs(options: FakeFsEnvOptions, body: (env: FakeFsEnv) => Promise<void>): Promise<void> {
  const cacheBytesMax = options.cacheBytesMax ?? 4 * 1024 * 1024;
  const maximumPages = Math.ceil((16 * 1024 * 1024 + cacheBytesMax) / 65536);
  const core = loadWasmCore({ maximumPages });
  const cache = createPageCache(core, { ...options, cacheBytesMax });
  const device = MemoryDevice.create({ sizeBytes: options.deviceBytes ?? 16 * 1024 * 1024 });
  const blockBytes = options.blockBytes ?? 4096;
  const fs = new FakeFs(options.wrapDevice?.(device) ?? device, blockBytes);
  const files = new Map<AddressSpace, FakeFsFile>();
  cache.setWritebackOps(iomapCacheWritebackOps((mapping) => files.get(mapping)!.file, { ops: fs.writebackOps, device: fs.device }));
  const env: FakeFsEnv = {
    core, cache, device, fs,
    createFile(fileOptions = {}) {
      const file = new FakeFsFile(fs, cache, { blockBytes, ...fileOptions });
      files.set(file.file.mapping, file);
      return file;
    },
  };
  try {
    await body(env);
  } finally {
    cache.setWritebackOps(null);
    await cache.flush().catch(() => undefined);
    cache.close();
    core.close();
  }
}
