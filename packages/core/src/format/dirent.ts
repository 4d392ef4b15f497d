/**
 * Linear directory blocks (ext4-format.md §7): a chain of ext4_dir_entry_2 records that
 * tile the block exactly; with metadata_csum the last 12 bytes are a fake entry holding
 * the block's crc32c (the 0xDE tail).
 *
 *   | inode u32 | rec_len u16 | name_len u8 | file_type u8 | name … | pad |
 */
import { crc32c } from './crc32c.js';
import { badChecksum, corrupted } from '../vfs/errors.js';

export const DIRENT_HEADER_BYTES = 8;
export const DIR_TAIL_BYTES = 12;
export const DIR_TAIL_FILE_TYPE = 0xde;
export const NAME_MAX = 255;

/** dirent file_type values (filetype feature). */
export const DirFileType = { UNKNOWN: 0, REG: 1, DIR: 2, CHR: 3, BLK: 4, FIFO: 5, SOCK: 6, LNK: 7 } as const;

export interface DirEntry {
  /** Byte offset of the record within its block. */
  offset: number;
  inode: number;
  recLen: number;
  nameLen: number;
  fileType: number;
  name: Uint8Array;
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

/** The minimal rec_len for a name: 8 + name_len rounded up to 4. */
export function dirEntryMinLen(nameLen: number): number {
  return (DIRENT_HEADER_BYTES + nameLen + 3) & ~3;
}

export function hasDirTail(block: Uint8Array): boolean {
  const v = dv(block);
  const t = block.length - DIR_TAIL_BYTES;
  return v.getUint32(t, true) === 0 && v.getUint16(t + 4, true) === DIR_TAIL_BYTES && block[t + 6] === 0 && block[t + 7] === DIR_TAIL_FILE_TYPE;
}

/**
 * Parse the records of a leaf block, validating every rec_len against the block (so a
 * corrupt block can never make a reader loop or read out of bounds). `withTail` = the
 * block must end in a checksum tail (metadata_csum), which is not returned as an entry.
 * Unused slots (inode 0) are returned too; callers skip them.
 */
export function parseDirBlock(block: Uint8Array, withTail: boolean, blockLabel = 'directory block'): DirEntry[] {
  const limit = withTail ? block.length - DIR_TAIL_BYTES : block.length;
  if (withTail && !hasDirTail(block)) throw corrupted(`${blockLabel} has no checksum tail`);
  const v = dv(block);
  const out: DirEntry[] = [];
  let off = 0;
  while (off < limit) {
    if (off + DIRENT_HEADER_BYTES > limit) throw corrupted(`${blockLabel}: entry header at ${off} crosses the end`);
    const recLen = v.getUint16(off + 4, true);
    const nameLen = block[off + 6];
    if (recLen < 12 || recLen % 4 !== 0 || off + recLen > limit || recLen < dirEntryMinLen(nameLen)) {
      throw corrupted(`${blockLabel}: bad rec_len ${recLen} at offset ${off}`);
    }
    out.push({ offset: off, inode: v.getUint32(off, true), recLen, nameLen, fileType: block[off + 7], name: block.subarray(off + 8, off + 8 + nameLen) });
    off += recLen;
  }
  return out;
}

/** Write one record at `offset` (name bytes and header; padding left as is). */
export function encodeDirEntry(block: Uint8Array, offset: number, e: { inode: number; recLen: number; name: Uint8Array; fileType: number }): void {
  if (e.name.length > NAME_MAX) throw corrupted(`name of ${e.name.length} bytes too long`);
  const v = dv(block);
  v.setUint32(offset, e.inode, true);
  v.setUint16(offset + 4, e.recLen, true);
  block[offset + 6] = e.name.length;
  block[offset + 7] = e.fileType;
  block.set(e.name, offset + 8);
  // Zero the padding so blocks are deterministic (and leak no old names).
  block.fill(0, offset + 8 + e.name.length, offset + Math.min(e.recLen, dirEntryMinLen(e.name.length)));
}

/** Write the 12-byte checksum tail (checksum 0; seal with sealDirBlock). */
export function writeDirTail(block: Uint8Array): void {
  const t = block.length - DIR_TAIL_BYTES;
  block.fill(0, t, block.length);
  dv(block).setUint16(t + 4, DIR_TAIL_BYTES, true);
  block[t + 7] = DIR_TAIL_FILE_TYPE;
}

export function dirBlockChecksum(block: Uint8Array, inodeSeed: number): number {
  return crc32c(inodeSeed, block, 0, block.length - DIR_TAIL_BYTES);
}

export function sealDirBlock(block: Uint8Array, inodeSeed: number): void {
  dv(block).setUint32(block.length - 4, dirBlockChecksum(block, inodeSeed), true);
}

export function verifyDirBlock(block: Uint8Array, inodeSeed: number, blockLabel = 'directory block'): void {
  if (!hasDirTail(block)) throw corrupted(`${blockLabel} has no checksum tail`);
  const stored = dv(block).getUint32(block.length - 4, true);
  const want = dirBlockChecksum(block, inodeSeed);
  if (stored !== want) throw badChecksum(`${blockLabel} checksum 0x${stored.toString(16)} != 0x${want.toString(16)}`);
}

/** An empty leaf block: one unused entry spanning the block (before the tail, if any). */
export function initEmptyDirBlock(block: Uint8Array, withTail: boolean): void {
  block.fill(0);
  const limit = withTail ? block.length - DIR_TAIL_BYTES : block.length;
  dv(block).setUint16(4, limit, true);
  if (withTail) writeDirTail(block);
}
