/**
 * Ext4FsxTarget: the fsx file as one regular file inside an ext4ts image, driven only
 * through the public API of @ext4ts/core (what an application sees):
 *
 *   read / write / truncate      FileHandle.read / write / truncate
 *   fallocate / punch / zero     FileHandle.fallocate(mode, offset, length), Linux mode bits
 *   mapRead / mapWrite           FileHandle.mmap(pageStart, length) → FileMapping read / write,
 *                                msync, unmap (mapWrite ftruncates up first, as fsx's domapwrite)
 *   pollutePastEof / readPastEof a mapping of the EOF page, touched beyond EOF
 *   fsync                        FileHandle.sync
 *   reopen                       close + open; every `remountEvery`-th reopen also unmounts
 *                                and mounts the file system again, so the file is re-read
 *                                from the device (persistence through the disk, not the cache)
 *
 * The image is a fresh in-memory one (mkfs onto a MemoryDevice, `imageSizeBytes`) or an
 * image file the caller names (FileDevice; the file named `filePath` is created or emptied
 * in it). close() fsyncs, unmounts, optionally saves the in-memory image to a host file
 * (for e2fsck), and closes the device.
 *
 * Capabilities are probed once at create, as fsx probes fallocate modes: a handle without
 * fallocate, or a mode that fails on a scratch file, turns that op family off; a handle
 * without mmap makes mapRead/mapWrite plain pread/pwrite and turns the EOF-page checks off.
 *
 * Cost per op: the FileHandle call (page-cache work in the engine) plus one stat for the
 * size check; a mapped op adds one mmap/unmap pair and, with EOF-page checks, a second
 * mapping of the EOF page. A remount costs an unmount (writeback, journal commit,
 * checkpoint) and a mount (superblock, group descriptors, journal replay check).
 */
import {
  Ext4, FileDevice, FsError, MemoryDevice, mkfs, mm,
  type BlockDevice, type Ext4Filesystem, type MountOptions,
} from '@ext4ts/core';
import type { FsxCapabilities, FsxTarget } from './target.js';

/** Linux fallocate(2) mode bits (linux/falloc.h), as FileHandle.fallocate takes them. */
export const FSX_FALLOC_FL_KEEP_SIZE = 0x01;
export const FSX_FALLOC_FL_PUNCH_HOLE = 0x02;
export const FSX_FALLOC_FL_ZERO_RANGE = 0x10;

/** The mapping unit: mmap offsets are page aligned and the EOF page is this long. */
const PAGE_BYTES = mm.mmConstants.PAGE_BYTES;
/** A fresh in-memory image: room for a 1 MiB fsx file many times over, small enough to mkfs in milliseconds. */
export const FSX_IMAGE_BYTES_DEFAULT = 64 * 1024 * 1024;
const PROBE_FILE_PATH = '/.fsx-probe';

export type FsxBufferedPathName = 'iomap' | 'buffer_head';

export interface Ext4FsxTargetOptions {
  /** Buffered I/O path of the mount (default iomap). */
  buffered?: FsxBufferedPathName;
  /** iomap path: large folios (default true); false = every folio is one page. */
  largeFolios?: boolean;
  /** Page cache size of the mount (default: the engine's). */
  cacheBytes?: number;
  /** Run inside this image file (FileDevice) instead of a fresh in-memory image. */
  imagePath?: string;
  /** Size of the fresh in-memory image (default FSX_IMAGE_BYTES_DEFAULT). */
  imageSizeBytes?: number;
  /** The file inside the image (default /fsxfile). */
  filePath?: string;
  /** Every Kth reopen unmounts and mounts again (0 = never; default 0). */
  remountEvery?: number;
  /** Journal commit interval of the mount (default: the engine's). */
  commitIntervalMs?: number;
  /** In-memory image only: close() saves it to this host file after unmounting. */
  saveImagePath?: string;
}

/** What the target did besides the ops (for the run summary). */
export interface Ext4FsxTargetStats {
  mappedOps: number;
  fsyncs: number;
  reopens: number;
  remounts: number;
}

/**
 * Page-cache counters summed over every mount of the run (null when the engine does not
 * show its cache): proof that a small cache really evicted and flushed.
 */
export interface Ext4FsxCacheCounters {
  evictedFolios: number;
  flusherPasses: number;
}

/** The engine's cache counters, read through `fs.files.cache.stats()` when it has them (not a stable API). */
interface EngineCacheView {
  files?: { cache?: { stats?(): { evictedFolioCount: number; flushPassCount: number } } };
}

/** A FileHandle's mapping (FileHandle.mmap): stores never change the file size. */
interface FsxFileMapping {
  read(offsetInMapping: number, length: number): Promise<Uint8Array>;
  write(offsetInMapping: number, data: Uint8Array): Promise<void>;
  msync(): Promise<void>;
  unmap(): Promise<void>;
}

/**
 * The FileHandle calls this target makes. fallocate and mmap are optional so the target
 * also runs on an engine without them (capabilities off), as fsx runs on file systems
 * without fallocate modes.
 */
interface FsxFileHandle {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  truncate(len: number): Promise<void>;
  sync(): Promise<void>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
  fallocate?(mode: number, offset: number, length: number): Promise<void>;
  mmap?(offset: number, length: number): FsxFileMapping | Promise<FsxFileMapping>;
}

/** Mount options of the buffered-I/O engine, beside the base ones. */
type FsxMountOptions = MountOptions & { buffered?: FsxBufferedPathName; largeFolios?: boolean; cacheBytes?: number };

export class Ext4FsxTarget implements FsxTarget {
  readonly stats: Ext4FsxTargetStats = { mappedOps: 0, fsyncs: 0, reopens: 0, remounts: 0 };
  private handle: FsxFileHandle | null;
  private closed = false;
  /** Cache counters of the mounts already unmounted. */
  private readonly cacheCountersDone: Ext4FsxCacheCounters = { evictedFolios: 0, flusherPasses: 0 };
  private cacheCountersSeen = false;

  private constructor(
    readonly capabilities: FsxCapabilities,
    private fs: Ext4Filesystem,
    handle: FsxFileHandle,
    private readonly device: BlockDevice & { close(): Promise<void> },
    private readonly options: Required<Pick<Ext4FsxTargetOptions, 'filePath' | 'remountEvery'>> & Ext4FsxTargetOptions,
  ) {
    this.handle = handle;
  }

  /** Mounts the image (made fresh in memory unless imagePath), probes, and opens the file empty. */
  static async create(optionsGiven: Ext4FsxTargetOptions = {}): Promise<Ext4FsxTarget> {
    const options = { filePath: '/fsxfile', remountEvery: 0, ...optionsGiven };
    if (!Number.isSafeInteger(options.remountEvery) || options.remountEvery < 0) throw new RangeError(`remountEvery must be a count, got ${options.remountEvery}`);
    const device = await openDevice(options);
    try {
      const fs = await Ext4.mount(device, mountOptions(options));
      const capabilities = await probeCapabilities(fs);
      const handle = (await fs.open(options.filePath, 'w+')) as unknown as FsxFileHandle;
      return new Ext4FsxTarget(capabilities, fs, handle, device, options);
    } catch (error) {
      await device.close();
      throw error;
    }
  }

  /** The mounted file system (for tests that look inside, e.g. at stats). */
  get filesystem(): Ext4Filesystem {
    return this.fs;
  }

  /** Evictions and flusher passes so far, over all mounts of this run (null: the engine does not show them). */
  cacheCounters(): Ext4FsxCacheCounters | null {
    // After close() every mount is counted in cacheCountersDone; before, add the live one.
    const now = this.closed ? null : this.mountCacheCounters();
    if (now === null && !this.cacheCountersSeen) return null;
    return {
      evictedFolios: this.cacheCountersDone.evictedFolios + (now?.evictedFolios ?? 0),
      flusherPasses: this.cacheCountersDone.flusherPasses + (now?.flusherPasses ?? 0),
    };
  }

  private mountCacheCounters(): Ext4FsxCacheCounters | null {
    const stats = (this.fs as unknown as EngineCacheView).files?.cache?.stats?.();
    return stats === undefined ? null : { evictedFolios: stats.evictedFolioCount, flusherPasses: stats.flushPassCount };
  }

  /** Unmount, keeping this mount's cache counters. */
  private async unmount(): Promise<void> {
    const counters = this.mountCacheCounters();
    await this.fs.unmount();
    if (counters === null) return;
    this.cacheCountersSeen = true;
    this.cacheCountersDone.evictedFolios += counters.evictedFolios;
    this.cacheCountersDone.flusherPasses += counters.flusherPasses;
  }

  private fh(): FsxFileHandle {
    if (this.handle === null) throw new Error('ext4 fsx target: the file is closed');
    return this.handle;
  }

  async size(): Promise<number> {
    return (await this.fh().stat()).size;
  }

  async read(pos: number, len: number): Promise<Uint8Array> {
    const buffer = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const { bytesRead } = await this.fh().read(buffer, done, len - done, pos + done);
      if (bytesRead === 0) break; // EOF
      done += bytesRead;
    }
    return buffer.subarray(0, done);
  }

  async write(pos: number, data: Uint8Array): Promise<void> {
    const { bytesWritten } = await this.fh().write(data, 0, data.length, pos);
    // FileHandle.write writes everything or throws; a short count would be an engine bug.
    if (bytesWritten !== data.length) throw new Error(`short write: ${bytesWritten} of ${data.length} bytes at 0x${pos.toString(16)}`);
  }

  async truncate(size: number): Promise<void> {
    await this.fh().truncate(size);
  }

  async fallocate(pos: number, len: number, options: { keepSize: boolean }): Promise<void> {
    await this.fallocateMode(options.keepSize ? FSX_FALLOC_FL_KEEP_SIZE : 0, pos, len);
  }

  async punchHole(pos: number, len: number): Promise<void> {
    await this.fallocateMode(FSX_FALLOC_FL_PUNCH_HOLE | FSX_FALLOC_FL_KEEP_SIZE, pos, len);
  }

  async zeroRange(pos: number, len: number, options: { keepSize: boolean }): Promise<void> {
    await this.fallocateMode(FSX_FALLOC_FL_ZERO_RANGE | (options.keepSize ? FSX_FALLOC_FL_KEEP_SIZE : 0), pos, len);
  }

  private async fallocateMode(mode: number, pos: number, len: number): Promise<void> {
    const handle = this.fh();
    if (handle.fallocate === undefined) throw new Error('ext4 fsx target: this engine has no fallocate');
    await handle.fallocate(mode, pos, len);
  }

  async mapRead(pos: number, len: number): Promise<Uint8Array> {
    if (!this.capabilities.mmap) return this.read(pos, len);
    return this.withMapping(pos, len, (mapping, offsetInMapping) => mapping.read(offsetInMapping, len));
  }

  async mapWrite(pos: number, data: Uint8Array): Promise<void> {
    const end = pos + data.length;
    // fsx's domapwrite: a store through a mapping never extends the file, so grow it first.
    if (end > (await this.size())) await this.truncate(end);
    if (!this.capabilities.mmap) return this.write(pos, data);
    await this.withMapping(pos, data.length, async (mapping, offsetInMapping) => {
      await mapping.write(offsetInMapping, data);
      await mapping.msync();
    });
  }

  /**
   * Maps the pages covering [pos, pos + len) from the page boundary at or below pos, as
   * fsx maps (mmap offsets must be page aligned), runs `body`, and always unmaps.
   */
  private async withMapping<T>(pos: number, len: number, body: (mapping: FsxFileMapping, offsetInMapping: number) => Promise<T>): Promise<T> {
    const handle = this.fh();
    const pageStart = pos - (pos % PAGE_BYTES);
    const mapping = await handle.mmap!(pageStart, pos + len - pageStart);
    this.stats.mappedOps++;
    try {
      return await body(mapping, pos - pageStart);
    } finally {
      await mapping.unmap();
    }
  }

  /**
   * fsx -e: garbage stored past EOF in the EOF page through a mapping, left in the cache
   * (no msync), as fsx's pollute_eofpage leaves it. The size must not change.
   *
   *   size 0x1100    EOF page [0x1000, 0x2000)    stores [0x1100, 0x1100 + count), count ≤ 0xf00
   */
  async pollutePastEof(data: Uint8Array): Promise<number> {
    const sizeBytes = await this.size();
    const tailBytes = eofPageTailBytes(sizeBytes);
    const count = Math.min(data.length, tailBytes);
    if (count === 0) return 0;
    await this.withMapping(sizeBytes, count, (mapping, offsetInMapping) => mapping.write(offsetInMapping, data.subarray(0, count)));
    return count;
  }

  /** fsx's check_eofpage: the EOF page beyond EOF as a mapping shows it, [size, roundUp(size, page)). */
  async readPastEof(): Promise<Uint8Array> {
    const sizeBytes = await this.size();
    const tailBytes = eofPageTailBytes(sizeBytes);
    if (tailBytes === 0) return new Uint8Array(0);
    return this.withMapping(sizeBytes, tailBytes, (mapping, offsetInMapping) => mapping.read(offsetInMapping, tailBytes));
  }

  async fsync(): Promise<void> {
    await this.fh().sync();
    this.stats.fsyncs++;
  }

  async reopen(): Promise<void> {
    await this.fh().close();
    this.handle = null;
    this.stats.reopens++;
    if (this.options.remountEvery > 0 && this.stats.reopens % this.options.remountEvery === 0) {
      await this.unmount();
      this.fs = await Ext4.mount(this.device, mountOptions(this.options));
      this.stats.remounts++;
    }
    this.handle = (await this.fs.open(this.options.filePath, 'r+')) as unknown as FsxFileHandle;
  }

  /**
   * The end of a run: fsync, close, unmount, save the in-memory image when asked, close
   * the device. Safe to call twice; after a failed run it still releases the device.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.handle !== null) {
        await this.handle.sync();
        await this.handle.close();
        this.handle = null;
      }
      await this.unmount();
      if (this.options.saveImagePath !== undefined && this.device instanceof MemoryDevice) await this.device.saveImage(this.options.saveImagePath);
    } finally {
      await this.device.close();
    }
  }
}

function mountOptions(options: Ext4FsxTargetOptions): FsxMountOptions {
  const mount: FsxMountOptions = { readOnly: false, buffered: options.buffered ?? 'iomap', largeFolios: options.largeFolios ?? true };
  if (options.cacheBytes !== undefined) mount.cacheBytes = options.cacheBytes;
  if (options.commitIntervalMs !== undefined) mount.commitIntervalMs = options.commitIntervalMs;
  return mount;
}

async function openDevice(options: Ext4FsxTargetOptions): Promise<BlockDevice & { close(): Promise<void> }> {
  if (options.imagePath !== undefined) return FileDevice.open(options.imagePath);
  const sizeBytes = options.imageSizeBytes ?? FSX_IMAGE_BYTES_DEFAULT;
  const device = MemoryDevice.create({ sizeBytes });
  try {
    await mkfs(device, { sizeBytes, label: 'ext4ts-fsx', assumeZeroed: true });
  } catch (error) {
    await device.close();
    throw error;
  }
  return device;
}

/** Bytes of the EOF page past EOF: 0 when the size is page aligned (there is no EOF page). */
function eofPageTailBytes(sizeBytes: number): number {
  const inPage = sizeBytes % PAGE_BYTES;
  return inPage === 0 ? 0 : PAGE_BYTES - inPage;
}

/**
 * fsx's fallocate probe: each mode once on a scratch file (removed afterwards). A mode
 * that throws ENOTSUP/EINVAL is off; any other error is a real failure and propagates.
 */
async function probeCapabilities(fs: Ext4Filesystem): Promise<FsxCapabilities> {
  const handle = (await fs.open(PROBE_FILE_PATH, 'w+')) as unknown as FsxFileHandle;
  try {
    const mmap = typeof handle.mmap === 'function';
    if (typeof handle.fallocate !== 'function') return { fallocate: false, punch: false, zero: false, mmap, eofPage: mmap };
    await handle.write(new Uint8Array(2 * PAGE_BYTES).fill(1), 0, 2 * PAGE_BYTES, 0);
    const works = async (mode: number): Promise<boolean> => {
      try {
        await handle.fallocate!(mode, 0, PAGE_BYTES);
        return true;
      } catch (error) {
        if (FsError.is(error, 'ENOTSUP') || FsError.is(error, 'EINVAL')) return false;
        throw error;
      }
    };
    const allocate = (await works(0)) && (await works(FSX_FALLOC_FL_KEEP_SIZE));
    const punch = await works(FSX_FALLOC_FL_PUNCH_HOLE | FSX_FALLOC_FL_KEEP_SIZE);
    const zero = await works(FSX_FALLOC_FL_ZERO_RANGE);
    return { fallocate: allocate, punch, zero, mmap, eofPage: mmap };
  } finally {
    await handle.close();
    await fs.unlink(PROBE_FILE_PATH);
  }
}
