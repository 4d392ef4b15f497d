/**
 * ext4/file-write: the simple data path (until the buffered I/O engine replaces it).
 * A write of [pos, pos + n) goes in chunks of ≤ CHUNK_BLOCKS blocks, one journal handle
 * each:
 *
 *   mapOrAllocate(chunk) → build each run's bytes → device.write(run) → convertUnwritten
 *   (if any run was unwritten) → i_size = max(i_size, chunk end), mtime/ctime
 *
 * The data reaches the device inside the handle, so before the transaction that maps it
 * commits (data=ordered: a crash never exposes a newly mapped block with stale bytes).
 * Partial blocks are read-modify-written; a block that is new or unwritten starts as
 * zeros, and bytes past the old EOF that the write does not cover are zeroed too, as is
 * the tail of the old last block when the write starts past it (a gap reads as zeros).
 *
 * ENOSPC: the chunk's new allocations are removed again in the same handle (the file
 * keeps everything written before that chunk, like a short write); the first ENOSPC
 * commits the running transaction and retries once, since blocks freed by transactions
 * not yet committed cannot be reused before that (the journal's reuse rule).
 *
 * Cost per chunk: one device write per physical run (plus ≤ 2 block reads for partial
 * edges); credits = groups touched + GDT blocks + superblock + extent-tree blocks + inode.
 */
import { assert } from '../assert.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { FsError } from '../vfs/errors.js';
import { LBLK_LIMIT, walkMappings } from './extents.js';
import { extentWriter } from './extents-write.js';
import type { Ext4Mount } from './mount.js';
import { nowTimestamp, setRawTime, zeroBlockTail } from './truncate.js';
import type { MappedRun } from './write-api.js';

/** Blocks per handle (4 MiB at 4 KiB blocks). */
export const CHUNK_BLOCKS = 1024;

/** Largest file size: the extent tree addresses 2^32 blocks. */
export function maxFileSizeBytes(mount: Ext4Mount): number {
  return (LBLK_LIMIT - 1) * mount.ext4.blockSizeBytes;
}

/** Credits for mapping `blocks` blocks: see the header. */
export function writeCredits(mount: Ext4Mount, blocks: number): number {
  const { ext4 } = mount;
  const gdtBlocks = Math.ceil(ext4.groupCount / (ext4.blockSizeBytes / ext4.descSizeBytes));
  return Math.min(blocks, ext4.groupCount) + Math.min(blocks, gdtBlocks) + 1 + 2 * Math.ceil(blocks / 170) + 16;
}

/** Write `data` at byte `positionBytes` of regular file `ino`; raises i_size. */
export async function writeInodeData(mount: Ext4Mount, ino: number, data: Uint8Array, positionBytes: number): Promise<void> {
  if (data.length === 0) return;
  const bs = mount.ext4.blockSizeBytes;
  const endBytes = positionBytes + data.length;
  if (endBytes > maxFileSizeBytes(mount)) throw new FsError('EFBIG', { syscall: 'write' });
  const before = await mount.inode(ino);
  if (positionBytes > before.size) await zeroBlockTail(mount, before, before.size);
  const firstLblk = Math.floor(positionBytes / bs);
  const endLblk = Math.ceil(endBytes / bs);
  for (let lblk = firstLblk; lblk < endLblk; lblk += CHUNK_BLOCKS) {
    const count = Math.min(CHUNK_BLOCKS, endLblk - lblk);
    const chunk = { lblk, count, positionBytes, data };
    try {
      await writeChunk(mount, ino, chunk);
    } catch (error) {
      if (!FsError.is(error, 'ENOSPC')) throw error;
      await mount.sync();
      await writeChunk(mount, ino, chunk);
    }
  }
}

interface Chunk { lblk: number; count: number; positionBytes: number; data: Uint8Array }

async function writeChunk(mount: Ext4Mount, ino: number, chunk: Chunk): Promise<void> {
  const credits = writeCredits(mount, chunk.count);
  assert(credits <= (mount.journal?.maxTransactionBlocks ?? credits), `a write chunk (${credits} credits) fits a transaction`);
  await mount.transact(credits, async (h) => {
    const inode = await mount.inode(ino);
    const runs = await mapChunk(mount, h, ino, chunk.lblk, chunk.count);
    for (const run of runs) await writeRun(mount, run, chunk, inode.size);
    for (const run of runs) if (run.unwritten) await extentWriter.convertUnwritten(mount, h, ino, run.lblk, run.count);
    const bs = mount.ext4.blockSizeBytes;
    const chunkEndBytes = Math.min((chunk.lblk + chunk.count) * bs, chunk.positionBytes + chunk.data.length);
    const now = nowTimestamp();
    await mount.writeInode(h, ino, (raw) => {
      raw.size = Math.max(raw.size, chunkEndBytes);
      setRawTime(raw, 'mtime', now);
      setRawTime(raw, 'ctime', now);
    });
  }, 'write');
}

/** mapOrAllocate, undoing this call's allocations if it runs out of space. */
async function mapChunk(mount: Ext4Mount, h: JournalHandle, ino: number, lblk: number, count: number): Promise<MappedRun[]> {
  const holes: { lblk: number; len: number }[] = [];
  for await (const m of walkMappings(mount.ext4, await mount.inode(ino), lblk, lblk + count)) {
    if (m.kind === 'hole') holes.push({ lblk: m.lblk, len: m.len });
  }
  try {
    return await extentWriter.mapOrAllocate(mount, h, ino, lblk, count, { unwritten: false });
  } catch (error) {
    if (FsError.is(error, 'ENOSPC')) {
      for (const hole of holes) await extentWriter.removeRange(mount, h, ino, hole.lblk, hole.len);
    }
    throw error;
  }
}

/** Build and write one physical run's blocks. */
async function writeRun(mount: Ext4Mount, run: MappedRun, chunk: Chunk, oldSizeBytes: number): Promise<void> {
  const bs = mount.ext4.blockSizeBytes;
  const runStart = run.lblk * bs;
  const runEnd = runStart + run.count * bs;
  const dataStart = chunk.positionBytes, dataEnd = chunk.positionBytes + chunk.data.length;
  const buffer = new Uint8Array(run.count * bs);
  const startsZero = run.fresh || run.unwritten;
  // Edge blocks only partly covered by the write keep their old bytes (below the old EOF).
  if (!startsZero) {
    const edges = new Set<number>();
    if (dataStart > runStart) edges.add(0);
    if (dataEnd < runEnd) edges.add(run.count - 1);
    for (const i of edges) {
      const block = buffer.subarray(i * bs, (i + 1) * bs);
      await mount.ext4.device.read((run.pblk + i) * bs, block);
      const blockStart = runStart + i * bs;
      if (oldSizeBytes < blockStart + bs) block.fill(0, Math.max(0, oldSizeBytes - blockStart));
    }
  }
  const from = Math.max(runStart, dataStart), to = Math.min(runEnd, dataEnd);
  buffer.set(chunk.data.subarray(from - dataStart, to - dataStart), from - runStart);
  await mount.ext4.device.write(run.pblk * bs, buffer);
}
