/**
 * page_mkwrite for the mmap emulation (seed §1.11): the first store to a clean page of a
 * shared mapping. Lock the folio, check it is still inside i_size (a truncate may have
 * raced: SIGBUS, here EFAULT), wait for writeback (stable pages), map the
 * folio's in-size range with begin(WRITE|FAULT) (the filesystem reserves delalloc or
 * allocates unwritten), make it uptodate, mark those blocks dirty. The folio is returned
 * locked and pinned: the caller stores its bytes, then unlock() and put().
 *
 * Cost: one begin() per mapping in the folio; device reads only for blocks not cached;
 * no copy (the caller's store is the copy).
 */
import type { BlockDevice } from '../device/block-device.js';
import type { Folio } from '../mm/folio.js';
import { FsError } from '../vfs/errors.js';
import { PAGE_BYTES, fillFolioBlocks, roundUp } from './folio-io.js';
import { iomapIter } from './iter.js';
import { type Iomap, type IomapInode, IomapOp, type IomapOps } from './types.js';

export interface IomapMkwriteOptions {
  ops: IomapOps;
  device: BlockDevice;
  /** Order for a folio the fault has to create (faults map what readahead cached; default 0). */
  orderWanted?: number;
}

/** Returns the folio covering posBytes, locked, pinned, uptodate and dirty within i_size. */
export async function iomapPageMkwrite(inode: IomapInode, posBytes: number, options: IomapMkwriteOptions): Promise<Folio> {
  const mapping = inode.mapping;
  for (;;) {
    if (posBytes >= inode.sizeBytes) throw sigbus(posBytes);
    const indexLimit = Math.ceil(inode.sizeBytes / PAGE_BYTES);
    const folio = await mapping.getOrCreate(Math.floor(posBytes / PAGE_BYTES), options.orderWanted ?? 0, { indexLimit });
    let keep = false;
    try {
      await folio.lock();
      try {
        if (!folio.attached) continue;
        const folioStart = folio.positionBytes;
        if (folioStart >= inode.sizeBytes) throw sigbus(posBytes);
        await folio.waitWriteback();
        const end = Math.min(folioStart + folio.lengthBytes, roundUp(inode.sizeBytes, inode.blockSizeBytes));
        // The folio lock is held across begin() here, as iomap_page_mkwrite does.
        const actor = async (iomap: Iomap, pos: number, length: number): Promise<number> => {
          await fillFolioBlocks(inode, folio, iomap, { startBytes: pos, endBytes: pos + length, device: options.device });
          return length;
        };
        await iomapIter(inode, options.ops, { posBytes: folioStart, lengthBytes: end - folioStart, op: IomapOp.WRITE | IomapOp.FAULT }, actor);
        folio.markDirty(0, (end - folioStart) / inode.blockSizeBytes);
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
