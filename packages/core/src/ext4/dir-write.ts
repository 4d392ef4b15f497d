/**
 * ext4/dir-write: adding, removing and retargeting names in directories (write-api.ts
 * DirectoryWriter; ext4-format.md §7). Linear directories are handled here; hashed ones
 * (INDEX_FL) in ./htree-write.ts, which shares the leaf-block primitives below.
 *
 * A leaf block is a chain of records tiling [0, bs − 12) (the 0xDE checksum tail after it
 * with metadata_csum). Adding a name needs a record with room for it:
 *
 *   unused record (inode 0), rec_len ≥ need      → take it whole
 *   live record with slack rec_len − min ≥ need   → shrink it to min, new record after it:
 *
 *     | "foo" rec 60                 |   ──▶   | "foo" rec 12 | "bar" rec 48         |
 *
 * Removing merges the record into the previous one's rec_len (or sets inode 0 when it
 * is the block's first). Nothing is ever compacted across blocks (as the kernel).
 *
 * Growth: a linear directory of one block that overflows becomes an htree when the fs
 * has dir_index (the kernel's only conversion); a linear directory of several blocks
 * (mke2fs -d makes them) stays linear and gets a block appended.
 *
 * Cost: a linear add/remove reads every block once (the EEXIST check scans the whole
 * directory: O(blocks)); it dirties 1 leaf block, or on growth the new block, the
 * inode's table block and what the extent writer dirties for one block.
 */
import { assert } from '../assert.js';
import {
  DIR_TAIL_BYTES, DirFileType, NAME_MAX, dirEntryMinLen, encodeDirEntry, initEmptyDirBlock, parseDirBlock,
  sealDirBlock, type DirEntry,
} from '../format/dirent.js';
import { S_IFMT } from '../format/inode.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { FsError } from '../vfs/errors.js';
import { dirBlockCount, isHashed, iterateDir, nameEquals, readDirLeaf } from './dir.js';
import { mapBlock } from './extents.js';
import type { Ext4Inode } from './inode.js';
import type { Ext4Mount } from './mount.js';
import { htreeAdd, htreeRemove, htreeSet, makeIndexedDir } from './htree-write.js';
import type { DirectoryWriter, ExtentWriter } from './write-api.js';

/**
 * Most blocks one addEntry may dirty: leaf + new leaf + up to 3 index blocks + 2 new
 * index nodes + the inode, plus up to 3 appended blocks × (bitmap, GDT, superblock and
 * up to 4 extent-tree blocks). Remove and set dirty 1 block (2 with the inode's).
 */
export const DIR_ADD_CREDITS_MAX = 32;
export const DIR_REMOVE_CREDITS_MAX = 2;

const S_IFDIR = 0o040000;
const DOT = 0x2e;

/** A live entry copied out of a block (the name no longer aliases the block's bytes). */
export interface LeafRecord { name: Uint8Array; inode: number; fileType: number }

/** What every directory operation needs: the mount and the injected extent writer. */
export interface DirContext { mount: Ext4Mount; extents: ExtentWriter }

export function isDotName(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === DOT) || (name.length === 2 && name[0] === DOT && name[1] === DOT);
}

/** EINVAL / ENAMETOOLONG unless `name` can be a directory entry. */
export function checkName(name: Uint8Array, syscall: string): void {
  if (name.length > NAME_MAX) throw new FsError('ENAMETOOLONG', { syscall });
  if (name.length === 0 || name.includes(0) || name.includes(0x2f)) throw new FsError('EINVAL', { syscall, detail: 'bad entry name' });
}

// ---------------------------------------------------------------------------------
// Leaf-block primitives (pure functions over one block's bytes)

/** Whether a record can take a new entry needing `need` bytes. */
function recordRoom(e: DirEntry): number {
  return e.inode === 0 ? e.recLen : e.recLen - dirEntryMinLen(e.nameLen);
}

/** Whether the block has a record with room for a name of `nameLen` bytes. */
export function blockHasRoom(entries: readonly DirEntry[], nameLen: number): boolean {
  const need = dirEntryMinLen(nameLen);
  return entries.some((e) => recordRoom(e) >= need);
}

/** Insert a record into the first slot with room; false if none (block unchanged). */
export function addToBlock(block: Uint8Array, withTail: boolean, rec: LeafRecord): boolean {
  const need = dirEntryMinLen(rec.name.length);
  const entries = parseDirBlock(block, withTail);
  const slot = entries.find((e) => recordRoom(e) >= need);
  if (slot === undefined) return false;
  if (slot.inode === 0) {
    encodeDirEntry(block, slot.offset, { ...rec, recLen: slot.recLen });
    return true;
  }
  const keptLen = dirEntryMinLen(slot.nameLen);
  new DataView(block.buffer, block.byteOffset, block.length).setUint16(slot.offset + 4, keptLen, true);
  encodeDirEntry(block, slot.offset + keptLen, { ...rec, recLen: slot.recLen - keptLen });
  return true;
}

/** The live record named `name`, or undefined. */
export function findInBlock(entries: readonly DirEntry[], name: Uint8Array): DirEntry | undefined {
  return entries.find((e) => e.inode !== 0 && nameEquals(e.name, name));
}

/** Remove the record at `offset`: merge into the previous one, or mark unused if first. */
export function removeFromBlock(block: Uint8Array, withTail: boolean, offset: number): void {
  const entries = parseDirBlock(block, withTail);
  const i = entries.findIndex((e) => e.offset === offset);
  assert(i >= 0 && entries[i].inode !== 0, `a live record at ${offset}`);
  const v = new DataView(block.buffer, block.byteOffset, block.length);
  const e = entries[i];
  if (i === 0) {
    v.setUint32(offset, 0, true);
    return;
  }
  v.setUint16(entries[i - 1].offset + 4, entries[i - 1].recLen + e.recLen, true);
  // The record is now slack of the previous one: leave no name behind.
  block.fill(0, e.offset, e.offset + dirEntryMinLen(e.nameLen));
}

/** Retarget the record at `offset`. */
export function setInBlock(block: Uint8Array, offset: number, ino: number, fileType: number): void {
  new DataView(block.buffer, block.byteOffset, block.length).setUint32(offset, ino, true);
  block[offset + 7] = fileType;
}

/** Rewrite a block holding exactly `records`, packed at their minimal lengths, the last taking the rest. */
export function writeLeafRecords(block: Uint8Array, withTail: boolean, records: readonly LeafRecord[]): void {
  initEmptyDirBlock(block, withTail);
  const end = withTail ? block.length - DIR_TAIL_BYTES : block.length;
  let offset = 0;
  for (let i = 0; i < records.length; i++) {
    const minLen = dirEntryMinLen(records[i].name.length);
    const recLen = i === records.length - 1 ? end - offset : minLen;
    assert(offset + minLen <= end, 'records fit the block');
    encodeDirEntry(block, offset, { ...records[i], recLen });
    offset += recLen;
  }
}

/** Live records of a parsed block, copied. */
export function liveRecords(entries: readonly DirEntry[]): LeafRecord[] {
  return entries.filter((e) => e.inode !== 0).map((e) => ({ name: e.name.slice(), inode: e.inode, fileType: e.fileType }));
}

// ---------------------------------------------------------------------------------
// Block access through the journal

export function leafHasTail(mount: Ext4Mount): boolean {
  return mount.ext4.metadataCsum;
}

export function sealLeaf(mount: Ext4Mount, dir: Ext4Inode, block: Uint8Array): void {
  if (mount.ext4.metadataCsum) sealDirBlock(block, dir.csumSeed);
}

export async function dirInode(mount: Ext4Mount, dirIno: number, syscall: string): Promise<Ext4Inode> {
  const dir = await mount.inode(dirIno);
  if ((dir.mode & S_IFMT) !== S_IFDIR) throw new FsError('ENOTDIR', { syscall, detail: `inode ${dirIno}` });
  return dir;
}

/** The physical block of directory block `lblk` (EUCLEAN-free: a hole here is a bug). */
export async function dirPblk(mount: Ext4Mount, dir: Ext4Inode, lblk: number): Promise<number> {
  const m = await mapBlock(mount.ext4, dir, lblk);
  if (m.kind !== 'mapped') throw new FsError('EUCLEAN', { syscall: 'dir write', detail: `directory ${dir.ino} block ${lblk} is not mapped` });
  return m.pblk;
}

/**
 * Append one block to the directory: map it through the extent writer, get its zeroed
 * bytes (the caller fills, seals and dirties them) and grow i_size by one block.
 */
export async function appendDirBlock(ctx: DirContext, h: JournalHandle, dirIno: number): Promise<{ lblk: number; pblk: number; bytes: Uint8Array; dir: Ext4Inode }> {
  const { mount } = ctx;
  const bs = mount.ext4.blockSizeBytes;
  const before = await mount.inode(dirIno);
  const lblk = dirBlockCount(mount.ext4, before);
  const runs = await ctx.extents.mapOrAllocate(mount, h, dirIno, lblk, 1, { unwritten: false });
  assert(runs.length === 1 && runs[0].lblk === lblk && runs[0].count === 1 && !runs[0].unwritten, 'one written block mapped');
  const pblk = runs[0].pblk;
  const bytes = h.getCreateAccess(pblk);
  const dir = await mount.writeInode(h, dirIno, (raw) => { raw.size = (lblk + 1) * bs; });
  return { lblk, pblk, bytes, dir };
}

/** dirent file_type as stored: 0 without the filetype feature. */
export function storedFileType(mount: Ext4Mount, fileType: number): number {
  return mount.ext4.fileType ? fileType : DirFileType.UNKNOWN;
}

// ---------------------------------------------------------------------------------
// Linear directories

interface Located { lblk: number; offset: number }

/** Find `name` in a linear directory; also the first block with room for `roomFor` bytes of name. */
async function linearScan(mount: Ext4Mount, dir: Ext4Inode, name: Uint8Array, roomFor?: number): Promise<{ found?: Located; roomLblk?: number }> {
  const blocks = dirBlockCount(mount.ext4, dir);
  let roomLblk: number | undefined;
  for (let lblk = 0; lblk < blocks; lblk++) {
    const entries = await readDirLeaf(mount.ext4, dir, lblk);
    if (entries === undefined) continue;
    const e = findInBlock(entries, name);
    if (e !== undefined) return { found: { lblk, offset: e.offset } };
    if (roomFor !== undefined && roomLblk === undefined && blockHasRoom(entries, roomFor)) roomLblk = lblk;
  }
  return { roomLblk };
}

/** Modify one leaf block in place through the journal. */
export async function editLeaf(mount: Ext4Mount, h: JournalHandle, dir: Ext4Inode, lblk: number, edit: (block: Uint8Array) => void): Promise<void> {
  const pblk = await dirPblk(mount, dir, lblk);
  const block = await h.getWriteAccess(pblk);
  edit(block);
  sealLeaf(mount, dir, block);
  h.dirtyMetadata(pblk);
}

async function linearAdd(ctx: DirContext, h: JournalHandle, dir: Ext4Inode, rec: LeafRecord): Promise<void> {
  const { mount } = ctx;
  const scan = await linearScan(mount, dir, rec.name, rec.name.length);
  if (scan.found !== undefined) throw new FsError('EEXIST', { syscall: 'link' });
  const withTail = leafHasTail(mount);
  if (scan.roomLblk !== undefined) {
    await editLeaf(mount, h, dir, scan.roomLblk, (block) => assert(addToBlock(block, withTail, rec), 'the scanned slot has room'));
    return;
  }
  if (dirBlockCount(mount.ext4, dir) === 1 && mount.ext4.dirIndex) {
    await makeIndexedDir(ctx, h, dir.ino);
    await htreeAdd(ctx, h, dir.ino, rec);
    return;
  }
  const added = await appendDirBlock(ctx, h, dir.ino);
  writeLeafRecords(added.bytes, withTail, [rec]);
  sealLeaf(mount, added.dir, added.bytes);
  h.dirtyMetadata(added.pblk);
}

// ---------------------------------------------------------------------------------
// The DirectoryWriter

/**
 * Directory writes over an injected ExtentWriter (which maps appended blocks):
 *   const dirs = new Ext4DirectoryWriter(extentWriter);
 *   await mount.transact(DIR_ADD_CREDITS_MAX, (h) => dirs.addEntry(mount, h, dirIno, name, ino, DirFileType.REG));
 */
export class Ext4DirectoryWriter implements DirectoryWriter {
  constructor(private readonly extents: ExtentWriter) {}

  private ctx(mount: Ext4Mount): DirContext {
    return { mount, extents: this.extents };
  }

  async initDir(mount: Ext4Mount, h: JournalHandle, dirIno: number, parentIno: number): Promise<void> {
    const dir = await dirInode(mount, dirIno, 'mkdir');
    assert(dir.size === 0, `directory ${dirIno} is new (size ${dir.size})`);
    const added = await appendDirBlock(this.ctx(mount), h, dirIno);
    assert(added.lblk === 0, 'a new directory starts at block 0');
    const type = storedFileType(mount, DirFileType.DIR);
    writeLeafRecords(added.bytes, leafHasTail(mount), [
      { name: Uint8Array.of(DOT), inode: dirIno, fileType: type },
      { name: Uint8Array.of(DOT, DOT), inode: parentIno, fileType: type },
    ]);
    sealLeaf(mount, added.dir, added.bytes);
    h.dirtyMetadata(added.pblk);
  }

  async addEntry(mount: Ext4Mount, h: JournalHandle, dirIno: number, name: Uint8Array, ino: number, fileType: number): Promise<void> {
    checkName(name, 'link');
    if (isDotName(name)) throw new FsError('EEXIST', { syscall: 'link' });
    assert(ino >= 1 && ino <= mount.ext4.inodesCount, `inode ${ino} exists`);
    const dir = await dirInode(mount, dirIno, 'link');
    const rec = { name: name.slice(), inode: ino, fileType: storedFileType(mount, fileType) };
    if (isHashed(mount.ext4, dir)) await htreeAdd(this.ctx(mount), h, dirIno, rec);
    else await linearAdd(this.ctx(mount), h, dir, rec);
  }

  async removeEntry(mount: Ext4Mount, h: JournalHandle, dirIno: number, name: Uint8Array): Promise<number> {
    checkName(name, 'unlink');
    if (isDotName(name)) throw new FsError('EINVAL', { syscall: 'unlink', detail: '"." and ".." cannot be removed' });
    const dir = await dirInode(mount, dirIno, 'unlink');
    if (isHashed(mount.ext4, dir)) return htreeRemove(this.ctx(mount), h, dirIno, name);
    const { found } = await linearScan(mount, dir, name);
    if (found === undefined) throw new FsError('ENOENT', { syscall: 'unlink' });
    let ino = 0;
    await editLeaf(mount, h, dir, found.lblk, (block) => {
      ino = new DataView(block.buffer, block.byteOffset).getUint32(found.offset, true);
      removeFromBlock(block, leafHasTail(mount), found.offset);
    });
    return ino;
  }

  async setEntry(mount: Ext4Mount, h: JournalHandle, dirIno: number, name: Uint8Array, ino: number, fileType: number): Promise<void> {
    checkName(name, 'rename');
    assert(ino >= 1 && ino <= mount.ext4.inodesCount, `inode ${ino} exists`);
    const dir = await dirInode(mount, dirIno, 'rename');
    const type = storedFileType(mount, fileType);
    if (isHashed(mount.ext4, dir)) return htreeSet(this.ctx(mount), h, dirIno, name, ino, type);
    const { found } = await linearScan(mount, dir, name);
    if (found === undefined) throw new FsError('ENOENT', { syscall: 'rename' });
    await editLeaf(mount, h, dir, found.lblk, (block) => setInBlock(block, found.offset, ino, type));
  }

  async isEmpty(mount: Ext4Mount, dirIno: number): Promise<boolean> {
    const dir = await dirInode(mount, dirIno, 'rmdir');
    for await (const e of iterateDir(mount.ext4, dir)) {
      if (!isDotName(e.name)) return false;
    }
    return true;
  }
}
