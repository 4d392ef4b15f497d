/**
 * Writeback (seed §1.6, §1.7): write a file's dirty folios to the device as ioends.
 *
 *   for each dirty folio in index order (up to lengthBytesMax started):
 *     lock; WB_SYNC_ALL waits for a writeback in flight; folio wholly past EOF: drop its
 *     dirty state; straddling EOF: zero the bytes past i_size;
 *     startWriteback() → dirty block runs; clamp each to the EOF block;
 *     per run: mapping = the cached one while the offset is inside it (and valid()), else
 *       ops.mapBlocks(offset, run length) — the filesystem allocates a whole delayed extent
 *       as UNWRITTEN there; HOLE = punched while dirty: skipped;
 *     append to the current ioend when same type, logically and physically contiguous and
 *     under ioendBytesMax, else start a new one; unlock.
 *   every batchBytesMax, and at the end: submit(ioends) (default: inline device writes
 *   straight from folio memory; the worker pool plugs in here), then completion: sort by
 *   offset, merge neighbours, ops.ioendsCompleted (convert unwritten, raise i_disksize),
 *   endWriteback on every folio of the batch. Up to WRITEBACK_BATCHES_IN_FLIGHT_MAX
 *   batches run at once while the walk builds the next; a sync walk waits for all of them
 *   at the end, a background walk does not.
 *
 *   folio A [d d . d]  folio B [d d d d]   (d = dirty block, one UNWRITTEN extent)
 *   ioend 1: A0–A1 ─┐ gap at A2 ends it   ioend 2: A3 + B0–B3 (contiguous: merged)
 *
 * Errors: a mapBlocks or device failure is recorded on the mapping (writebackError, read
 * and cleared by writebackErrorCheck → EIO for fsync); the folios still end writeback.
 *
 * Cost: no data copy on the engine thread (device writes read folio memory); device writes
 * = one per ioend piece run (contiguous folio memory merges into one piece); mapBlocks
 * calls = one per mapping crossed (not per block); one ioendsCompleted per batch.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { PAGE_INDEX_LIMIT } from '../mm/constants.js';
import type { Folio } from '../mm/folio.js';
import type { AddressSpace } from '../mm/mapping.js';
import type { WritebackOps as CacheWritebackOps, WritebackRequest } from '../mm/page-cache.js';
import { FsError } from '../vfs/errors.js';
import { PAGE_BYTES, roundUp, zeroFolioRange } from './folio-io.js';
import { type Ioend, type Iomap, type IomapInode, IomapType, type WritebackOps } from './types.js';

/** Largest ioend (Linux caps by folio count, IOEND_BATCH_SIZE 4096 pages = 16 MiB at 4 KiB). */
export const IOEND_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
/** Submit and complete after this many bytes started, so folios do not stay under writeback too long. */
export const WRITEBACK_BATCH_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
/**
 * Batches of one walk in flight at once: the next is built (mapped, allocated, its ioends
 * made) on the engine thread while the workers write the last. Measured on a 256 MiB
 * write+fsync with one worker: the walk's mapping and completion work overlaps the copies.
 */
export const WRITEBACK_BATCHES_IN_FLIGHT_MAX = 2;

/** Writes the ioends' pieces to the device; sets ioend.error on failure, never throws. */
export type IoendSubmit = (ioends: readonly Ioend[]) => Promise<void>;

export interface IomapWritebackOptions {
  ops: WritebackOps;
  device: BlockDevice;
  /** Default: inlineSubmit(device, the cache's wasm memory). */
  submit?: IoendSubmit;
  ioendBytesMax?: number;
  batchBytesMax?: number;
}

export interface WritebackRange {
  startBytes: number;
  /** Exclusive; Infinity = to the end of the file. */
  endBytes: number;
  /** Stop after starting about this many bytes of folios (Infinity = all). */
  lengthBytesMax: number;
  /** WB_SYNC_ALL: wait for writeback in flight, then write those folios again if dirty. */
  sync: boolean;
}

interface WritebackContext {
  inode: IomapInode;
  options: IomapWritebackOptions;
  ioendBytesMax: number;
  iomap: Iomap | null;
  ioends: Ioend[];
  folios: Folio[];
  batchBytes: number;
  /** Batches submitted and not yet completed, oldest first (each settles, never rejects). */
  inflight: Promise<void>[];
}

/**
 * Write back the dirty folios overlapping the range. A sync walk returns once their
 * writeback has ended; a background one (the flusher's) once the last batch is submitted:
 * its folios stay under writeback until the workers' writes complete, so the flusher goes
 * on to the next chunk while they copy (Linux's WB_SYNC_NONE does not wait on the I/O
 * either). Errors of either kind are recorded on the mapping.
 */
export async function iomapWriteback(inode: IomapInode, range: WritebackRange, options: IomapWritebackOptions): Promise<void> {
  const mapping = inode.mapping;
  const context: WritebackContext = {
    inode, options, ioendBytesMax: options.ioendBytesMax ?? IOEND_BYTES_MAX_DEFAULT,
    iomap: null, ioends: [], folios: [], batchBytes: 0, inflight: [],
  };
  const batchBytesMax = options.batchBytesMax ?? WRITEBACK_BATCH_BYTES_MAX_DEFAULT;
  const [indexStart, indexEnd] = pageRange(range.startBytes, range.endBytes);
  let startedBytes = 0;
  try {
    for (const folio of mapping.dirtyFolios(indexStart, indexEnd)) {
      if (startedBytes >= range.lengthBytesMax) break;
      folio.get();
      try {
        await folio.lock();
        try {
          if (range.sync && folio.writebackAccounted) {
            // Submit our own batch before waiting on someone else's, so no two walks wait on each other.
            await submitBatch(context);
            await folio.waitWriteback();
          }
          if (!folio.attached || !folio.isDirty() || folio.writebackAccounted) continue;
          startedBytes += folio.lengthBytes;
          await writebackFolio(context, folio);
        } finally {
          folio.unlock();
        }
      } finally {
        folio.put();
      }
      if (context.batchBytes >= batchBytesMax) await submitBatch(context);
    }
  } finally {
    await submitBatch(context);
    if (range.sync) await Promise.all(context.inflight);
  }
}

/** Write back and wait for the range (filemap_write_and_wait_range); writeback errors stay recorded. */
export async function iomapWriteAndWait(inode: IomapInode, startBytes: number, endBytes: number, options: IomapWritebackOptions): Promise<void> {
  await iomapWriteback(inode, { startBytes, endBytes, lengthBytesMax: Infinity, sync: true }, options);
  const [indexStart, indexEnd] = pageRange(startBytes, endBytes);
  await inode.mapping.waitWritebackRange(indexStart, indexEnd);
}

/** fsync's check: throws EIO once for a writeback error recorded since the last check. */
export function writebackErrorCheck(mapping: AddressSpace, syscall = 'fsync'): void {
  const error = mapping.writebackError;
  if (error === null) return;
  mapping.writebackError = null;
  throw new FsError('EIO', { syscall, detail: `writeback failed: ${error instanceof Error ? error.message : String(error)}` });
}

/** The page cache's writeback hook (flusher, throttle, syncMapping) over iomapWriteback. */
export function iomapCacheWritebackOps(inodeOf: (mapping: AddressSpace) => IomapInode, options: IomapWritebackOptions): CacheWritebackOps {
  return {
    writebackMapping: (mapping: AddressSpace, request: WritebackRequest) => iomapWriteback(inodeOf(mapping), {
      startBytes: 0, endBytes: Infinity, lengthBytesMax: request.lengthBytesMax, sync: request.reason === 'sync',
    }, options),
  };
}

/** Default submit: one device.write per piece, straight from folio memory, in the caller's thread. */
export function inlineSubmit(device: BlockDevice, memoryBytes: () => Uint8Array): IoendSubmit {
  return async (ioends) => {
    for (const ioend of ioends) {
      let addrBytes = ioend.addrBytes;
      try {
        for (const piece of ioend.pieces) {
          await device.write(addrBytes, memoryBytes().subarray(piece.ptr, piece.ptr + piece.lengthBytes));
          addrBytes += piece.lengthBytes;
        }
      } catch (error) {
        ioend.error = error instanceof Error ? error : new Error(String(error));
      }
    }
  };
}

/**
 * Completion-side merge (iomap_sort_ioends + iomap_ioend_try_merge): sort by offset, join
 * neighbours with the same type and error-ness that are logically and physically contiguous.
 */
export function iomapSortMergeIoends(ioends: readonly Ioend[]): Ioend[] {
  const sorted = [...ioends].sort((a, b) => a.offsetBytes - b.offsetBytes);
  const merged: Ioend[] = [];
  for (const ioend of sorted) {
    const last = merged.at(-1);
    if (last !== undefined && canMerge(last, ioend.inode, ioend.type, ioend.offsetBytes, ioend.addrBytes) &&
      (last.error === undefined) === (ioend.error === undefined)) {
      last.lengthBytes += ioend.lengthBytes;
      for (const piece of ioend.pieces) appendPiece(last, piece.ptr, piece.lengthBytes);
      continue;
    }
    merged.push({ ...ioend, pieces: [...ioend.pieces.map((piece) => ({ ...piece }))] });
  }
  return merged;
}

async function writebackFolio(context: WritebackContext, folio: Folio): Promise<void> {
  const { inode } = context;
  const sizeBytes = inode.sizeBytes;
  const folioStart = folio.positionBytes;
  if (folioStart >= sizeBytes) {
    folio.cancelDirty(); // wholly past EOF (a truncate raced us): nothing to write
    return;
  }
  // The EOF folio: bytes past i_size go to the device as zeros (mmap stores may have dirtied them).
  zeroFolioRange(folio, sizeBytes, folioStart + folio.lengthBytes);
  const ranges = folio.startWriteback();
  context.folios.push(folio.get());
  context.batchBytes += folio.lengthBytes;
  const blockBytes = inode.blockSizeBytes;
  const eofBlockEnd = roundUp(sizeBytes, blockBytes);
  try {
    for (const range of ranges) {
      const start = folioStart + range.blockStart * blockBytes;
      const end = Math.min(folioStart + range.blockEnd * blockBytes, eofBlockEnd);
      for (let at = start; at < end;) {
        const iomap = await mappingAt(context, at, end);
        const length = Math.min(end, iomap.offsetBytes + iomap.lengthBytes) - at;
        if (iomap.type !== IomapType.HOLE) addToIoend(context, iomap, at, length, folio.dataPtr + (at - folioStart));
        at += length;
      }
    }
  } catch (error) {
    // Linux discards the folio's data here ("Data will be lost"); the error reaches fsync.
    inode.mapping.writebackError = error;
  }
}

async function mappingAt(context: WritebackContext, at: number, end: number): Promise<Iomap> {
  const { inode, options } = context;
  const cached = context.iomap;
  if (cached !== null && cached.offsetBytes <= at && at < cached.offsetBytes + cached.lengthBytes &&
    (options.ops.valid === undefined || options.ops.valid(inode, cached))) {
    return cached;
  }
  const iomap = await options.ops.mapBlocks(inode, at, end - at);
  assert(iomap.offsetBytes <= at && at < iomap.offsetBytes + iomap.lengthBytes, 'writeback mapping covers the offset');
  assert(iomap.type !== IomapType.DELALLOC, 'writeback mapping is allocated (or a hole)');
  context.iomap = iomap;
  return iomap;
}

function addToIoend(context: WritebackContext, iomap: Iomap, at: number, length: number, ptr: number): void {
  const addrBytes = iomap.addrBytes + (at - iomap.offsetBytes);
  const last = context.ioends.at(-1);
  if (last !== undefined && canMerge(last, context.inode, iomap.type, at, addrBytes) && last.lengthBytes + length <= context.ioendBytesMax) {
    last.lengthBytes += length;
    appendPiece(last, ptr, length);
    return;
  }
  context.ioends.push({
    inode: context.inode, offsetBytes: at, lengthBytes: length, addrBytes, type: iomap.type, pieces: [{ ptr, lengthBytes: length }],
  });
}

function canMerge(last: Ioend, inode: IomapInode, type: number, offsetBytes: number, addrBytes: number): boolean {
  return last.inode === inode && last.type === type &&
    last.offsetBytes + last.lengthBytes === offsetBytes && last.addrBytes + last.lengthBytes === addrBytes;
}

function appendPiece(ioend: Ioend, ptr: number, lengthBytes: number): void {
  const piece = ioend.pieces.at(-1);
  if (piece !== undefined && piece.ptr + piece.lengthBytes === ptr) piece.lengthBytes += lengthBytes;
  else ioend.pieces.push({ ptr, lengthBytes });
}

/** Start the batch built so far (submit, then complete); waits only while too many are in flight. */
async function submitBatch(context: WritebackContext): Promise<void> {
  const { ioends, folios } = context;
  if (folios.length === 0 && ioends.length === 0) return;
  context.ioends = [];
  context.folios = [];
  context.batchBytes = 0;
  context.iomap = null;
  const batch = submitAndComplete(context, ioends, folios);
  context.inflight.push(batch);
  void batch.then(() => {
    const at = context.inflight.indexOf(batch);
    if (at >= 0) context.inflight.splice(at, 1);
  });
  while (context.inflight.length > WRITEBACK_BATCHES_IN_FLIGHT_MAX) await context.inflight[0];
}

/** One batch: device writes, then completion (conversion, i_disksize) and the end of writeback. Never rejects. */
async function submitAndComplete(context: WritebackContext, ioends: Ioend[], folios: Folio[]): Promise<void> {
  const { options, inode } = context;
  const mapping = inode.mapping;
  try {
    const submit = options.submit ?? inlineSubmit(options.device, () => mapping.cache.core.bytes());
    await submit(ioends);
    const failed = ioends.find((ioend) => ioend.error !== undefined);
    if (failed !== undefined) mapping.writebackError = failed.error;
    if (ioends.length > 0) await options.ops.ioendsCompleted(iomapSortMergeIoends(ioends));
  } catch (error) {
    mapping.writebackError = error;
  } finally {
    for (const folio of folios) {
      folio.endWriteback();
      folio.put();
    }
  }
}

function pageRange(startBytes: number, endBytes: number): [number, number] {
  const indexStart = Math.floor(startBytes / PAGE_BYTES);
  const indexEnd = endBytes === Infinity ? PAGE_INDEX_LIMIT : Math.min(PAGE_INDEX_LIMIT, Math.ceil(endBytes / PAGE_BYTES));
  return [indexStart, indexEnd];
}
