/**
 * ext4/data-path: the contract between ext4's file operations (ext4/file.ts: truncate,
 * fallocate, punch, zero range, fsync, seek, fiemap, mmap) and the two buffered I/O paths
 * that move a regular file's data through the page cache:
 *
 *   iomap        (ext4/iomap_path.ts)  iomap/ over large folios, delalloc for the whole
 *                                      write, unwritten-then-convert writeback
 *   buffer_head  (ext4/bh_path.ts)     buffer/ over order-0 folios, one buffer head and
 *                                      one getBlock per block, data=ordered
 *
 * ext4/file.ts does everything both paths share (the on-disk block work: preallocation,
 * punching blocks out of the extent tree and ES tree, the size and disk-size rules, the
 * journal commit of fsync); a path does only what touches cached data. This is the shape
 * of Linux's split between ext4's fallocate/truncate code and the address_space ops.
 *
 * Sizes: `state.sizeBytes` is i_size as the cache sees it (raised by write in memory);
 * `state.diskSizeBytes` is i_disksize (what the on-disk inode says). The iomap path
 * raises it at writeback completion, in the handle that converts the unwritten extents;
 * the buffer_head path raises it in the handle that allocates the blocks, and data=ordered
 * keeps that handle's commit behind the data write. Changes are serialised by the caller
 * (ext4/file.ts under the filesystem's write lock); reads run beside them, and so does
 * writeAndWait for fsync, as the flusher's writeback always has.
 *
 * Ranges are half-open byte ranges; offsets are non-negative safe integers checked by the
 * caller (EINVAL/EFBIG are raised before a path is called).
 */
import type { Folio } from '../mm/folio.js';
import type { AddressSpace } from '../mm/mapping.js';
import type { PageCache } from '../mm/page-cache.js';
import type { Ext4InodeState } from './map_blocks.js';

export type BufferedPathName = 'iomap' | 'buffer_head';

export interface Ext4DataPath {
  readonly name: BufferedPathName;
  readonly cache: PageCache;

  /**
   * pread: copy min(target.length, i_size − pos) bytes at posBytes into target through
   * the cache (readahead per open file: `readahead` is the handle's state object, opaque
   * to the caller, made by newReadahead()). Holes, delayed and unwritten blocks read as
   * zeros. Returns the count.
   */
  read(state: Ext4InodeState, posBytes: number, target: Uint8Array, readahead?: unknown): Promise<number>;
  newReadahead(): unknown;

  /**
   * pwrite of source at posBytes into the cache: blocks reserved (delalloc) or allocated,
   * the old EOF block tail zeroed first when writing past EOF, i_size raised in memory.
   * Returns bytes written: all of them, or fewer only when an error (ENOSPC, EIO) stopped
   * it after some bytes (with none written it throws).
   */
  write(state: Ext4InodeState, posBytes: number, source: Uint8Array): Promise<number>;

  /**
   * Zero [posBytes, posBytes + lengthBytes) in the cache, which lies inside one block and
   * inside i_size (the partial edge block of a punch / zero range / truncate). Blocks that
   * are holes or unwritten and have no dirty cache are left alone (they read as zero).
   * Never changes i_size.
   */
  zeroPartialBlock(state: Ext4InodeState, posBytes: number, lengthBytes: number): Promise<void>;

  /**
   * Before i_size drops to newSizeBytes: zero [newSize, end of its block) in the cache and
   * write that block back and wait, so the zeroed tail is on the device before the smaller
   * size commits (iomap_truncate_page / block_truncate_page).
   */
  truncatePage(state: Ext4InodeState, newSizeBytes: number): Promise<void>;

  /**
   * Drop the cached folios wholly inside [startBytes, endBytes) (waiting for their
   * writeback; their dirty data is discarded), zero the cached bytes of folios the range
   * only partly covers. endBytes may be Infinity. Called before the blocks underneath are
   * punched or truncated away (truncate_pagecache_range).
   */
  dropCacheRange(state: Ext4InodeState, startBytes: number, endBytes: number): Promise<void>;

  /**
   * Write back the dirty data of [startBytes, endBytes) and wait for it (endBytes may be
   * Infinity); then throw EIO if any writeback of this file failed since the last check
   * (the error is reported once, as Linux's errseq). `syscall` names the caller for the error.
   */
  writeAndWait(state: Ext4InodeState, startBytes: number, endBytes: number, syscall: string): Promise<void>;

  /** Whether any cached folio of [startBytes, endBytes) is dirty or under writeback. */
  hasDirtyOrWriteback(state: Ext4InodeState, startBytes: number, endBytes: number): boolean;

  /**
   * page_mkwrite for the mmap emulation: the folio covering posBytes (< i_size), locked
   * and pinned, uptodate, its blocks inside i_size reserved/allocated and marked dirty.
   * The caller stores into folio.bytes(), then folio.unlock(); folio.put().
   */
  pageMkwrite(state: Ext4InodeState, posBytes: number): Promise<Folio>;

  /** The file's page cache (the mmap emulation reads the EOF folio's bytes past EOF through it). */
  mappingOf(state: Ext4InodeState): AddressSpace;

  /** Write back everything dirty in every file and wait (sync(2)'s data half). */
  syncAll(): Promise<void>;

  /** The inode is going away (deleted, or its last use ended): drop all its cache, no writeback. */
  evict(state: Ext4InodeState): Promise<void>;

  /** Stop the flusher and workers; the cache must already be clean (the caller syncs first). */
  close(): Promise<void>;
}
