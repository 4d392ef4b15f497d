/**
 * ext4/iomap_ops: ext4's answers to the generic iomap layer (iomap/types.ts). As the
 * seed's reviewers asked (Dave Chinner, May 2024; seed-series.md §1.5), each purpose has
 * its own ops vector instead of `if (write)` / `if (delalloc)` branches in one:
 *
 *   ext4IomapReadOps     read, readahead, FIEMAP-like reports: mapBlocks without CREATE
 *   ext4IomapDaWriteOps  buffered write with delayed allocation: a hole becomes DELAYED
 *                        for the whole requested length at once (one reservation); end()
 *                        punches the untouched tail of that new range after a short write
 *   ext4IomapWriteOps    buffered write without delalloc (free space low: nondaSwitch):
 *                        a hole is allocated unwritten in a short handle, stopped before
 *                        begin() returns (the folio lock comes after begin: no handle may
 *                        be held across it)
 *   ext4WritebackOps     writeback: map dirty ranges, allocating a whole delayed extent as
 *                        unwritten; at completion convert it and raise i_disksize
 *
 * A mapping's validity cookie is the ES tree's seq when it was made; valid() compares it
 * with the seq now, so a mapping made before a truncate, punch or writeback allocation is
 * fetched again after the folio lock.
 *
 * The inode iomap sees is an Ext4IomapInode: the per-inode state (map_blocks.ts) plus the
 * page cache mapping; its sizeBytes is the state's i_size.
 *
 *   const state = await inodeState(mount, ino);
 *   const inode = new Ext4IomapInode(state, mapping);
 *   iomapWrite(inode, ..., chooseWriteOps(inode));   // da or non-da, per write
 *
 * Cost: a begin() that hits the ES tree is one lookup; a new delayed range costs one
 * reservation and one ES insert (no handle, no I/O); an allocation is one handle
 * (map_blocks.ts). Completion: one handle per ioend (per 2048 blocks of it).
 */
import { assert } from '../assert.js';
import { FsError } from '../vfs/errors.js';
import {
  IomapFlags, IomapOp, IomapType, type Ioend, type Iomap, type IomapInode, type IomapOps, type WritebackOps,
} from '../iomap/types.js';
import { EsStatus, ES_LBLK_LIMIT, type EsRecord } from './extents_status.js';
import { extentWriter } from './extents-write.js';
import {
  MAP_ALLOC_BLOCKS_MAX, MapFlags, MapStatus, mapBlocks, mapBlocksCreateLocked, resolveLocked, writeCredits,
  type BlocksMapping, type Ext4InodeState,
} from './map_blocks.js';
import { Ext4FileInode } from './path-inodes.js';
import { delallocRelease, delallocReserve, nondaSwitch } from './delalloc.js';

/** Blocks writeback maps at once when the dirty range is shorter (the allocation cap). */
export const WRITEBACK_MAP_BLOCKS = MAP_ALLOC_BLOCKS_MAX;
/** Blocks of one ioend converted per handle (bounds its credits). */
export const CONVERT_BLOCKS_MAX = MAP_ALLOC_BLOCKS_MAX;

/** The inode the generic iomap code is handed for an ext4 regular file. */
export class Ext4IomapInode extends Ext4FileInode implements IomapInode {}

function stateOf(inode: IomapInode): Ext4InodeState {
  assert(inode instanceof Ext4IomapInode, 'ext4 iomap ops are given ext4 inodes');
  return inode.state;
}

/** The blocks covering bytes [offsetBytes, offsetBytes + lengthBytes). */
function blockRange(state: Ext4InodeState, offsetBytes: number, lengthBytes: number): { lblk: number; len: number } {
  assert(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0, `offset ${offsetBytes} is a byte position`);
  assert(Number.isSafeInteger(lengthBytes) && lengthBytes >= 1, `length ${lengthBytes} is positive`);
  const bs = state.blockSizeBytes;
  const lblk = Math.floor(offsetBytes / bs);
  if (lblk >= ES_LBLK_LIMIT) throw new FsError('EFBIG', { syscall: 'write', detail: `byte ${offsetBytes} is past the last block` });
  const endLblk = Math.min(ES_LBLK_LIMIT, Math.ceil((offsetBytes + lengthBytes) / bs));
  return { lblk, len: endLblk - lblk };
}

const IOMAP_TYPE_OF: Record<MapStatus, IomapType> = {
  [MapStatus.HOLE]: IomapType.HOLE,
  [MapStatus.DELAYED]: IomapType.DELALLOC,
  [MapStatus.MAPPED]: IomapType.MAPPED,
  [MapStatus.UNWRITTEN]: IomapType.UNWRITTEN,
};

/** ext4_set_iomap: a mapBlocks answer as an iomap (NEW when this call created it). */
function toIomap(state: Ext4InodeState, m: BlocksMapping, isNew: boolean): Iomap {
  const bs = state.blockSizeBytes;
  const mapped = m.status === MapStatus.MAPPED || m.status === MapStatus.UNWRITTEN;
  return {
    offsetBytes: m.lblk * bs,
    lengthBytes: m.len * bs,
    type: IOMAP_TYPE_OF[m.status],
    addrBytes: mapped ? m.pblk * bs : -1,
    flags: isNew ? IomapFlags.NEW : 0,
    validityCookie: m.seq,
  };
}

/** iomap's valid(): the mapping was made at the ES tree's current seq. */
function validCookie(inode: IomapInode, iomap: Iomap): boolean {
  return iomap.validityCookie === stateOf(inode).es.seq;
}

/** The plain lookup: read, and zeroing (which never allocates or reserves: holes are already zero). */
async function lookupBegin(inode: IomapInode, offsetBytes: number, lengthBytes: number): Promise<Iomap> {
  const state = stateOf(inode);
  const { lblk, len } = blockRange(state, offsetBytes, lengthBytes);
  return toIomap(state, await mapBlocks(state.mount, state, lblk, len, 0), false);
}

// ─── Read ───────────────────────────────────────────────────────────────────────────────

export const ext4IomapReadOps: IomapOps = {
  begin: (inode, offsetBytes, lengthBytes) => lookupBegin(inode, offsetBytes, lengthBytes),
  valid: validCookie,
};

// ─── Delalloc write ─────────────────────────────────────────────────────────────────────

/**
 * ext4_da_map_blocks: an existing mapping (delayed, written, unwritten) is reported as it
 * is; a hole is reserved and made DELAYED for its whole length within the request (the
 * hole-length rule stops it at the next delayed range or extent), reported NEW.
 */
async function daWriteBegin(inode: IomapInode, offsetBytes: number, lengthBytes: number, op: number): Promise<Iomap> {
  if ((op & IomapOp.ZERO) !== 0) return lookupBegin(inode, offsetBytes, lengthBytes);
  const state = stateOf(inode);
  const { lblk, len } = blockRange(state, offsetBytes, lengthBytes);
  return state.lock.write(async () => {
    const found = await resolveLocked(state, lblk, len);
    if (found.status !== MapStatus.HOLE) return toIomap(state, found, false);
    // The write lock keeps the hole a hole across the reservation's possible commit.
    await delallocReserve(state, found.len);
    const added = state.es.insertDelayed(lblk, found.len);
    assert(added === found.len, `a hole of ${found.len} blocks gains as many delayed blocks (${added})`);
    return toIomap(state, { ...found, status: MapStatus.DELAYED, seq: state.es.seq }, true);
  });
}

/**
 * After a short write into a delayed range this begin() created: the blocks the copy
 * never reached hold no data, so their DELAYED records and reservation go (the kernel's
 * iomap_write_delalloc_release). A block partly written stays. With nothing written at
 * all, the punch starts at the block of the write's start.
 *
 *   mapping  [ NEW DELAYED ─────────────────────────────)
 *   written  [pos ──── done)
 *   punched           ⌈done⌉ ───────────────────────────)
 */
async function daWriteEnd(inode: IomapInode, offsetBytes: number, _lengthBytes: number, doneBytes: number, op: number, iomap: Iomap): Promise<void> {
  if (iomap.type !== IomapType.DELALLOC || (iomap.flags & IomapFlags.NEW) === 0 || (op & IomapOp.ZERO) !== 0) return;
  const state = stateOf(inode);
  const bs = state.blockSizeBytes;
  assert(doneBytes >= 0 && offsetBytes >= iomap.offsetBytes, 'the actor wrote inside the mapping');
  const punchStartLblk = doneBytes === 0 ? Math.floor(offsetBytes / bs) : Math.ceil((offsetBytes + doneBytes) / bs);
  const punchEndLblk = (iomap.offsetBytes + iomap.lengthBytes) / bs;
  if (punchStartLblk >= punchEndLblk) return;
  await state.lock.write(async () => {
    const released = state.es.remove(punchStartLblk, punchEndLblk - punchStartLblk);
    if (released > 0) delallocRelease(state, released);
  });
}

export const ext4IomapDaWriteOps: IomapOps = {
  begin: daWriteBegin,
  end: daWriteEnd,
  valid: validCookie,
};

// ─── Non-delalloc write ─────────────────────────────────────────────────────────────────

/**
 * ext4_iomap_get_blocks: what is already there (written, unwritten, delayed) is reported
 * without a handle; a hole is allocated unwritten (so a crash before writeback reads
 * zeros) in a handle that mapBlocks stops before returning.
 */
async function writeBegin(inode: IomapInode, offsetBytes: number, lengthBytes: number, op: number): Promise<Iomap> {
  if ((op & IomapOp.ZERO) !== 0) return lookupBegin(inode, offsetBytes, lengthBytes);
  const state = stateOf(inode);
  const { lblk, len } = blockRange(state, offsetBytes, lengthBytes);
  const found = await mapBlocks(state.mount, state, lblk, len, 0);
  if (found.status !== MapStatus.HOLE) return toIomap(state, found, false);
  const created = await mapBlocks(state.mount, state, lblk, len, MapFlags.CREATE | MapFlags.UNWRIT_EXT);
  return toIomap(state, created, created.fresh);
}

export const ext4IomapWriteOps: IomapOps = {
  begin: writeBegin,
  valid: validCookie,
};

/** The write ops for the next write (or page_mkwrite): non-delalloc when space is low. */
export function chooseWriteOps(inode: IomapInode): IomapOps {
  return nondaSwitch(stateOf(inode).mount) ? ext4IomapWriteOps : ext4IomapDaWriteOps;
}

// ─── Writeback ──────────────────────────────────────────────────────────────────────────

/** The last mapping writeback used, per inode (wpc->iomap): reused while the seq holds. */
const writebackMappings = new WeakMap<Ext4InodeState, Iomap>();

/**
 * The mapping for dirty data at offsetBytes. Reuses the last one while it covers the
 * offset and the ES seq is unchanged; else maps max(dirty length, WRITEBACK_MAP_BLOCKS)
 * blocks and, when they are DELAYED (or, defensively, a HOLE under dirty data), allocates
 * that whole range as UNWRITTEN in one short handle. ENOSPC: one commit, one retry.
 */
async function writebackMapBlocks(inode: IomapInode, offsetBytes: number, dirtyLengthBytes: number): Promise<Iomap> {
  const state = stateOf(inode);
  const cached = writebackMappings.get(state);
  if (cached !== undefined && cached.validityCookie === state.es.seq && offsetBytes >= cached.offsetBytes
    && offsetBytes < cached.offsetBytes + cached.lengthBytes) return cached;
  const dirty = blockRange(state, offsetBytes, dirtyLengthBytes);
  const len = Math.min(Math.max(dirty.len, WRITEBACK_MAP_BLOCKS), ES_LBLK_LIMIT - dirty.lblk);
  let m = await mapBlocks(state.mount, state, dirty.lblk, len, 0);
  if (m.status === MapStatus.DELAYED || m.status === MapStatus.HOLE) m = await allocateForWriteback(state, dirty.lblk, m.len);
  const iomap = toIomap(state, m, m.fresh);
  writebackMappings.set(state, iomap);
  return iomap;
}

async function allocateForWriteback(state: Ext4InodeState, lblk: number, len: number): Promise<BlocksMapping> {
  const flags = MapFlags.CREATE | MapFlags.UNWRIT_EXT | MapFlags.DELALLOC_RESERVE;
  try {
    return await state.lock.write(() => mapBlocksCreateLocked(state, lblk, len, flags));
  } catch (error) {
    if (!FsError.is(error, 'ENOSPC') || state.mount.journal === undefined) throw error;
  }
  await state.mount.sync();
  try {
    return await state.lock.write(() => mapBlocksCreateLocked(state, lblk, len, flags));
  } catch (error) {
    if (!FsError.is(error, 'ENOSPC')) throw error;
    throw new FsError('ENOSPC', {
      syscall: 'writeback', detail: `inode ${state.ino}: no space for delayed blocks at ${lblk}; data will be lost`,
    });
  }
}

/**
 * I/O completion (engine thread): per ioend, in handles of ≤ CONVERT_BLOCKS_MAX blocks,
 * convert its unwritten blocks and raise i_disksize to min(its end, i_size) — in the same
 * handle, so a crash never shows written blocks past the on-disk size nor a size over
 * unwritten zeros. Failed ioends change nothing (their blocks stay unwritten: zeros).
 */
async function ioendsCompleted(ioends: readonly Ioend[]): Promise<void> {
  const sorted = [...ioends].sort((left, right) => left.offsetBytes - right.offsetBytes);
  for (const ioend of sorted) {
    if (ioend.error !== undefined) continue;
    const state = stateOf(ioend.inode);
    const { lblk, len } = blockRange(state, ioend.offsetBytes, ioend.lengthBytes);
    const endBytes = ioend.offsetBytes + ioend.lengthBytes;
    for (let chunkLblk = lblk; chunkLblk < lblk + len; chunkLblk += CONVERT_BLOCKS_MAX) {
      const count = Math.min(CONVERT_BLOCKS_MAX, lblk + len - chunkLblk);
      const chunkEndBytes = Math.min(endBytes, (chunkLblk + count) * state.blockSizeBytes);
      await completeChunk(state, ioend.type === IomapType.UNWRITTEN, chunkLblk, count, chunkEndBytes);
    }
  }
}

async function completeChunk(state: Ext4InodeState, unwritten: boolean, lblk: number, count: number, endBytes: number): Promise<void> {
  const { mount } = state;
  await state.lock.write(async () => {
    const diskSizeBytes = Math.max(state.diskSizeBytes, Math.min(endBytes, state.sizeBytes));
    if (!unwritten && diskSizeBytes === state.diskSizeBytes) return;
    await mount.transact(writeCredits(mount, count), async (h) => {
      if (unwritten) await extentWriter.convertUnwritten(mount, h, state.ino, lblk, count);
      if (diskSizeBytes > state.diskSizeBytes) {
        await mount.writeInode(h, state.ino, (raw) => { raw.size = Math.max(raw.size, diskSizeBytes); });
      }
    }, 'writeback');
    state.diskSizeBytes = diskSizeBytes;
    if (unwritten) markWritten(state, lblk, count);
  });
}

/** The ES side of a conversion: UNWRITTEN records in [lblk, lblk + count) become WRITTEN. */
function markWritten(state: Ext4InodeState, lblk: number, count: number): void {
  const end = lblk + count;
  const unwritten: EsRecord[] = [];
  for (const record of state.es.iterate(lblk, end)) if (record.status === EsStatus.UNWRITTEN) unwritten.push(record);
  for (const record of unwritten) {
    const start = Math.max(record.lblk, lblk);
    const stop = Math.min(record.lblk + record.len, end);
    state.es.insert(start, stop - start, record.pblk + (start - record.lblk), EsStatus.WRITTEN);
  }
}

export const ext4WritebackOps: WritebackOps = {
  mapBlocks: writebackMapBlocks,
  ioendsCompleted,
};
