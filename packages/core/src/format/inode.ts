/**
 * On-disk inodes (ext4-format.md §5): 128 base bytes plus i_extra_isize extra bytes,
 * in s_inode_size-byte slots. Decoded inodes keep their raw bytes so the in-inode xattr
 * area and unknown fields survive an encode.
 */
import { crc32c, crc32cU32le, crc32cZeros } from './crc32c.js';
import { defineStruct, type StructValue } from './struct.js';
import { badChecksum, corrupted } from '../vfs/errors.js';

export const InodeFlags = {
  SECRM: 0x1, UNRM: 0x2, COMPR: 0x4, SYNC: 0x8, IMMUTABLE: 0x10, APPEND: 0x20, NODUMP: 0x40,
  NOATIME: 0x80, ENCRYPT: 0x800, INDEX: 0x1000, IMAGIC: 0x2000, JOURNAL_DATA: 0x4000, NOTAIL: 0x8000,
  DIRSYNC: 0x10000, TOPDIR: 0x20000, HUGE_FILE: 0x40000, EXTENTS: 0x80000, VERITY: 0x100000,
  EA_INODE: 0x200000, INLINE_DATA: 0x10000000, PROJINHERIT: 0x20000000, CASEFOLD: 0x40000000,
} as const;

export const S_IFMT = 0o170000;
export const FileType = {
  FIFO: 0o010000, CHR: 0o020000, DIR: 0o040000, BLK: 0o060000, REG: 0o100000, LNK: 0o120000, SOCK: 0o140000,
} as const;

export const GOOD_OLD_INODE_SIZE = 128;
export const ROOT_INO = 2;
export const JOURNAL_INO = 8;
export const RESIZE_INO = 7;
export const I_BLOCK_OFFSET = 0x28;
export const I_BLOCK_BYTES = 60;
const CSUM_LO_OFFSET = 0x7c;
const CSUM_HI_OFFSET = 0x82;
const EXTRA_ISIZE_OFFSET = 0x80;

export const inodeStruct = defineStruct('inode', 160, [
  { name: 'mode', offset: 0x00, kind: 'u16' },
  { name: 'uid', lo: [0x02, 'u16'], hi: [0x78, 'u16'] },
  { name: 'size', lo: [0x04, 'u32'], hi: [0x6c, 'u32'] },
  { name: 'atime', offset: 0x08, kind: 'u32' },
  { name: 'ctime', offset: 0x0c, kind: 'u32' },
  { name: 'mtime', offset: 0x10, kind: 'u32' },
  { name: 'dtime', offset: 0x14, kind: 'u32' },
  { name: 'gid', lo: [0x18, 'u16'], hi: [0x7a, 'u16'] },
  { name: 'linksCount', offset: 0x1a, kind: 'u16' },
  { name: 'blocks', lo: [0x1c, 'u32'], hi: [0x74, 'u16'] },
  { name: 'flags', offset: 0x20, kind: 'u32' },
  { name: 'version', offset: 0x24, kind: 'u32' },
  { name: 'block', offset: I_BLOCK_OFFSET, bytes: I_BLOCK_BYTES },
  { name: 'generation', offset: 0x64, kind: 'u32' },
  { name: 'fileAcl', lo: [0x68, 'u32'], hi: [0x76, 'u16'] },
  { name: 'extraIsize', offset: EXTRA_ISIZE_OFFSET, kind: 'u16' },
  { name: 'ctimeExtra', offset: 0x84, kind: 'u32' },
  { name: 'mtimeExtra', offset: 0x88, kind: 'u32' },
  { name: 'atimeExtra', offset: 0x8c, kind: 'u32' },
  { name: 'crtime', offset: 0x90, kind: 'u32' },
  { name: 'crtimeExtra', offset: 0x94, kind: 'u32' },
  { name: 'versionHi', offset: 0x98, kind: 'u32' },
  { name: 'projid', offset: 0x9c, kind: 'u32' },
] as const, { rawKey: 'raw' });

export type InodeFields = StructValue<typeof inodeStruct.fields>;
export interface Inode extends InodeFields {
  /** The whole on-disk slot (s_inode_size bytes) as read. */
  raw: Uint8Array;
}

/** How many bytes of the struct exist in a slot: 128 + i_extra_isize (never past the slot). */
function presentBytes(inodeSize: number, extraIsize: number): number {
  return inodeSize <= GOOD_OLD_INODE_SIZE ? GOOD_OLD_INODE_SIZE : Math.min(inodeSize, GOOD_OLD_INODE_SIZE + extraIsize, 160);
}

/** Decode an inode slot; validates i_extra_isize (the one field that sizes the rest). */
export function decodeInode(slot: Uint8Array, inodeSize: number): Inode {
  if (slot.length < inodeSize) throw corrupted('inode slot truncated');
  const raw = slot.slice(0, inodeSize);
  let extra = 0;
  if (inodeSize > GOOD_OLD_INODE_SIZE) {
    extra = raw[EXTRA_ISIZE_OFFSET] | (raw[EXTRA_ISIZE_OFFSET + 1] << 8);
    if (extra % 4 !== 0 || GOOD_OLD_INODE_SIZE + extra > inodeSize) throw corrupted(`i_extra_isize ${extra} invalid`);
  }
  const inode = inodeStruct.decode(raw, 0, presentBytes(inodeSize, extra)) as Inode;
  inode.raw = raw;
  return inode;
}

/** Encode an inode over its raw slot bytes; sets the checksum when `csum` is given. */
export function encodeInode(inode: Inode, csum?: { inodeSeed: number }): Uint8Array {
  const out = inode.raw.slice();
  encodeInodeInPlace(inode, out);
  if (csum !== undefined) writeInodeChecksum(out, csum.inodeSeed);
  return out;
}

/**
 * Encode the fields over `slot`, which must hold the bytes the inode was decoded from
 * (its raw slot as it stands): only modelled fields are written; the checksum is not.
 */
export function encodeInodeInPlace(inode: InodeFields, slot: Uint8Array): void {
  inodeStruct.encodeInto(inode, slot, 0, presentBytes(slot.length, inode.extraIsize));
}

/** Whether the slot has room for i_checksum_hi (i_extra_isize ≥ 4). */
function hasCsumHi(raw: Uint8Array): boolean {
  if (raw.length <= GOOD_OLD_INODE_SIZE) return false;
  return (raw[EXTRA_ISIZE_OFFSET] | (raw[EXTRA_ISIZE_OFFSET + 1] << 8)) >= 4;
}

/** The per-inode seed: crc32c(crc32c(fsSeed, le32 ino), le32 generation). */
export function inodeChecksumSeed(fsSeed: number, ino: number, generation: number): number {
  return crc32cU32le(crc32cU32le(fsSeed, ino), generation);
}

/** crc32c over the whole slot with both checksum fields treated as zero (in place: no copy). */
export function inodeChecksum(raw: Uint8Array, inodeSeed: number): number {
  let c = crc32c(inodeSeed, raw, 0, CSUM_LO_OFFSET);
  c = crc32cZeros(c, 2);
  if (raw.length <= GOOD_OLD_INODE_SIZE) return crc32c(c, raw, CSUM_LO_OFFSET + 2, raw.length);
  c = crc32c(c, raw, CSUM_LO_OFFSET + 2, CSUM_HI_OFFSET);
  c = hasCsumHi(raw) ? crc32cZeros(c, 2) : crc32c(c, raw, CSUM_HI_OFFSET, CSUM_HI_OFFSET + 2);
  return crc32c(c, raw, CSUM_HI_OFFSET + 2, raw.length);
}

export function writeInodeChecksum(raw: Uint8Array, inodeSeed: number): void {
  const sum = inodeChecksum(raw, inodeSeed);
  raw[CSUM_LO_OFFSET] = sum;
  raw[CSUM_LO_OFFSET + 1] = sum >>> 8;
  if (hasCsumHi(raw)) {
    raw[CSUM_HI_OFFSET] = sum >>> 16;
    raw[CSUM_HI_OFFSET + 1] = sum >>> 24;
  }
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Verify the slot's checksum (an all-zero slot is valid, as for the kernel and e2fsck). */
export function verifyInodeChecksum(raw: Uint8Array, inodeSeed: number, ino: number): void {
  if (isAllZero(raw)) return;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const want = inodeChecksum(raw, inodeSeed);
  const lo = view.getUint16(CSUM_LO_OFFSET, true);
  if (hasCsumHi(raw)) {
    const stored = ((view.getUint16(CSUM_HI_OFFSET, true) << 16) | lo) >>> 0;
    if (stored !== want >>> 0) throw badChecksum(`inode ${ino} checksum 0x${stored.toString(16)} != 0x${(want >>> 0).toString(16)}`);
  } else if (lo !== (want & 0xffff)) {
    throw badChecksum(`inode ${ino} checksum 0x${lo.toString(16)} != 0x${(want & 0xffff).toString(16)}`);
  }
}

/** A timestamp as seconds (may be negative or past 2038) and nanoseconds. */
export interface Timestamp { sec: number; nsec: number }

/** Decode ext4's (base, extra) pair: sec = int32(base) + (extra & 3)·2^32, nsec = extra >> 2. */
export function decodeTime(base: number, extra: number | undefined): Timestamp {
  const signed = base | 0;
  if (extra === undefined) return { sec: signed, nsec: 0 };
  return { sec: signed + (extra & 3) * 2 ** 32, nsec: extra >>> 2 };
}

/** Encode seconds+nanoseconds into (base, extra); seconds in [-2^31, 2^34 - 2^31). */
export function encodeTime(t: Timestamp): { base: number; extra: number } {
  const sec = Math.trunc(t.sec);
  const low = ((sec % 2 ** 32) + 2 ** 32) % 2 ** 32;
  const signedLow = low | 0;
  const epoch = ((sec - signedLow) / 2 ** 32) & 3;
  return { base: low >>> 0, extra: ((t.nsec << 2) | epoch) >>> 0 };
}

/** Whether the slot holds the extra time fields (i_extra_isize covers them). */
export function hasExtraTimes(inode: Pick<InodeFields, 'extraIsize'>): boolean {
  return inode.extraIsize >= 0x18;
}

export function fileTypeOf(mode: number): number {
  return mode & S_IFMT;
}

/**
 * i_blocks in 512-byte units. With huge_file and the inode's HUGE_FILE flag the stored
 * count is in filesystem blocks instead.
 */
export function inodeSectors512(inode: Pick<InodeFields, 'blocks' | 'flags'>, hugeFile: boolean, blockSizeBytes: number): number {
  if (hugeFile && (inode.flags & InodeFlags.HUGE_FILE) !== 0) return inode.blocks * (blockSizeBytes / 512);
  return hugeFile ? inode.blocks : inode.blocks % 2 ** 32;
}

/** Whether a symlink is stored in i_block (fast): no EXTENTS flag, no data blocks. */
export function isFastSymlink(inode: Pick<InodeFields, 'mode' | 'flags' | 'blocks' | 'size' | 'fileAcl'>): boolean {
  if (fileTypeOf(inode.mode) !== FileType.LNK) return false;
  if ((inode.flags & (InodeFlags.EXTENTS | InodeFlags.INLINE_DATA)) !== 0) return false;
  // An xattr block counts in i_blocks without being symlink data.
  return inode.size < I_BLOCK_BYTES;
}
