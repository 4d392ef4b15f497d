/**
 * ext4/file: a regular file's data operations on a mount — what ext4's file.c, inode.c
 * (setattr size) and extents.c (fallocate, punch, zero range, SEEK_DATA/HOLE, fiemap) do —
 * over one buffered path (data-path.ts: iomap or buffer_head) that owns the cached data.
 *
 *   Ext4Files.open(mount, { buffered, largeFolios, cacheBytes, submit? })
 *     read / write / truncate / fallocate / punchHole / zeroRange / seek / fiemap
 *     mapRead / mapWrite / msync (the mmap emulation: faults through page_mkwrite)
 *     readPinned / writeBegin (folios handed to a client thread that copies: channel/)
 *     fsync / syncAll / evict / close
 *
 * Sizes: i_size (state.sizeBytes) moves in memory with writes; i_disksize
 * (state.diskSizeBytes, the on-disk inode's size) moves only when the data below it is on
 * the device (writeback completion), or here:
 *   - truncate, and fallocate / zero range that extend the file, set both (their new
 *     range reads as zeros on disk: holes or unwritten extents);
 *   - a punch or zero range that reaches EOF first raises i_disksize to i_size
 *     (ext4_update_disksize_before_punch): the dirty data that would have raised it at
 *     writeback completion may be the data being thrown away.
 *
 * Ordering against writeback: cache first (write back what must survive, drop what is
 * going), then the ES tree and the on-disk tree under the inode's write lock, ES first —
 * its seq bump invalidates every mapping writeback holds, and writeback re-maps under the
 * same lock, so no data write can land on a block being freed.
 *
 * Callers (vfs/filesystem.ts) serialise changes to a mount; reads run beside them, under
 * the file's invalidate lock (Linux's invalidate_lock) taken shared: truncate, punch and
 * zero range take it exclusive from the cache drop to the end of the block removal, so a
 * read can never bring a block being freed back into the cache.
 *
 * Cost: a write = the path's write + (at most every TIME_UPDATE_MS) one inode handle for
 * mtime/ctime; fsync = writeback of the file + one journal commit (+ device flush).
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { inlineSubmit, type IoendSubmit } from '../iomap/writeback.js';
import { iomapWriteAbort, iomapWriteBegin, iomapWriteCommit } from '../iomap/buffered-write.js';
import type { Folio } from '../mm/folio.js';
import { createWritebackPool, type WritebackPool } from '../writeback/pool.js';
import { PAGE_BYTES } from '../mm/constants.js';
import { createPageCache, type PageCache } from '../mm/page-cache.js';
import { FsError } from '../vfs/errors.js';
import { loadWasmCore, type WasmCore } from '../wasm/core.js';
import type { BufferedPathName, Ext4DataPath } from './data-path.js';
import { ES_LBLK_LIMIT, EsStatus } from './extents_status.js';
import { LBLK_LIMIT, walkMappings } from './extents.js';
import { extentWriter } from './extents-write.js';
import { isRegular, usesExtents } from './inode.js';
import { createIomapPath } from './iomap_path.js';
import { Ext4IomapInode, chooseWriteOps } from './iomap_ops.js';
import {
  InodeDataLock, MapFlags, MapStatus, writeCredits, forgetInodeState, inodeState, mapBlocks, truncateInodeState, type Ext4InodeState,
} from './map_blocks.js';
import { delallocRelease } from './delalloc.js';
import type { Ext4Mount } from './mount.js';
import { orphanAdd, orphanRemove, ORPHAN_ADD_CREDITS } from './orphan.js';
import { EXTENTS_PER_HANDLE, REMOVE_CREDITS, nowTimestamp, removeBlocksFrom, setRawTime } from './truncate.js';

/** fallocate mode bits (Linux values). */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;
const FALLOC_MODES_KNOWN = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;

/** lseek whence values (Linux). */
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** fiemap extent flags (Linux values). */
export const FIEMAP_EXTENT_LAST = 0x1;
export const FIEMAP_EXTENT_UNKNOWN = 0x2;
export const FIEMAP_EXTENT_DELALLOC = 0x4;
export const FIEMAP_EXTENT_UNWRITTEN = 0x800;
export const FIEMAP_EXTENT_MERGED = 0x1000;

export interface FiemapExtent {
  logicalBytes: number;
  /** Device byte address (0 for delayed extents: not allocated yet). */
  physicalBytes: number;
  lengthBytes: number;
  flags: number;
}

/** Page cache size when the mount options give none. */
export const CACHE_BYTES_DEFAULT = 64 * 1024 * 1024;
/** mtime/ctime of a file being written are stamped at most this often (the kernel's coarse clock). */
export const TIME_UPDATE_MS = 4;
/** Writeback batches up to this size are written on the engine thread (a worker round trip costs about as much as copying 1 MiB). */
export const WRITEBACK_INLINE_BYTES = 1024 * 1024;
/** Blocks preallocated per handle by fallocate. */
const FALLOCATE_CHUNK_BLOCKS = 2048;

export interface Ext4FilesOptions {
  buffered?: BufferedPathName;
  largeFolios?: boolean;
  cacheBytes?: number;
  /**
   * Writeback worker threads (a piscina pool writing ioends from folio memory); 0 = write
   * inline on the engine thread. Default 1 on read-write mounts. The pool starts when a
   * write leaves a megabyte dirty, or at the first writeback batch too large to write
   * inline, so mounts that never write much never start a thread.
   */
  writebackThreads?: number;
  /** Build the buffer_head path (bh_path.ts) — injected so this module does not depend on it. */
  bufferHeadPath?: (mount: Ext4Mount, cache: PageCache, submit: IoendSubmit) => Ext4DataPath;
}

/** Bytes of a file in folio memory, for another thread: [ptr, ptr + lengthBytes) of the wasm memory. */
export interface FolioPiece {
  /** Pinned (and, for a write, locked) by the engine thread until the holder lets go. */
  folio: Folio;
  ptr: number;
  lengthBytes: number;
}

/** readPinned's answer: the pieces hold [posBytes, posBytes + lengthBytes) of the file, in order. */
export interface PinnedRead {
  lengthBytes: number;
  /** i_size when the pieces were taken. */
  sizeBytes: number;
  /** Each folio is pinned once per piece: put() each when the copy is done. */
  pieces: FolioPiece[];
}

/** A write whose copy another thread does (writeBegin): fill the pieces, then commit(). */
export interface FileWriteLease {
  readonly posBytes: number;
  readonly lengthBytes: number;
  readonly pieces: readonly FolioPiece[];
  /** The bytes are in (and published): the blocks turn uptodate and dirty; folios and the file are let go. */
  commit(): void;
  /** The copier is gone: the range is zeroed, then committed (iomapWriteAbort). */
  abort(): void;
}

function checkRange(syscall: string, offsetBytes: number, lengthBytes: number, maxBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) throw new FsError('EINVAL', { syscall, detail: `offset ${offsetBytes}` });
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) throw new FsError('EINVAL', { syscall, detail: `length ${lengthBytes}` });
  if (offsetBytes + lengthBytes > maxBytes) throw new FsError('EFBIG', { syscall, detail: `${offsetBytes} + ${lengthBytes} is past the largest file size ${maxBytes}` });
}

function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

function roundDown(value: number, unit: number): number {
  return Math.floor(value / unit) * unit;
}

export class Ext4Files {
  private readonly stampedAtMs = new WeakMap<Ext4InodeState, number>();
  private readonly invalidateLocks = new WeakMap<Ext4InodeState, InodeDataLock>();
  private closed = false;
  /** Set by open() (the path is built after the object, since the pool's submit closes over it). */
  path!: Ext4DataPath;
  private pool: WritebackPool | undefined;
  private readonly ioBuffers: RegionAllocator;

  private constructor(
    readonly mount: Ext4Mount,
    readonly core: WasmCore,
    readonly cache: PageCache,
    private readonly writebackThreads: number,
  ) {
    const start = roundUp(cache.arena.basePtr + cache.arena.sizeBytes, PAGE_BYTES);
    core.ensureMemoryBytes(start + IO_BUFFER_REGION_BYTES);
    this.ioBuffers = new RegionAllocator(start, IO_BUFFER_REGION_BYTES);
  }

  /**
   * Writeback's device writes: inline below WRITEBACK_INLINE_BYTES, else through the pool
   * (started when a write leaves 1 MiB dirty, at first use, or at mount; inline while its
   * workers boot). A failed ioend leaves its blocks unwritten (zeros) and is
   * reported by fsync as EIO; it also aborts the journal (data_err=abort): the mount
   * refuses further changes rather than carry on past lost data.
   */
  private submitter(): IoendSubmit {
    const device = this.mount.ext4.device;
    const inline = inlineSubmit(device, () => this.core.bytes());
    return async (ioends) => {
      let bytes = 0;
      for (const ioend of ioends) bytes += ioend.lengthBytes;
      if (this.writebackThreads > 0 && bytes > WRITEBACK_INLINE_BYTES && !this.closed) {
        await this.writebackPool().submit(ioends);
      } else {
        await inline(ioends);
      }
      const failed = ioends.find((ioend) => ioend.error !== undefined);
      if (failed !== undefined) {
        this.mount.journal?.abort(`writeback of inode data failed: ${failed.error?.message ?? 'I/O error'}`);
      }
    };
  }

  static open(mount: Ext4Mount, options: Ext4FilesOptions = {}): Ext4Files {
    const cacheBytes = options.cacheBytes ?? CACHE_BYTES_DEFAULT;
    if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 1024 * 1024 || cacheBytes % PAGE_BYTES !== 0 || cacheBytes > 3 * 1024 ** 3) {
      throw new FsError('EINVAL', { syscall: 'mount', detail: `cacheBytes ${cacheBytes}: a multiple of ${PAGE_BYTES} in [1 MiB, 3 GiB]` });
    }
    const buffered = options.buffered ?? 'iomap';
    if (buffered !== 'iomap' && buffered !== 'buffer_head') throw new FsError('EINVAL', { syscall: 'mount', detail: `buffered '${String(buffered)}': iomap or buffer_head` });
    // Own wasm memory per mount: the cache's arena plus the reserved region below it.
    // Own wasm memory per mount: the cache's arena plus the reserved region below it and
    // the I/O buffer region after it. Memories of unmounted filesystems are reused (their
    // pages are already touched: fresh memory costs ~0.5 GiB/s at first touch here).
    const maximumPages = Math.min(65536, Math.ceil((cacheBytes + IO_BUFFER_REGION_BYTES + 32 * 1024 * 1024) / 65536));
    const core = idleCores.get(maximumPages)?.pop() ?? loadWasmCore({ maximumPages });
    maxPagesOf.set(core, maximumPages);
    const cache = createPageCache(core, { cacheBytesMax: cacheBytes });
    const device: BlockDevice = mount.ext4.device;
    const threads = options.writebackThreads ?? (mount.readOnly ? 0 : 1);
    if (!Number.isInteger(threads) || threads < 0 || threads > 16) throw new FsError('EINVAL', { syscall: 'mount', detail: `writebackThreads ${threads}: 0..16` });
    const files = new Ext4Files(mount, core, cache, threads);
    if (buffered === 'buffer_head') {
      if (options.bufferHeadPath === undefined) throw new FsError('ENOTSUP', { syscall: 'mount', detail: 'the buffer_head path is not available' });
      files.path = options.bufferHeadPath(mount, cache, files.submitter());
    } else {
      files.path = createIomapPath({ cache, device, largeFolios: options.largeFolios !== false, submit: files.submitter() });
    }
    return files;
  }

  /**
   * A buffer in the engine's shared wasm memory (the I/O buffer region after the cache):
   * reads into it and writes from it copy with the wasm kernel (memory.copy) instead of
   * TypedArray.set across memories — the fast path the architecture promises callers who
   * want it. Free it with freeBuffer(); ENOMEM-like ENOSPC when the region is full.
   */
  allocBuffer(lengthBytes: number): Buffer {
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes <= 0) throw new FsError('EINVAL', { syscall: 'allocBuffer', detail: `length ${lengthBytes}` });
    const ptr = this.ioBuffers.alloc(roundUp(lengthBytes, PAGE_BYTES));
    if (ptr < 0) throw new FsError('ENOSPC', { syscall: 'allocBuffer', detail: `no ${lengthBytes} bytes free in the ${IO_BUFFER_REGION_BYTES}-byte I/O buffer region` });
    return Buffer.from(this.core.bytes().buffer, ptr, lengthBytes);
  }

  freeBuffer(buffer: Uint8Array): void {
    assert(buffer.buffer === this.core.bytes().buffer, 'the buffer came from allocBuffer');
    this.ioBuffers.free(buffer.byteOffset);
  }

  /** The writeback pool, started on first use. */
  private writebackPool(): WritebackPool {
    this.pool ??= createWritebackPool({ core: this.core, device: this.mount.ext4.device, threads: this.writebackThreads });
    return this.pool;
  }

  /** Start the writeback workers now (if the mount has any) and resolve once they run. */
  async startWriteback(): Promise<void> {
    if (this.writebackThreads === 0 || this.closed) return;
    await this.writebackPool().ready();
  }

  /** Resolves once the writeback pool's workers run (at once if there is no pool yet); until then large batches are written inline. */
  writebackPoolReady(): Promise<void> {
    return this.pool?.ready() ?? Promise.resolve();
  }

  /** The writeback pool's counters (undefined until the pool has started). */
  writebackPoolStats(): ReturnType<WritebackPool['stats']> | undefined {
    return this.pool?.stats();
  }

  /** Largest file size: the extent tree addresses 2^32 blocks. */
  get maxBytes(): number {
    return (LBLK_LIMIT - 1) * this.mount.ext4.blockSizeBytes;
  }

  private get blockBytes(): number {
    return this.mount.ext4.blockSizeBytes;
  }

  async state(ino: number): Promise<Ext4InodeState> {
    assert(!this.closed, 'files are open');
    return inodeState(this.mount, ino);
  }

  /** The live i_size of an inode that has in-memory state (undefined: the disk's is current). */
  liveState(ino: number): Ext4InodeState | undefined {
    return liveStates.get(this.mount)?.get(ino);
  }

  // ─── Data ─────────────────────────────────────────────────────────────────────────────

  async read(ino: number, posBytes: number, target: Uint8Array, readahead?: unknown): Promise<number> {
    checkRange('read', posBytes, 0, Number.MAX_SAFE_INTEGER);
    const state = await this.tracked(ino);
    return this.invalidateLock(state).read(() => this.path.read(state, posBytes, target, readahead));
  }

  /** The file's invalidate lock (see the header). */
  private invalidateLock(state: Ext4InodeState): InodeDataLock {
    let lock = this.invalidateLocks.get(state);
    if (lock === undefined) this.invalidateLocks.set(state, lock = new InodeDataLock());
    return lock;
  }

  async write(ino: number, posBytes: number, source: Uint8Array): Promise<number> {
    checkRange('write', posBytes, source.length, this.maxBytes);
    if (source.length === 0) return 0;
    const state = await this.writable(ino, 'write');
    const done = await this.path.write(state, posBytes, source);
    // A megabyte dirty: writeback will want the workers soon, and one takes ~30 ms to boot
    // (batches meanwhile go inline). Start them now, so the boot overlaps the writes.
    if (this.pool === undefined && this.writebackThreads > 0 && !this.closed && this.cache.dirtyBytes >= WRITEBACK_INLINE_BYTES) this.writebackPool();
    await this.stampTimes(state);
    return done;
  }

  private async writable(ino: number, syscall: string): Promise<Ext4InodeState> {
    const inode = await this.mount.inode(ino);
    if (!isRegular(inode)) throw new FsError('EINVAL', { syscall, detail: `inode ${ino} is not a regular file` });
    if (!usesExtents(inode)) throw new FsError('ENOTSUP', { syscall, detail: `inode ${ino} is block-mapped; only extent-mapped files are written` });
    return this.tracked(ino);
  }

  private async tracked(ino: number): Promise<Ext4InodeState> {
    const state = await this.state(ino);
    let states = liveStates.get(this.mount);
    if (states === undefined) liveStates.set(this.mount, states = new Map());
    states.set(ino, state);
    return state;
  }

  /** mtime = ctime = now in a small handle, unless stamped within TIME_UPDATE_MS. */
  private async stampTimes(state: Ext4InodeState, force = false): Promise<void> {
    const nowMs = Date.now();
    const last = this.stampedAtMs.get(state);
    if (!force && last !== undefined && nowMs - last < TIME_UPDATE_MS) return;
    this.stampedAtMs.set(state, nowMs);
    const now = nowTimestamp();
    await this.mount.transact(1, (h) => this.mount.writeInode(h, state.ino, (raw) => {
      setRawTime(raw, 'mtime', now);
      setRawTime(raw, 'ctime', now);
    }), 'write');
  }

  /** The size on disk and in memory, with times, in one handle (plus `more` in it). */
  private async setSizes(state: Ext4InodeState, sizeBytes: number, diskSizeBytes: number, syscall: string): Promise<void> {
    const now = nowTimestamp();
    await this.mount.transact(1, (h) => this.mount.writeInode(h, state.ino, (raw) => {
      raw.size = diskSizeBytes;
      setRawTime(raw, 'mtime', now);
      setRawTime(raw, 'ctime', now);
    }), syscall);
    state.sizeBytes = sizeBytes;
    state.diskSizeBytes = diskSizeBytes;
    this.stampedAtMs.set(state, Date.now());
  }

  /** Raise i_disksize to i_size now (ext4_update_disksize_before_punch). */
  private async diskSizeToSize(state: Ext4InodeState, syscall: string): Promise<void> {
    if (state.diskSizeBytes >= state.sizeBytes) return;
    await this.setSizes(state, state.sizeBytes, state.sizeBytes, syscall);
  }

  /**
   * The bytes of the old EOF block past oldSize read as zeros once the size grows: zeroed
   * in the cache and written back before the caller commits the larger size, so a crash
   * can never show whatever the disk held past the old EOF (the fake-fs twin's extendTo).
   */
  private async zeroOldEofTail(state: Ext4InodeState, newSizeBytes: number): Promise<void> {
    const oldSize = state.sizeBytes;
    const bs = this.blockBytes;
    if (oldSize % bs === 0 || newSizeBytes <= oldSize) return;
    const tailEnd = Math.min(newSizeBytes, roundUp(oldSize, bs));
    await this.path.zeroPartialBlock(state, oldSize, tailEnd - oldSize);
    await this.path.writeAndWait(state, roundDown(oldSize, bs), roundUp(oldSize, bs), 'ftruncate');
  }

  // ─── Truncate ─────────────────────────────────────────────────────────────────────────

  async truncate(ino: number, sizeBytes: number): Promise<void> {
    checkRange('ftruncate', sizeBytes, 0, this.maxBytes);
    const state = await this.writable(ino, 'ftruncate');
    const oldSize = state.sizeBytes;
    if (sizeBytes >= oldSize) {
      await this.zeroOldEofTail(state, sizeBytes);
      await this.setSizes(state, sizeBytes, Math.max(state.diskSizeBytes, sizeBytes), 'ftruncate');
      return;
    }
    // Shrink: the new EOF block's tail zeroed and durable, then the cache past it dropped,
    // the ES tree and its reservations forgotten, and the blocks freed via the orphan list.
    await this.path.truncatePage(state, sizeBytes);
    await this.invalidateLock(state).write(() => this.shrink(state, ino, sizeBytes));
    this.stampedAtMs.set(state, Date.now());
  }

  private async shrink(state: Ext4InodeState, ino: number, sizeBytes: number): Promise<void> {
    state.sizeBytes = sizeBytes;
    await this.path.dropCacheRange(state, sizeBytes, Infinity);
    const endLblk = Math.ceil(sizeBytes / this.blockBytes);
    const { mount } = this;
    await state.lock.write(async () => {
      const released = state.es.remove(endLblk, ES_LBLK_LIMIT - endLblk);
      if (released > 0) delallocRelease(state, released);
      const now = nowTimestamp();
      await mount.transact(1 + ORPHAN_ADD_CREDITS, async (h) => {
        await orphanAdd(mount, h, ino);
        await mount.writeInode(h, ino, (raw) => {
          raw.size = sizeBytes;
          setRawTime(raw, 'mtime', now);
          setRawTime(raw, 'ctime', now);
        });
      }, 'ftruncate');
      state.diskSizeBytes = sizeBytes;
      await removeBlocksFrom(mount, ino, endLblk, (h) => orphanRemove(mount, h, ino, 0), 'ftruncate');
    });
  }

  // ─── fallocate ────────────────────────────────────────────────────────────────────────

  async fallocate(ino: number, mode: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    if (!Number.isInteger(mode) || (mode & ~FALLOC_MODES_KNOWN) !== 0) throw new FsError('ENOTSUP', { syscall: 'fallocate', detail: `mode 0x${String(mode.toString(16))}` });
    checkRange('fallocate', offsetBytes, lengthBytes, this.maxBytes);
    if (lengthBytes <= 0) throw new FsError('EINVAL', { syscall: 'fallocate', detail: `length ${lengthBytes}` });
    const keepSize = (mode & FALLOC_FL_KEEP_SIZE) !== 0;
    if ((mode & FALLOC_FL_PUNCH_HOLE) !== 0) {
      if (!keepSize || (mode & FALLOC_FL_ZERO_RANGE) !== 0) throw new FsError('EINVAL' , { syscall: 'fallocate', detail: 'PUNCH_HOLE goes with KEEP_SIZE only' });
      await this.punchHole(ino, offsetBytes, lengthBytes);
      return;
    }
    if ((mode & FALLOC_FL_ZERO_RANGE) !== 0) {
      await this.zeroRange(ino, offsetBytes, lengthBytes, keepSize);
      return;
    }
    const state = await this.writable(ino, 'fallocate');
    const bs = this.blockBytes;
    await this.preallocate(state, Math.floor(offsetBytes / bs), Math.ceil((offsetBytes + lengthBytes) / bs));
    const endBytes = offsetBytes + lengthBytes;
    if (!keepSize && endBytes > state.sizeBytes) {
      await this.zeroOldEofTail(state, endBytes);
      await this.setSizes(state, endBytes, Math.max(state.diskSizeBytes, endBytes), 'fallocate');
    }
  }

  /** Allocate the holes of [startLblk, endLblk) as unwritten extents (delayed blocks stay delayed). */
  private async preallocate(state: Ext4InodeState, startLblk: number, endLblk: number): Promise<void> {
    const { mount } = this;
    for (let lblk = startLblk; lblk < endLblk;) {
      const len = Math.min(FALLOCATE_CHUNK_BLOCKS, endLblk - lblk);
      const m = await mapBlocks(mount, state, lblk, len, MapFlags.CREATE | MapFlags.UNWRIT_EXT);
      assert(m.lblk === lblk && m.len >= 1, 'mapBlocks makes progress');
      lblk += m.len;
    }
  }

  async punchHole(ino: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    checkRange('fallocate', offsetBytes, lengthBytes, this.maxBytes);
    const state = await this.writable(ino, 'fallocate');
    const sizeBytes = state.sizeBytes;
    if (offsetBytes >= sizeBytes || lengthBytes === 0) return;
    const bs = this.blockBytes;
    // Past EOF the punch stops after the EOF page (ext4_punch_hole): blocks preallocated
    // further out stay.
    const endBytes = Math.min(offsetBytes + lengthBytes, sizeBytes + PAGE_BYTES - (sizeBytes % PAGE_BYTES));
    await this.path.writeAndWait(state, offsetBytes, endBytes, 'fallocate');
    if (endBytes >= sizeBytes) await this.diskSizeToSize(state, 'fallocate');
    await this.invalidateLock(state).write(async () => {
      const [firstLblk, endLblk] = await this.zeroEdges(state, offsetBytes, endBytes);
      if (firstLblk < endLblk) await this.removeBlocks(state, firstLblk, endLblk, 'fallocate');
    });
    await this.stampTimes(state, true);
  }

  async zeroRange(ino: number, offsetBytes: number, lengthBytes: number, keepSize: boolean): Promise<void> {
    checkRange('fallocate', offsetBytes, lengthBytes, this.maxBytes);
    const state = await this.writable(ino, 'fallocate');
    if (lengthBytes === 0) return;
    const endBytes = offsetBytes + lengthBytes;
    await this.path.writeAndWait(state, offsetBytes, endBytes, 'fallocate');
    if (endBytes >= state.sizeBytes) await this.diskSizeToSize(state, 'fallocate');
    await this.invalidateLock(state).write(async () => {
      const [firstLblk, endLblk] = await this.zeroEdges(state, offsetBytes, endBytes);
      if (firstLblk < endLblk) {
        // Whole blocks: out of the tree, then back as unwritten extents (read as zeros, stay allocated).
        await this.removeBlocks(state, firstLblk, endLblk, 'fallocate');
        await this.preallocate(state, firstLblk, endLblk);
      }
    });
    if (!keepSize && endBytes > state.sizeBytes) {
      await this.zeroOldEofTail(state, endBytes);
      await this.setSizes(state, endBytes, Math.max(state.diskSizeBytes, endBytes), 'fallocate');
    } else {
      await this.stampTimes(state, true);
    }
  }

  /**
   * Zero the partial edge blocks of [start, end) inside EOF in the cache, drop the cache
   * over the whole blocks, and return those blocks [first, end). Past EOF the EOF block
   * goes whole: its bytes inside EOF are all in the range.
   */
  private async zeroEdges(state: Ext4InodeState, startBytes: number, endBytes: number): Promise<[number, number]> {
    const bs = this.blockBytes;
    const sizeBytes = state.sizeBytes;
    const zeroEnd = Math.min(endBytes, sizeBytes);
    const innerStart = roundUp(startBytes, bs);
    const innerEnd = endBytes >= sizeBytes ? Math.max(innerStart, roundUp(endBytes, bs)) : roundDown(endBytes, bs);
    if (startBytes < zeroEnd) {
      if (innerStart >= innerEnd) {
        await this.zeroWithinBlocks(state, startBytes, zeroEnd);
      } else {
        if (startBytes < innerStart) await this.zeroWithinBlocks(state, startBytes, Math.min(innerStart, zeroEnd));
        if (innerEnd < zeroEnd) await this.zeroWithinBlocks(state, innerEnd, zeroEnd);
      }
    }
    if (innerStart < innerEnd) await this.path.dropCacheRange(state, innerStart, innerEnd);
    return [innerStart / bs, Math.max(innerStart, innerEnd) / bs];
  }

  /** zeroPartialBlock one block at a time (the contract's unit). */
  private async zeroWithinBlocks(state: Ext4InodeState, startBytes: number, endBytes: number): Promise<void> {
    const bs = this.blockBytes;
    for (let at = startBytes; at < endBytes;) {
      const stop = Math.min(endBytes, roundDown(at, bs) + bs);
      await this.path.zeroPartialBlock(state, at, stop - at);
      at = stop;
    }
  }

  /**
   * Punch [firstLblk, endLblk) out of the ES tree (one HOLE record, reservations
   * released) and the on-disk tree, under the inode's write lock, ES first (see header).
   */
  private async removeBlocks(state: Ext4InodeState, firstLblk: number, endLblk: number, syscall: string): Promise<void> {
    const { mount } = this;
    await state.lock.write(async () => {
      const released = state.es.insert(firstLblk, endLblk - firstLblk, 0, EsStatus.HOLE);
      if (released > 0) delallocRelease(state, released);
      await removeBlocksRange(mount, state.ino, firstLblk, endLblk, syscall);
    });
  }

  // ─── SEEK_DATA / SEEK_HOLE and fiemap ─────────────────────────────────────────────────

  /**
   * lseek: SEEK_SET/CUR/END are the caller's arithmetic (pass the resolved offset with
   * SEEK_SET); SEEK_DATA/SEEK_HOLE walk the mappings. Data = written or delayed blocks,
   * and unwritten blocks with dirty or in-flight cache over them (the kernel looks in the
   * page cache for unwritten extents the same way).
   */
  async seek(ino: number, offsetBytes: number, whence: number): Promise<number> {
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) throw new FsError('EINVAL', { syscall: 'lseek', detail: `offset ${offsetBytes}` });
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FsError('EINVAL', { syscall: 'lseek', detail: `whence ${whence}` });
    const state = await this.tracked(ino);
    const sizeBytes = state.sizeBytes;
    if (offsetBytes >= sizeBytes) throw new FsError('ENXIO', { syscall: 'lseek', detail: `offset ${offsetBytes} is at or past EOF (${sizeBytes})` });
    const bs = this.blockBytes;
    const endLblk = Math.ceil(sizeBytes / bs);
    for (let lblk = Math.floor(offsetBytes / bs); lblk < endLblk;) {
      const m = await mapBlocks(this.mount, state, lblk, endLblk - lblk, 0);
      assert(m.lblk === lblk && m.len >= 1, 'mapBlocks makes progress');
      for (let at = lblk; at < lblk + m.len;) {
        // Unwritten runs are data block by block where the cache holds dirty data.
        let isData: boolean;
        let runEnd = lblk + m.len;
        if (m.status === MapStatus.UNWRITTEN) {
          isData = this.path.hasDirtyOrWriteback(state, at * bs, (at + 1) * bs);
          runEnd = at + 1;
        } else {
          isData = m.status === MapStatus.MAPPED || m.status === MapStatus.DELAYED;
        }
        if (isData === (whence === SEEK_DATA)) return Math.min(sizeBytes, Math.max(offsetBytes, at * bs));
        at = runEnd;
      }
      lblk += m.len;
    }
    if (whence === SEEK_HOLE) return sizeBytes;
    throw new FsError('ENXIO', { syscall: 'lseek', detail: `no data at or after ${offsetBytes}` });
  }

  /** FIEMAP-like report of [offsetBytes, offsetBytes + lengthBytes): neighbours of one kind merge. */
  async fiemap(ino: number, offsetBytes: number, lengthBytes: number): Promise<FiemapExtent[]> {
    checkRange('fiemap', offsetBytes, 0, Number.MAX_SAFE_INTEGER);
    const state = await this.tracked(ino);
    const bs = this.blockBytes;
    const startLblk = Math.floor(offsetBytes / bs);
    const endLblk = Math.min(ES_LBLK_LIMIT, Math.ceil(Math.min(Number.MAX_SAFE_INTEGER, offsetBytes + lengthBytes) / bs));
    const out: FiemapExtent[] = [];
    for (let lblk = startLblk; lblk < endLblk;) {
      const m = await mapBlocks(this.mount, state, lblk, endLblk - lblk, 0);
      assert(m.lblk === lblk && m.len >= 1, 'mapBlocks makes progress');
      if (m.status !== MapStatus.HOLE) {
        const flags = m.status === MapStatus.DELAYED ? FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_UNKNOWN
          : m.status === MapStatus.UNWRITTEN ? FIEMAP_EXTENT_UNWRITTEN : 0;
        const physicalBytes = m.status === MapStatus.DELAYED ? 0 : m.pblk * bs;
        const last = out[out.length - 1];
        if (last !== undefined && last.flags === flags && last.logicalBytes + last.lengthBytes === lblk * bs
          && (flags & FIEMAP_EXTENT_DELALLOC ? true : last.physicalBytes + last.lengthBytes === physicalBytes)) {
          last.lengthBytes += m.len * bs;
        } else {
          out.push({ logicalBytes: lblk * bs, physicalBytes, lengthBytes: m.len * bs, flags });
        }
      }
      lblk += m.len;
    }
    const last = out[out.length - 1];
    if (last !== undefined) last.flags |= FIEMAP_EXTENT_LAST;
    return out;
  }

  // ─── Copies done by another thread (channel/server.ts) ─────────────────────────────────

  /**
   * The cached, uptodate folios holding [posBytes, posBytes + lengthBytes) clamped to
   * i_size, pinned, for a client thread to copy out of: no copy, no lock, no device read.
   * Stops at the first folio that is missing or not uptodate over the range (the caller
   * reads that part through read(), which fills the cache). A pinned folio is never
   * evicted or freed; a truncate racing the copy drops it from the file but its memory
   * stays until the last put(), so the copier reads old bytes, never another file's — as
   * Linux's filemap_read copies from a referenced, unlocked folio.
   */
  async readPinned(ino: number, posBytes: number, lengthBytes: number): Promise<PinnedRead> {
    checkRange('read', posBytes, lengthBytes, Number.MAX_SAFE_INTEGER);
    const state = await this.tracked(ino);
    const sizeBytes = state.sizeBytes;
    const readEnd = Math.min(posBytes + lengthBytes, sizeBytes);
    const mapping = this.path.mappingOf(state);
    const bs = this.blockBytes;
    const pieces: FolioPiece[] = [];
    let at = posBytes;
    // No await from here on: the pieces are one snapshot of the cache.
    while (at < readEnd) {
      const folio = mapping.lookup(Math.floor(at / PAGE_BYTES));
      if (folio === null) break;
      const folioStart = folio.positionBytes;
      const stop = Math.min(readEnd, folioStart + folio.lengthBytes);
      if (!folio.isRangeUptodate(Math.floor((at - folioStart) / bs), Math.ceil((stop - folioStart) / bs))) break;
      pieces.push({ folio: folio.get(), ptr: folio.dataPtr + (at - folioStart), lengthBytes: stop - at });
      at = stop;
    }
    return { lengthBytes: at - posBytes, sizeBytes, pieces };
  }

  /**
   * write() cut at the copy, for a copy another thread does: iomapWriteBegin (folios
   * locked and pinned, i_size raised to the prepared end; see buffered-write.ts) with the
   * file's invalidate lock held shared until commit or abort, so a truncate, punch or
   * zero range waits for the copy instead of dropping folios under it. mtime/ctime are
   * stamped first (Linux's file_modified runs before the copy too). `append` writes at
   * i_size. Short after foliosMax folios or a busy one; the caller goes on from the end.
   * The iomap path only (the buffer_head path has no two-phase write: ENOTSUP).
   */
  async writeBegin(ino: number, posBytes: number, lengthBytes: number, options: { append?: boolean; foliosMax: number }): Promise<FileWriteLease> {
    if (this.path.name !== 'iomap') throw new FsError('ENOTSUP', { syscall: 'write', detail: `no two-phase write on the ${this.path.name} path` });
    checkRange('write', posBytes, lengthBytes, this.maxBytes);
    assert(lengthBytes > 0, 'a two-phase write has bytes');
    const state = await this.writable(ino, 'write');
    const release = await holdShared(this.invalidateLock(state));
    try {
      const startBytes = options.append === true ? state.sizeBytes : posBytes;
      checkRange('write', startBytes, lengthBytes, this.maxBytes);
      await this.stampTimes(state);
      const inode = new Ext4IomapInode(state, this.path.mappingOf(state));
      // The old EOF tail lies past i_size: iomapWrite zeroes it with iomapZeroRange, which is what
      // this path's zeroPartialBlock is.
      const prepared = await iomapWriteBegin(inode, startBytes, lengthBytes, {
        ops: chooseWriteOps(inode), device: this.mount.ext4.device, foliosMax: options.foliosMax,
        zeroTail: (at, length) => this.path.zeroPartialBlock(state, at, length),
      });
      const pieces = prepared.folios.map(({ folio, startBytes: from, endBytes: to }) => ({ folio, ptr: folio.dataPtr + (from - folio.positionBytes), lengthBytes: to - from }));
      let open = true;
      const finish = (how: (p: typeof prepared) => void) => {
        assert(open, 'a write lease ends once');
        open = false;
        how(prepared);
        release();
      };
      return {
        posBytes: startBytes, lengthBytes: prepared.lengthBytes, pieces,
        commit: () => finish(iomapWriteCommit), abort: () => finish(iomapWriteAbort),
      };
    } catch (error) {
      release();
      throw error;
    }
  }

  // ─── mmap emulation ───────────────────────────────────────────────────────────────────

  /**
   * A load through a shared mapping: bytes inside i_size as read() gives them; bytes of
   * the EOF page past i_size as the cache holds them (zeros unless something stored
   * there); anything past the EOF page faults (EFAULT, the SIGBUS).
   */
  async mapRead(ino: number, posBytes: number, lengthBytes: number): Promise<Uint8Array> {
    const state = await this.tracked(ino);
    const sizeBytes = state.sizeBytes;
    const endBytes = posBytes + lengthBytes;
    if (endBytes > roundUp(sizeBytes, PAGE_BYTES)) throw sigbus('mmap read', endBytes - 1, sizeBytes);
    const out = new Uint8Array(lengthBytes);
    const inside = Math.max(0, Math.min(endBytes, sizeBytes) - posBytes);
    if (inside > 0) {
      const done = await this.invalidateLock(state).read(() => this.path.read(state, posBytes, out.subarray(0, inside)));
      assert(done === inside, 'a mapped read inside EOF reads every byte');
    }
    if (inside < lengthBytes) {
      const mapping = this.path.mappingOf(state);
      for (let at = posBytes + inside; at < endBytes;) {
        const folio = mapping.lookup(Math.floor(at / PAGE_BYTES));
        const stop = Math.min(endBytes, roundDown(at, PAGE_BYTES) + PAGE_BYTES);
        const bs = this.blockBytes;
        if (folio !== null && folio.isRangeUptodate(Math.floor((at - folio.positionBytes) / bs), Math.ceil((stop - folio.positionBytes) / bs))) {
          out.set(folio.bytes().subarray(at - folio.positionBytes, stop - folio.positionBytes), at - posBytes);
        }
        at = stop;
      }
    }
    return out;
  }

  /**
   * A store through a shared mapping: per page, page_mkwrite (reserve/allocate, make the
   * folio uptodate and dirty inside i_size), then the store into folio memory. Never
   * changes i_size; bytes stored past EOF in the EOF page stay in the cache (writeback
   * zeroes them, as Linux does). Past the EOF page: EFAULT.
   */
  async mapWrite(ino: number, posBytes: number, data: Uint8Array): Promise<void> {
    const state = await this.writable(ino, 'mmap write');
    const endBytes = posBytes + data.length;
    for (let at = posBytes; at < endBytes;) {
      const sizeBytes = state.sizeBytes;
      if (at >= roundUp(sizeBytes, PAGE_BYTES)) throw sigbus('mmap write', at, sizeBytes);
      const folio = await this.path.pageMkwrite(state, Math.min(at, sizeBytes - 1));
      try {
        const pageEnd = roundDown(at, PAGE_BYTES) + PAGE_BYTES;
        const stop = Math.min(endBytes, pageEnd, folio.positionBytes + folio.lengthBytes);
        folio.bytes().set(data.subarray(at - posBytes, stop - posBytes), at - folio.positionBytes);
        at = stop;
      } finally {
        folio.unlock();
        folio.put();
      }
    }
    await this.stampTimes(state);
  }

  // ─── Durability ───────────────────────────────────────────────────────────────────────

  /** Write back [start, end) of the file and wait (msync, fdatasync without the commit). */
  async writeAndWait(ino: number, startBytes: number, endBytes: number, syscall: string): Promise<void> {
    const state = await this.tracked(ino);
    await this.path.writeAndWait(state, startBytes, endBytes, syscall);
  }

  /** fsync: the file's data written and waited for, then one commit (with a device flush). */
  async fsync(ino: number, syscall = 'fsync'): Promise<void> {
    const state = await this.tracked(ino);
    await this.path.writeAndWait(state, 0, Infinity, syscall);
    if (this.mount.journal !== undefined) await this.mount.sync();
  }

  /** syncfs: every file's data, then one commit. */
  async syncAll(): Promise<void> {
    await this.path.syncAll();
    if (this.mount.journal !== undefined) await this.mount.sync();
  }

  /**
   * The inode is being deleted (last name and last handle gone): its cache and
   * reservations go without writeback; the caller frees its blocks.
   */
  async evict(ino: number): Promise<void> {
    const state = this.liveState(ino) ?? await inodeState(this.mount, ino);
    await this.path.evict(state);
    await truncateInodeState(state, 0);
    forgetInodeState(this.mount, ino);
    liveStates.get(this.mount)?.delete(ino);
  }

  /** Unmount: every file synced (the caller commits), the cache and its memory released. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.path.syncAll();
    this.closed = true;
    await this.path.close();
    await this.pool?.close();
    this.cache.close();
    const maximumPages = maxPagesOf.get(this.core);
    const idle = maximumPages === undefined ? undefined : idleCores.get(maximumPages) ?? [];
    if (maximumPages !== undefined && idle !== undefined && idle.length < IDLE_CORES_MAX) {
      idle.push(this.core);
      idleCores.set(maximumPages, idle);
    } else {
      this.core.close();
    }
    liveStates.delete(this.mount);
  }
}

/** Take `lock` shared and keep it until the returned function is called (a lock held across a client's copy). */
function holdShared(lock: InodeDataLock): Promise<() => void> {
  return new Promise((held) => {
    void lock.read(() => new Promise<void>((release) => held(() => release())));
  });
}

/** Bytes of wasm memory after each mount's cache for allocBuffer(). */
export const IO_BUFFER_REGION_BYTES = 16 * 1024 * 1024;
/** Unmounted filesystems' wasm memories kept for reuse, per size. */
const IDLE_CORES_MAX = 1;
const idleCores = new Map<number, WasmCore[]>();
const maxPagesOf = new WeakMap<WasmCore, number>();

/** First-fit allocator of page-aligned ranges in a fixed region (a few I/O buffers). */
class RegionAllocator {
  /** Free ranges [start, end), sorted, coalesced. */
  private free_: Array<[number, number]>;
  private readonly used = new Map<number, number>();

  constructor(start: number, lengthBytes: number) {
    this.free_ = [[start, start + lengthBytes]];
  }

  alloc(lengthBytes: number): number {
    const at = this.free_.findIndex(([a, b]) => b - a >= lengthBytes);
    if (at < 0) return -1;
    const [a, b] = this.free_[at];
    if (b - a === lengthBytes) this.free_.splice(at, 1);
    else this.free_[at] = [a + lengthBytes, b];
    this.used.set(a, lengthBytes);
    return a;
  }

  free(ptr: number): void {
    const lengthBytes = this.used.get(ptr);
    assert(lengthBytes !== undefined, 'freeBuffer of a buffer allocBuffer gave');
    this.used.delete(ptr);
    this.free_.push([ptr, ptr + lengthBytes]);
    this.free_.sort((x, y) => x[0] - y[0]);
    const merged: Array<[number, number]> = [];
    for (const range of this.free_) {
      const last = merged[merged.length - 1];
      if (last !== undefined && last[1] === range[0]) last[1] = range[1];
      else merged.push([range[0], range[1]]);
    }
    this.free_ = merged;
  }
}

/** States this mount's file layer has handed out (so stat can show the live i_size). */
const liveStates = new WeakMap<Ext4Mount, Map<number, Ext4InodeState>>();

function sigbus(syscall: string, posBytes: number, sizeBytes: number): FsError {
  return new FsError('EFAULT', { syscall, detail: `access at byte ${posBytes} is past the page holding EOF (${sizeBytes}): SIGBUS` });
}

/**
 * Free the on-disk blocks of [firstLblk, endLblk) in bounded handles (EXTENTS_PER_HANDLE
 * extents each, from the end), the punch counterpart of truncate's removeBlocksFrom.
 */
export async function removeBlocksRange(mount: Ext4Mount, ino: number, firstLblk: number, endLblk: number, syscall: string): Promise<void> {
  for (let guard = 0; ; guard++) {
    assert(guard < 1 << 24, 'removeBlocksRange terminates');
    const inode = await mount.inode(ino);
    const runs: { lblk: number; len: number }[] = [];
    for await (const m of walkMappings(mount.ext4, inode, firstLblk, endLblk)) if (m.kind !== 'hole') runs.push({ lblk: m.lblk, len: m.len });
    if (runs.length === 0) return;
    const startLblk = runs.length <= EXTENTS_PER_HANDLE ? firstLblk : runs[runs.length - EXTENTS_PER_HANDLE].lblk;
    await mount.transact(REMOVE_CREDITS + writeCredits(mount, 1), (h) => extentWriter.removeRange(mount, h, ino, startLblk, endLblk - startLblk), syscall);
    if (startLblk === firstLblk) return;
  }
}
