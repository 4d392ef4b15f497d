/**
 * Zero range and truncate helpers (seed §1.10).
 *
 * iomapZeroRange zeroes [pos, pos + len) through the page cache: MAPPED and DELALLOC ranges
 * are written with zeros (read-modify of partial blocks, marked dirty); HOLE and UNWRITTEN
 * ranges read as zero already and are skipped — but only when no dirty or under-writeback
 * cache overlaps them: in this design an UNWRITTEN extent routinely carries dirty cached
 * data (delalloc allocated at writeback, not yet converted), so skipping it would leave
 * stale bytes. Then the range is written back and waited for first, and re-mapped (it is
 * MAPPED now). Zeroing never raises i_size (Linux 943bc0882ceb).
 *
 * iomapTruncatePage zeroes [pos, end of its block) and writes that block back and waits:
 * the zeroed tail is durable before the caller commits a size change.
 * truncatePagecache / truncatePagecacheRange drop the cached folios wholly inside the
 * range (after their writeback) and zero the cached bytes of the folios it only touches;
 * their dirty bits stay, and writeback skips the blocks the filesystem punched (HOLE).
 *
 *   truncate down to 0x1800 (4 KiB blocks, one 16 KiB folio at 0):
 *   zero [0x1800, 0x2000) → write+wait block 1 → size := 0x1800 → cache: zero [0x1800, 0x4000)
 *
 * Cost: zeroing copies nothing (memory.fill), reads ≤ 2 blocks (partial edges not cached);
 * a flush before zeroing costs one writeback of the edge range; truncatePage: ≤ 1 block
 * read + 1 block write + completion.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_INDEX_LIMIT } from '../mm/constants.js';
import { iomapWriteRange } from './buffered-write.js';
import { PAGE_BYTES, roundUp, zeroFolioRange } from './folio-io.js';
import { iomapIter } from './iter.js';
import { type Iomap, IomapFlags, type IomapInode, IomapOp, type IomapOps, IomapType } from './types.js';
import { type IomapWritebackOptions, iomapWriteAndWait } from './writeback.js';

export interface IomapZeroOptions {
  ops: IomapOps;
  device: BlockDevice;
  /** To flush dirty cache over HOLE/UNWRITTEN ranges before skipping them, and for truncatePage. */
  writeback: IomapWritebackOptions;
}

/** Zero [posBytes, posBytes + lengthBytes) in the page cache; never changes i_size. */
export async function iomapZeroRange(inode: IomapInode, posBytes: number, lengthBytes: number, options: IomapZeroOptions): Promise<void> {
  if (lengthBytes <= 0) return;
  let flushedOnce = false;
  const actor = async (iomap: Iomap, pos: number, length: number): Promise<number> => {
    if (iomap.type === IomapType.HOLE || iomap.type === IomapType.UNWRITTEN) {
      if (!rangeNeedsWriteback(inode, pos, pos + length)) return length;
      if (!flushedOnce) {
        flushedOnce = true;
        await iomapWriteAndWait(inode, pos, pos + length, options.writeback);
        iomap.flags |= IomapFlags.STALE; // re-map: the blocks are MAPPED (or still a hole) now
        return 0;
      }
      // Dirty again already (a racing writer): zeroing the cache is always correct.
    }
    return iomapWriteRange(inode, { posBytes: pos, lengthBytes: length, source: null, op: IomapOp.ZERO }, options);
  };
  const done = await iomapIter(inode, options.ops, { posBytes, lengthBytes, op: IomapOp.ZERO }, actor);
  assert(done === lengthBytes, 'zero range zeroed the whole range');
}

/** Zero [posBytes, end of its block) and make it durable (before a size change commits). */
export async function iomapTruncatePage(inode: IomapInode, posBytes: number, options: IomapZeroOptions): Promise<void> {
  const blockBytes = inode.blockSizeBytes;
  if (posBytes % blockBytes === 0) return;
  const blockEnd = roundUp(posBytes, blockBytes);
  await iomapZeroRange(inode, posBytes, blockEnd - posBytes, options);
  await iomapWriteAndWait(inode, blockEnd - blockBytes, blockEnd, options.writeback);
}

/** The cache part of truncate to newSizeBytes: everything at or past it goes (zeroed in the EOF folio). */
export async function truncatePagecache(inode: IomapInode, newSizeBytes: number): Promise<void> {
  await truncatePagecacheRange(inode, newSizeBytes, Infinity);
}

/** Drop cached folios wholly inside [startBytes, endBytes); zero the cached bytes of those it touches. */
export async function truncatePagecacheRange(inode: IomapInode, startBytes: number, endBytes: number): Promise<void> {
  if (startBytes >= endBytes) return;
  const mapping = inode.mapping;
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
        if (folioStart >= startBytes && folioStart + folio.lengthBytes <= endBytes) mapping.deleteFolio(folio);
        else zeroFolioRange(folio, startBytes, endBytes);
      } finally {
        folio.unlock();
      }
    } finally {
      folio.put();
    }
  }
}

/** Some cached block of [startBytes, endBytes) is dirty or under writeback (filemap_range_needs_writeback). */
export function rangeNeedsWriteback(inode: IomapInode, startBytes: number, endBytes: number): boolean {
  const blockBytes = inode.blockSizeBytes;
  for (const folio of inode.mapping.folios(Math.floor(startBytes / PAGE_BYTES), Math.ceil(endBytes / PAGE_BYTES))) {
    if (folio.isWriteback() || folio.writebackAccounted) return true;
    if (!folio.isDirty()) continue;
    const folioStart = folio.positionBytes;
    const blockStart = Math.floor((Math.max(startBytes, folioStart) - folioStart) / blockBytes);
    const blockEnd = Math.ceil((Math.min(endBytes, folioStart + folio.lengthBytes) - folioStart) / blockBytes);
    if (folio.isRangeDirty(blockStart, blockEnd)) return true;
  }
  return false;
}
