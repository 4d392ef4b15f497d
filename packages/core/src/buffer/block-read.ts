/**
 * buffer/block-read: reading through order-0 folios with buffer heads — Linux's
 * block_read_full_folio and readahead, one getBlock per block.
 *
 *   blockRead(pos, len):  plan the fill window (the request, plus readahead when reads
 *     are sequential); the request wholly cached and uptodate: copied out at once
 *     (mm/cached-read.ts, filemap_read's first step), only readahead left → per batch
 *     of ≤ READ_BATCH_PAGES_MAX pages, in index order:
 *       get or create each page's folio and lock it (readahead pages that are already
 *       cached are skipped; under memory pressure readahead stops early)
 *       → blockFillFolios: per block not uptodate: its buffer's mapping, or getBlock
 *         (create = false); MAPPED → queued for a device read; hole, DELAY, UNWRITTEN or
 *         wholly past EOF → zeros, uptodate
 *       → the queued reads, merged while both the device blocks and the folio memory
 *         are contiguous (bio merging, without copies), issued together and awaited
 *       → bytes past i_size zeroed; the requested part copied out; unlock
 *
 *   pages   10      11      12      13          device blocks 500 501 502 | 900
 *   memory  A       A+4K    A+8K    B           → reads: [500, 503) into A, 900 into B
 *
 * Readahead state per open file: a read starting where the last one ended doubles the
 * window (4 → 512 pages, as iomap's), and the next part of the window is read when the
 * reader comes within half a window of its end; a random read resets it to the request.
 *
 * Cost: one getBlock per block not uptodate (a cached mapping answers synchronously);
 * one device read per run contiguous on the device and in memory; bytes copied = the
 * requested bytes once (one TypedArray.set per run of contiguous folio memory); one folio
 * lock per page.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_BYTES, PAGE_INDEX_LIMIT } from '../mm/constants.js';
import type { Folio } from '../mm/folio.js';
import { copyCached } from '../mm/cached-read.js';
import { BufferHeadTable, BufferState, type BufferInode, type GetBlock, checkBlockMap, roundUp } from './buffer-head.js';

export const READAHEAD_WINDOW_PAGES_MIN = 4;
/** 2 MiB, as the iomap path's window, so the two paths read ahead alike. */
export const READAHEAD_WINDOW_PAGES_MAX = 512;
/** Pages locked and filled together (one readahead window). */
export const READ_BATCH_PAGES_MAX = READAHEAD_WINDOW_PAGES_MAX;

/**
 * Per open file (file_ra_state): where the last read ended, the window, and the page
 * where what has been read ahead ends.
 */
export interface BufferReadahead {
  nextPosBytes: number;
  windowPages: number;
  aheadEndIndex: number;
}

export function createBufferReadahead(): BufferReadahead {
  return { nextPosBytes: -1, windowPages: 0, aheadEndIndex: 0 };
}

export interface BlockReadOptions {
  /** getBlock for reading (create is false). */
  getBlock: GetBlock;
  device: BlockDevice;
  readahead?: BufferReadahead;
}

/** Blocks [blockStart, blockEnd) of one locked folio to make uptodate. */
export interface FillRange {
  folio: Folio;
  blockStart: number;
  blockEnd: number;
}

/** pread: copies min(target.length, size − pos) bytes at posBytes into target; returns the count. */
export async function blockRead(inode: BufferInode, posBytes: number, target: Uint8Array, options: BlockReadOptions): Promise<number> {
  assert(Number.isSafeInteger(posBytes) && posBytes >= 0, 'read offset is a non-negative integer');
  const readEnd = Math.min(posBytes + target.length, inode.sizeBytes);
  if (posBytes >= readEnd) return 0;
  const indexStart = Math.floor(posBytes / PAGE_BYTES);
  const indexRequestEnd = Math.ceil(readEnd / PAGE_BYTES);
  const ahead = readaheadPages(inode, posBytes, readEnd, options.readahead);
  // The page cache first (filemap_read, generic to both paths): cached, only the readahead is left.
  const cached = copyCached(inode.mapping, inode.blockSizeBytes, posBytes, readEnd, target);
  const copy = new CopyOut(inode, target, posBytes, readEnd);
  for (const [from, to] of cached ? [ahead] : [[indexStart, indexRequestEnd], ahead]) {
    for (let index = from; index < to;) {
      const batchEnd = Math.min(to, index + READ_BATCH_PAGES_MAX);
      const { folios, next } = await lockReadBatch(inode, index, batchEnd, indexRequestEnd);
      try {
        const ranges = folios.map((folio) => ({ folio, blockStart: 0, blockEnd: folio.blockCount }));
        await blockFillFolios(inode, ranges, options, indexRequestEnd);
        for (const folio of folios) if (folio.index < indexRequestEnd) copy.add(folio);
        copy.flush();
      } finally {
        for (const folio of folios) {
          folio.unlock();
          folio.put();
        }
      }
      assert(next > index || index >= indexRequestEnd, 'a requested batch makes progress');
      if (next === index) break; // readahead gave up (no memory free now)
      index = next;
    }
  }
  // A truncate while we read may shorten what is valid.
  return Math.max(0, Math.min(readEnd, inode.sizeBytes) - posBytes);
}

/**
 * The pages to read ahead, past the request: none for a random read; for a sequential
 * one, the window doubles (4 → 512 pages) and the next part of it is read once the reader
 * is within half a window of what was read ahead before (the kernel's async readahead
 * marker), so a stream of small reads looks each page up about once, not once per read.
 */
function readaheadPages(inode: BufferInode, posBytes: number, readEnd: number, state: BufferReadahead | undefined): [number, number] {
  if (state === undefined) return [0, 0];
  const indexStart = Math.floor(posBytes / PAGE_BYTES);
  const indexRequestEnd = Math.ceil(readEnd / PAGE_BYTES);
  const requestPages = indexRequestEnd - indexStart;
  const sequential = state.nextPosBytes === posBytes;
  state.nextPosBytes = readEnd;
  if (!sequential) {
    state.windowPages = Math.min(READAHEAD_WINDOW_PAGES_MAX, requestPages);
    state.aheadEndIndex = indexRequestEnd;
    return [0, 0];
  }
  state.windowPages = Math.min(READAHEAD_WINDOW_PAGES_MAX, Math.max(READAHEAD_WINDOW_PAGES_MIN, state.windowPages * 2, requestPages));
  if (indexRequestEnd + state.windowPages / 2 < state.aheadEndIndex) return [0, 0];
  const eofIndex = Math.ceil(roundUp(inode.sizeBytes, inode.blockSizeBytes) / PAGE_BYTES);
  const aheadStart = Math.max(indexRequestEnd, state.aheadEndIndex);
  const aheadEnd = Math.min(PAGE_INDEX_LIMIT, eofIndex, indexStart + state.windowPages);
  state.aheadEndIndex = Math.max(state.aheadEndIndex, aheadEnd);
  return [aheadStart, aheadEnd];
}

/**
 * Lock the folios of pages [index, batchEnd) in order: requested pages (< requestEnd)
 * always, created and waited for; readahead pages only when not cached yet and memory is
 * free now. Returns them locked and pinned, and where the next batch starts.
 */
async function lockReadBatch(inode: BufferInode, index: number, batchEnd: number, requestEnd: number): Promise<{ folios: Folio[]; next: number }> {
  const mapping = inode.mapping;
  const folios: Folio[] = [];
  try {
    while (index < batchEnd) {
      const required = index < requestEnd;
      let folio = mapping.lookup(index);
      if (folio !== null) {
        if (!required) { index++; continue; } // cached (or being read by someone else): not ours to read ahead
        folio.get();
      } else {
        folio = mapping.tryGetOrCreate(index, 0);
        if (folio === null) {
          if (folios.length > 0 || !required) break; // fill what we hold first; readahead gives up
          folio = await mapping.getOrCreate(index, 0);
        }
      }
      if (!folio.tryLock()) await folio.lock();
      if (!folio.attached) { // truncated while we waited: look again
        folio.unlock();
        folio.put();
        continue;
      }
      folios.push(folio);
      index++;
    }
  } catch (error) {
    for (const folio of folios) {
      folio.unlock();
      folio.put();
    }
    throw error;
  }
  return { folios, next: index };
}

/**
 * Make the given blocks of locked folios uptodate: block_read_full_folio for many folios
 * at once, with their device reads merged. `requiredIndexEnd`: a failed read of a folio
 * below it throws EIO-like (the caller asked for it); above it (readahead) it only leaves
 * the folio not uptodate.
 */
export async function blockFillFolios(
  inode: BufferInode, ranges: readonly FillRange[], options: { getBlock: GetBlock; device: BlockDevice }, requiredIndexEnd = PAGE_INDEX_LIMIT,
): Promise<void> {
  const bs = inode.blockSizeBytes;
  const reads = new ReadRuns(bs);
  for (const { folio, blockStart, blockEnd } of ranges) {
    assert(folio.lockedHere, 'folios are filled under their lock');
    const table = BufferHeadTable.of(folio.mapping.cache);
    const folioStart = folio.positionBytes;
    for (let block = folio.nextBlock('uptodate', false, blockStart, blockEnd); block < blockEnd; block = folio.nextBlock('uptodate', false, block + 1, blockEnd)) {
      const blockPos = folioStart + block * bs;
      if (blockPos >= inode.sizeBytes) {
        zeroBlockUptodate(folio, block, bs); // wholly past EOF: zeros, no mapping asked
        continue;
      }
      const base = table.base(folio);
      if ((table.states[base + block] & (BufferState.MAPPED | BufferState.DELAY)) === 0) {
        let answer = options.getBlock(inode, blockPos / bs, false);
        if (answer instanceof Promise) answer = await answer;
        const map = checkBlockMap(answer);
        assert(map !== null, 'a read getBlock always answers');
        table.setMap(folio, block, map);
      }
      const state = table.states[base + block];
      if ((state & BufferState.MAPPED) !== 0 && (state & BufferState.UNWRITTEN) === 0) {
        reads.add(folio, block, table.blocknrs[base + block] * bs);
      } else {
        zeroBlockUptodate(folio, block, bs); // hole, delayed, unwritten: reads as zeros
      }
    }
  }
  const failed = await reads.submit(inode, options.device);
  const required = failed.find((failure) => failure.folio.index < requiredIndexEnd);
  if (required !== undefined) throw required.error;
}

function zeroBlockUptodate(folio: Folio, block: number, bs: number): void {
  folio.bytes().fill(0, block * bs, (block + 1) * bs);
  folio.markUptodate(block, block + 1);
}

interface ReadRun {
  addrBytes: number;
  ptr: number;
  lengthBytes: number;
  /** Blocks the run fills: folio, first block, block count (contiguous inside each folio). */
  pieces: { folio: Folio; block: number; count: number }[];
}

/** Device reads being built: one run per stretch contiguous on the device and in folio memory. */
class ReadRuns {
  private readonly runs: ReadRun[] = [];

  constructor(private readonly bs: number) {}

  add(folio: Folio, block: number, addrBytes: number): void {
    const ptr = folio.dataPtr + block * this.bs;
    const last = this.runs.at(-1);
    if (last !== undefined && last.addrBytes + last.lengthBytes === addrBytes && last.ptr + last.lengthBytes === ptr) {
      last.lengthBytes += this.bs;
      const piece = last.pieces.at(-1)!;
      if (piece.folio === folio && piece.block + piece.count === block) piece.count++;
      else last.pieces.push({ folio, block, count: 1 });
      return;
    }
    this.runs.push({ addrBytes, ptr, lengthBytes: this.bs, pieces: [{ folio, block, count: 1 }] });
  }

  /** Issue every run at once, wait for all; mark what was read uptodate. Returns the folios whose read failed. */
  async submit(inode: BufferInode, device: BlockDevice): Promise<{ folio: Folio; error: unknown }[]> {
    if (this.runs.length === 0) return [];
    const memory = inode.mapping.cache.core.bytes();
    const results = await Promise.allSettled(this.runs.map((run) => device.read(run.addrBytes, memory.subarray(run.ptr, run.ptr + run.lengthBytes))));
    const failed: { folio: Folio; error: unknown }[] = [];
    const sizeBytes = inode.sizeBytes;
    results.forEach((result, i) => {
      for (const { folio, block, count } of this.runs[i].pieces) {
        if (result.status === 'rejected') {
          failed.push({ folio, error: result.reason });
          continue;
        }
        // The EOF block's tail past i_size reads as zero whatever the disk holds there.
        const endBytes = folio.positionBytes + (block + count) * this.bs;
        if (endBytes > sizeBytes) folio.bytes().fill(0, Math.max(block * this.bs, sizeBytes - folio.positionBytes), (block + count) * this.bs);
        folio.markUptodate(block, block + count);
      }
    });
    return failed;
  }
}

/** Copies folio bytes of the request into the target, one TypedArray.set per run of contiguous folio memory. */
class CopyOut {
  private runPtr = -1;
  private runLength = 0;
  private runTarget = 0;

  constructor(private readonly inode: BufferInode, private readonly target: Uint8Array, private readonly posBytes: number, private readonly endBytes: number) {}

  add(folio: Folio): void {
    const folioStart = folio.positionBytes;
    const start = Math.max(folioStart, this.posBytes);
    const end = Math.min(folioStart + folio.lengthBytes, this.endBytes);
    if (start >= end) return;
    assert(folio.isRangeUptodate(Math.floor((start - folioStart) / this.inode.blockSizeBytes), Math.ceil((end - folioStart) / this.inode.blockSizeBytes)), 'copied bytes are uptodate');
    const ptr = folio.dataPtr + (start - folioStart);
    const targetAt = start - this.posBytes;
    if (this.runPtr >= 0 && this.runPtr + this.runLength === ptr && this.runTarget + this.runLength === targetAt) {
      this.runLength += end - start;
      return;
    }
    this.flush();
    this.runPtr = ptr;
    this.runLength = end - start;
    this.runTarget = targetAt;
  }

  flush(): void {
    if (this.runPtr < 0) return;
    const memory = this.inode.mapping.cache.core.bytes();
    this.target.set(memory.subarray(this.runPtr, this.runPtr + this.runLength), this.runTarget);
    this.runPtr = -1;
    this.runLength = 0;
  }
}
