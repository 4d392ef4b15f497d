/**
 * An FsxTarget over the generic iomap buffered I/O (packages/core/src/iomap) + the page
 * cache (mm/) + the fake filesystem of iomap/testing.ts: every fsx op runs the same code
 * paths the ext4 side will call (read with readahead, write with delalloc, writeback with
 * unwritten allocation and completion conversion, zero range, truncate, page_mkwrite).
 *
 * Interleaved with the ops: the cache's flusher (small caches throttle writers and evict
 * folios, which are re-read from the fake disk), and every `dropCacheEvery`-th fsync drops
 * all clean folios. Each fsync also checks the disk alone: [0, disk size) of the MAPPED
 * blocks must equal what a read returns (writeback wrote it, completion converted it).
 *
 * Cost per op: the iomap call; an fsync with verifyDisk reads the file twice (≤ maxFileLen).
 */
import { assert } from '../../packages/core/src/assert.js';
import { type FakeFsEnv, type FakeFsFile } from '../../packages/core/src/iomap/testing.js';
import type { FsxCapabilities, FsxTarget } from '../../packages/cli/src/fsx/target.js';

export interface IomapFsxTargetOptions {
  /** Drop clean folios after every Nth fsync (0: never). */
  dropCacheEvery?: number;
  /** Compare the disk image with the file at every fsync. */
  verifyDisk?: boolean;
  /** Folio order cap (0 = large folios off). */
  orderMax?: number;
}

export class IomapFsxTarget implements FsxTarget {
  readonly capabilities: FsxCapabilities = { fallocate: true, punch: true, zero: true, mmap: true, eofPage: false };
  readonly file: FakeFsFile;
  fsyncCount = 0;
  droppedFolios = 0;

  constructor(readonly env: FakeFsEnv, private readonly options: IomapFsxTargetOptions = {}) {
    this.file = env.createFile({ orderMax: options.orderMax });
  }

  async size(): Promise<number> { return this.file.sizeBytes; }
  read(pos: number, len: number): Promise<Uint8Array> { return this.file.read(pos, len); }
  async write(pos: number, data: Uint8Array): Promise<void> {
    const done = await this.file.write(pos, data);
    assert(done === data.length, 'write was not short');
  }
  truncate(size: number): Promise<void> { return this.file.truncate(size); }
  fallocate(pos: number, len: number, options: { keepSize: boolean }): Promise<void> { return this.file.fallocate(pos, len, options.keepSize); }
  punchHole(pos: number, len: number): Promise<void> { return this.file.punchHole(pos, len); }
  zeroRange(pos: number, len: number, options: { keepSize: boolean }): Promise<void> { return this.file.zeroRange(pos, len, options.keepSize); }
  mapRead(pos: number, len: number): Promise<Uint8Array> { return this.file.read(pos, len); }
  mapWrite(pos: number, data: Uint8Array): Promise<void> { return this.file.mapWrite(pos, data); }

  async fsync(): Promise<void> {
    await this.file.fsync();
    this.fsyncCount++;
    if (this.options.verifyDisk === true) await this.verifyDisk();
    const every = this.options.dropCacheEvery ?? 0;
    if (every > 0 && this.fsyncCount % every === 0) this.droppedFolios += this.file.dropCache();
  }

  async close(): Promise<void> {}

  private async verifyDisk(): Promise<void> {
    const image = this.file.diskImage();
    const sizeBytes = this.file.sizeBytes;
    if (image.length !== sizeBytes) throw new Error(`after fsync the disk size is ${image.length}, the file size ${sizeBytes}`);
    const content = await this.file.read(0, sizeBytes);
    const bad = content.findIndex((byte, i) => byte !== image[i]);
    if (bad >= 0) throw new Error(`after fsync the disk differs at 0x${bad.toString(16)}: disk 0x${image[bad].toString(16)}, file 0x${content[bad].toString(16)}`);
    this.file.diskChecks++;
  }
}
