/**
 * Path walk: names to inodes, from the root, with ".", "..", and symbolic links
 * (fast ones stored in i_block, slow ones in one data block), following at most
 * SYMLINK_FOLLOW_MAX links per walk (ELOOP past it, like Linux's 40).
 *
 * Paths are resolved as if the process's cwd were the filesystem root: "a/b" = "/a/b".
 * Errors are FsErrors with the path: ENOENT, ENOTDIR, ENAMETOOLONG (a component over
 * 255 bytes, or a path over 4095 bytes), ELOOP.
 */
import { FileType, S_IFMT, ROOT_INO, isFastSymlink, I_BLOCK_BYTES } from '../format/inode.js';
import { NAME_MAX } from '../format/dirent.js';
import { corrupted, FsError } from '../vfs/errors.js';
import type { Ext4Super } from './super.js';
import { isDir, isSymlink, readInode, type Ext4Inode } from './inode.js';
import { isHashed, isValidDirInum, linearLookup, readDirBlock, type DirEntryInfo } from './dir.js';
import { htreeLookup } from './htree.js';
import { mapBlock } from './extents.js';

export const SYMLINK_FOLLOW_MAX = 40;
export const PATH_MAX_BYTES = 4096;

const encoder = new TextEncoder();
const DOT = encoder.encode('.');
const DOTDOT = encoder.encode('..');

function isDotName(name: Uint8Array, dots: Uint8Array): boolean {
  return name.length === dots.length && name.every((b, i) => b === dots[i]);
}

/** "." or ".." of a directory: the first two entries of block 0, in linear and hashed dirs alike. */
async function dotEntry(ext4: Ext4Super, dir: Ext4Inode, which: 0 | 1): Promise<DirEntryInfo> {
  const raw = await readDirBlock(ext4, dir, 0);
  if (raw === undefined) throw corrupted(`directory ${dir.ino} has no block 0`);
  const v = new DataView(raw.block.buffer, raw.block.byteOffset, raw.block.length);
  const dotLen = v.getUint16(4, true);
  const at = which === 0 ? 0 : dotLen;
  const want = which === 0 ? DOT : DOTDOT;
  if (dotLen !== 12 || at + 8 + want.length > raw.block.length || raw.block[at + 6] !== want.length || !isDotName(raw.block.subarray(at + 8, at + 8 + want.length), want)) {
    throw corrupted(`directory ${dir.ino}: block 0 does not start with "." and ".."`);
  }
  const ino = v.getUint32(at, true);
  if (!isValidDirInum(ext4, ino)) throw corrupted(`directory ${dir.ino}: "${which === 0 ? '.' : '..'}" names inode ${ino}`);
  return { name: want, ino, fileType: raw.block[at + 7] };
}

/** Look a single name up in a directory; the entry or undefined. */
export async function lookup(ext4: Ext4Super, dir: Ext4Inode, name: Uint8Array): Promise<DirEntryInfo | undefined> {
  if (isDotName(name, DOT)) return dotEntry(ext4, dir, 0);
  if (isDotName(name, DOTDOT)) return dotEntry(ext4, dir, 1);
  return isHashed(ext4, dir) ? htreeLookup(ext4, dir, name) : linearLookup(ext4, dir, name);
}

/** A symlink's target bytes: from i_block (fast) or its single data block (slow). */
export async function readSymlink(ext4: Ext4Super, inode: Ext4Inode): Promise<Uint8Array> {
  const size = inode.size;
  if (size === 0 || size >= ext4.blockSizeBytes) throw corrupted(`symlink ${inode.ino} has size ${size}`);
  if (isFastSymlink(inode.raw)) {
    if (size >= I_BLOCK_BYTES) throw corrupted(`fast symlink ${inode.ino} has size ${size}`);
    return inode.block.slice(0, size);
  }
  const m = await mapBlock(ext4, inode, 0);
  if (m.kind !== 'mapped') throw corrupted(`symlink ${inode.ino} has no data block`);
  const block = await ext4.cache.read(m.pblk, `symlink ${inode.ino}`);
  return block.slice(0, size);
}

/** The result of a walk: the inode, and the canonical path that reached it. */
export interface Resolved {
  inode: Ext4Inode;
  /** Components of the canonical absolute path (symlinks resolved). */
  canonical: Uint8Array[];
}

export interface ResolveOptions {
  /** Follow a symlink in the last component (stat) or not (lstat, readlink). */
  followLast: boolean;
  /** The syscall named in errors. */
  syscall: string;
}

/** Split a path into its non-empty components (as UTF-8 bytes). */
function splitPath(bytes: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x2f) {
      if (i > start) parts.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}

function checkPathBytes(bytes: Uint8Array, path: string, syscall: string): void {
  if (bytes.length === 0) throw new FsError('ENOENT', { syscall, path });
  if (bytes.includes(0)) throw new FsError('EINVAL', { syscall, path, detail: 'path contains a NUL byte' });
  if (bytes.length >= PATH_MAX_BYTES) throw new FsError('ENAMETOOLONG', { syscall, path });
}

function pathString(path: string | Uint8Array): string {
  return typeof path === 'string' ? path : Buffer.from(path).toString('utf8');
}

/**
 * Resolve a path to its inode. Symlinks in the middle are always followed; the last
 * one only with `followLast` (or when the path ends in "/", which demands a directory).
 */
export async function resolvePath(ext4: Ext4Super, path: string | Uint8Array, options: ResolveOptions): Promise<Resolved> {
  const { syscall } = options;
  const shown = pathString(path);
  const bytes = typeof path === 'string' ? encoder.encode(path) : path;
  checkPathBytes(bytes, shown, syscall);
  const trailingSlash = bytes[bytes.length - 1] === 0x2f;
  // A stack of components still to walk; the next one is at the end.
  const pending = splitPath(bytes).reverse();
  const root = await readInode(ext4, ROOT_INO);
  if (!isDir(root)) throw corrupted('the root inode is not a directory');
  let cur = root;
  let canonical: Uint8Array[] = [];
  let linksFollowed = 0;
  while (pending.length > 0) {
    const name = pending.pop() as Uint8Array;
    if (!isDir(cur)) throw new FsError('ENOTDIR', { syscall, path: shown });
    if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG', { syscall, path: shown });
    if (isDotName(name, DOT)) continue;
    const entry = await lookup(ext4, cur, name);
    if (entry === undefined) throw new FsError('ENOENT', { syscall, path: shown });
    const inode = await readInode(ext4, entry.ino);
    const last = pending.length === 0;
    if (isSymlink(inode) && (!last || options.followLast || trailingSlash)) {
      if (++linksFollowed > SYMLINK_FOLLOW_MAX) throw new FsError('ELOOP', { syscall, path: shown });
      const target = await readSymlink(ext4, inode);
      if (target[0] === 0x2f) { cur = root; canonical = []; }
      pending.push(...splitPath(target).reverse());
      continue;
    }
    if (isDotName(name, DOTDOT)) canonical.pop();
    else canonical.push(name);
    cur = inode;
  }
  if (trailingSlash && !isDir(cur)) throw new FsError('ENOTDIR', { syscall, path: shown });
  return { inode: cur, canonical };
}

/** The file type bits of an inode's mode, for callers that switch on it. */
export function fileTypeBits(inode: Ext4Inode): number {
  return inode.mode & S_IFMT;
}

export { FileType };
