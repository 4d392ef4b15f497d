/**
 * mm/cached-read: filemap_read's first step, for both buffered paths. Before a read asks
 * the filesystem anything (iomap's begin, buffer_head's getBlock), it looks in the page
 * cache: when every block of [pos, end) sits in an uptodate folio that nobody holds
 * locked, the bytes are copied out at once. The engine thread runs the check and the copy
 * in one synchronous step, so no writer on it can be half way through these bytes; a
 * locked folio (a write in progress, a channel client's lease, a fill) sends the read the
 * slow way, which waits for the lock.
 *
 * Cost: one mapping lookup and one uptodate-bit scan per folio, twice (check, then copy);
 * the copy is the folios' memory.copy / TypedArray.set.
 */
import { PAGE_BYTES } from './constants.js';
import type { AddressSpace } from './mapping.js';

/** Every block of [pos, end) is in an uptodate, unlocked folio. */
export function rangeCached(mapping: AddressSpace, blockBytes: number, pos: number, end: number): boolean {
  for (let at = pos; at < end;) {
    const folio = mapping.lookup(Math.floor(at / PAGE_BYTES));
    if (folio === null || folio.isLocked()) return false;
    const folioStart = folio.positionBytes;
    const chunkEnd = Math.min(end, folioStart + folio.lengthBytes);
    if (!folio.isRangeUptodate(Math.floor((at - folioStart) / blockBytes), Math.ceil((chunkEnd - folioStart) / blockBytes))) return false;
    at = chunkEnd;
  }
  return true;
}

/** Copy [pos, end) into target (target[0] = byte pos) if rangeCached; false: nothing copied. */
export function copyCached(mapping: AddressSpace, blockBytes: number, pos: number, end: number, target: Uint8Array): boolean {
  if (!rangeCached(mapping, blockBytes, pos, end)) return false;
  for (let at = pos; at < end;) {
    const folio = mapping.lookup(Math.floor(at / PAGE_BYTES))!;
    const chunkEnd = Math.min(end, folio.positionBytes + folio.lengthBytes);
    folio.copyOut(at - folio.positionBytes, target.subarray(at - pos, chunkEnd - pos));
    at = chunkEnd;
  }
  return true;
}
