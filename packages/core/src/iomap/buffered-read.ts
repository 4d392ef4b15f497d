/**
 * Buffered read (seed §1.4, §1.9): pread through the page cache into a caller buffer.
 *
 * First the page cache alone (mm/cached-read.ts): when every block of [pos, end) is in an
 * uptodate, unlocked folio the bytes are copied out at once, with no mapping call — as
 * Linux's filemap_read finds cached folios before it asks the filesystem. Otherwise:
 *
 * For each mapping of [pos, end): get or create the folios (order from the per-file
 * readahead state, never past EOF), lock, re-check the mapping's cookie (a stale one is
 * re-mapped: writeback may have turned DELALLOC into UNWRITTEN/MAPPED and the folio may
 * have been evicted meanwhile), fill the blocks that are not uptodate (MAPPED: one device
 * read per run straight into folio memory; HOLE/DELALLOC/UNWRITTEN/past EOF: zeros), mark
 * them uptodate, copy the requested part out.
 *
 * Readahead: a read starting where the previous one ended grows the window (×2, from
 * READAHEAD_WINDOW_PAGES_MIN to READAHEAD_WINDOW_PAGES_MAX) and the folio order (+2 per
 * round, mapping.readaheadOrder); when the reader comes within half a window of what was
 * read ahead (the kernel's async readahead marker), the next window past that point is
 * filled (clamped to EOF) — so a small sequential read costs its own folios, not a walk
 * of the whole window. A random read resets the window and order to the request's size.
 *
 *   sequential reads of 64 KiB:  window 16 → 32 → 64 … pages;  order 2 → 4 → 6 …
 *
 * Holes with nothing cached: a HOLE mapping over pages no folio covers is read by zeroing
 * the caller's bytes directly (one memory.fill), with no folio made, filled and copied
 * out, and readahead over such pages makes nothing. Linux caches zeroed folios there; they
 * hold no information, cost cache memory, and a later write must find them first. The
 * check and the fill are one synchronous step on the engine thread, so a write that makes
 * a folio there is ordered wholly before or after the read.
 *
 * Cost: bytes copied = the requested bytes once (folio → caller, TypedArray.set); device
 * reads = one per run of not-uptodate MAPPED blocks per folio (0 on a cache hit); one
 * begin() per mapping.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_INDEX_LIMIT } from '../mm/constants.js';
import type { Folio } from '../mm/folio.js';
import { copyCached, rangeCached } from '../mm/cached-read.js';
import { PAGE_BYTES, fillFolioBlocks, orderForPages, roundUp } from './folio-io.js';
import { iomapIter } from './iter.js';
import { type Iomap, IomapFlags, type IomapInode, IomapOp, type IomapOps, IomapType } from './types.js';
import type { WasmCore } from '../wasm/core.js';

export const READAHEAD_WINDOW_PAGES_MIN = 4;
/** 2 MiB: the largest readahead window (Linux's default read_ahead_kb is 128 KiB; large folios want more). */
export const READAHEAD_WINDOW_PAGES_MAX = 512;

/** Per open file (struct file_ra_state): where the last read ended and how far it read ahead. */
export interface ReadaheadState {
  nextPosBytes: number;
  windowPages: number;
  orderPrevious: number;
  /** End of what readahead has filled (the next window starts here). */
  aheadEndBytes: number;
}

export function createReadaheadState(): ReadaheadState {
  return { nextPosBytes: -1, windowPages: 0, orderPrevious: 0, aheadEndBytes: 0 };
}

export interface IomapReadOptions {
  ops: IomapOps;
  device: BlockDevice;
  /** The open file's readahead state; absent = no readahead, order from the request length. */
  readahead?: ReadaheadState;
}

/** pread: copies min(target.length, size − pos) bytes at posBytes into target; returns that count. */
export async function iomapRead(inode: IomapInode, posBytes: number, target: Uint8Array, options: IomapReadOptions): Promise<number> {
  assert(Number.isSafeInteger(posBytes) && posBytes >= 0, 'read offset is a non-negative integer');
  const readEnd = Math.min(posBytes + target.length, inode.sizeBytes);
  if (posBytes >= readEnd) return 0;
  const plan = readPlan(inode, posBytes, readEnd, options.readahead);
  const { ops, device } = options;
  const mapping = inode.mapping;
  const readAhead = () => iomapIter(inode, ops, { posBytes: plan.aheadStart, lengthBytes: plan.aheadEnd - plan.aheadStart, op: IomapOp.READ }, actor);
  const actor = async (iomap: Iomap, pos: number, length: number): Promise<number> => {
    const end = pos + length;
    let at = pos;
    while (at < end) {
      if (iomap.type === IomapType.HOLE) {
        // The uncached part of a hole: zeros straight into the caller's buffer (see the header).
        const cachedAt = mapping.firstCachedIndex(Math.floor(at / PAGE_BYTES), Math.ceil(end / PAGE_BYTES)) * PAGE_BYTES;
        if (cachedAt > at) {
          const holeEnd = Math.min(end, cachedAt);
          zeroOut(mapping.cache.core, at, holeEnd, target, posBytes, readEnd);
          at = holeEnd;
          continue;
        }
      }
      const indexLimit = Math.ceil(inode.sizeBytes / PAGE_BYTES);
      const folio = await mapping.getOrCreate(Math.floor(at / PAGE_BYTES), plan.order, { indexLimit });
      try {
        await folio.lock();
        try {
          if (!folio.attached) continue; // truncated while we waited: look again
          if (ops.valid !== undefined && !ops.valid(inode, iomap)) {
            iomap.flags |= IomapFlags.STALE;
            return at - pos;
          }
          const chunkEnd = Math.min(end, folio.positionBytes + folio.lengthBytes);
          await fillFolioBlocks(inode, folio, iomap, { startBytes: at, endBytes: chunkEnd, device });
          copyOut(folio, at, chunkEnd, target, posBytes, readEnd);
          at = chunkEnd;
        } finally {
          folio.unlock();
        }
      } finally {
        folio.put();
      }
    }
    return length;
  };
  if (copyCached(mapping, inode.blockSizeBytes, posBytes, readEnd, target)) {
    // Readahead only where the window is not cached already (Linux marks the folios it reads ahead instead).
    if (plan.aheadEnd > plan.aheadStart && !rangeCached(mapping, inode.blockSizeBytes, plan.aheadStart, plan.aheadEnd)) await readAhead();
    return readEnd - posBytes;
  }
  const done = await iomapIter(inode, ops, { posBytes, lengthBytes: readEnd - posBytes, op: IomapOp.READ }, actor);
  if (plan.aheadEnd > plan.aheadStart && done === readEnd - posBytes) await readAhead();
  // A size change while we read may shorten what is valid; report what was both filled and inside EOF.
  return Math.max(0, Math.min(readEnd, posBytes + done, inode.sizeBytes) - posBytes);
}

interface ReadPlan {
  order: number;
  /** Readahead: also fill [aheadStart, aheadEnd) (empty when not reading ahead; ≤ EOF rounded to a block). */
  aheadStart: number;
  aheadEnd: number;
}

function readPlan(inode: IomapInode, posBytes: number, readEnd: number, state: ReadaheadState | undefined): ReadPlan {
  const requestPages = Math.ceil(readEnd / PAGE_BYTES) - Math.floor(posBytes / PAGE_BYTES);
  if (state === undefined) return { order: orderForPages(requestPages), aheadStart: readEnd, aheadEnd: readEnd };
  const sequential = state.nextPosBytes === posBytes;
  if (sequential) {
    state.windowPages = Math.min(READAHEAD_WINDOW_PAGES_MAX, Math.max(READAHEAD_WINDOW_PAGES_MIN, state.windowPages * 2, requestPages));
    state.orderPrevious = inode.mapping.readaheadOrder(state.orderPrevious, state.windowPages);
  } else {
    state.windowPages = Math.min(READAHEAD_WINDOW_PAGES_MAX, requestPages);
    state.orderPrevious = Math.min(orderForPages(requestPages), inode.mapping.orderMax);
  }
  state.nextPosBytes = readEnd;
  const windowBytes = state.windowPages * PAGE_BYTES;
  const limit = Math.min(PAGE_INDEX_LIMIT * PAGE_BYTES, roundUp(inode.sizeBytes, inode.blockSizeBytes));
  if (!sequential) state.aheadEndBytes = readEnd;
  // Within half a window of the readahead end (or past it): read the next window ahead.
  if (state.aheadEndBytes - readEnd >= windowBytes / 2) return { order: state.orderPrevious, aheadStart: readEnd, aheadEnd: readEnd };
  const aheadStart = Math.max(readEnd, state.aheadEndBytes);
  const aheadEnd = Math.max(aheadStart, Math.min(limit, aheadStart + windowBytes));
  state.aheadEndBytes = Math.max(state.aheadEndBytes, aheadEnd);
  return { order: state.orderPrevious, aheadStart, aheadEnd };
}

// Zero the part of file range [from, to) that lies in the request [requestPos, requestEnd) in target.
function zeroOut(core: WasmCore, from: number, to: number, target: Uint8Array, requestPos: number, requestEnd: number): void {
  const start = Math.max(from, requestPos) - requestPos;
  const end = Math.min(to, requestEnd) - requestPos;
  if (start >= end) return;
  if (target.buffer === core.bytes().buffer) core.kernels.bytesZero(target.byteOffset + start, end - start);
  else target.fill(0, start, end);
}

// Copy the part of folio range [from, to) that lies in the request [requestPos, requestEnd) into target.
function copyOut(folio: Folio, from: number, to: number, target: Uint8Array, requestPos: number, requestEnd: number): void {
  const start = Math.max(from, requestPos);
  const end = Math.min(to, requestEnd);
  if (start >= end) return;
  folio.copyOut(start - folio.positionBytes, target.subarray(start - requestPos, end - requestPos));
}
