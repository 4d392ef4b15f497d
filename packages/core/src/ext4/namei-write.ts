/**
 * ext4/namei-write: namespace changes — create (file, directory, symlink), link, unlink,
 * rmdir, rename — and attribute changes (setattr), each over parent inode + name, each
 * validated completely before its first handle so an error leaves the image unchanged.
 *
 * One handle holds the whole namespace change (rename included: the new name, the removed
 * old name, ".." and every link count move together). Freeing an inode that lost its last
 * name takes more: the handle that drops the link puts the inode on the orphan list, then
 * its blocks go in bounded handles (truncate.ts) and the last one frees the inode number
 * and takes it off the list. An inode still open (`isOpen`) stays on the list until its
 * last close calls freeInode.
 *
 * Link counts (ext4-format.md §8): a file's = its names; a directory's = 2 + subdirs;
 * with dir_nlink a directory past LINK_MAX stores 1 (and stays 1 on decrement).
 *
 * Credits: create ≤ ialloc 4 + inode 1 + DIR_ADD_CREDITS_MAX 32 + initDir/symlink block ≤ 8
 * + parent 1 (+ rollback); rename ≤ add 32 + remove 2 + ".." 2 + 4 inodes + orphan 2.
 */
import { getRandomValues } from 'node:crypto';
import { assert } from '../assert.js';
import { DirFileType, NAME_MAX } from '../format/dirent.js';
import { EXT_INIT_MAX_LEN, ROOT_MAX_ENTRIES, encodeExtentHeader } from '../format/extent.js';
import { FileType, I_BLOCK_BYTES, InodeFlags, ROOT_INO, S_IFMT, decodeInode, type Inode, type Timestamp } from '../format/inode.js';
import { RoCompat } from '../format/superblock.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { FsError } from '../vfs/errors.js';
import { Ext4DirectoryWriter, DIR_ADD_CREDITS_MAX, DIR_REMOVE_CREDITS_MAX } from './dir-write.js';
import { extentWriter } from './extents-write.js';
import { inodeAllocator } from './ialloc.js';
import { isDir, type Ext4Inode } from './inode.js';
import type { Ext4Mount } from './mount.js';
import { lookup } from './namei.js';
import { orphanAdd, orphanRemove, orphanWalk, ORPHAN_ADD_CREDITS } from './orphan.js';
import { LBLK_LIMIT } from './extents.js';
import { nowTimestamp, removeBlocksFrom, revokeDirBlocks, setRawTime } from './truncate.js';

/** EXT4_LINK_MAX: most names of a file, most links a directory stores before dir_nlink's 1. */
export const LINK_MAX = 65000;
export const CREATE_CREDITS = 4 + 1 + DIR_ADD_CREDITS_MAX + 8 + 2 + 16;
export const RENAME_CREDITS = DIR_ADD_CREDITS_MAX + 2 * DIR_REMOVE_CREDITS_MAX + 4 + ORPHAN_ADD_CREDITS + 8;
export const UNLINK_CREDITS = DIR_REMOVE_CREDITS_MAX + 2 + ORPHAN_ADD_CREDITS + 4;

export const directoryWriter = new Ext4DirectoryWriter(extentWriter);

export type NodeKind = 'file' | 'dir' | 'symlink';

export interface Owner { uid: number; gid: number }

export interface CreateRequest extends Owner {
  kind: NodeKind;
  /** Permission bits (0o7777); the type bits come from `kind`. */
  mode: number;
  /** Symlink target bytes. */
  target?: Uint8Array;
}

const encoder = new TextEncoder();
const S_ISGID = 0o2000;

function nameBytes(name: Uint8Array | string): Uint8Array {
  return typeof name === 'string' ? encoder.encode(name) : name;
}

function isDots(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

function checkEntryName(name: Uint8Array, syscall: string): void {
  if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG', { syscall });
  if (name.length === 0 || name.includes(0) || name.includes(0x2f)) throw new FsError('EINVAL', { syscall, detail: 'bad entry name' });
}

/** A live directory, or ENOTDIR / ENOENT (a removed directory takes no new names). */
async function liveDir(mount: Ext4Mount, ino: number, syscall: string): Promise<Ext4Inode> {
  const dir = await mount.inode(ino);
  if (!isDir(dir)) throw new FsError('ENOTDIR', { syscall });
  if (dir.linksCount === 0) throw new FsError('ENOENT', { syscall, detail: 'the directory was removed' });
  return dir;
}

function dirFileType(inode: Pick<Ext4Inode, 'mode'>): number {
  switch (inode.mode & S_IFMT) {
    case FileType.REG: return DirFileType.REG;
    case FileType.DIR: return DirFileType.DIR;
    case FileType.LNK: return DirFileType.LNK;
    case FileType.CHR: return DirFileType.CHR;
    case FileType.BLK: return DirFileType.BLK;
    case FileType.FIFO: return DirFileType.FIFO;
    case FileType.SOCK: return DirFileType.SOCK;
    default: return DirFileType.UNKNOWN;
  }
}

/** The link count a directory stores after gaining a subdirectory (dir_nlink rule). */
function incDirLinks(links: number): number {
  if (links === 1) return 1;
  return links + 1 > LINK_MAX ? 1 : links + 1;
}
function decDirLinks(links: number): number {
  return links > 2 ? links - 1 : links;
}

function hasDirNlink(mount: Ext4Mount): boolean {
  return (mount.ext4.sb.featureRoCompat & RoCompat.DIR_NLINK) !== 0;
}

function checkDirCanGrow(mount: Ext4Mount, dir: Ext4Inode, syscall: string): void {
  if (!hasDirNlink(mount) && dir.linksCount >= LINK_MAX) throw new FsError('EMLINK', { syscall });
}

/** Fill a newly allocated slot: zeroed, then the checklist of ext4-format.md §8. */
function initSlot(mount: Ext4Mount, raw: Inode, mode: number, owner: Owner, links: number, extents: boolean, now: Timestamp): void {
  const zero = decodeInode(new Uint8Array(mount.ext4.inodeSizeBytes), mount.ext4.inodeSizeBytes);
  Object.assign(raw, zero);
  raw.extraIsize = Math.min(32, mount.ext4.inodeSizeBytes - 128);
  raw.mode = mode;
  raw.uid = owner.uid;
  raw.gid = owner.gid;
  raw.linksCount = links;
  raw.generation = getRandomValues(new Uint32Array(1))[0];
  for (const which of ['atime', 'mtime', 'ctime', 'crtime'] as const) setRawTime(raw, which, now);
  if (extents) {
    raw.flags = InodeFlags.EXTENTS;
    const root = new Uint8Array(I_BLOCK_BYTES);
    encodeExtentHeader(root, { entries: 0, max: ROOT_MAX_ENTRIES, depth: 0, generation: 0 });
    raw.block = root;
  }
}

/** Rewrite a slot as freed: links 0, dtime set, size 0 (checksum sealed by writeInode). */
function markFreed(raw: Inode, dtime: number): void {
  raw.linksCount = 0;
  raw.dtime = dtime;
  raw.size = 0;
}

function dtimeNow(): number {
  return Math.max(1, Math.floor(Date.now() / 1000) >>> 0);
}

/**
 * Create `name` in directory `parentIno`: a regular file, a directory (". ..", parent
 * links + 1) or a symlink (fast below 60 bytes, else one block). Returns the new inode.
 */
export async function createNode(mount: Ext4Mount, parentIno: number, nameIn: Uint8Array | string, request: CreateRequest): Promise<number> {
  const syscall = request.kind === 'dir' ? 'mkdir' : request.kind === 'symlink' ? 'symlink' : 'open';
  const name = nameBytes(nameIn);
  const parent = await liveDir(mount, parentIno, syscall);
  checkEntryName(name, syscall);
  if (isDots(name) || await lookup(mount.ext4, parent, name) !== undefined) throw new FsError('EEXIST', { syscall });
  if (request.kind === 'dir') checkDirCanGrow(mount, parent, syscall);
  const target = request.target ?? new Uint8Array(0);
  if (request.kind === 'symlink') {
    if (target.length === 0) throw new FsError('ENOENT', { syscall, detail: 'empty symlink target' });
    if (target.length >= mount.ext4.blockSizeBytes) throw new FsError('ENAMETOOLONG', { syscall });
  }
  const typeBits = request.kind === 'dir' ? FileType.DIR : request.kind === 'symlink' ? FileType.LNK : FileType.REG;
  const owner = { uid: request.uid, gid: request.gid };
  let perm = request.kind === 'symlink' ? 0o777 : request.mode & 0o7777;
  // BSD group semantics under a setgid directory (the kernel's inode_init_owner).
  if ((parent.mode & S_ISGID) !== 0) {
    owner.gid = parent.gid;
    if (request.kind === 'dir') perm |= S_ISGID;
  }
  const fast = request.kind === 'symlink' && target.length < I_BLOCK_BYTES;
  const now = nowTimestamp();
  return mount.transact(CREATE_CREDITS, async (h) => {
    const ino = await inodeAllocator.allocate(mount, h, { parentIno, isDir: request.kind === 'dir' });
    await mount.writeInode(h, ino, (raw) => {
      initSlot(mount, raw, typeBits | perm, owner, request.kind === 'dir' ? 2 : 1, !fast, now);
      if (fast) {
        const text = new Uint8Array(I_BLOCK_BYTES);
        text.set(target);
        raw.block = text;
        raw.size = target.length;
      }
    });
    try {
      if (request.kind === 'dir') await directoryWriter.initDir(mount, h, ino, parentIno);
      if (request.kind === 'symlink' && !fast) await writeSlowSymlink(mount, h, ino, target);
      await directoryWriter.addEntry(mount, h, parentIno, name, ino, dirFileType({ mode: typeBits }));
    } catch (error) {
      if (!FsError.is(error, 'ENOSPC')) throw error;
      await revokeDirBlocks(mount, h, ino);
      await extentWriter.removeRange(mount, h, ino, 0, LBLK_LIMIT);
      await mount.writeInode(h, ino, (raw) => markFreed(raw, dtimeNow()));
      await inodeAllocator.free(mount, h, ino, request.kind === 'dir');
      throw error;
    }
    await mount.writeInode(h, parentIno, (raw) => {
      if (request.kind === 'dir') raw.linksCount = incDirLinks(raw.linksCount);
      setRawTime(raw, 'mtime', now);
      setRawTime(raw, 'ctime', now);
    });
    return ino;
  }, syscall);
}

/** A slow symlink's one block: allocated, written to the device (before commit), i_size set. */
async function writeSlowSymlink(mount: Ext4Mount, h: JournalHandle, ino: number, target: Uint8Array): Promise<void> {
  const runs = await extentWriter.mapOrAllocate(mount, h, ino, 0, 1, { unwritten: false });
  assert(runs.length === 1 && runs[0].count === 1 && runs[0].count <= EXT_INIT_MAX_LEN, 'one symlink block');
  const block = new Uint8Array(mount.ext4.blockSizeBytes);
  block.set(target);
  await mount.ext4.device.write(runs[0].pblk * mount.ext4.blockSizeBytes, block);
  await mount.writeInode(h, ino, (raw) => { raw.size = target.length; });
}

/** A new name `name` in `parentIno` for inode `ino` (not a directory). */
export async function linkNode(mount: Ext4Mount, ino: number, parentIno: number, nameIn: Uint8Array | string): Promise<void> {
  const name = nameBytes(nameIn);
  const inode = await mount.inode(ino);
  if (isDir(inode)) throw new FsError('EPERM', { syscall: 'link', detail: 'directories cannot be hard-linked' });
  if (inode.linksCount === 0) throw new FsError('ENOENT', { syscall: 'link' });
  if (inode.linksCount >= LINK_MAX) throw new FsError('EMLINK', { syscall: 'link' });
  const parent = await liveDir(mount, parentIno, 'link');
  checkEntryName(name, 'link');
  if (isDots(name) || await lookup(mount.ext4, parent, name) !== undefined) throw new FsError('EEXIST', { syscall: 'link' });
  const now = nowTimestamp();
  await mount.transact(DIR_ADD_CREDITS_MAX + 4, async (h) => {
    await directoryWriter.addEntry(mount, h, parentIno, name, ino, dirFileType(inode));
    await mount.writeInode(h, ino, (raw) => { raw.linksCount += 1; setRawTime(raw, 'ctime', now); });
    await touchDir(mount, h, parentIno, now, 0);
  }, 'link');
}

async function touchDir(mount: Ext4Mount, h: JournalHandle, dirIno: number, now: Timestamp, linkDelta: -1 | 0 | 1): Promise<void> {
  await mount.writeInode(h, dirIno, (raw) => {
    if (linkDelta === 1) raw.linksCount = incDirLinks(raw.linksCount);
    if (linkDelta === -1) raw.linksCount = decDirLinks(raw.linksCount);
    setRawTime(raw, 'mtime', now);
    setRawTime(raw, 'ctime', now);
  });
}

/** What unlink/rmdir/rename report: an inode that lost its last name (on the orphan list). */
export interface Dropped { ino: number }

/** Drop one link of `ino` inside h; at 0 (or a directory losing its name) it goes on the orphan list. */
async function dropLink(mount: Ext4Mount, h: JournalHandle, ino: number, now: Timestamp): Promise<Dropped | undefined> {
  const inode = await mount.inode(ino);
  const links = isDir(inode) ? 0 : inode.linksCount - 1;
  assert(links >= 0, `inode ${ino} had a link to drop`);
  await mount.writeInode(h, ino, (raw) => { raw.linksCount = links; setRawTime(raw, 'ctime', now); });
  if (links > 0) return undefined;
  await orphanAdd(mount, h, ino);
  return { ino };
}

/** Remove a non-directory name. Returns the inode if that was its last name. */
export async function unlinkNode(mount: Ext4Mount, parentIno: number, nameIn: Uint8Array | string): Promise<Dropped | undefined> {
  const name = nameBytes(nameIn);
  const parent = await liveDir(mount, parentIno, 'unlink');
  checkEntryName(name, 'unlink');
  if (isDots(name)) throw new FsError('EISDIR', { syscall: 'unlink' });
  const entry = await lookup(mount.ext4, parent, name);
  if (entry === undefined) throw new FsError('ENOENT', { syscall: 'unlink' });
  const inode = await mount.inode(entry.ino);
  if (isDir(inode)) throw new FsError('EISDIR', { syscall: 'unlink' });
  checkXattrBlock(inode, 'unlink');
  const now = nowTimestamp();
  return mount.transact(UNLINK_CREDITS, async (h) => {
    await directoryWriter.removeEntry(mount, h, parentIno, name);
    await touchDir(mount, h, parentIno, now, 0);
    return dropLink(mount, h, entry.ino, now);
  }, 'unlink');
}

/** Freeing an inode with an xattr block would need its refcount: refused before any change. */
function checkXattrBlock(inode: Ext4Inode, syscall: string): void {
  if (inode.fileAcl !== 0 && inode.linksCount <= 1) {
    throw new FsError('ENOTSUP', { syscall, detail: `inode ${inode.ino} has an xattr block; freeing it is not supported yet` });
  }
}

/** Remove an empty directory. */
export async function rmdirNode(mount: Ext4Mount, parentIno: number, nameIn: Uint8Array | string): Promise<Dropped | undefined> {
  const name = nameBytes(nameIn);
  const parent = await liveDir(mount, parentIno, 'rmdir');
  checkEntryName(name, 'rmdir');
  if (name.length === 1 && name[0] === 0x2e) throw new FsError('EINVAL', { syscall: 'rmdir' });
  if (isDots(name)) throw new FsError('ENOTEMPTY', { syscall: 'rmdir' });
  const entry = await lookup(mount.ext4, parent, name);
  if (entry === undefined) throw new FsError('ENOENT', { syscall: 'rmdir' });
  const dir = await mount.inode(entry.ino);
  if (!isDir(dir)) throw new FsError('ENOTDIR', { syscall: 'rmdir' });
  if (!await directoryWriter.isEmpty(mount, entry.ino)) throw new FsError('ENOTEMPTY', { syscall: 'rmdir' });
  checkXattrBlock(dir, 'rmdir');
  const now = nowTimestamp();
  return mount.transact(UNLINK_CREDITS, async (h) => {
    await directoryWriter.removeEntry(mount, h, parentIno, name);
    await touchDir(mount, h, parentIno, now, -1);
    return dropLink(mount, h, entry.ino, now);
  }, 'rmdir');
}

/** Whether `ino` is `ancestor` or lies below it (walking ".." up to the root). */
async function isWithin(mount: Ext4Mount, ino: number, ancestor: number): Promise<boolean> {
  const dotdot = Uint8Array.of(0x2e, 0x2e);
  for (let cur = ino, guard = 0; ; guard++) {
    if (cur === ancestor) return true;
    if (cur === ROOT_INO) return false;
    if (guard > mount.ext4.inodesCount) throw new FsError('EUCLEAN', { syscall: 'rename', detail: 'a ".." loop' });
    const up = await lookup(mount.ext4, await mount.inode(cur), dotdot);
    if (up === undefined) return false;
    cur = up.ino;
  }
}

/**
 * rename(2): move `oldName` of `oldParentIno` to `newName` of `newParentIno`, replacing
 * a target of a compatible kind; directories get ".." and both parents' links fixed.
 * Returns the replaced inode if that was its last name.
 */
export async function renameNode(
  mount: Ext4Mount, oldParentIno: number, oldNameIn: Uint8Array | string, newParentIno: number, newNameIn: Uint8Array | string,
): Promise<Dropped | undefined> {
  const oldName = nameBytes(oldNameIn), newName = nameBytes(newNameIn);
  const oldParent = await liveDir(mount, oldParentIno, 'rename');
  const newParent = await liveDir(mount, newParentIno, 'rename');
  checkEntryName(oldName, 'rename');
  checkEntryName(newName, 'rename');
  if (isDots(oldName) || isDots(newName)) throw new FsError(isDots(oldName) && oldName.length === 1 ? 'EINVAL' : 'EBUSY', { syscall: 'rename' });
  const source = await lookup(mount.ext4, oldParent, oldName);
  if (source === undefined) throw new FsError('ENOENT', { syscall: 'rename' });
  const sourceInode = await mount.inode(source.ino);
  const target = await lookup(mount.ext4, newParent, newName);
  if (target !== undefined && target.ino === source.ino) return undefined;
  const moving = isDir(sourceInode);
  let targetInode: Ext4Inode | undefined;
  if (target !== undefined) {
    targetInode = await mount.inode(target.ino);
    if (moving && !isDir(targetInode)) throw new FsError('ENOTDIR', { syscall: 'rename' });
    if (!moving && isDir(targetInode)) throw new FsError('EISDIR', { syscall: 'rename' });
    if (isDir(targetInode) && !await directoryWriter.isEmpty(mount, target.ino)) throw new FsError('ENOTEMPTY', { syscall: 'rename' });
    checkXattrBlock(targetInode, 'rename');
  }
  const crossing = moving && oldParentIno !== newParentIno;
  if (crossing) {
    if (await isWithin(mount, newParentIno, source.ino)) throw new FsError('EINVAL', { syscall: 'rename', detail: 'a directory cannot move into itself' });
    if (targetInode === undefined) checkDirCanGrow(mount, newParent, 'rename');
  }
  const type = dirFileType(sourceInode);
  const now = nowTimestamp();
  return mount.transact(RENAME_CREDITS, async (h) => {
    let dropped: Dropped | undefined;
    if (target !== undefined) await directoryWriter.setEntry(mount, h, newParentIno, newName, source.ino, type);
    else await directoryWriter.addEntry(mount, h, newParentIno, newName, source.ino, type);
    await directoryWriter.removeEntry(mount, h, oldParentIno, oldName);
    if (targetInode !== undefined) dropped = await dropLink(mount, h, targetInode.ino, now);
    if (crossing) await directoryWriter.setEntry(mount, h, source.ino, Uint8Array.of(0x2e, 0x2e), newParentIno, DirFileType.DIR);
    await mount.writeInode(h, source.ino, (raw) => setRawTime(raw, 'ctime', now));
    // Link counts of the parents: a directory's ".." moves from old to new parent; a
    // replaced directory's ".." leaves the new parent.
    const replacedDir = targetInode !== undefined && isDir(targetInode);
    const newDelta = (crossing ? 1 : 0) - (replacedDir ? 1 : 0);
    const oldDelta = crossing ? -1 : 0;
    if (oldParentIno === newParentIno) {
      await touchDir(mount, h, newParentIno, now, replacedDir ? -1 : 0);
    } else {
      await touchDir(mount, h, oldParentIno, now, oldDelta as -1 | 0);
      await touchDir(mount, h, newParentIno, now, newDelta as -1 | 0 | 1);
    }
    return dropped;
  }, 'rename');
}

/**
 * Free an inode that lost its last name and is on the orphan list (after its last close):
 * its blocks in bounded handles, then the inode number, off the list, in the last one.
 */
export async function freeInode(mount: Ext4Mount, ino: number): Promise<void> {
  const inode = await mount.inode(ino);
  assert(inode.linksCount === 0, `inode ${ino} has no links left`);
  const wasDir = isDir(inode);
  await removeBlocksFrom(mount, ino, 0, async (h) => {
    const dtime = dtimeNow();
    await orphanRemove(mount, h, ino, dtime);
    await mount.writeInode(h, ino, (raw) => markFreed(raw, dtime));
    await inodeAllocator.free(mount, h, ino, wasDir);
  }, 'unlink');
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  atime?: Timestamp;
  mtime?: Timestamp;
}

/** chmod / chown / utimes: one handle, one inode block; ctime moves to now. */
export async function setAttr(mount: Ext4Mount, ino: number, attr: SetAttr): Promise<void> {
  const now = nowTimestamp();
  await mount.transact(1, async (h) => {
    await mount.writeInode(h, ino, (raw) => {
      const r = raw;
      if (attr.mode !== undefined) raw.mode = (raw.mode & S_IFMT) | (attr.mode & 0o7777);
      if (attr.uid !== undefined && attr.uid !== -1) raw.uid = attr.uid;
      if (attr.gid !== undefined && attr.gid !== -1) raw.gid = attr.gid;
      if (attr.atime !== undefined) setRawTime(raw, 'atime', attr.atime);
      if (attr.mtime !== undefined) setRawTime(raw, 'mtime', attr.mtime);
      setRawTime(raw, 'ctime', now);
    });
  }, 'utime');
}

/**
 * Finish what a crash interrupted (read-write open, after journal replay), as the kernel
 * does: each listed inode with no links is freed; any other is cut back to its i_size.
 * Returns how many inodes were processed; s_last_orphan is 0 afterwards.
 */
export async function processOrphans(mount: Ext4Mount): Promise<{ freed: number; truncated: number }> {
  const listed: number[] = [];
  for await (const ino of orphanWalk(mount)) listed.push(ino);
  let freed = 0, truncated = 0;
  for (const ino of listed) {
    const inode = await mount.inode(ino);
    if (inode.linksCount === 0) {
      await freeInode(mount, ino);
      freed++;
    } else {
      const endLblk = Math.ceil(inode.size / mount.ext4.blockSizeBytes);
      await removeBlocksFrom(mount, ino, endLblk, (h) => orphanRemove(mount, h, ino, 0), 'mount');
      truncated++;
    }
  }
  assert(mount.ext4.sb.lastOrphan === 0, 'the orphan list is empty after processing');
  return { freed, truncated };
}
