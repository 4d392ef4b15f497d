/**
 * buffer/block-write: writing, zeroing, truncating and faulting through order-0 folios
 * with buffer heads — Linux's generic_perform_write over __block_write_begin /
 * block_write_end, block_truncate_page, truncate_pagecache_range, block_page_mkwrite.
 *
 *   blockWrite(pos, data), per 4 KiB page:
 *     throttle → get/create the folio → lock →
 *     blockWriteBegin: per block of the range whose buffer is neither MAPPED nor DELAY,
 *       getBlock(create) — one call per block (a delalloc filesystem reserves ONE block
 *       there and answers DELAY|NEW); then the partial edge blocks that are not uptodate:
 *       MAPPED (written) → read; NEW, DELAY, UNWRITTEN → zeros
 *     → copy → blockWriteEnd: blocks uptodate + dirty, NEW cleared → i_size raised → unlock
 *   A getBlock failure (ENOSPC) after some blocks ends the write short at that block;
 *   with nothing written it throws.
 *
 * Zeroing (blockZeroRange) leaves alone blocks that read as zeros without help: holes,
 * and unwritten blocks with no dirty cache; everything else (written, delayed, unwritten
 * under dirty cache) is zeroed in the cache and dirtied. blockTruncatePagecacheRange
 * drops folios wholly inside a range and, in the folios it only touches, zeroes the bytes
 * and discards the buffers of whole blocks (unmapped, no longer dirty): the filesystem is
 * about to punch those blocks.
 *
 * Cost: per page one throttle check, one lock, one getBlock per block not yet mapped (a
 * cached mapping, or a delalloc reservation, answers without a promise: then the page
 * costs no promise at all), one copy (TypedArray.set, ≤ 4 KiB); device reads ≤ 2 blocks
 * per write (partial edges not cached), issued together.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_BYTES, PAGE_INDEX_LIMIT } from '../mm/constants.js';
import type { Folio } from '../mm/folio.js';
import { FsError } from '../vfs/errors.js';
import { blockFillFolios, type FillRange } from './block-read.js';
import {
  BUFFERS_PER_PAGE_MAX, type BlockMap, BufferHeadTable, BufferState, type BufferInode, type GetBlock, checkBlockMap, getBlockAwait, roundDown, roundUp,
  zeroFolioRange,
} from './buffer-head.js';
import { type BlockWritepagesOptions, blockWriteAndWait } from './block-writepages.js';

export interface BlockWriteOptions {
  /** The write's getBlock (create = true): reserve (delalloc) or allocate. */
  getBlock: GetBlock;
  /** getBlock for reads (create = false): partial blocks, zeroing, faults. */
  readGetBlock: GetBlock;
  device: BlockDevice;
  /** Zero the old EOF block's tail before a write past EOF (blockZeroRange bound to this file). */
  zeroTail?: (posBytes: number, lengthBytes: number) => Promise<void>;
}

/** What blockWriteBegin prepared: [from, endBytes); `error` when getBlock failed at endBytes. */
export interface WriteBeginResult {
  endBytes: number;
  error?: unknown;
}

/**
 * __block_write_begin for file range [fromBytes, toBytes) of a locked folio: map every
 * block of it (getBlock per unmapped block), make its partial edge blocks uptodate.
 * Synchronous while every getBlock answers synchronously and no edge block needs a read
 * (a delalloc reservation of a new block: the case of every block of a file written in
 * order) — no promise per page; a promise from then on otherwise. A getBlock failure at
 * the first block is thrown (or rejected); later, it ends the range there.
 */
export function blockWriteBegin(inode: BufferInode, folio: Folio, fromBytes: number, toBytes: number, options: BlockWriteOptions): WriteBeginResult | Promise<WriteBeginResult> {
  const bs = inode.blockSizeBytes;
  const folioStart = folio.positionBytes;
  assert(folio.lockedHere, 'write_begin under the folio lock');
  assert(fromBytes >= folioStart && fromBytes < toBytes && toBytes <= folioStart + folio.lengthBytes, 'write range inside the folio');
  const table = BufferHeadTable.of(folio.mapping.cache);
  const base = table.base(folio);
  const blockFrom = Math.floor((fromBytes - folioStart) / bs);
  const blockTo = Math.ceil((toBytes - folioStart) / bs);
  for (let block = blockFrom; block < blockTo; block++) {
    if ((table.states[base + block] & (BufferState.MAPPED | BufferState.DELAY)) !== 0) continue;
    let answer: ReturnType<GetBlock>;
    try {
      answer = options.getBlock(inode, (folioStart + block * bs) / bs, true);
    } catch (caught) {
      if (block === blockFrom) throw caught;
      return writeBeginEdges(inode, folio, fromBytes, folioStart + block * bs, options, caught);
    }
    if (answer instanceof Promise) return writeBeginWait(inode, folio, fromBytes, toBytes, options, block, answer);
    setWriteMap(table, folio, block, answer);
  }
  return writeBeginEdges(inode, folio, fromBytes, toBytes, options, undefined);
}

function setWriteMap(table: BufferHeadTable, folio: Folio, block: number, answer: BlockMap | null): void {
  const map = checkBlockMap(answer);
  assert(map !== null && (map.state & (BufferState.MAPPED | BufferState.DELAY)) !== 0, 'a write getBlock maps or reserves');
  table.setMap(folio, block, map);
}

/** blockWriteBegin from `block` on, whose getBlock answer is `pending`: the rest awaited as it comes. */
async function writeBeginWait(
  inode: BufferInode, folio: Folio, fromBytes: number, toBytes: number, options: BlockWriteOptions, block: number, pending: Promise<BlockMap | null>,
): Promise<WriteBeginResult> {
  const bs = inode.blockSizeBytes;
  const folioStart = folio.positionBytes;
  const table = BufferHeadTable.of(folio.mapping.cache);
  const base = table.base(folio);
  const blockFrom = Math.floor((fromBytes - folioStart) / bs);
  const blockTo = Math.ceil((toBytes - folioStart) / bs);
  let waiting: Promise<BlockMap | null> | undefined = pending;
  for (; block < blockTo; block++) {
    try {
      let answer: ReturnType<GetBlock>;
      if (waiting !== undefined) {
        answer = await waiting;
        waiting = undefined;
      } else {
        if ((table.states[base + block] & (BufferState.MAPPED | BufferState.DELAY)) !== 0) continue;
        answer = options.getBlock(inode, (folioStart + block * bs) / bs, true);
        if (answer instanceof Promise) answer = await answer;
      }
      setWriteMap(table, folio, block, answer);
    } catch (caught) {
      if (block === blockFrom) throw caught;
      return writeBeginEdges(inode, folio, fromBytes, folioStart + block * bs, options, caught);
    }
  }
  return writeBeginEdges(inode, folio, fromBytes, toBytes, options, undefined);
}

/** The partial edge blocks of [fromBytes, endBytes) made uptodate (zeroed, or read: then a promise); `error` ends the range at endBytes. */
function writeBeginEdges(
  inode: BufferInode, folio: Folio, fromBytes: number, endBytes: number, options: BlockWriteOptions, error: unknown,
): WriteBeginResult | Promise<WriteBeginResult> {
  const result: WriteBeginResult = error === undefined ? { endBytes } : { endBytes, error };
  const reads = prepareEdgeBlocks(inode, folio, fromBytes, endBytes);
  if (reads.length === 0) return result;
  return blockFillFolios(inode, reads, { getBlock: options.readGetBlock, device: options.device }).then(() => result);
}

/**
 * Whether [fromBytes, toBytes) of a locked folio needs no write_begin work: every block
 * mapped or delayed and both edges block-aligned or uptodate (the overwrite fast path:
 * no promise at all).
 */
export function blockWriteReady(inode: BufferInode, folio: Folio, fromBytes: number, toBytes: number): boolean {
  const bs = inode.blockSizeBytes;
  const folioStart = folio.positionBytes;
  const table = BufferHeadTable.of(folio.mapping.cache);
  if (!table.has(folio)) return false;
  const base = folio.slot * BUFFERS_PER_PAGE_MAX;
  const blockFrom = Math.floor((fromBytes - folioStart) / bs);
  const blockTo = Math.ceil((toBytes - folioStart) / bs);
  for (let block = blockFrom; block < blockTo; block++) {
    if ((table.states[base + block] & (BufferState.MAPPED | BufferState.DELAY)) === 0) return false;
  }
  if (fromBytes % bs !== 0 && !folio.isRangeUptodate(blockFrom, blockFrom + 1)) return false;
  return toBytes % bs === 0 || folio.isRangeUptodate(blockTo - 1, blockTo);
}

// The first and last blocks of [from, to) when only partly written and not uptodate:
// zeroed when nothing on the device is worth keeping, else returned to be read.
function prepareEdgeBlocks(inode: BufferInode, folio: Folio, from: number, to: number): FillRange[] {
  const bs = inode.blockSizeBytes;
  const folioStart = folio.positionBytes;
  const first = from % bs !== 0 ? Math.floor((from - folioStart) / bs) : -1;
  const last = to % bs !== 0 ? Math.floor((to - folioStart) / bs) : -1;
  const reads: FillRange[] = [];
  if (first < 0 && last < 0) return reads;
  const table = BufferHeadTable.of(folio.mapping.cache);
  const base = table.base(folio);
  for (const block of first === last ? [first] : [first, last]) {
    if (block < 0 || folio.isRangeUptodate(block, block + 1)) continue;
    const state = table.states[base + block];
    const written = (state & BufferState.MAPPED) !== 0 && (state & (BufferState.NEW | BufferState.UNWRITTEN)) === 0;
    // New, delayed or unwritten: nothing on the device to keep; the copy fills the rest.
    if (written) reads.push({ folio, blockStart: block, blockEnd: block + 1 });
    else folio.bytes().fill(0, block * bs, (block + 1) * bs);
  }
  return reads;
}

/** block_write_end: blocks of [fromBytes, toBytes) uptodate and dirty, no longer new. */
export function blockWriteEnd(inode: BufferInode, folio: Folio, fromBytes: number, toBytes: number): void {
  const bs = inode.blockSizeBytes;
  const folioStart = folio.positionBytes;
  const blockFrom = Math.floor((fromBytes - folioStart) / bs);
  const blockTo = Math.ceil((toBytes - folioStart) / bs);
  folio.markUptodate(blockFrom, blockTo);
  folio.markDirty(blockFrom, blockTo);
  BufferHeadTable.of(folio.mapping.cache).clearBits(folio, blockFrom, blockTo, BufferState.NEW);
}

/** pwrite of all of `source` at posBytes; returns bytes written (short only after an error). */
export async function blockWrite(inode: BufferInode, posBytes: number, source: Uint8Array, options: BlockWriteOptions): Promise<number> {
  assert(Number.isSafeInteger(posBytes) && posBytes >= 0, 'write offset is a non-negative integer');
  if (source.length === 0) return 0;
  const bs = inode.blockSizeBytes;
  const sizeBytes = inode.sizeBytes;
  if (posBytes > sizeBytes && sizeBytes % bs !== 0 && options.zeroTail !== undefined) {
    await options.zeroTail(sizeBytes, Math.min(posBytes, roundDown(sizeBytes, bs) + bs) - sizeBytes);
  }
  const mapping = inode.mapping;
  const end = posBytes + source.length;
  let done = 0;
  while (done < source.length) {
    const at = posBytes + done;
    const index = Math.floor(at / PAGE_BYTES);
    const chunkEnd = Math.min(end, (index + 1) * PAGE_BYTES);
    // Below the dirty limit throttle() is mostly a resolved promise: a turn of the microtask
    // queue per page for nothing, so only a writer it would stop or yield asks.
    const cache = mapping.cache;
    if (cache.throttleDue()) await cache.throttle();
    const folio = mapping.tryGetOrCreate(index, 0) ?? await mapping.getOrCreate(index, 0);
    let prepared: WriteBeginResult;
    try {
      if (!folio.tryLock()) await folio.lock();
      try {
        if (!folio.attached) continue; // truncated while we waited: look again
        try {
          const begun = blockWriteReady(inode, folio, at, chunkEnd) ? { endBytes: chunkEnd } : blockWriteBegin(inode, folio, at, chunkEnd, options);
          prepared = begun instanceof Promise ? await begun : begun;
        } catch (error) {
          if (done === 0) throw error;
          return done; // short write: report what was copied
        }
        folio.bytes().set(source.subarray(done, prepared.endBytes - posBytes), at - folio.positionBytes);
        blockWriteEnd(inode, folio, at, prepared.endBytes);
        if (prepared.endBytes > inode.sizeBytes) inode.sizeBytes = prepared.endBytes;
      } finally {
        folio.unlock();
      }
    } finally {
      folio.put();
    }
    done = prepared.endBytes - posBytes;
    if (prepared.error !== undefined) return done;
  }
  return done;
}

// ─── Zeroing and truncation ─────────────────────────────────────────────────────────────

export interface BlockZeroOptions {
  /** getBlock for reads (create = false). */
  readGetBlock: GetBlock;
  device: BlockDevice;
}

/** Zero [posBytes, posBytes + lengthBytes) in the cache (ext4_block_zero_page_range); never changes i_size. */
export async function blockZeroRange(inode: BufferInode, posBytes: number, lengthBytes: number, options: BlockZeroOptions): Promise<void> {
  const end = posBytes + lengthBytes;
  const mapping = inode.mapping;
  for (let at = posBytes; at < end;) {
    const index = Math.floor(at / PAGE_BYTES);
    const chunkEnd = Math.min(end, (index + 1) * PAGE_BYTES);
    if (mapping.lookup(index) !== null || await anyBlockNeedsZero(inode, at, chunkEnd, options)) {
      const folio = await mapping.getOrCreate(index, 0);
      try {
        await folio.lock();
        try {
          if (!folio.attached) continue;
          await zeroFolioBlocks(inode, folio, at, chunkEnd, options);
        } finally {
          folio.unlock();
        }
      } finally {
        folio.put();
      }
    }
    at = chunkEnd;
  }
}

// Without a cached folio: whether some block of [from, to) holds data (written or delayed).
async function anyBlockNeedsZero(inode: BufferInode, from: number, to: number, options: BlockZeroOptions): Promise<boolean> {
  const bs = inode.blockSizeBytes;
  for (let block = Math.floor(from / bs); block < Math.ceil(to / bs); block++) {
    const map = await getBlockAwait(options.readGetBlock, inode, block, false);
    assert(map !== null, 'a read getBlock always answers');
    if ((map.state & BufferState.DELAY) !== 0) return true;
    if ((map.state & BufferState.MAPPED) !== 0 && (map.state & BufferState.UNWRITTEN) === 0) return true;
  }
  return false;
}

// Zero the blocks of [from, to) in a locked folio that need it (see the header).
async function zeroFolioBlocks(inode: BufferInode, folio: Folio, from: number, to: number, options: BlockZeroOptions): Promise<void> {
  const bs = inode.blockSizeBytes;
  const folioStart = folio.positionBytes;
  const table = BufferHeadTable.of(folio.mapping.cache);
  const base = table.base(folio);
  const blockFrom = Math.floor((from - folioStart) / bs);
  const blockTo = Math.ceil((to - folioStart) / bs);
  const zeroed: number[] = [];
  for (let block = blockFrom; block < blockTo; block++) {
    if ((table.states[base + block] & (BufferState.MAPPED | BufferState.DELAY)) === 0) {
      const map = await getBlockAwait(options.readGetBlock, inode, (folioStart + block * bs) / bs, false);
      assert(map !== null, 'a read getBlock always answers');
      table.setMap(folio, block, map);
    }
    const state = table.states[base + block];
    const dirty = folio.isRangeDirty(block, block + 1);
    const zeroOnDisk = (state & (BufferState.MAPPED | BufferState.DELAY)) === 0 || (state & BufferState.UNWRITTEN) !== 0;
    if (zeroOnDisk && !dirty) continue; // reads as zeros already
    zeroed.push(block);
  }
  if (zeroed.length === 0) return;
  const partial = zeroed.filter((block) => {
    const blockStart = folioStart + block * bs;
    return blockStart < from || blockStart + bs > to;
  });
  await blockFillFolios(inode, partial.map((block) => ({ folio, blockStart: block, blockEnd: block + 1 })), { getBlock: options.readGetBlock, device: options.device });
  zeroFolioRange(folio, from, to);
  for (const block of zeroed) {
    folio.markUptodate(block, block + 1);
    folio.markDirty(block, block + 1);
  }
}

/** Zero [newSizeBytes, end of its block) and write that block back and wait (block_truncate_page). */
export async function blockTruncatePage(inode: BufferInode, newSizeBytes: number, options: BlockZeroOptions & { writeback: BlockWritepagesOptions }): Promise<void> {
  const bs = inode.blockSizeBytes;
  if (newSizeBytes % bs === 0) return;
  const blockEnd = roundUp(newSizeBytes, bs);
  await blockZeroRange(inode, newSizeBytes, blockEnd - newSizeBytes, options);
  await blockWriteAndWait(inode, blockEnd - bs, blockEnd, options.writeback);
}

/**
 * truncate_pagecache_range: drop the folios wholly inside [startBytes, endBytes) (after
 * their writeback; dirty data discarded); in the ones it only touches zero the bytes and
 * discard the buffers of whole blocks inside (unmapped, clean). endBytes may be Infinity.
 */
export async function blockTruncatePagecacheRange(inode: BufferInode, startBytes: number, endBytes: number): Promise<void> {
  if (startBytes >= endBytes) return;
  const mapping = inode.mapping;
  const bs = inode.blockSizeBytes;
  const table = BufferHeadTable.of(mapping.cache);
  const indexStart = Math.floor(startBytes / PAGE_BYTES);
  const indexEnd = endBytes === Infinity ? PAGE_INDEX_LIMIT : Math.min(PAGE_INDEX_LIMIT, Math.ceil(endBytes / PAGE_BYTES));
  for (const folio of mapping.folios(indexStart, indexEnd)) {
    folio.get();
    try {
      await folio.lock();
      try {
        if (!folio.attached) continue;
        await folio.waitWriteback();
        const folioStart = folio.positionBytes;
        if (folioStart >= startBytes && folioStart + folio.lengthBytes <= endBytes) {
          table.detach(folio);
          mapping.deleteFolio(folio);
          continue;
        }
        zeroFolioRange(folio, startBytes, endBytes);
        const blockStart = Math.ceil((Math.max(startBytes, folioStart) - folioStart) / bs);
        const blockEnd = Math.floor((Math.min(endBytes, folioStart + folio.lengthBytes) - folioStart) / bs);
        if (blockStart < blockEnd) {
          table.discard(folio, blockStart, blockEnd);
          clearDirtyBlocks(folio, blockStart, blockEnd);
        }
      } finally {
        folio.unlock();
      }
    } finally {
      folio.put();
    }
  }
}

// Clear the dirty bits of blocks [blockStart, blockEnd), keeping the folio's other dirty blocks.
function clearDirtyBlocks(folio: Folio, blockStart: number, blockEnd: number): void {
  if (!folio.isRangeDirty(blockStart, blockEnd)) return;
  const kept = folio.dirtyRanges();
  folio.cancelDirty();
  for (const range of kept) {
    if (range.blockStart < blockStart) folio.markDirty(range.blockStart, Math.min(range.blockEnd, blockStart));
    if (range.blockEnd > blockEnd) folio.markDirty(Math.max(range.blockStart, blockEnd), range.blockEnd);
  }
}

/** Some cached block of [startBytes, endBytes) is dirty or under writeback (filemap_range_needs_writeback). */
export function blockRangeNeedsWriteback(inode: BufferInode, startBytes: number, endBytes: number): boolean {
  const bs = inode.blockSizeBytes;
  const indexEnd = endBytes === Infinity ? PAGE_INDEX_LIMIT : Math.min(PAGE_INDEX_LIMIT, Math.ceil(endBytes / PAGE_BYTES));
  for (const folio of inode.mapping.folios(Math.floor(startBytes / PAGE_BYTES), indexEnd)) {
    if (folio.isWriteback() || folio.writebackAccounted) return true;
    if (!folio.isDirty()) continue;
    const folioStart = folio.positionBytes;
    const blockStart = Math.floor((Math.max(startBytes, folioStart) - folioStart) / bs);
    const blockEnd = Math.ceil((Math.min(endBytes, folioStart + folio.lengthBytes) - folioStart) / bs);
    if (folio.isRangeDirty(blockStart, blockEnd)) return true;
  }
  return false;
}

// ─── page_mkwrite ───────────────────────────────────────────────────────────────────────

/**
 * block_page_mkwrite for the mmap emulation: the folio covering posBytes (< i_size),
 * locked and pinned, uptodate, its blocks inside i_size mapped (getBlock per unmapped
 * block: reserved or allocated) and dirty. The caller stores, then unlock() and put().
 */
export async function blockPageMkwrite(inode: BufferInode, posBytes: number, options: BlockWriteOptions): Promise<Folio> {
  const mapping = inode.mapping;
  for (;;) {
    if (posBytes >= inode.sizeBytes) throw sigbus(posBytes);
    const folio = await mapping.getOrCreate(Math.floor(posBytes / PAGE_BYTES), 0);
    let keep = false;
    try {
      await folio.lock();
      try {
        if (!folio.attached) continue;
        const folioStart = folio.positionBytes;
        if (folioStart >= inode.sizeBytes) throw sigbus(posBytes);
        await folio.waitWriteback(); // stable pages: no store lands in a write in flight
        const end = Math.min(folioStart + folio.lengthBytes, roundUp(inode.sizeBytes, inode.blockSizeBytes));
        const blockEnd = (end - folioStart) / inode.blockSizeBytes;
        await blockFillFolios(inode, [{ folio, blockStart: 0, blockEnd: folio.blockCount }], { getBlock: options.readGetBlock, device: options.device });
        const prepared = await blockWriteBegin(inode, folio, folioStart, end, options);
        blockWriteEnd(inode, folio, folioStart, prepared.endBytes); // what was mapped holds data: dirty
        if (prepared.error !== undefined) throw prepared.error;
        keep = true;
        return folio;
      } finally {
        if (!keep) folio.unlock();
      }
    } finally {
      if (!keep) folio.put();
    }
  }
}

function sigbus(posBytes: number): FsError {
  return new FsError('EFAULT', { syscall: 'page_mkwrite', detail: `fault at ${posBytes} past EOF (SIGBUS)` });
}
