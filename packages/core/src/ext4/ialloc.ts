/**
 * ext4/ialloc: the inode allocator (write-api.ts InodeAllocator) over the inode bitmaps
 * (ext4-format.md §3 UNINIT semantics, §8).
 *
 * Group choice (Orlov-like, much simplified):
 * - a directory goes to the group with the fewest directories among those with at least
 *   the average free inodes and free blocks (ties: lowest number), so trees spread;
 *   failing that, the group with the most free inodes;
 * - anything else goes to its parent's group when it has a free inode and a free block,
 *   else the next group (wrapping) with a free inode.
 * Inside a group the lowest free inode is taken (never one below s_first_ino).
 *
 * INODE_UNINIT: the first allocation writes a zero bitmap with the padding bits (ipg …
 * bs·8−1) set and clears the flag. bg_itable_unused is lowered so the new inode lies
 * below ipg − itable_unused (e2fsck and the read path only look below that mark). When
 * the group is not ITABLE_ZEROED the slots newly brought under the mark are zeroed (an
 * all-zero inode is valid, the caller then fills the new one).
 *
 * Inode numbers need no reuse delay (unlike blocks): the slot is journaled metadata.
 * Cost: 1 bitmap read, ≤ ipg bit scan; dirties ≤ 4 blocks (bitmap, GDT, superblock, and
 * the inode table block(s) of zeroed slots — usually the one the caller writes anyway).
 */
import { assert } from '../assert.js';
import { inodeBitmapChecksum, testBit } from '../format/bitmap.js';
import { GroupFlags } from '../format/group-desc.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { FsError, corrupted } from '../vfs/errors.js';
import { twins } from '../wasm/twins.js';
import type { Ext4Mount } from './mount.js';
import { groupFlags, inodeLocation, type Ext4Super } from './super.js';
import type { InodeAllocator } from './write-api.js';

/** The lowest usable inode index in a group: reserved inodes live in group 0. */
function firstIndexIn(ext4: Ext4Super, group: number): number {
  const firstIno = ext4.sb.revLevel === 0 ? 11 : ext4.sb.firstIno;
  return Math.max(0, firstIno - 1 - group * ext4.inodesPerGroup);
}

/** Free inodes a group can actually give (group 0 may have free reserved slots it must not give). */
function hasRoom(ext4: Ext4Super, group: number): boolean {
  return ext4.groups[group].freeInodesCount > 0 && firstIndexIn(ext4, group) < ext4.inodesPerGroup;
}

function chooseDirGroup(ext4: Ext4Super): number | undefined {
  let freeInodes = 0, freeBlocks = 0;
  for (const gd of ext4.groups) { freeInodes += gd.freeInodesCount; freeBlocks += gd.freeBlocksCount; }
  const avgInodes = freeInodes / ext4.groupCount, avgBlocks = freeBlocks / ext4.groupCount;
  let best: number | undefined;
  for (let g = 0; g < ext4.groupCount; g++) {
    const gd = ext4.groups[g];
    if (!hasRoom(ext4, g) || gd.freeInodesCount < avgInodes || gd.freeBlocksCount < avgBlocks) continue;
    if (best === undefined || gd.usedDirsCount < ext4.groups[best].usedDirsCount) best = g;
  }
  if (best !== undefined) return best;
  for (let g = 0; g < ext4.groupCount; g++) {
    if (hasRoom(ext4, g) && (best === undefined || ext4.groups[g].freeInodesCount > ext4.groups[best].freeInodesCount)) best = g;
  }
  return best;
}

function chooseFileGroup(ext4: Ext4Super, parentIno: number): number | undefined {
  const parentGroup = parentIno >= 1 && parentIno <= ext4.inodesCount ? inodeLocation(ext4, parentIno).group : 0;
  if (hasRoom(ext4, parentGroup) && ext4.groups[parentGroup].freeBlocksCount > 0) return parentGroup;
  for (let i = 0; i < ext4.groupCount; i++) {
    const g = (parentGroup + i) % ext4.groupCount;
    if (hasRoom(ext4, g)) return g;
  }
  return undefined;
}

/** Write access to a group's inode bitmap, initialising an INODE_UNINIT one. */
async function bitmapForWrite(mount: Ext4Mount, h: JournalHandle, group: number): Promise<Uint8Array> {
  const { ext4 } = mount;
  const gd = ext4.groups[group];
  if ((groupFlags(ext4, group) & GroupFlags.INODE_UNINIT) === 0) return h.getWriteAccess(gd.inodeBitmap);
  const bytes = h.getCreateAccess(gd.inodeBitmap);
  bytes.fill(0);
  twins.bitmapSetRange(bytes, 0, ext4.inodesPerGroup, ext4.blockSizeBytes * 8);
  gd.flags &= ~GroupFlags.INODE_UNINIT;
  // Nothing below the mark yet: the slot scan starts from an empty table.
  gd.itableUnused = ext4.inodesPerGroup;
  return bytes;
}

async function commitBitmap(mount: Ext4Mount, h: JournalHandle, group: number, bitmap: Uint8Array): Promise<void> {
  const { ext4 } = mount;
  const gd = ext4.groups[group];
  if (ext4.metadataCsum) {
    const sum = inodeBitmapChecksum(ext4.fsSeed, bitmap, ext4.inodesPerGroup);
    gd.inodeBitmapCsum = ext4.descSizeBytes >= 64 ? sum >>> 0 : sum & 0xffff;
  }
  h.dirtyMetadata(gd.inodeBitmap);
  await mount.writeGroup(h, group);
  await mount.writeSuperblock(h);
}

/** Zero inode slots [fromIndex, toIndex) of a group's table (they come under the used mark). */
async function zeroSlots(mount: Ext4Mount, h: JournalHandle, group: number, fromIndex: number, toIndex: number): Promise<void> {
  const { ext4 } = mount;
  const perBlock = ext4.blockSizeBytes / ext4.inodeSizeBytes;
  for (let index = fromIndex; index < toIndex;) {
    const blockNr = ext4.groups[group].inodeTable + Math.floor(index / perBlock);
    const stop = Math.min(toIndex, (Math.floor(index / perBlock) + 1) * perBlock);
    const block = await h.getWriteAccess(blockNr);
    block.fill(0, (index % perBlock) * ext4.inodeSizeBytes, ((stop - 1) % perBlock + 1) * ext4.inodeSizeBytes);
    h.dirtyMetadata(blockNr);
    for (let i = index; i < stop; i++) ext4.inodeCache.delete(group * ext4.inodesPerGroup + i + 1);
    index = stop;
  }
}

async function allocateIn(mount: Ext4Mount, h: JournalHandle, group: number, isDir: boolean): Promise<number> {
  const { ext4 } = mount;
  const ipg = ext4.inodesPerGroup;
  const bitmap = await bitmapForWrite(mount, h, group);
  const index = twins.bitmapFindFirstZero(bitmap, 0, firstIndexIn(ext4, group), ipg);
  if (index < 0) throw corrupted(`group ${group} counts ${ext4.groups[group].freeInodesCount} free inodes, its bitmap none`);
  const gd = ext4.groups[group];
  const usedMark = ipg - gd.itableUnused;
  if (index >= usedMark) {
    const zeroed = ext4.groupCsum && (gd.flags & GroupFlags.ITABLE_ZEROED) !== 0;
    if (!zeroed) await zeroSlots(mount, h, group, usedMark, index + 1);
    gd.itableUnused = ipg - index - 1;
  }
  twins.bitmapSetRange(bitmap, 0, index, index + 1);
  gd.freeInodesCount -= 1;
  if (isDir) gd.usedDirsCount += 1;
  assert(gd.itableUnused <= gd.freeInodesCount, 'itable_unused ≤ free inodes');
  await commitBitmap(mount, h, group, bitmap);
  return group * ipg + index + 1;
}

async function allocate(mount: Ext4Mount, h: JournalHandle, request: { parentIno: number; isDir: boolean }): Promise<number> {
  const { ext4 } = mount;
  const group = request.isDir ? chooseDirGroup(ext4) : chooseFileGroup(ext4, request.parentIno);
  if (group === undefined) throw new FsError('ENOSPC', { syscall: 'create', detail: 'no free inodes' });
  const ino = await allocateIn(mount, h, group, request.isDir);
  assert(ino >= ext4.sb.firstIno && ino <= ext4.inodesCount, `allocated inode ${ino} in range`);
  return ino;
}

async function free(mount: Ext4Mount, h: JournalHandle, ino: number, isDir: boolean): Promise<void> {
  const { ext4 } = mount;
  if (!Number.isInteger(ino) || ino < ext4.sb.firstIno || ino > ext4.inodesCount) {
    throw corrupted(`free of inode ${ino}: not an allocatable inode number`);
  }
  const { group, index } = inodeLocation(ext4, ino);
  if ((groupFlags(ext4, group) & GroupFlags.INODE_UNINIT) !== 0) throw corrupted(`free of inode ${ino} in INODE_UNINIT group ${group}`);
  const gd = ext4.groups[group];
  const bitmap = await h.getWriteAccess(gd.inodeBitmap);
  if (!testBit(bitmap, index)) throw corrupted(`free of inode ${ino}: already free`);
  twins.bitmapClearRange(bitmap, 0, index, index + 1);
  gd.freeInodesCount += 1;
  if (isDir) {
    if (gd.usedDirsCount === 0) throw corrupted(`free of directory ${ino}: group ${group} counts no directories`);
    gd.usedDirsCount -= 1;
  }
  await commitBitmap(mount, h, group, bitmap);
}

/** The ext4ts inode allocator. */
export const inodeAllocator: InodeAllocator = { allocate, free };
