/**
 * buffer/block-writepages: writeback of order-0 folios with buffer heads — the shape of
 * ext4's legacy writepages (mpage_prepare_extent_to_map → mpage_map_and_submit_extent),
 * with the filesystem's part behind two hooks.
 *
 *   per batch of ≤ WRITEPAGES_BATCH_FOLIOS_MAX dirty folios, in index order:
 *     lock each (WB_SYNC_ALL: wait for a writeback in flight first); wholly past EOF:
 *       drop its dirty state; the EOF folio: zero the bytes past i_size
 *     ops.mapBatch(batch, body)   the filesystem's context for the batch (ext4: i_data_sem
 *       and ONE journal handle; it raises i_disksize to batch.endBytes and registers
 *       batch.written as the transaction's ordered data)
 *       body: getBlock(create) for every dirty DELAY or UNWRITTEN block inside EOF, one
 *             call per block — delalloc allocation happens here, a block at a time
 *     per folio whose dirty blocks are all mapped now: startWriteback(); runs of blocks
 *       contiguous on the device (a bio that merged its pages), each gathered from folio
 *       memory pieces, handed to the submitter at once (inline: one device.write per
 *       piece; or the writeback worker pool) — before anything can wait on the journal
 *     unlock; when the writes settle: batch.written resolves, REQ clears, writeback ends
 *
 *   dirty  p7[D]  p8[D]  p9[M]  p12[D]      D = DELAY, M = MAPPED (overwrite)
 *   map    getBlock ×3 → 500, 501 (p9 was at 502), 503
 *   write  one run [500, 504): pieces p7..p9 (contiguous memory) and p12
 *
 * A getBlock answering null (no journal credits left) ends the batch at that folio; the
 * next batch, with a fresh handle, goes on from there. A getBlock or device error is
 * recorded on the mapping (writebackError, reported once by blockWritebackErrorCheck);
 * the blocks it could not map are not written (their data is lost, as Linux warns).
 *
 * Why the I/O goes out right after the mapping: a journal commit waits for the batch's
 * data (data=ordered), so between the filesystem registering batch.written and the writes
 * being issued nothing may wait for the journal — and nothing here does.
 *
 * Cost: one getBlock per delayed/unwritten block (none for overwrites); one mapBatch per
 * batch; device writes = one per memory piece of a device-contiguous run (inline); no
 * copies (the device reads folio memory).
 */
import { AssertionError, assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_BYTES, PAGE_INDEX_LIMIT } from '../mm/constants.js';
import type { Folio } from '../mm/folio.js';
import type { AddressSpace } from '../mm/mapping.js';
import type { WritebackOps as CacheWritebackOps, WritebackRequest } from '../mm/page-cache.js';
import { FsError } from '../vfs/errors.js';
import { BufferHeadTable, BufferState, type BufferInode, type GetBlock, checkBlockMap, roundUp, zeroFolioRange } from './buffer-head.js';

/** Folios mapped and written together (8 MiB at 4 KiB pages: ext4's 2048-block extent cap). */
export const WRITEPAGES_BATCH_FOLIOS_MAX = 2048;
/**
 * Batches in a row that may end at their first block without mapping anything (getBlock
 * answered null: e.g. ext4 commits and retries once on ENOSPC). More is a filesystem bug.
 */
export const WRITEPAGES_STALLED_BATCHES_MAX = 2;
/** Largest device write run (iomap's ioend cap: 16 MiB). */
export const RUN_BYTES_MAX = 16 * 1024 * 1024;

/** One batch, as the filesystem's mapBatch hook sees it. */
export interface WritebackBatch {
  /** getBlock(create) calls the body will make at most (dirty DELAY/UNWRITTEN blocks inside EOF). */
  readonly mapBlockCount: number;
  /** End of the data the batch writes, clamped to i_size (where ext4 raises i_disksize). */
  readonly endBytes: number;
  /**
   * Settles once every device write of the batch has completed (data=ordered waits on it):
   * resolves, or rejects with the first write error.
   */
  readonly written: Promise<void>;
}

export interface BlockWritebackOps {
  /** Writeback's getBlock: allocate a DELAY block, convert an UNWRITTEN one; null = no room in this batch. */
  getBlock: GetBlock;
  /** Run the batch's mapping (`body`) inside the filesystem's context; absent = just run it. */
  mapBatch?(inode: BufferInode, batch: WritebackBatch, body: () => Promise<void>): Promise<void>;
  /** A data write failed (after it is recorded on the mapping); ext4 aborts its journal (data_err=abort). */
  writeFailed?(inode: BufferInode, error: unknown): void;
}

/**
 * One device write of a batch (a bio): blocks contiguous on the device, gathered from
 * folio memory pieces (contiguous pieces are merged). Shaped like iomap's Ioend, so the
 * writeback worker pool can carry it.
 */
export interface BlockWriteRun {
  /** File offset of the first block (for the record; runs merge on device contiguity). */
  offsetBytes: number;
  addrBytes: number;
  lengthBytes: number;
  /** [pointer into the wasm memory, length] in device order. */
  pieces: { ptr: number; lengthBytes: number }[];
  /** Set by the submitter when the write failed. */
  error?: Error;
}

/** Writes the runs (from folio memory); sets run.error on failure; never throws. */
export type BlockSubmit = (inode: BufferInode, runs: readonly BlockWriteRun[]) => Promise<void>;

export interface BlockWritepagesOptions {
  ops: BlockWritebackOps;
  device: BlockDevice;
  /** Default: blockInlineSubmit(device), every piece issued at once on this thread. */
  submit?: BlockSubmit;
  batchFoliosMax?: number;
}

/** The default submitter: one device.write per piece, all issued at once, straight from folio memory. */
export function blockInlineSubmit(device: BlockDevice): BlockSubmit {
  return async (inode, runs) => {
    const memory = inode.mapping.cache.core.bytes();
    await Promise.all(runs.map(async (run) => {
      let addrBytes = run.addrBytes;
      const writes = run.pieces.map((piece) => {
        const write = device.write(addrBytes, memory.subarray(piece.ptr, piece.ptr + piece.lengthBytes));
        addrBytes += piece.lengthBytes;
        return write;
      });
      const failed = (await Promise.allSettled(writes)).find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed !== undefined) run.error = failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
    }));
  };
}

export interface BlockWritebackRange {
  startBytes: number;
  /** Exclusive; Infinity = to the end of the file. */
  endBytes: number;
  /** Stop after starting about this many bytes of folios (Infinity = all). */
  lengthBytesMax: number;
  /** WB_SYNC_ALL: wait for writeback in flight, then write those folios again if dirty. */
  sync: boolean;
}

/**
 * Write back the dirty folios overlapping the range. A sync walk returns once their writes
 * have completed; a background one (the flusher's) once they are submitted, as iomap's
 * does (the folios stay under writeback until then; errors land on the mapping).
 */
export async function blockWritepages(inode: BufferInode, range: BlockWritebackRange, options: BlockWritepagesOptions): Promise<void> {
  const [indexStart, indexEnd] = pageRange(range.startBytes, range.endBytes);
  const batchMax = options.batchFoliosMax ?? WRITEPAGES_BATCH_FOLIOS_MAX;
  const completions: Promise<void>[] = [];
  let cursor = indexStart;
  let startedBytes = 0;
  let stalled = 0;
  try {
    while (cursor < indexEnd && startedBytes < range.lengthBytesMax) {
      const folios = await lockBatch(inode, cursor, indexEnd, Math.min(batchMax, Math.ceil((range.lengthBytesMax - startedBytes) / PAGE_BYTES)), range.sync);
      if (folios.length === 0) break;
      const result = await writeBatch(inode, folios, options);
      completions.push(result.completion);
      startedBytes += result.startedBytes;
      stalled = result.stalled ? stalled + 1 : 0;
      assert(stalled <= WRITEPAGES_STALLED_BATCHES_MAX, 'writeback batches make progress');
      cursor = result.next;
    }
  } finally {
    if (range.sync) await Promise.all(completions);
    else for (const completion of completions) completion.catch((error: unknown) => { inode.mapping.writebackError = error; });
  }
}

/** Write back and wait for the range (filemap_write_and_wait_range); errors stay recorded on the mapping. */
export async function blockWriteAndWait(inode: BufferInode, startBytes: number, endBytes: number, options: BlockWritepagesOptions): Promise<void> {
  await blockWritepages(inode, { startBytes, endBytes, lengthBytesMax: Infinity, sync: true }, options);
  const [indexStart, indexEnd] = pageRange(startBytes, endBytes);
  await inode.mapping.waitWritebackRange(indexStart, indexEnd);
}

/** fsync's check: throws EIO once for a writeback error recorded since the last check (errseq). */
export function blockWritebackErrorCheck(mapping: AddressSpace, syscall = 'fsync'): void {
  const error = mapping.writebackError;
  if (error === null) return;
  mapping.writebackError = null;
  throw new FsError('EIO', { syscall, detail: `writeback failed: ${error instanceof Error ? error.message : String(error)}` });
}

/** The page cache's writeback hook (flusher, throttle, syncMapping) over blockWritepages. */
export function blockCacheWritebackOps(inodeOf: (mapping: AddressSpace) => BufferInode, options: BlockWritepagesOptions): CacheWritebackOps {
  return {
    writebackMapping: (mapping: AddressSpace, request: WritebackRequest) => blockWritepages(inodeOf(mapping), {
      startBytes: 0, endBytes: Infinity, lengthBytesMax: request.lengthBytesMax, sync: request.reason === 'sync',
    }, options),
  };
}

// Lock up to `count` dirty folios from `cursor`, in index order; they come back locked and pinned.
async function lockBatch(inode: BufferInode, cursor: number, indexEnd: number, count: number, sync: boolean): Promise<Folio[]> {
  const folios: Folio[] = [];
  try {
    for (const folio of inode.mapping.dirtyFolios(cursor, indexEnd)) {
      if (folios.length >= count) break;
      folio.get();
      if (!folio.tryLock()) await folio.lock();
      // Every writeback in flight was submitted before its folio was unlocked: waiting on it waits for I/O only.
      if (sync && folio.writebackAccounted) await folio.waitWriteback();
      if (!folio.attached || !folio.isDirty() || folio.writebackAccounted) {
        folio.unlock();
        folio.put();
        continue;
      }
      if (folio.positionBytes >= inode.sizeBytes) {
        folio.cancelDirty(); // wholly past EOF (a truncate raced us): nothing to write
        folio.unlock();
        folio.put();
        continue;
      }
      folios.push(folio);
    }
  } catch (error) {
    for (const folio of folios) {
      folio.unlock();
      folio.put();
    }
    throw error;
  }
  return folios;
}

interface BatchResult {
  completion: Promise<void>;
  startedBytes: number;
  /** Where the next batch starts: past the last folio, or at the first one left dirty for a retry. */
  next: number;
  /** getBlock found no room at the batch's first block: nothing was mapped or started. */
  stalled: boolean;
}

// Map, start and submit one batch of locked folios; unlocks them all.
async function writeBatch(inode: BufferInode, folios: Folio[], options: BlockWritepagesOptions): Promise<BatchResult> {
  const eofBlockEnd = roundUp(inode.sizeBytes, inode.blockSizeBytes);
  const plan = planBatch(inode, folios, eofBlockEnd);
  let writtenResolve!: () => void;
  let writtenReject!: (error: unknown) => void;
  const written = new Promise<void>((resolve, reject) => { writtenResolve = resolve; writtenReject = reject; });
  written.catch(() => undefined); // observed by the journal when the filesystem ordered it; else only here
  let mapped = { retryAt: -1, count: 0 };
  const body = async (): Promise<void> => { mapped = await mapDirtyBlocks(inode, folios, options.ops.getBlock, eofBlockEnd); };
  try {
    const batch: WritebackBatch = { ...plan, written };
    if (options.ops.mapBatch !== undefined) await options.ops.mapBatch(inode, batch, body);
    else await body();
  } catch (error) {
    if (error instanceof AssertionError) {
      writtenResolve();
      throw error; // a bug: never swallowed as an I/O error
    }
    inode.mapping.writebackError = error; // "data will be lost": what could not be mapped is not written
  }
  // From here to the submission nothing awaits: a commit may be waiting on `written`.
  const { retryAt } = mapped;
  const retried = (folio: Folio): boolean => retryAt >= 0 && folio.index >= retryAt;
  let submitted: { started: Folio[]; settled: Promise<BlockWriteRun[]> };
  try {
    submitted = startAndSubmit(inode, folios.filter((folio) => !retried(folio)), eofBlockEnd, options);
  } catch (error) {
    writtenResolve();
    throw error;
  }
  for (const folio of folios) {
    folio.unlock();
    if (retried(folio)) folio.put(); // started folios keep their pin until their writeback ends
  }
  const { started, settled } = submitted;
  const completion = settled.then((runs) => {
    const failed = runs.find((run) => run.error !== undefined)?.error;
    try {
      if (failed !== undefined) {
        inode.mapping.writebackError = failed;
        options.ops.writeFailed?.(inode, failed);
      }
      endWriteback(started);
    } finally {
      if (failed === undefined) writtenResolve();
      else writtenReject(failed);
    }
  });
  return {
    completion,
    startedBytes: started.reduce((bytes, folio) => bytes + folio.lengthBytes, 0),
    next: retryAt >= 0 ? retryAt : folios[folios.length - 1].indexEnd,
    stalled: retryAt === folios[0].index && mapped.count === 0,
  };
}

// What the batch will map and how far its data reaches; zeroes the EOF folio past i_size.
function planBatch(inode: BufferInode, folios: readonly Folio[], eofBlockEnd: number): { mapBlockCount: number; endBytes: number } {
  const bs = inode.blockSizeBytes;
  const sizeBytes = inode.sizeBytes;
  const table = BufferHeadTable.of(inode.mapping.cache);
  let mapBlockCount = 0;
  let endBytes = 0;
  for (const folio of folios) {
    zeroFolioRange(folio, sizeBytes, folio.positionBytes + folio.lengthBytes); // mmap stores past EOF go out as zeros
    const base = table.base(folio);
    forEachDirtyBlock(folio, bs, eofBlockEnd, (block, blockPos) => {
      const state = table.states[base + block];
      if ((state & (BufferState.DELAY | BufferState.UNWRITTEN)) !== 0) mapBlockCount++;
      if ((state & (BufferState.MAPPED | BufferState.DELAY)) !== 0) endBytes = Math.max(endBytes, Math.min(blockPos + bs, sizeBytes));
    });
  }
  return { mapBlockCount, endBytes };
}

// startWriteback on each folio, then hand the batch's device writes to the submitter (not awaited).
function startAndSubmit(inode: BufferInode, folios: readonly Folio[], eofBlockEnd: number, options: BlockWritepagesOptions): { started: Folio[]; settled: Promise<BlockWriteRun[]> } {
  const table = BufferHeadTable.of(inode.mapping.cache);
  const writes = new DeviceWrites(inode.blockSizeBytes);
  for (const folio of folios) startFolio(inode, folio, table, writes, eofBlockEnd);
  const submit = options.submit ?? blockInlineSubmit(options.device);
  const runs = writes.runs;
  const settled = runs.length === 0 ? Promise.resolve(runs) : submit(inode, runs).then(() => runs, (error: unknown) => {
    for (const run of runs) run.error ??= error instanceof Error ? error : new Error(String(error)); // a submitter must not throw; if it does, all failed
    return runs;
  });
  return { started: [...folios], settled };
}

function endWriteback(folios: readonly Folio[]): void {
  for (const folio of folios) {
    BufferHeadTable.of(folio.mapping.cache).clearBits(folio, 0, folio.blockCount, BufferState.REQ);
    folio.endWriteback();
    folio.put();
  }
}

/**
 * The body of a batch: getBlock(create) for each dirty DELAY/UNWRITTEN block inside EOF.
 * retryAt: -1, or the index of the folio where getBlock answered null (the batch ends there).
 */
async function mapDirtyBlocks(inode: BufferInode, folios: readonly Folio[], getBlock: GetBlock, eofBlockEnd: number): Promise<{ retryAt: number; count: number }> {
  const bs = inode.blockSizeBytes;
  const table = BufferHeadTable.of(inode.mapping.cache);
  let count = 0;
  for (const folio of folios) {
    const base = table.base(folio);
    const blocks: number[] = [];
    forEachDirtyBlock(folio, bs, eofBlockEnd, (block) => {
      if ((table.states[base + block] & (BufferState.DELAY | BufferState.UNWRITTEN)) !== 0) blocks.push(block);
    });
    for (const block of blocks) {
      let answer = getBlock(inode, (folio.positionBytes + block * bs) / bs, true);
      if (answer instanceof Promise) answer = await answer;
      const map = checkBlockMap(answer);
      if (map === null) return { retryAt: folio.index, count };
      assert((map.state & (BufferState.DELAY | BufferState.UNWRITTEN)) === 0, 'writeback getBlock leaves nothing delayed or unwritten');
      table.setMap(folio, block, map); // MAPPED; or a hole (punched while dirty): not written
      count++;
    }
  }
  return { retryAt: -1, count };
}

// startWriteback and queue the folio's dirty, mapped blocks inside EOF for the device.
function startFolio(inode: BufferInode, folio: Folio, table: BufferHeadTable, writes: DeviceWrites, eofBlockEnd: number): void {
  const bs = inode.blockSizeBytes;
  const base = table.base(folio);
  const folioStart = folio.positionBytes;
  const ranges = folio.startWriteback();
  for (const range of ranges) {
    const blockEnd = Math.min(range.blockEnd, Math.max(range.blockStart, (eofBlockEnd - folioStart) / bs));
    for (let block = range.blockStart; block < blockEnd; block++) {
      const state = table.states[base + block];
      // Unmapped (a hole: punched while dirty), or left delayed/unwritten by a failed mapping: not written.
      if ((state & BufferState.MAPPED) === 0 || (state & (BufferState.DELAY | BufferState.UNWRITTEN)) !== 0) continue;
      table.states[base + block] = (state & ~BufferState.NEW) | BufferState.REQ;
      writes.add(folioStart + block * bs, table.blocknrs[base + block] * bs, folio.dataPtr + block * bs);
    }
  }
}

// Calls visit(block, blockPos) for each dirty block of the folio that starts inside EOF's block.
function forEachDirtyBlock(folio: Folio, bs: number, eofBlockEnd: number, visit: (block: number, blockPos: number) => void): void {
  const folioStart = folio.positionBytes;
  const blockEnd = Math.min(folio.blockCount, Math.max(0, (eofBlockEnd - folioStart) / bs));
  for (let block = folio.nextBlock('dirty', true, 0, blockEnd); block < blockEnd; block = folio.nextBlock('dirty', true, block + 1, blockEnd)) {
    visit(block, folioStart + block * bs);
  }
}

/** Device writes being built: a run per stretch contiguous on the device, a piece per stretch contiguous in memory. */
class DeviceWrites {
  readonly runs: BlockWriteRun[] = [];

  constructor(private readonly bs: number) {}

  add(offsetBytes: number, addrBytes: number, ptr: number): void {
    const last = this.runs.at(-1);
    if (last !== undefined && last.addrBytes + last.lengthBytes === addrBytes && last.lengthBytes < RUN_BYTES_MAX) {
      last.lengthBytes += this.bs;
      const piece = last.pieces[last.pieces.length - 1];
      if (piece.ptr + piece.lengthBytes === ptr) piece.lengthBytes += this.bs;
      else last.pieces.push({ ptr, lengthBytes: this.bs });
      return;
    }
    this.runs.push({ offsetBytes, addrBytes, lengthBytes: this.bs, pieces: [{ ptr, lengthBytes: this.bs }] });
  }
}

function pageRange(startBytes: number, endBytes: number): [number, number] {
  const indexStart = Math.floor(startBytes / PAGE_BYTES);
  const indexEnd = endBytes === Infinity ? PAGE_INDEX_LIMIT : Math.min(PAGE_INDEX_LIMIT, Math.ceil(endBytes / PAGE_BYTES));
  return [indexStart, indexEnd];
}
