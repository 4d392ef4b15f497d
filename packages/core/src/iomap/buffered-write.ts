/**
 * Buffered write (seed §1.5): pwrite through the page cache from a caller buffer.
 *
 * Per mapping (begin(WRITE): the filesystem reserves delalloc for the whole hole at once):
 *   throttle → get/create a folio sized to what is left of the write (order from the
 *   length; the cache may give a smaller one under memory pressure — the loop just takes
 *   more, smaller steps) → lock → re-check the cookie (stale: unlock, re-map from here) →
 *   read-modify the partial edge blocks that are not uptodate (MAPPED: read; else zero) →
 *   copy in → mark the blocks uptodate + dirty → raise i_size in memory (never the disk
 *   size: writeback completion does that) → unlock.
 * A failure after some bytes were copied ends the write short: ops.end() hears the bytes
 * done (the filesystem punches the unused delalloc tail) and the caller gets the count;
 * with nothing done the error is thrown.
 *
 * Writing past EOF first zeroes the old EOF block's tail in the cache (via zero range), so
 * the gap reads as zero and is written before the new size reaches the disk (§1.10).
 *
 * Cost: bytes copied = the bytes written, once (TypedArray.set into folio memory); device
 * reads ≤ 2 per folio (partial edge blocks not cached), 0 for block-aligned writes or
 * cached edges; one begin()/end() per mapping; one throttle() per folio.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_BYTES, fillFolioBlocks, orderForPages, roundDown } from './folio-io.js';
import { iomapIter } from './iter.js';
import { type Iomap, IomapFlags, type IomapInode, IomapOp, type IomapOps } from './types.js';

export interface IomapWriteOptions {
  ops: IomapOps;
  device: BlockDevice;
  /**
   * Called to zero the old EOF block tail before a write past EOF (zero.ts's iomapZeroRange
   * bound to this file's zero options). Absent: the tail is left as the cache holds it.
   */
  zeroTail?: (posBytes: number, lengthBytes: number) => Promise<void>;
}

/** pwrite of all of `source` at posBytes; returns bytes written (short only after an error). */
export async function iomapWrite(inode: IomapInode, posBytes: number, source: Uint8Array, options: IomapWriteOptions): Promise<number> {
  assert(Number.isSafeInteger(posBytes) && posBytes >= 0, 'write offset is a non-negative integer');
  if (source.length === 0) return 0;
  const sizeBytes = inode.sizeBytes;
  if (posBytes > sizeBytes && sizeBytes % inode.blockSizeBytes !== 0 && options.zeroTail !== undefined) {
    const tailEnd = Math.min(posBytes, roundDown(sizeBytes, inode.blockSizeBytes) + inode.blockSizeBytes);
    await options.zeroTail(sizeBytes, tailEnd - sizeBytes);
  }
  return iomapWriteRange(inode, { posBytes, lengthBytes: source.length, source, op: IomapOp.WRITE }, options);
}

export interface WriteRange {
  posBytes: number;
  lengthBytes: number;
  /** Bytes to copy in; null = zeros (zero range: i_size is then left alone). */
  source: Uint8Array | null;
  op: number;
}

/** The write loop; zero range uses it with source null over MAPPED/DELALLOC mappings. */
export async function iomapWriteRange(inode: IomapInode, range: WriteRange, options: IomapWriteOptions): Promise<number> {
  let failure: unknown = null;
  const actor = async (iomap: Iomap, pos: number, length: number): Promise<number> => {
    let done = 0;
    try {
      while (done < length) {
        const step = await writeFolio(inode, iomap, pos + done, pos + length, range, options);
        if (step === 0) return done; // stale: STALE is set, the loop re-maps from here
        done += step;
      }
    } catch (error) {
      if (done === 0) throw error;
      failure = error; // short write: report what was copied
    }
    return done;
  };
  const { posBytes, lengthBytes, op } = range;
  const done = await iomapIter(inode, options.ops, { posBytes, lengthBytes, op }, actor);
  if (done === 0 && failure !== null) throw failure;
  return done;
}

// One folio's part of [pos, end): returns bytes copied, 0 when the mapping went stale.
async function writeFolio(inode: IomapInode, iomap: Iomap, pos: number, end: number, range: WriteRange, options: IomapWriteOptions): Promise<number> {
  const mapping = inode.mapping;
  const index = Math.floor(pos / PAGE_BYTES);
  if (range.source !== null) await mapping.cache.throttle();
  const order = orderForPages(Math.ceil(end / PAGE_BYTES) - index);
  for (;;) {
    const folio = await mapping.getOrCreate(index, order);
    try {
      await folio.lock();
      try {
        if (!folio.attached) continue;
        if (options.ops.valid !== undefined && !options.ops.valid(inode, iomap)) {
          iomap.flags |= IomapFlags.STALE;
          return 0;
        }
        const folioStart = folio.positionBytes;
        const chunkEnd = Math.min(end, folioStart + folio.lengthBytes);
        await fillPartialBlocks(inode, folio, iomap, pos, chunkEnd, options.device);
        if (range.source === null) folio.zeroBytes(pos - folioStart, chunkEnd - folioStart);
        else folio.bytes().set(range.source.subarray(pos - range.posBytes, chunkEnd - range.posBytes), pos - folioStart);
        const blockBytes = inode.blockSizeBytes;
        const blockStart = Math.floor((pos - folioStart) / blockBytes);
        const blockEnd = Math.ceil((chunkEnd - folioStart) / blockBytes);
        folio.markUptodate(blockStart, blockEnd);
        folio.markDirty(blockStart, blockEnd);
        if (range.source !== null && chunkEnd > inode.sizeBytes) inode.sizeBytes = chunkEnd;
        return chunkEnd - pos;
      } finally {
        folio.unlock();
      }
    } finally {
      folio.put();
    }
  }
}

// Read-modify: the first and last blocks of [pos, end) when only partly written and not uptodate.
async function fillPartialBlocks(inode: IomapInode, folio: import('../mm/folio.js').Folio, iomap: Iomap, pos: number, end: number, device: BlockDevice): Promise<void> {
  const blockBytes = inode.blockSizeBytes;
  if (pos % blockBytes !== 0) {
    await fillFolioBlocks(inode, folio, iomap, { startBytes: pos, endBytes: pos + 1, device });
  }
  if (end % blockBytes !== 0) {
    await fillFolioBlocks(inode, folio, iomap, { startBytes: end - 1, endBytes: end, device });
  }
}
