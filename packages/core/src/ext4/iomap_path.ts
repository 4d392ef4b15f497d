/**
 * ext4/iomap_path: the iomap buffered I/O path (the seed's design) as an Ext4DataPath.
 * Each regular file gets an AddressSpace in the mount's page cache (large folios unless
 * `largeFolios: false`) and an Ext4IomapInode over its Ext4InodeState; every call is the
 * generic iomap/ function with ext4's ops (iomap_ops.ts):
 *
 *   read            iomapRead          ext4IomapReadOps       (readahead per open file)
 *   write           iomapWrite         chooseWriteOps         (delalloc, or direct when space is low)
 *   zero / truncate iomapZeroRange / iomapTruncatePage
 *   drop cache      truncatePagecacheRange
 *   writeback       iomapWriteAndWait  ext4WritebackOps        (flusher: the same, via the cache)
 *   page_mkwrite    iomapPageMkwrite   chooseWriteOps
 *
 * Writeback's device writes go through `submit` (the writeback pool, writeback/pool.ts,
 * or inline writes from folio memory); completion (convert unwritten, raise i_disksize)
 * runs here on the engine thread.
 *
 * Cost: one WeakMap lookup per call on top of the iomap function.
 */
import type { BlockDevice } from '../device/block-device.js';
import type { Folio } from '../mm/folio.js';
import type { AddressSpace } from '../mm/mapping.js';
import type { PageCache } from '../mm/page-cache.js';
import { createReadaheadState, iomapRead, type ReadaheadState } from '../iomap/buffered-read.js';
import { iomapWrite } from '../iomap/buffered-write.js';
import { iomapPageMkwrite } from '../iomap/mkwrite.js';
import {
  type IomapWritebackOptions, type IoendSubmit, inlineSubmit, iomapCacheWritebackOps, iomapWriteAndWait, writebackErrorCheck,
} from '../iomap/writeback.js';
import { type IomapZeroOptions, iomapTruncatePage, iomapZeroRange, rangeNeedsWriteback, truncatePagecacheRange } from '../iomap/zero.js';
import type { Ext4DataPath } from './data-path.js';
import { Ext4IomapInode, chooseWriteOps, ext4IomapReadOps, ext4WritebackOps } from './iomap_ops.js';
import type { Ext4InodeState } from './map_blocks.js';
import { PathInodes } from './path-inodes.js';

export interface IomapPathOptions {
  cache: PageCache;
  device: BlockDevice;
  /** false: every folio is one page (order 0), to separate the effect of large folios. */
  largeFolios: boolean;
  /** Where writeback's device writes go (default: inline, from folio memory). */
  submit?: IoendSubmit;
}

export function createIomapPath(options: IomapPathOptions): Ext4DataPath {
  return new IomapPath(options);
}

class IomapPath implements Ext4DataPath {
  readonly name = 'iomap' as const;
  readonly cache: PageCache;
  private readonly device: BlockDevice;
  private readonly inodes: PathInodes<Ext4IomapInode>;
  private readonly writeback: IomapWritebackOptions;
  private readonly orderMax: number | undefined;

  constructor(options: IomapPathOptions) {
    this.cache = options.cache;
    this.device = options.device;
    this.orderMax = options.largeFolios ? undefined : 0;
    const memoryBytes = (): Uint8Array => this.cache.core.bytes();
    this.writeback = { ops: ext4WritebackOps, device: this.device, submit: options.submit ?? inlineSubmit(this.device, memoryBytes) };
    this.inodes = new PathInodes(this.cache, (state) => new Ext4IomapInode(
      state, this.cache.createMapping({ blockBytes: state.blockSizeBytes, orderMax: this.orderMax }),
    ));
    this.cache.setWritebackOps(iomapCacheWritebackOps((mapping) => this.inodes.ofMapping(mapping), this.writeback));
  }

  private inode(state: Ext4InodeState): Ext4IomapInode {
    return this.inodes.of(state);
  }

  private zeroOptions(inode: Ext4IomapInode): IomapZeroOptions {
    return { ops: chooseWriteOps(inode), device: this.device, writeback: this.writeback };
  }

  newReadahead(): ReadaheadState {
    return createReadaheadState();
  }

  read(state: Ext4InodeState, posBytes: number, target: Uint8Array, readahead?: unknown): Promise<number> {
    return iomapRead(this.inode(state), posBytes, target, {
      ops: ext4IomapReadOps, device: this.device, readahead: readahead as ReadaheadState | undefined,
    });
  }

  write(state: Ext4InodeState, posBytes: number, source: Uint8Array): Promise<number> {
    const inode = this.inode(state);
    return iomapWrite(inode, posBytes, source, {
      ops: chooseWriteOps(inode), device: this.device,
      zeroTail: (pos, length) => iomapZeroRange(inode, pos, length, this.zeroOptions(inode)),
    });
  }

  zeroPartialBlock(state: Ext4InodeState, posBytes: number, lengthBytes: number): Promise<void> {
    const inode = this.inode(state);
    return iomapZeroRange(inode, posBytes, lengthBytes, this.zeroOptions(inode));
  }

  truncatePage(state: Ext4InodeState, newSizeBytes: number): Promise<void> {
    const inode = this.inode(state);
    return iomapTruncatePage(inode, newSizeBytes, this.zeroOptions(inode));
  }

  dropCacheRange(state: Ext4InodeState, startBytes: number, endBytes: number): Promise<void> {
    return truncatePagecacheRange(this.inode(state), startBytes, endBytes);
  }

  async writeAndWait(state: Ext4InodeState, startBytes: number, endBytes: number, syscall: string): Promise<void> {
    const inode = this.inode(state);
    await iomapWriteAndWait(inode, startBytes, endBytes, this.writeback);
    writebackErrorCheck(inode.mapping, syscall);
  }

  hasDirtyOrWriteback(state: Ext4InodeState, startBytes: number, endBytes: number): boolean {
    const inode = this.inodes.peek(state);
    return inode !== undefined && rangeNeedsWriteback(inode, startBytes, endBytes);
  }

  pageMkwrite(state: Ext4InodeState, posBytes: number): Promise<Folio> {
    const inode = this.inode(state);
    return iomapPageMkwrite(inode, posBytes, { ops: chooseWriteOps(inode), device: this.device });
  }

  mappingOf(state: Ext4InodeState): AddressSpace {
    return this.inode(state).mapping;
  }

  syncAll(): Promise<void> {
    return this.inodes.syncAll((inode) => iomapWriteAndWait(inode, 0, Infinity, this.writeback));
  }

  evict(state: Ext4InodeState): Promise<void> {
    return this.inodes.evict(state, (inode) => truncatePagecacheRange(inode, 0, Infinity));
  }

  async close(): Promise<void> {
    this.inodes.releaseAll();
    this.cache.setWritebackOps(null);
  }
}
