/**
 * ext4/htree-write: names in hashed directories (ext4-format.md §7 "htree"); the read
 * side is ./htree.ts, whose checks everything written here passes.
 *
 *   dx_root (block 0) ─▶ [dx_node …] ─▶ leaf blocks (ordinary linear records)
 *
 * Add: hash the name (root's version, +3 with the fs's unsigned flag), descend picking in
 * each level the last entry with hash ≤ target, insert into that leaf. A full leaf is
 * split: its records sorted by (hash, minor), the upper half *by bytes* moves to a new
 * block appended to the directory, and {first moved hash | collision bit, new block} goes
 * into the index right after the leaf's entry. The collision bit (bit 0) is set when the
 * first moved hash equals the last kept one: that hash then continues in the next block,
 * and lookups follow it there.
 *
 *   leaf B full, sorted:  h1 h2 h3 | h4 h5 h6       index … {hB→B} …
 *                         kept in B  moved to N  ─▶  index … {hB→B} {h4|(h4==h3)→N} …
 *
 * Before a leaf split the index is given room (so a full index fails with ENOSPC before
 * anything changes): from the deepest level up, the first node with a free entry is
 * found; every full node below it is split in halves (upper half to a new dx_node, its
 * first hash into the parent). When even the root is full a level is added: the root's
 * entries move into a new dx_node and the root points at it alone — unless the root
 * already has indirect_levels 1 (2 with largedir), which is ENOSPC, as the kernel.
 *
 * Remove: find through the index (following collision continuations), delete from the
 * leaf like a linear directory. Leaves are never merged (neither does the kernel).
 *
 * Conversion (makeIndexedDir): a full single-block linear directory keeps "." and ".." in
 * block 0, which becomes the dx_root; its other records go to block 1, which is split at
 * once into blocks 1 and 2.
 *
 * Cost: an add reads (levels + 1) cached index blocks, hashes the name, and parses one or
 * two leaves; a leaf split hashes ~the leaf's records again (~100 × 1 µs at 4 KiB) and
 * dirties 2 leaves + 1 index block + the inode + the extent writer's blocks.
 */
import { assert } from '../assert.js';
import { DirFileType, encodeDirEntry, dirEntryMinLen, parseDirBlock } from '../format/dirent.js';
import { dirHash } from '../format/dirhash.js';
import {
  DX_ENTRY_BYTES, DX_NODE_COUNT_OFFSET, DX_ROOT_INFO_OFFSET, decodeDxEntries, decodeDxRootInfo, dxLimit, dxRootCountOffset,
  encodeDxEntries, sealDxBlock, verifyDxBlock, type DxEntry,
} from '../format/htree.js';
import { InodeFlags } from '../format/inode.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { FsError, corrupted } from '../vfs/errors.js';
import { dirBlockCount, dxRootDots, readDirBlock, readDirLeaf } from './dir.js';
import {
  addToBlock, appendDirBlock, blockHasRoom, dirPblk, editLeaf, findInBlock, leafHasTail, liveRecords, removeFromBlock, sealLeaf,
  setInBlock, writeLeafRecords, type DirContext, type LeafRecord,
} from './dir-write.js';
import type { Ext4Inode } from './inode.js';
import type { Ext4Mount } from './mount.js';

const DX_HASH_TEA = 2;
const UNSIGNED_HASH_DELTA = 3;
const DX_ROOT_INFO_LENGTH = 8;
/** The kernel masks the top 4 bits of a dx block number (reserved). */
const DX_BLOCK_MASK = 0x0fffffff;
const HASH_COLLISION_BIT = 1;

/** One index block on a root → leaf path, decoded; `at` = the entry followed. */
interface Frame {
  lblk: number;
  pblk: number;
  isRoot: boolean;
  countOffset: number;
  limit: number;
  entries: DxEntry[];
  at: number;
}

interface Path { frames: Frame[]; hash: number; minor: number; hashVersion: number }

function childOf(frame: Frame): number {
  return frame.entries[frame.at].block & DX_BLOCK_MASK;
}

/** Index of the last entry with hash ≤ target (entry 0 always qualifies). */
function searchDx(entries: readonly DxEntry[], hash: number): number {
  let lo = 1, hi = entries.length - 1, found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid].hash <= hash) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

function hashVersionOf(mount: Ext4Mount, rootVersion: number): number {
  if (rootVersion > DX_HASH_TEA) throw corrupted(`dx root hash version ${rootVersion}`);
  return rootVersion + (mount.ext4.hashUnsigned ? UNSIGNED_HASH_DELTA : 0);
}

async function readIndexBlock(mount: Ext4Mount, dir: Ext4Inode, lblk: number, countOffset: number, label: string): Promise<{ block: Uint8Array; pblk: number }> {
  const { ext4 } = mount;
  if (lblk >= dirBlockCount(ext4, dir)) throw corrupted(`${label}: block ${lblk} past the directory`);
  const kind = `dx:${dir.ino}:${dir.generation}:${countOffset}`;
  const raw = await readDirBlock(ext4, dir, lblk, kind, (data) => {
    if (ext4.metadataCsum) verifyDxBlock(data, countOffset, dir.csumSeed, label);
  });
  if (raw === undefined) throw corrupted(`${label}: hole at an index block`);
  return raw;
}

async function readRoot(mount: Ext4Mount, dir: Ext4Inode): Promise<{ frame: Frame; rootVersion: number; levels: number }> {
  const { ext4 } = mount;
  const label = `dx root of directory ${dir.ino}`;
  const first = await readDirBlock(ext4, dir, 0);
  if (first === undefined) throw corrupted(`${label}: block 0 is a hole`);
  dxRootDots(ext4, first.block, label);
  const info = decodeDxRootInfo(first.block);
  if (info.infoLength !== DX_ROOT_INFO_LENGTH) throw corrupted(`${label}: info length ${info.infoLength}`);
  if (info.indirectLevels > (ext4.largeDir ? 2 : 1)) throw corrupted(`${label}: ${info.indirectLevels} indirect levels`);
  const countOffset = dxRootCountOffset(info);
  const limit = dxLimit(ext4.blockSizeBytes, countOffset, ext4.metadataCsum);
  const raw = await readIndexBlock(mount, dir, 0, countOffset, label);
  const dx = decodeDxEntries(raw.block, countOffset, limit, label);
  const frame = { lblk: 0, pblk: raw.pblk, isRoot: true, countOffset, limit, entries: dx.entries, at: 0 };
  return { frame, rootVersion: info.hashVersion, levels: info.indirectLevels };
}

async function readNode(mount: Ext4Mount, dir: Ext4Inode, lblk: number): Promise<Frame> {
  const label = `dx node ${lblk} of directory ${dir.ino}`;
  const limit = dxLimit(mount.ext4.blockSizeBytes, DX_NODE_COUNT_OFFSET, mount.ext4.metadataCsum);
  const raw = await readIndexBlock(mount, dir, lblk, DX_NODE_COUNT_OFFSET, label);
  const dx = decodeDxEntries(raw.block, DX_NODE_COUNT_OFFSET, limit, label);
  return { lblk, pblk: raw.pblk, isRoot: false, countOffset: DX_NODE_COUNT_OFFSET, limit, entries: dx.entries, at: 0 };
}

/** Descend from the root to the leaf for `name`'s hash. */
async function readPath(mount: Ext4Mount, dir: Ext4Inode, name: Uint8Array): Promise<Path> {
  const root = await readRoot(mount, dir);
  const hashVersion = hashVersionOf(mount, root.rootVersion);
  const { hash, minor } = dirHash(name, hashVersion, mount.ext4.hashSeed);
  const frames = [root.frame];
  root.frame.at = searchDx(root.frame.entries, hash);
  for (let level = 0; level < root.levels; level++) {
    const node = await readNode(mount, dir, childOf(frames[level]));
    node.at = searchDx(node.entries, hash);
    frames.push(node);
  }
  return { frames, hash, minor, hashVersion };
}

/** Move the path to the next leaf if it continues `hash` (collision bit); its block or undefined. */
async function nextLeaf(mount: Ext4Mount, dir: Ext4Inode, frames: Frame[], hash: number): Promise<number | undefined> {
  let level = frames.length - 1;
  while (level >= 0 && frames[level].at + 1 >= frames[level].entries.length) level--;
  if (level < 0) return undefined;
  frames[level].at++;
  if (((frames[level].entries[frames[level].at].hash & ~HASH_COLLISION_BIT) >>> 0) !== hash) return undefined;
  for (let l = level + 1; l < frames.length; l++) frames[l] = await readNode(mount, dir, childOf(frames[l - 1]));
  return childOf(frames[frames.length - 1]);
}

/** Where `name` lives: leaf block, record offset and its inode; undefined if absent. */
async function findEntry(mount: Ext4Mount, dir: Ext4Inode, name: Uint8Array): Promise<{ lblk: number; offset: number; inode: number } | undefined> {
  const { frames, hash } = await readPath(mount, dir, name);
  let leaf: number | undefined = childOf(frames[frames.length - 1]);
  for (let hops = 0; leaf !== undefined; hops++) {
    if (hops > dirBlockCount(mount.ext4, dir) || leaf === 0 || leaf >= dirBlockCount(mount.ext4, dir)) {
      throw corrupted(`directory ${dir.ino}: bad dx leaf ${leaf}`);
    }
    const entries = await readDirLeaf(mount.ext4, dir, leaf);
    if (entries === undefined) throw corrupted(`directory ${dir.ino}: hole at dx leaf ${leaf}`);
    const e = findInBlock(entries, name);
    if (e !== undefined) return { lblk: leaf, offset: e.offset, inode: e.inode };
    leaf = await nextLeaf(mount, dir, frames, hash);
  }
  return undefined;
}

/**
 * Write a frame's entries into its block (the live bytes, or `fresh` ones of a block just
 * appended), zero the unused entry slots, set the root's indirect_levels, seal, dirty.
 */
async function writeFrame(mount: Ext4Mount, h: JournalHandle, dir: Ext4Inode, frame: Frame, levels: number, fresh?: Uint8Array): Promise<void> {
  assert(frame.entries.length >= 1 && frame.entries.length <= frame.limit, `dx count ${frame.entries.length} within limit ${frame.limit}`);
  const block = fresh ?? await h.getWriteAccess(frame.pblk);
  if (fresh !== undefined && !frame.isRoot) {
    // A dx_node hides behind one unused record spanning the block.
    new DataView(block.buffer, block.byteOffset, block.length).setUint16(4, block.length, true);
  }
  encodeDxEntries(block, frame.countOffset, frame.limit, frame.entries);
  block.fill(0, frame.countOffset + frame.entries.length * DX_ENTRY_BYTES, frame.countOffset + frame.limit * DX_ENTRY_BYTES);
  if (frame.isRoot) block[DX_ROOT_INFO_OFFSET + 6] = levels;
  if (mount.ext4.metadataCsum) sealDxBlock(block, frame.countOffset, dir.csumSeed);
  h.dirtyMetadata(frame.pblk);
}

/** A new, empty dx_node appended to the directory (written by the caller via writeFrame). */
async function appendNode(ctx: DirContext, h: JournalHandle, dirIno: number, entries: DxEntry[], at: number): Promise<{ frame: Frame; bytes: Uint8Array; dir: Ext4Inode }> {
  const added = await appendDirBlock(ctx, h, dirIno);
  const limit = dxLimit(ctx.mount.ext4.blockSizeBytes, DX_NODE_COUNT_OFFSET, ctx.mount.ext4.metadataCsum);
  const frame = { lblk: added.lblk, pblk: added.pblk, isRoot: false, countOffset: DX_NODE_COUNT_OFFSET, limit, entries, at };
  return { frame, bytes: added.bytes, dir: added.dir };
}

/**
 * Make room for one more entry in the deepest index block of the path (see the header).
 * ENOSPC, before any change, when every level is full and no level may be added.
 */
async function ensureIndexRoom(ctx: DirContext, h: JournalHandle, dirIno: number, frames: Frame[]): Promise<void> {
  const { mount } = ctx;
  let roomy = frames.length - 1;
  while (roomy >= 0 && frames[roomy].entries.length >= frames[roomy].limit) roomy--;
  if (roomy === frames.length - 1) return;
  if (roomy < 0) {
    const levelsMax = mount.ext4.largeDir ? 2 : 1;
    if (frames.length - 1 >= levelsMax) throw new FsError('ENOSPC', { syscall: 'link', detail: `directory ${dirIno} index is full` });
    // Add a level: the root's entries move into a new node the root alone points at.
    const root = frames[0];
    const node = await appendNode(ctx, h, dirIno, root.entries, root.at);
    await writeFrame(mount, h, node.dir, node.frame, 0, node.bytes);
    root.entries = [{ hash: 0, block: node.frame.lblk }];
    root.at = 0;
    frames.splice(1, 0, node.frame);
    await writeFrame(mount, h, node.dir, root, frames.length - 1);
    roomy = 1;
  }
  for (let level = roomy + 1; level < frames.length; level++) {
    const full = frames[level];
    const parent = frames[level - 1];
    const half = full.entries.length >>> 1;
    const moved = full.entries.slice(half);
    const node = await appendNode(ctx, h, dirIno, moved, full.at - half);
    full.entries = full.entries.slice(0, half);
    parent.entries.splice(parent.at + 1, 0, { hash: moved[0].hash, block: node.frame.lblk });
    await writeFrame(mount, h, node.dir, node.frame, 0, node.bytes);
    await writeFrame(mount, h, node.dir, full, 0);
    if (full.at >= half) {
      parent.at++;
      frames[level] = node.frame;
    }
    await writeFrame(mount, h, node.dir, parent, frames.length - 1);
  }
}

/**
 * Where to split n sorted records of `sizesBytes`: move records from the top while the
 * moved bytes stay within half the block (counting half of the record on the boundary);
 * if that would take everything but the first, split by count instead. Returns the first
 * moved index, in [1, n).
 *   4 KiB, 100 records of 40 bytes: 51 fit under 2048 − 20 ⇒ split at 49.
 */
export function leafSplitIndex(sizesBytes: readonly number[], blockSizeBytes: number): number {
  const n = sizesBytes.length;
  assert(n >= 2, `a full leaf holds ${n} records`);
  let movedBytes = 0, i = n - 1;
  for (; i >= 0; i--) {
    if (movedBytes + sizesBytes[i] / 2 > blockSizeBytes / 2) break;
    movedBytes += sizesBytes[i];
  }
  const split = i > 0 ? i + 1 : n >>> 1;
  assert(split >= 1 && split < n, `split ${split} of ${n}`);
  return split;
}

interface HashedRecord extends LeafRecord { hash: number; minor: number }

/** Split leaf `leafLblk` (the path's current one); the deepest frame must have room. */
async function splitLeaf(ctx: DirContext, h: JournalHandle, dirIno: number, frames: Frame[], leafLblk: number, hashVersion: number): Promise<{ hash2: number; newLblk: number }> {
  const { mount } = ctx;
  const withTail = leafHasTail(mount);
  const dir = await mount.inode(dirIno);
  const pblk = await dirPblk(mount, dir, leafLblk);
  const block = await h.getWriteAccess(pblk);
  const records: HashedRecord[] = liveRecords(parseDirBlock(block, withTail)).map((r) => ({ ...r, ...dirHash(r.name, hashVersion, mount.ext4.hashSeed) }));
  records.sort((a, b) => a.hash - b.hash || a.minor - b.minor);
  const split = leafSplitIndex(records.map((r) => dirEntryMinLen(r.name.length)), mount.ext4.blockSizeBytes);
  const hash2 = records[split].hash;
  const continued = hash2 === records[split - 1].hash;
  const added = await appendDirBlock(ctx, h, dirIno);
  writeLeafRecords(added.bytes, withTail, records.slice(split));
  sealLeaf(mount, added.dir, added.bytes);
  h.dirtyMetadata(added.pblk);
  writeLeafRecords(block, withTail, records.slice(0, split));
  sealLeaf(mount, added.dir, block);
  h.dirtyMetadata(pblk);
  const last = frames[frames.length - 1];
  assert(last.entries.length < last.limit, 'the index has room for the new leaf');
  last.entries.splice(last.at + 1, 0, { hash: (hash2 | (continued ? HASH_COLLISION_BIT : 0)) >>> 0, block: added.lblk });
  await writeFrame(mount, h, added.dir, last, frames.length - 1);
  return { hash2, newLblk: added.lblk };
}

/** Add a record to a hashed directory (EEXIST if the name is there). */
export async function htreeAdd(ctx: DirContext, h: JournalHandle, dirIno: number, rec: LeafRecord): Promise<void> {
  const { mount } = ctx;
  const withTail = leafHasTail(mount);
  let dir = await mount.inode(dirIno);
  if (await findEntry(mount, dir, rec.name) !== undefined) throw new FsError('EEXIST', { syscall: 'link' });
  const path = await readPath(mount, dir, rec.name);
  const leafLblk = childOf(path.frames[path.frames.length - 1]);
  const leaf = await readDirLeaf(mount.ext4, dir, leafLblk);
  if (leaf === undefined) throw corrupted(`directory ${dirIno}: hole at dx leaf ${leafLblk}`);
  let target = leafLblk;
  if (!blockHasRoom(leaf, rec.name.length)) {
    await ensureIndexRoom(ctx, h, dirIno, path.frames);
    const split = await splitLeaf(ctx, h, dirIno, path.frames, leafLblk, path.hashVersion);
    if (path.hash >= split.hash2) target = split.newLblk;
    dir = await mount.inode(dirIno);
  }
  await editLeaf(mount, h, dir, target, (block) => assert(addToBlock(block, withTail, rec), 'the leaf has room after a split'));
}

/** Remove a name from a hashed directory; the inode it named. */
export async function htreeRemove(ctx: DirContext, h: JournalHandle, dirIno: number, name: Uint8Array): Promise<number> {
  const { mount } = ctx;
  const dir = await mount.inode(dirIno);
  const found = await findEntry(mount, dir, name);
  if (found === undefined) throw new FsError('ENOENT', { syscall: 'unlink' });
  await editLeaf(mount, h, dir, found.lblk, (block) => removeFromBlock(block, leafHasTail(mount), found.offset));
  return found.inode;
}

/** Retarget a name of a hashed directory ("." and ".." live in the dx_root). */
export async function htreeSet(ctx: DirContext, h: JournalHandle, dirIno: number, name: Uint8Array, ino: number, fileType: number): Promise<void> {
  const { mount } = ctx;
  const dir = await mount.inode(dirIno);
  if (name.length <= 2 && name.every((c) => c === 0x2e)) {
    const root = await readRoot(mount, dir);
    const block = await h.getWriteAccess(root.frame.pblk);
    setInBlock(block, name.length === 1 ? 0 : 12, ino, fileType);
    if (mount.ext4.metadataCsum) sealDxBlock(block, root.frame.countOffset, dir.csumSeed);
    h.dirtyMetadata(root.frame.pblk);
    return;
  }
  const found = await findEntry(mount, dir, name);
  if (found === undefined) throw new FsError('ENOENT', { syscall: 'rename' });
  await editLeaf(mount, h, dir, found.lblk, (block) => setInBlock(block, found.offset, ino, fileType));
}

/**
 * Turn a full one-block linear directory into an htree: records after ".." go to a new
 * block 1 (then split into 1 and 2), block 0 becomes the dx_root, INDEX_FL is set.
 */
export async function makeIndexedDir(ctx: DirContext, h: JournalHandle, dirIno: number): Promise<void> {
  const { mount } = ctx;
  const { ext4 } = mount;
  const bs = ext4.blockSizeBytes;
  const withTail = leafHasTail(mount);
  const dir = await mount.inode(dirIno);
  assert(dirBlockCount(ext4, dir) === 1 && ext4.dirIndex, 'only a one-block directory on a dir_index fs is converted');
  const rootPblk = await dirPblk(mount, dir, 0);
  const block0 = await h.getWriteAccess(rootPblk);
  const entries = parseDirBlock(block0, withTail);
  const [dot, dotdot] = entries;
  if (entries.length < 2 || dot.nameLen !== 1 || dotdot.nameLen !== 2 || dot.offset !== 0) throw corrupted(`directory ${dirIno}: block 0 lacks "." and ".."`);
  const records = liveRecords(entries.slice(2));
  const dots = { dotIno: dot.inode, parentIno: dotdot.inode, type: ext4.fileType ? DirFileType.DIR : 0 };
  const leaf = await appendDirBlock(ctx, h, dirIno);
  assert(leaf.lblk === 1, 'the first leaf is block 1');
  writeLeafRecords(leaf.bytes, withTail, records);
  sealLeaf(mount, leaf.dir, leaf.bytes);
  h.dirtyMetadata(leaf.pblk);

  const rootVersion = ext4.sb.defHashVersion;
  const hashVersion = hashVersionOf(mount, rootVersion);
  block0.fill(0);
  encodeDirEntry(block0, 0, { inode: dots.dotIno, recLen: 12, name: Uint8Array.of(0x2e), fileType: dots.type });
  encodeDirEntry(block0, 12, { inode: dots.parentIno, recLen: bs - 12, name: Uint8Array.of(0x2e, 0x2e), fileType: dots.type });
  block0[DX_ROOT_INFO_OFFSET + 4] = rootVersion;
  block0[DX_ROOT_INFO_OFFSET + 5] = DX_ROOT_INFO_LENGTH;
  const countOffset = DX_ROOT_INFO_OFFSET + DX_ROOT_INFO_LENGTH;
  const root: Frame = {
    lblk: 0, pblk: rootPblk, isRoot: true, countOffset, limit: dxLimit(bs, countOffset, ext4.metadataCsum),
    entries: [{ hash: 0, block: 1 }], at: 0,
  };
  const indexed = await mount.writeInode(h, dirIno, (raw) => { raw.flags |= InodeFlags.INDEX; });
  await writeFrame(mount, h, indexed, root, 0, block0);
  await splitLeaf(ctx, h, dirIno, [root], 1, hashVersion);
}
