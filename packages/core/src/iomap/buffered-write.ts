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
 * iomapWriteBegin / iomapWriteCommit cut the same loop at the copy, for a copy another
 * thread does (a client of channel/server.ts copying into shared folio memory): begin
 * leaves the folios locked and pinned, commit marks them and lets go (see below).
 *
 * Cost: bytes copied = the bytes written, once (TypedArray.set into folio memory); device
 * reads ≤ 2 per folio (partial edge blocks not cached), 0 for block-aligned writes or
 * cached edges; one begin()/end() per mapping; one throttle() per folio.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_BYTES, fillFolioBlocks, orderForPages, roundDown } from './folio-io.js';
import { iomapIter } from './iter.js';
import type { Folio } from '../mm/folio.js';
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
        else folio.copyIn(pos - folioStart, range.source.subarray(pos - range.posBytes, chunkEnd - range.posBytes));
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

// ─── Two-phase write: another thread copies (channel/server.ts) ─────────────────────────

/**
 * One folio of a prepared write: locked and pinned by the engine thread, its partial edge
 * blocks filled; the copier puts the bytes of file range [startBytes, endBytes) at
 * folio.dataPtr + (startBytes − folio.positionBytes) in the shared wasm memory.
 */
export interface PreparedFolio {
  folio: Folio;
  startBytes: number;
  endBytes: number;
}

/** A write made ready by iomapWriteBegin: [posBytes, posBytes + lengthBytes), folios in file order. */
export interface PreparedWrite {
  readonly inode: IomapInode;
  readonly posBytes: number;
  lengthBytes: number;
  folios: PreparedFolio[];
}

export interface IomapWriteBeginOptions extends IomapWriteOptions {
  /** Prepare at most this many folios; the rest of the range is left (a short prepare). */
  foliosMax: number;
}

/**
 * iomapWrite up to the copy, for a copy another thread does (a client copying into
 * shared folio memory): old EOF tail zeroed, begin() per mapping (delalloc reserved),
 * folios got, locked, cookie re-checked, partial edge blocks filled — and i_size raised to
 * the prepared end. The folios stay locked and pinned until iomapWriteCommit or
 * iomapWriteAbort; nothing is dirty yet, so writeback, truncate and eviction cannot touch
 * them meanwhile (they wait for the lock or skip them).
 *
 * i_size moves here, not after the copy as in iomapWrite, because the engine runs other
 * changes while the copy is in flight: a later write past EOF, a truncate up or an
 * fallocate would otherwise take the old size and zero the old EOF tail — inside this
 * write's range — after its commit. A reader meanwhile sees the new size early: the new
 * blocks are not uptodate and their folios are locked, so a cache read waits for the
 * commit; the bytes of an already uptodate EOF block past the old size read as zeros
 * until then.
 *
 * Never waits while holding a folio lock: only the first folio may wait (for memory, for
 * its lock); later folios come from tryGetOrCreate/tryLock and the prepare ends short at
 * the first busy one. throttle() runs once, before any lock. So a prepared write cannot
 * deadlock against writeback or reads, which hold one folio lock at a time.
 *
 * Returns the prepared write (lengthBytes ≥ 1; short after a busy folio, foliosMax, or an
 * error once something was prepared); with nothing prepared an error is thrown.
 */
export async function iomapWriteBegin(inode: IomapInode, posBytes: number, lengthBytes: number, options: IomapWriteBeginOptions): Promise<PreparedWrite> {
  assert(Number.isSafeInteger(posBytes) && posBytes >= 0, 'write offset is a non-negative integer');
  assert(Number.isSafeInteger(lengthBytes) && lengthBytes > 0, 'a prepared write has bytes');
  assert(Number.isInteger(options.foliosMax) && options.foliosMax >= 1, 'a prepared write may hold a folio');
  const sizeBytes = inode.sizeBytes;
  if (posBytes > sizeBytes && sizeBytes % inode.blockSizeBytes !== 0 && options.zeroTail !== undefined) {
    const tailEnd = Math.min(posBytes, roundDown(sizeBytes, inode.blockSizeBytes) + inode.blockSizeBytes);
    await options.zeroTail(sizeBytes, tailEnd - sizeBytes);
  }
  const prepared: PreparedWrite = { inode, posBytes, lengthBytes: 0, folios: [] };
  await inode.mapping.cache.throttle();
  const actor = async (iomap: Iomap, pos: number, length: number): Promise<number> => {
    let done = 0;
    try {
      while (done < length && prepared.folios.length < options.foliosMax) {
        const step = await prepareFolio(inode, iomap, pos + done, pos + length, prepared, options);
        if (step === 0) return done; // stale (STALE set: re-map) or the next folio is busy (short)
        done += step;
      }
    } catch (error) {
      if (prepared.folios.length === 0) throw error;
    }
    return done; // < length after an error or at foliosMax: the loop stops, end() punches the rest
  };
  await iomapIter(inode, options.ops, { posBytes, lengthBytes, op: IomapOp.WRITE }, actor);
  assert(prepared.folios.length > 0, 'a prepare without an error holds a folio');
  prepared.lengthBytes = prepared.folios[prepared.folios.length - 1].endBytes - posBytes;
  return prepared;
}

// One folio of [pos, end) for a prepared write: bytes it covers, 0 when stale or busy.
async function prepareFolio(inode: IomapInode, iomap: Iomap, pos: number, end: number, prepared: PreparedWrite, options: IomapWriteBeginOptions): Promise<number> {
  const mapping = inode.mapping;
  const index = Math.floor(pos / PAGE_BYTES);
  const order = orderForPages(Math.ceil(end / PAGE_BYTES) - index);
  const first = prepared.folios.length === 0;
  for (;;) {
    const folio = first ? await mapping.getOrCreate(index, order) : mapping.tryGetOrCreate(index, order);
    if (folio === null) return 0;
    let kept = false;
    try {
      if (first) await folio.lock();
      else if (!folio.tryLock()) return 0;
      try {
        if (!folio.attached) continue;
        if (options.ops.valid !== undefined && !options.ops.valid(inode, iomap)) {
          iomap.flags |= IomapFlags.STALE;
          return 0;
        }
        const chunkEnd = Math.min(end, folio.positionBytes + folio.lengthBytes);
        await fillPartialBlocks(inode, folio, iomap, pos, chunkEnd, options.device);
        prepared.folios.push({ folio, startBytes: pos, endBytes: chunkEnd });
        if (chunkEnd > inode.sizeBytes) inode.sizeBytes = chunkEnd;
        kept = true;
        return chunkEnd - pos;
      } finally {
        if (!kept) folio.unlock();
      }
    } finally {
      if (!kept) folio.put();
    }
  }
}

/**
 * The copier has put every byte in (and published them: the caller read its Atomics word
 * first): the blocks become uptodate and dirty, each folio is unlocked and unpinned.
 */
export function iomapWriteCommit(prepared: PreparedWrite): void {
  const blockBytes = prepared.inode.blockSizeBytes;
  for (const { folio, startBytes, endBytes } of prepared.folios) {
    const folioStart = folio.positionBytes;
    const blockStart = Math.floor((startBytes - folioStart) / blockBytes);
    const blockEnd = Math.ceil((endBytes - folioStart) / blockBytes);
    folio.markUptodate(blockStart, blockEnd);
    folio.markDirty(blockStart, blockEnd);
    folio.unlock();
    folio.put();
  }
  prepared.folios = [];
}

/**
 * The copier is gone (its thread died mid-copy): the range holds some of its bytes, or
 * whatever the arena held before. Zero it and commit, so the write lands as zeros — never
 * as another file's old bytes — and i_size, the reservation and the dirty state agree.
 */
export function iomapWriteAbort(prepared: PreparedWrite): void {
  for (const { folio, startBytes, endBytes } of prepared.folios) {
    folio.zeroBytes(startBytes - folio.positionBytes, endBytes - folio.positionBytes);
  }
  iomapWriteCommit(prepared);
}
