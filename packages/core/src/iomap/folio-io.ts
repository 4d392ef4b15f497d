/**
 * Folio helpers shared by read, write, zero and mkwrite: fill the blocks of a locked folio
 * that are not uptodate from one mapping (MAPPED: device read; HOLE, DELALLOC, UNWRITTEN,
 * or wholly past EOF: zeros), and the small byte/offset arithmetic around folios.
 *
 * Invariant kept by every path (read, write, truncate, writeback): cached bytes past
 * i_size read as zero. The fill zeroes the part of the EOF block past i_size after reading
 * it, so a stale on-disk tail (seed §1.10, Jan Kara's note) never reaches the cache.
 *
 * Cost: one device read per run of consecutive not-uptodate MAPPED blocks in the folio
 * (bytes land straight in folio memory: no staging copy); zero fill = memory.fill.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import type { Folio } from '../mm/folio.js';
import { PAGE_BYTES } from '../mm/constants.js';
import { type Iomap, type IomapInode, IomapType } from './types.js';

export { PAGE_BYTES };

export function roundDown(value: number, unit: number): number {
  return value - (value % unit);
}

export function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

/** Largest order whose folio fits `pages` (the write/read length): floor(log2(pages)). */
export function orderForPages(pages: number): number {
  return pages <= 1 ? 0 : 31 - Math.clz32(Math.min(pages, 2 ** 30));
}

/** Zero folio bytes for file range [startBytes, endBytes) (clamped to the folio). */
export function zeroFolioRange(folio: Folio, startBytes: number, endBytes: number): void {
  const folioStart = folio.positionBytes;
  const from = Math.max(startBytes, folioStart) - folioStart;
  const to = Math.min(endBytes, folioStart + folio.lengthBytes) - folioStart;
  if (from < to) folio.zeroBytes(from, to);
}

/**
 * Make the blocks of `folio` covering file range [startBytes, endBytes) uptodate, using
 * `iomap` (which covers the range). The caller holds the folio lock.
 */
export async function fillFolioBlocks(
  inode: IomapInode,
  folio: Folio,
  iomap: Iomap,
  range: { startBytes: number; endBytes: number; device: BlockDevice },
): Promise<void> {
  const blockBytes = inode.blockSizeBytes;
  const folioStart = folio.positionBytes;
  const startBytes = Math.max(roundDown(range.startBytes, blockBytes), folioStart);
  const endBytes = Math.min(roundUp(range.endBytes, blockBytes), folioStart + folio.lengthBytes);
  assert(folio.lockedHere, 'folio is filled under its lock');
  assert(startBytes >= iomap.offsetBytes && endBytes <= iomap.offsetBytes + iomap.lengthBytes, 'fill stays inside the mapping');
  const blockEnd = (endBytes - folioStart) / blockBytes;
  let block = folio.nextBlock('uptodate', false, (startBytes - folioStart) / blockBytes, blockEnd);
  while (block < blockEnd) {
    const runEnd = folio.nextBlock('uptodate', true, block, blockEnd);
    await fillRun(inode, folio, iomap, block * blockBytes, runEnd * blockBytes, range.device);
    folio.markUptodate(block, runEnd);
    block = folio.nextBlock('uptodate', false, runEnd, blockEnd);
  }
}

// Fill folio bytes [from, to) (offsets in the folio, block aligned): read what is MAPPED inside i_size, zero the rest.
async function fillRun(inode: IomapInode, folio: Folio, iomap: Iomap, from: number, to: number, device: BlockDevice): Promise<void> {
  const folioStart = folio.positionBytes;
  const sizeBytes = inode.sizeBytes;
  const readEnd = iomap.type === IomapType.MAPPED
    ? Math.min(to, Math.max(from, roundUp(sizeBytes, inode.blockSizeBytes) - folioStart))
    : from;
  const bytes = folio.bytes();
  if (readEnd > from) {
    const addrBytes = iomap.addrBytes + (folioStart + from - iomap.offsetBytes);
    await device.read(addrBytes, bytes.subarray(from, readEnd));
    // The EOF block's tail past i_size reads as zero whatever the disk holds there.
    if (folioStart + readEnd > sizeBytes) folio.zeroBytes(Math.max(from, sizeBytes - folioStart), readEnd);
  }
  if (readEnd < to) folio.zeroBytes(readEnd, to);
}
