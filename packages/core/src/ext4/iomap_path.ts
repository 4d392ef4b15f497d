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
import { PAGE_INDEX_LIMIT } from '../mm/constants.js';
import type { Ext4DataPath } from './data-path.js';
import { Ext4IomapInode, chooseWriteOps, ext4IomapReadOps, ext4WritebackOps } from './iomap_ops.js';
import type { Ext4InodeState } from './map_blocks.js';

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
  private readonly inodes = new WeakMap<Ext4InodeState, Ext4IomapInode>();
  private readonly byMapping = new Map<AddressSpace, Ext4IomapInode>();
  private readonly writeback: IomapWritebackOptions;
  private readonly orderMax: number | undefined;

  constructor(options: IomapPathOptions) {
    this.cache = options.cache;
    this.device = options.device;
    this.orderMax = options.largeFolios ? undefined : 0;
    const memoryBytes = (): Uint8Array => this.cache.core.bytes();
    this.writeback = { ops: ext4WritebackOps, device: this.device, submit: options.submit ?? inlineSubmit(this.device, memoryBytes) };
    this.cache.setWritebackOps(iomapCacheWritebackOps((mapping) => {
      const inode = this.byMapping.get(mapping);
      if (inode === undefined) throw new Error('writeback of a mapping this path does not own');
      return inode;
    }, this.writeback));
  }

  private inode(state: Ext4InodeState): Ext4IomapInode {
    let inode = this.inodes.get(state);
    if (inode === undefined) {
      const mapping = this.cache.createMapping({ blockBytes: state.blockSizeBytes, orderMax: this.orderMax });
      inode = new Ext4IomapInode(state, mapping);
      this.inodes.set(state, inode);
      this.byMapping.set(mapping, inode);
    }
    return inode;
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
    const inode = this.inodes.get(state);
    return inode !== undefined && rangeNeedsWriteback(inode, startBytes, endBytes);
  }

  pageMkwrite(state: Ext4InodeState, posBytes: number): Promise<Folio> {
    const inode = this.inode(state);
    return iomapPageMkwrite(inode, posBytes, { ops: chooseWriteOps(inode), device: this.device });
  }

  mappingOf(state: Ext4InodeState): AddressSpace {
    return this.inode(state).mapping;
  }

  async syncAll(): Promise<void> {
    for (const inode of [...this.byMapping.values()]) {
      if (inode.mapping.dirtyFolioCount === 0 && inode.mapping.writebackFolioCount === 0) continue;
      await iomapWriteAndWait(inode, 0, Infinity, this.writeback);
    }
  }

  async evict(state: Ext4InodeState): Promise<void> {
    const inode = this.inodes.get(state);
    if (inode === undefined) return;
    await truncatePagecacheRange(inode, 0, Infinity);
    inode.mapping.invalidateRange(0, PAGE_INDEX_LIMIT);
    this.inodes.delete(state);
    this.byMapping.delete(inode.mapping);
    this.cache.releaseMapping(inode.mapping);
  }

  async close(): Promise<void> {
    for (const inode of [...this.byMapping.values()]) {
      this.byMapping.delete(inode.mapping);
      this.inodes.delete(inode.state);
      this.cache.releaseMapping(inode.mapping);
    }
    this.cache.setWritebackOps(null);
  }
}
