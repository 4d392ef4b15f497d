/**
 * Reading inodes: number bounds, the inode table slot, checksum, decode into the
 * in-memory inode the rest of the engine uses (ext4-format.md §5).
 *
 * Cost: one inode-table block through the block cache (16 inodes per 4 KiB block share
 * it), one crc32c over 256 bytes; decoded inodes are kept in a small LRU.
 */
import {
  FileType, InodeFlags, S_IFMT, decodeInode, decodeTime, inodeChecksumSeed, inodeSectors512, verifyInodeChecksum,
  type Inode, type Timestamp,
} from '../format/inode.js';
import { Incompat } from '../format/superblock.js';
import { corrupted } from '../vfs/errors.js';
import type { Ext4Super } from './super.js';
import { GroupFlags, groupFlags, inodeLocation } from './super.js';

/** Decoded inodes kept per mount. */
export const INODE_CACHE_MAX = 8192;

export interface Ext4Inode {
  readonly ino: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** i_size (64-bit). */
  readonly size: number;
  readonly linksCount: number;
  /** i_blocks in 512-byte units (HUGE_FILE scaling applied). */
  readonly sectors512: number;
  readonly flags: number;
  readonly generation: number;
  readonly atime: Timestamp;
  readonly mtime: Timestamp;
  readonly ctime: Timestamp;
  /** Creation time, when the inode has room for it. */
  readonly crtime: Timestamp | undefined;
  readonly dtime: number;
  /** Extended-attribute block, 0 if none. */
  readonly fileAcl: number;
  /** The 60 bytes of i_block: extent root, block map, fast symlink text or device number. */
  readonly block: Uint8Array;
  /** The crc32c seed of this inode's extent, directory and index blocks. */
  readonly csumSeed: number;
  readonly raw: Inode;
}

/** Throw EUCLEAN unless `ino` can name an inode: 1..inodes_count, in an initialised slot. */
export function checkInodeNumber(ext4: Ext4Super, ino: number): void {
  if (!Number.isInteger(ino) || ino < 1 || ino > ext4.inodesCount) {
    throw corrupted(`inode number ${ino} outside 1..${ext4.inodesCount}`);
  }
  const { group, index } = inodeLocation(ext4, ino);
  const flags = groupFlags(ext4, group);
  if ((flags & GroupFlags.INODE_UNINIT) !== 0) throw corrupted(`inode ${ino} lies in group ${group}, which has no inodes (INODE_UNINIT)`);
  // With group checksums, slots at or above ipg − itable_unused were never used.
  if (ext4.groupCsum && index >= ext4.inodesPerGroup - ext4.groups[group].itableUnused) {
    throw corrupted(`inode ${ino} lies above group ${group}'s used inode range`);
  }
}

/**
 * Turn an on-disk inode into the engine's view of it. (One object literal, no spread of
 * a helper's: mount.writeInode builds a view at every change, per block on the
 * buffer_head path.) An extra time field exists only when i_extra_isize covers it
 * (decodeInode reads absent ones as 0).
 */
export function inodeFromDisk(ext4: Ext4Super, ino: number, raw: Inode): Ext4Inode {
  const extraEnd = 128 + raw.extraIsize;
  return {
    ino,
    mode: raw.mode,
    uid: raw.uid,
    gid: raw.gid,
    size: raw.size,
    linksCount: raw.linksCount,
    sectors512: inodeSectors512(raw, ext4.hugeFile, ext4.blockSizeBytes),
    flags: raw.flags,
    generation: raw.generation,
    ctime: decodeTime(raw.ctime, extraEnd >= 0x88 ? raw.ctimeExtra : undefined),
    mtime: decodeTime(raw.mtime, extraEnd >= 0x8c ? raw.mtimeExtra : undefined),
    atime: decodeTime(raw.atime, extraEnd >= 0x90 ? raw.atimeExtra : undefined),
    crtime: extraEnd >= 0x94 ? decodeTime(raw.crtime, extraEnd >= 0x98 ? raw.crtimeExtra : undefined) : undefined,
    dtime: raw.dtime,
    fileAcl: raw.fileAcl,
    block: raw.block,
    csumSeed: ext4.metadataCsum ? inodeChecksumSeed(ext4.fsSeed, ino, raw.generation) : 0,
    raw,
  };
}

const FILE_TYPES: ReadonlySet<number> = new Set(Object.values(FileType));
/** Direct + single + double + triple indirect blocks a block map can address (P = bs/4). */
const DIRECT_BLOCKS = 12;

/** The largest i_size the inode's block mapping can address. */
function maxSizeBytes(ext4: Ext4Super, raw: Inode): number {
  const bs = ext4.blockSizeBytes;
  if ((raw.flags & InodeFlags.EXTENTS) !== 0) return 2 ** 32 * bs;
  const perBlock = bs / 4;
  return Math.min(2 ** 32, DIRECT_BLOCKS + perBlock + perBlock ** 2 + perBlock ** 3) * bs;
}

/**
 * The fields everything else trusts once an inode is read (the kernel's iget checks): a
 * real file type (a zeroed or freed slot named by a directory entry has none), no inline
 * data (ext4ts refuses the inline_data feature, so the flag means damage: the data would be
 * somewhere the engine does not look), and an i_size the mapping can address — a directory
 * may not use i_size_high without largedir (e2fsck's "i_dir_acl should be zero").
 */
function checkInodeShape(ext4: Ext4Super, ino: number, raw: Inode): void {
  const type = raw.mode & S_IFMT;
  if (!FILE_TYPES.has(type)) throw corrupted(`inode ${ino} has no valid file type (mode 0o${raw.mode.toString(8)})`);
  if ((raw.flags & InodeFlags.INLINE_DATA) !== 0 && (ext4.sb.featureIncompat & Incompat.INLINE_DATA) === 0) {
    throw corrupted(`inode ${ino} has inline data on a filesystem without inline_data`);
  }
  if (type !== FileType.REG && type !== FileType.DIR && type !== FileType.LNK) return;
  if (raw.size > maxSizeBytes(ext4, raw)) throw corrupted(`inode ${ino} size ${raw.size} exceeds what its block mapping can address`);
  if (type === FileType.DIR && !ext4.largeDir && raw.size >= 2 ** 32) throw corrupted(`directory ${ino} size ${raw.size} needs largedir`);
}

/** Read, verify and decode inode `ino` (cached). Throws EUCLEAN / EBADMSG. */
export async function readInode(ext4: Ext4Super, ino: number): Promise<Ext4Inode> {
  const cached = ext4.inodeCache.get(ino);
  if (cached !== undefined) return cached;
  checkInodeNumber(ext4, ino);
  const { group, index } = inodeLocation(ext4, ino);
  const offsetBytes = index * ext4.inodeSizeBytes;
  const blockIndex = ext4.groups[group].inodeTable + Math.floor(offsetBytes / ext4.blockSizeBytes);
  const block = await ext4.cache.read(blockIndex, `inode table of group ${group}`);
  const at = offsetBytes % ext4.blockSizeBytes;
  const slot = block.subarray(at, at + ext4.inodeSizeBytes);
  const raw = decodeInode(slot, ext4.inodeSizeBytes);
  if (ext4.metadataCsum) {
    verifyInodeChecksum(slot, inodeChecksumSeed(ext4.fsSeed, ino, raw.generation), ino);
  }
  checkInodeShape(ext4, ino, raw);
  const inode = inodeFromDisk(ext4, ino, raw);
  ext4.inodeCache.set(ino, inode);
  return inode;
}

export function isDir(inode: Pick<Ext4Inode, 'mode'>): boolean {
  return (inode.mode & S_IFMT) === FileType.DIR;
}
export function isRegular(inode: Pick<Ext4Inode, 'mode'>): boolean {
  return (inode.mode & S_IFMT) === FileType.REG;
}
export function isSymlink(inode: Pick<Ext4Inode, 'mode'>): boolean {
  return (inode.mode & S_IFMT) === FileType.LNK;
}
export function usesExtents(inode: Pick<Ext4Inode, 'flags'>): boolean {
  return (inode.flags & InodeFlags.EXTENTS) !== 0;
}

/** Whether the inode is live: a nonzero mode and at least one link (or the root). */
export function isLive(inode: Pick<Ext4Inode, 'mode' | 'linksCount' | 'dtime'>): boolean {
  return inode.mode !== 0 && inode.linksCount > 0;
}
