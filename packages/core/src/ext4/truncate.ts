/**
 * ext4/truncate: cutting an inode's blocks off past a logical block, and changing i_size
 * (ftruncate). Blocks go in handles of at most EXTENTS_PER_HANDLE extents, last extents
 * first, so one handle's credits stay bounded however fragmented the file is; between
 * handles the inode sits on the orphan list (ext4/orphan.ts), so a crash in the middle is
 * finished by the next read-write open.
 *
 *   truncate 10 blocks → 3:   handle 1: orphanAdd, i_size = new size
 *                              handle 2..n: removeRange of the last ≤ 16 extents
 *                              last handle: orphanRemove (+ whatever `finish` adds)
 *
 * The partial block at the new EOF is zeroed past it on the device (data, written before
 * the handle that sets i_size commits), so a later extension reads zeros there.
 *
 * Cost per removal handle: ≤ 16 extents freed → ≤ 16 bitmaps + 16 GDT blocks, the
 * superblock, the extent path (≤ 5 levels, with sibling pulls), the inode: ≤ 64 credits.
 */
import { assert } from '../assert.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { FsError } from '../vfs/errors.js';
import { LBLK_LIMIT, walkMappings } from './extents.js';
import { extentWriter } from './extents-write.js';
import { isDir, isSymlink, usesExtents, type Ext4Inode } from './inode.js';
import type { Ext4Mount } from './mount.js';
import { orphanAdd, orphanRemove, ORPHAN_ADD_CREDITS, ORPHAN_REMOVE_CREDITS } from './orphan.js';
import { isFastSymlink } from '../format/inode.js';
import { encodeTime, type Inode, type Timestamp } from '../format/inode.js';

/** Extents removed per handle. */
export const EXTENTS_PER_HANDLE = 16;
/** Credits of one removal handle (see the header), plus room for a caller's `finish`. */
export const REMOVE_CREDITS = 64;
export const FINISH_CREDITS_MAX = 16;

/** The time now as an ext4 timestamp. */
export function nowTimestamp(): Timestamp {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

/** Set raw time fields (base + extra) of an inode being written. */
export function setRawTime(raw: Inode, which: 'atime' | 'mtime' | 'ctime' | 'crtime', t: Timestamp): void {
  const { base, extra } = encodeTime(t);
  switch (which) {
    case 'atime': raw.atime = base; raw.atimeExtra = extra; break;
    case 'mtime': raw.mtime = base; raw.mtimeExtra = extra; break;
    case 'ctime': raw.ctime = base; raw.ctimeExtra = extra; break;
    case 'crtime': raw.crtime = base; raw.crtimeExtra = extra; break;
  }
}

/** Whether the inode's blocks are described by something this engine can free. */
function checkFreeable(inode: Ext4Inode, syscall: string): void {
  if (usesExtents(inode) || isFastSymlink(inode.raw)) return;
  if (inode.block.every((b) => b === 0)) return;
  throw new FsError('ENOTSUP', { syscall, detail: `inode ${inode.ino} is block-mapped; only extent-mapped inodes are changed` });
}

/** Revoke every block of a directory being abandoned inside h (see removeBlocksFrom). */
export async function revokeDirBlocks(mount: Ext4Mount, h: JournalHandle, ino: number): Promise<void> {
  const inode = await mount.inode(ino);
  if (!isDir(inode)) return;
  for (const r of await mappedRunsFrom(mount, inode, 0)) for (let i = 0; i < r.len; i++) h.revoke(r.pblk + i);
}

/** The mapped (written or unwritten) runs at or after `fromLblk`. */
async function mappedRunsFrom(mount: Ext4Mount, inode: Ext4Inode, fromLblk: number): Promise<{ lblk: number; len: number; pblk: number }[]> {
  const runs: { lblk: number; len: number; pblk: number }[] = [];
  if (!usesExtents(inode)) return runs;
  for await (const m of walkMappings(mount.ext4, inode, fromLblk, LBLK_LIMIT)) {
    if (m.kind !== 'hole') runs.push({ lblk: m.lblk, len: m.len, pblk: m.pblk });
  }
  return runs;
}

/**
 * Free every block of `ino` at or after `fromLblk`, in bounded handles; `finish` runs in
 * the last one (≤ FINISH_CREDITS_MAX blocks), even when there was nothing to free.
 */
export async function removeBlocksFrom(mount: Ext4Mount, ino: number, fromLblk: number, finish: (h: JournalHandle) => Promise<void>, syscall = 'truncate'): Promise<void> {
  for (let guard = 0; ; guard++) {
    assert(guard < 1 << 24, 'removeBlocksFrom terminates');
    const inode = await mount.inode(ino);
    checkFreeable(inode, syscall);
    const runs = await mappedRunsFrom(mount, inode, fromLblk);
    const last = runs.length <= EXTENTS_PER_HANDLE;
    const startLblk = last ? fromLblk : runs[runs.length - EXTENTS_PER_HANDLE].lblk;
    await mount.transact(REMOVE_CREDITS + (last ? FINISH_CREDITS_MAX : 0), async (h) => {
      // A directory's blocks are journaled metadata: revoke them, or a checkpoint of an
      // older transaction could write a stale directory block over the block's next owner.
      if (isDir(inode)) for (const r of runs) if (r.lblk >= startLblk) for (let i = 0; i < r.len; i++) h.revoke(r.pblk + i);
      if (runs.length > 0) await extentWriter.removeRange(mount, h, ino, startLblk, LBLK_LIMIT - startLblk);
      if (last) await finish(h);
    }, syscall);
    if (last) return;
  }
}

/** Zero file bytes [fromBytes, end of that block) on the device when the block is mapped and written. */
export async function zeroBlockTail(mount: Ext4Mount, inode: Ext4Inode, fromBytes: number): Promise<void> {
  const bs = mount.ext4.blockSizeBytes;
  const within = fromBytes % bs;
  if (within === 0 || !usesExtents(inode)) return;
  const lblk = Math.floor(fromBytes / bs);
  for await (const m of walkMappings(mount.ext4, inode, lblk, lblk + 1)) {
    if (m.kind !== 'mapped') return;
    const block = new Uint8Array(bs);
    await mount.ext4.device.read(m.pblk * bs, block);
    block.fill(0, within);
    await mount.ext4.device.write(m.pblk * bs, block);
  }
}

/**
 * Set a regular file's size (ftruncate). Growing only moves i_size (the new range is a
 * hole); shrinking drops the blocks past the new EOF through the orphan list.
 */
export async function truncateInode(mount: Ext4Mount, ino: number, sizeBytes: number): Promise<void> {
  const inode = await mount.inode(ino);
  assert(!isSymlink(inode), 'truncate of a regular file');
  checkFreeable(inode, 'truncate');
  const bs = mount.ext4.blockSizeBytes;
  const now = nowTimestamp();
  const setSize = async (h: JournalHandle): Promise<void> => {
    await mount.writeInode(h, ino, (raw) => {
      raw.size = sizeBytes;
      setRawTime(raw, 'mtime', now);
      setRawTime(raw, 'ctime', now);
    });
  };
  // The bytes past the smaller of the two sizes, in that block, must read as zeros from now on.
  await zeroBlockTail(mount, inode, Math.min(sizeBytes, inode.size));
  const endLblk = Math.ceil(sizeBytes / bs);
  const runs = sizeBytes < inode.size || inode.size === 0 ? await mappedRunsFrom(mount, inode, endLblk) : [];
  if (runs.length === 0) {
    await mount.transact(2, setSize, 'truncate');
    return;
  }
  await mount.transact(1 + ORPHAN_ADD_CREDITS, async (h) => {
    await orphanAdd(mount, h, ino);
    await setSize(h);
  }, 'truncate');
  await removeBlocksFrom(mount, ino, endLblk, (h) => orphanRemove(mount, h, ino, 0));
}

/** Keep FINISH_CREDITS_MAX honest for the callers that pass orphanRemove plus an inode free (≤ 3 + 4 + 1). */
assert(ORPHAN_REMOVE_CREDITS + 8 <= FINISH_CREDITS_MAX, 'a finish step fits its credits');
