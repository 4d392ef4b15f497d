/**
 * ext4/bh_path: the buffer_head buffered I/O path (ext4 before the seed) as an
 * Ext4DataPath. Each regular file gets an order-0 AddressSpace (every folio one 4 KiB
 * page) in the path's page cache and an Ext4BufferInode over its Ext4InodeState; every
 * call is the generic buffer/ function with ext4's getBlock (get_block.ts):
 *
 *   read             blockRead                  ext4GetBlockRead (readahead per open file)
 *   write            blockWrite                 ext4DaGetBlockPrep: one block reserved per
 *                                               getBlock (ext4GetBlockUnwritten when space is low)
 *   zero / truncate  blockZeroRange / blockTruncatePage (zeroing past i_disksize writes a
 *                    block with old data on disk back at once: data=ordered for the size
 *                    change the caller commits next)
 *   drop cache       blockTruncatePagecacheRange (buffers of whole blocks discarded)
 *   writeback        blockWritepages            ext4BlockWritebackOps: per batch one handle,
 *                                               one getBlock per delayed block (allocated
 *                                               WRITTEN), data=ordered via the journal hook
 *   page_mkwrite     blockPageMkwrite
 *
 * The path owns its cache's writeback hook (the flusher and dirty throttling reach
 * blockWritepages through it). Writeback's device writes go inline from folio memory, or
 * through the iomap path's submitter (options.submit: the worker pool) as MAPPED ioends;
 * either way they are issued the moment a batch is mapped, which data=ordered needs.
 *
 * Cost: one WeakMap lookup per call on top of the buffer/ function.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import type { Folio } from '../mm/folio.js';
import type { AddressSpace } from '../mm/mapping.js';
import type { PageCache } from '../mm/page-cache.js';
import { type BufferReadahead, blockRead, createBufferReadahead } from '../buffer/block-read.js';
import { BufferState, getBlockAwait } from '../buffer/buffer-head.js';
import {
  type BlockWriteOptions, type BlockZeroOptions, blockPageMkwrite, blockRangeNeedsWriteback, blockTruncatePage,
  blockTruncatePagecacheRange, blockWrite, blockZeroRange,
} from '../buffer/block-write.js';
import {
  type BlockSubmit, type BlockWritepagesOptions, blockCacheWritebackOps, blockWriteAndWait, blockWritebackErrorCheck,
} from '../buffer/block-writepages.js';
import { type Ioend, IomapType } from '../iomap/types.js';
import type { IoendSubmit } from '../iomap/writeback.js';
import type { Ext4DataPath } from './data-path.js';
import { Ext4BufferInode, chooseWriteGetBlock, ext4BlockWritebackOps, ext4GetBlockRead } from './get_block.js';
import type { Ext4InodeState } from './map_blocks.js';
import { PathInodes } from './path-inodes.js';
import type { Ext4Mount } from './mount.js';

export interface BufferHeadPathOptions {
  /** The path's page cache (it takes over the cache's writeback hook). */
  cache: PageCache;
  /** Default: the mount's device. */
  device?: BlockDevice;
  /**
   * Where writeback's device writes go: the iomap path's submitter (Ext4Files' inline /
   * worker-pool switch) — each run goes as an Ioend of type MAPPED. Default: inline
   * writes from folio memory on this thread.
   */
  submit?: IoendSubmit;
  /** Folios per writeback batch (tests); default WRITEPAGES_BATCH_FOLIOS_MAX. */
  writebackBatchFolios?: number;
}

/** The buffer_head path over `mount` (Ext4Files' `bufferHeadPath: (mount, cache) => createBufferHeadPath(mount, { cache })`). */
export function createBufferHeadPath(mount: Ext4Mount, options: BufferHeadPathOptions): Ext4DataPath {
  return new BufferHeadPath(mount, options);
}

class BufferHeadPath implements Ext4DataPath {
  readonly name = 'buffer_head' as const;
  readonly cache: PageCache;
  private readonly device: BlockDevice;
  private readonly inodes: PathInodes<Ext4BufferInode>;
  private readonly writeback: BlockWritepagesOptions;
  private readonly zero: BlockZeroOptions;

  constructor(private readonly mount: Ext4Mount, options: BufferHeadPathOptions) {
    this.cache = options.cache;
    this.device = options.device ?? mount.ext4.device;
    this.writeback = {
      ops: ext4BlockWritebackOps, device: this.device, batchFoliosMax: options.writebackBatchFolios,
      submit: options.submit === undefined ? undefined : viaIoends(options.submit),
    };
    this.zero = { readGetBlock: ext4GetBlockRead, device: this.device };
    this.inodes = new PathInodes(this.cache, (state) => {
      assert(state.mount === this.mount, 'the inode belongs to this path\'s mount');
      return new Ext4BufferInode(state, this.cache.createMapping({ blockBytes: state.blockSizeBytes, orderMax: 0, owner: state }));
    });
    this.cache.setWritebackOps(blockCacheWritebackOps((mapping) => this.inodes.ofMapping(mapping), this.writeback));
  }

  private inode(state: Ext4InodeState): Ext4BufferInode {
    return this.inodes.of(state);
  }

  private writeOptions(inode: Ext4BufferInode): BlockWriteOptions {
    return {
      getBlock: chooseWriteGetBlock(inode), readGetBlock: ext4GetBlockRead, device: this.device,
      zeroTail: (posBytes, lengthBytes) => blockZeroRange(inode, posBytes, lengthBytes, this.zero),
    };
  }

  newReadahead(): BufferReadahead {
    return createBufferReadahead();
  }

  read(state: Ext4InodeState, posBytes: number, target: Uint8Array, readahead?: unknown): Promise<number> {
    return blockRead(this.inode(state), posBytes, target, {
      getBlock: ext4GetBlockRead, device: this.device, readahead: readahead as BufferReadahead | undefined,
    });
  }

  write(state: Ext4InodeState, posBytes: number, source: Uint8Array): Promise<number> {
    const inode = this.inode(state);
    return blockWrite(inode, posBytes, source, this.writeOptions(inode));
  }

  /**
   * Zeroing past i_disksize comes before a size change the caller commits next (truncate
   * up, fallocate past EOF). In data=ordered the kernel puts the zeroed block on that
   * transaction's ordered list; with no handle of the caller's to order against, a block
   * that holds old data on disk is written back now, so a crash after the size commits
   * never shows the stale tail. Delayed or unwritten blocks need nothing: writeback raises
   * i_disksize over them only together with their data.
   */
  async zeroPartialBlock(state: Ext4InodeState, posBytes: number, lengthBytes: number): Promise<void> {
    const inode = this.inode(state);
    await blockZeroRange(inode, posBytes, lengthBytes, this.zero);
    if (posBytes + lengthBytes <= state.diskSizeBytes) return;
    const bs = state.blockSizeBytes;
    const lblk = Math.floor(posBytes / bs);
    const map = await getBlockAwait(ext4GetBlockRead, inode, lblk, false);
    if (map === null || (map.state & BufferState.MAPPED) === 0 || (map.state & BufferState.UNWRITTEN) !== 0) return;
    await blockWriteAndWait(inode, lblk * bs, (lblk + 1) * bs, this.writeback);
  }

  truncatePage(state: Ext4InodeState, newSizeBytes: number): Promise<void> {
    return blockTruncatePage(this.inode(state), newSizeBytes, { ...this.zero, writeback: this.writeback });
  }

  dropCacheRange(state: Ext4InodeState, startBytes: number, endBytes: number): Promise<void> {
    return blockTruncatePagecacheRange(this.inode(state), startBytes, endBytes);
  }

  async writeAndWait(state: Ext4InodeState, startBytes: number, endBytes: number, syscall: string): Promise<void> {
    const inode = this.inode(state);
    await blockWriteAndWait(inode, startBytes, endBytes, this.writeback);
    blockWritebackErrorCheck(inode.mapping, syscall);
  }

  hasDirtyOrWriteback(state: Ext4InodeState, startBytes: number, endBytes: number): boolean {
    const inode = this.inodes.peek(state);
    return inode !== undefined && blockRangeNeedsWriteback(inode, startBytes, endBytes);
  }

  pageMkwrite(state: Ext4InodeState, posBytes: number): Promise<Folio> {
    const inode = this.inode(state);
    return blockPageMkwrite(inode, posBytes, this.writeOptions(inode));
  }

  mappingOf(state: Ext4InodeState): AddressSpace {
    return this.inode(state).mapping;
  }

  syncAll(): Promise<void> {
    return this.inodes.syncAll((inode) => blockWriteAndWait(inode, 0, Infinity, this.writeback));
  }

  evict(state: Ext4InodeState): Promise<void> {
    return this.inodes.evict(state, (inode) => blockTruncatePagecacheRange(inode, 0, Infinity));
  }

  async close(): Promise<void> {
    this.inodes.releaseAll();
    this.cache.setWritebackOps(null);
  }
}

/** Writeback runs through an iomap submitter (the worker pool takes Ioends): each run is one MAPPED Ioend. */
function viaIoends(submit: IoendSubmit): BlockSubmit {
  return async (inode, runs) => {
    const ioends: Ioend[] = runs.map((run) => ({
      inode, offsetBytes: run.offsetBytes, lengthBytes: run.lengthBytes, addrBytes: run.addrBytes, type: IomapType.MAPPED, pieces: run.pieces,
    }));
    await submit(ioends);
    ioends.forEach((ioend, i) => { if (ioend.error !== undefined) runs[i].error = ioend.error; });
  };
}
