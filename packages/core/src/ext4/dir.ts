/**
 * Directories as lists of entries (ext4-format.md §7): iteration over the linear leaf
 * blocks and a linear name search. Hashed directories are iterated the same way (their
 * dx_root and dx_node blocks are recognised and skipped); their fast lookup is in
 * ./htree.ts.
 *
 * Every leaf block is checked before its names are trusted: the 0xDE tail and its
 * crc32c with the directory's inode seed (metadata_csum, once per cached block), every
 * rec_len against the block, every live entry's inode number against the filesystem.
 *
 * Cost: one cached block read and one parse per directory block; a linear lookup in an
 * n-block directory reads up to n blocks.
 */
import { parseDirBlock, verifyDirBlock, type DirEntry } from '../format/dirent.js';
import { isDxNode } from '../format/htree.js';
import { InodeFlags, ROOT_INO } from '../format/inode.js';
import { corrupted } from '../vfs/errors.js';
import type { Ext4Super } from './super.js';
import type { Ext4Inode } from './inode.js';
import { mapBlock } from './extents.js';

/** One live directory entry. */
export interface DirEntryInfo {
  /** The raw name bytes (no NUL, 1..255 bytes). */
  name: Uint8Array;
  ino: number;
  /** dirent file_type (0 when the filetype feature is off). */
  fileType: number;
}

const DOT = 0x2e;

/** Number of blocks the directory spans (i_size is a multiple of the block size). */
export function dirBlockCount(ext4: Ext4Super, dir: Ext4Inode): number {
  return Math.ceil(dir.size / ext4.blockSizeBytes);
}

/** Whether lookups in `dir` should go through its hash index. */
export function isHashed(ext4: Ext4Super, dir: Ext4Inode): boolean {
  return ext4.dirIndex && (dir.flags & InodeFlags.INDEX) !== 0;
}

/**
 * The directory's block at logical `lblk`, or undefined for a hole. `verify` runs once
 * per cached copy for `kind` (see BlockCache.read).
 */
export async function readDirBlock(
  ext4: Ext4Super, dir: Ext4Inode, lblk: number, kind?: string, verify?: (data: Uint8Array) => void,
): Promise<{ block: Uint8Array; pblk: number } | undefined> {
  const m = await mapBlock(ext4, dir, lblk);
  // An unwritten directory block has never been written: treat it as a hole.
  if (m.kind !== 'mapped') return undefined;
  const block = await ext4.cache.read(m.pblk, `block ${lblk} of directory ${dir.ino}`, kind, verify);
  return { block, pblk: m.pblk };
}

/** Parse a leaf block, verifying its checksum tail once per cached copy. */
export async function readDirLeaf(ext4: Ext4Super, dir: Ext4Inode, lblk: number): Promise<DirEntry[] | undefined> {
  const m = await mapBlock(ext4, dir, lblk);
  if (m.kind !== 'mapped') return undefined;
  const label = `block ${lblk} of directory ${dir.ino}`;
  const kind = `dirleaf:${dir.ino}:${dir.generation}`;
  const block = await ext4.cache.read(m.pblk, label, kind, (data) => {
    if (ext4.metadataCsum) verifyDirBlock(data, dir.csumSeed, label);
  });
  return checkEntries(ext4, parseDirBlock(block, ext4.metadataCsum, label), label);
}

/** s_first_ino of revision-0 filesystems, which have no such field. */
const GOOD_OLD_FIRST_INO = 11;

/**
 * Whether a directory entry may name inode `ino`: the root, or an inode from s_first_ino
 * to s_inodes_count. The reserved inodes below s_first_ino (bad blocks, journal, resize…)
 * are never in the namespace; naming one is damage (the kernel's ext4_valid_inum).
 */
export function isValidDirInum(ext4: Ext4Super, ino: number): boolean {
  const firstIno = ext4.sb.revLevel === 0 ? GOOD_OLD_FIRST_INO : ext4.sb.firstIno;
  return ino === ROOT_INO || (ino >= firstIno && ino <= ext4.inodesCount);
}

function checkEntries(ext4: Ext4Super, entries: DirEntry[], label: string): DirEntry[] {
  for (const e of entries) {
    if (e.inode === 0) continue;
    if (e.nameLen === 0) throw corrupted(`${label}: live entry at ${e.offset} has an empty name`);
    if (!isValidDirInum(ext4, e.inode)) throw corrupted(`${label}: entry at ${e.offset} names inode ${e.inode}, which no directory can name`);
  }
  return entries;
}

/**
 * "." and ".." of a dx_root block: the only entries it holds. ".." covers the rest of the
 * block (rec_len bs − 12), hiding the index from linear readers.
 */
export function dxRootDots(ext4: Ext4Super, block: Uint8Array, label: string): DirEntryInfo[] {
  const v = new DataView(block.buffer, block.byteOffset, block.length);
  const dotLen = v.getUint16(4, true);
  const dotdotLen = v.getUint16(12 + 4, true);
  if (dotLen !== 12 || block[6] !== 1 || block[8] !== DOT) throw corrupted(`${label}: dx root lacks "."`);
  if (dotdotLen !== block.length - 12 || block[12 + 6] !== 2 || block[20] !== DOT || block[21] !== DOT) {
    throw corrupted(`${label}: dx root lacks ".." spanning the block`);
  }
  const dots = [
    { name: block.slice(8, 9), ino: v.getUint32(0, true), fileType: block[7] },
    { name: block.slice(20, 22), ino: v.getUint32(12, true), fileType: block[19] },
  ];
  for (const d of dots) if (!isValidDirInum(ext4, d.ino)) throw corrupted(`${label}: dx root names inode ${d.ino}`);
  return dots;
}

/**
 * Every live entry of a directory in on-disk order, "." and ".." included. Holes are
 * skipped; dx_node blocks of hashed directories are skipped (they hold no names).
 */
export async function* iterateDir(ext4: Ext4Super, dir: Ext4Inode): AsyncGenerator<DirEntryInfo> {
  const hashed = isHashed(ext4, dir);
  const blocks = dirBlockCount(ext4, dir);
  for (let lblk = 0; lblk < blocks; lblk++) {
    // Skip a hole (or never-written unwritten run) in one step: a damaged i_size can claim
    // millions of blocks past the last mapped one, and stepping through them one by one
    // would spin for minutes without ever touching the device.
    const m = await mapBlock(ext4, dir, lblk);
    if (m.kind !== 'mapped') { lblk += m.len - 1; continue; }
    if (hashed) {
      const raw = await readDirBlock(ext4, dir, lblk);
      if (raw === undefined) continue;
      const label = `block ${lblk} of directory ${dir.ino}`;
      if (lblk === 0) { yield* dxRootDots(ext4, raw.block, label); continue; }
      if (isDxNode(raw.block)) continue;
    }
    const entries = await readDirLeaf(ext4, dir, lblk);
    if (entries === undefined) continue;
    for (const e of entries) {
      if (e.inode !== 0) yield { name: e.name, ino: e.inode, fileType: e.fileType };
    }
  }
}

/** Compare a directory entry's name with the wanted one. */
export function nameEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Search one leaf block for `name`; the entry's inode number or undefined. */
export async function searchLeaf(ext4: Ext4Super, dir: Ext4Inode, lblk: number, name: Uint8Array): Promise<DirEntryInfo | undefined> {
  const entries = await readDirLeaf(ext4, dir, lblk);
  if (entries === undefined) return undefined;
  for (const e of entries) {
    if (e.inode !== 0 && nameEquals(e.name, name)) return { name: e.name, ino: e.inode, fileType: e.fileType };
  }
  return undefined;
}

/** Linear lookup: scan every block (the dx blocks of a hashed dir are skipped). */
export async function linearLookup(ext4: Ext4Super, dir: Ext4Inode, name: Uint8Array): Promise<DirEntryInfo | undefined> {
  for await (const e of iterateDir(ext4, dir)) {
    if (nameEquals(e.name, name)) return e;
  }
  return undefined;
}
