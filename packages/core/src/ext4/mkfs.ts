/**
 * mkfs: make an empty ext4 filesystem on a BlockDevice, byte-for-byte what
 * `mkfs.ext4 -b 4096` (e2fsprogs 1.47.0, Debian 12) writes, given the same UUID, hash
 * seed and time (mkfs.test.ts compares whole images). Placement comes from layout.ts.
 *
 * Features: has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg
 * sparse_super large_file huge_file dir_nlink extra_isize metadata_csum.
 *
 * Cost: only metadata that is not zero is written — per backup group the superblock and
 * GDT (1 + descBlocks blocks), the primary reserved GDT blocks, the block bitmaps of
 * groups that hold anything beyond their own backup, group 0's inode bitmap and first
 * inode-table block, 5 directory blocks, the resize DIND, the journal superblock. 64 GiB:
 * 13 × 9 + 1024 + 39 + 9 ≈ 1.2 k blocks ≈ 4.7 MiB. Inode tables and the journal must
 * read as zeros: on a device known to be zero (`assumeZeroed`, or `discard: true`, which
 * discards the whole device first) they are not written; otherwise they are zeroed with
 * device.zeroOut (64 GiB: 256 MiB of tables + 512 MiB of journal). Either way every
 * group gets ITABLE_ZEROED. The primary superblock is written last, after a flush, so
 * an interrupted mkfs never leaves a valid-looking filesystem.
 */
import { randomBytes } from 'node:crypto';
import type { BlockDevice } from '../device/block-device.js';
import { FsError } from '../vfs/errors.js';
import { assert } from '../assert.js';
import { crc32c } from '../format/crc32c.js';
import {
  superblockStruct, encodeSuperblock, Compat, Incompat, RoCompat, EXT4_MAGIC, SUPERBLOCK_OFFSET_BYTES, State, SbFlags,
  type Superblock,
} from '../format/superblock.js';
import { encodeGroupDesc, groupDescStruct, sealGroupDesc, GroupFlags, type GdChecksumContext } from '../format/group-desc.js';
import { blockBitmapChecksum, inodeBitmapChecksum } from '../format/bitmap.js';
import {
  inodeStruct, encodeInode, inodeChecksumSeed, encodeTime, InodeFlags, FileType, I_BLOCK_BYTES, type Inode,
} from '../format/inode.js';
import { encodeExtentHeader, encodeExtent, encodeExtentIndex, sealExtentBlock, nodeMaxEntries } from '../format/extent.js';
import { encodeDirEntry, writeDirTail, sealDirBlock, initEmptyDirBlock, DirFileType } from '../format/dirent.js';
import { encodeJournalSuperblock, BlockType, JSB_SIZE_BYTES, type JournalSuperblock } from '../format/jbd2.js';
import {
  BLOCK_SIZE_BYTES, LOG_BLOCK_SIZE, INODE_SIZE_BYTES, DESC_SIZE_BYTES, LOG_GROUPS_PER_FLEX, FIRST_INO, LOST_FOUND_BLOCKS,
  ROOT_EXTENTS_MAX, computeGeometry, planLayout, buildBlockBitmap, buildInodeBitmap, blockBitmapIsWritten, groupHasSuper,
  type Layout, type PhysExtent,
} from './layout.js';

export interface MkfsOptions {
  /** Filesystem size; default the whole device. Rounded down to whole 4 KiB blocks. */
  sizeBytes?: number;
  /** Volume label, at most 16 bytes of UTF-8. */
  label?: string;
  /** 16 bytes; default random (version 4). */
  uuid?: Uint8Array;
  /** Directory hash seed, 16 bytes; default random (version 4). */
  hashSeed?: Uint8Array;
  /** Bytes per inode; default by size class as mke2fs.conf (4096 below 512 MiB, 16384 …). */
  inodeRatio?: number;
  /** Journal length in blocks; default mke2fs's table (1024 … 262144). */
  journalBlocks?: number;
  /** Creation time of everything; default now. */
  now?: Date;
  /** The device already reads zeros everywhere (a fresh sparse file or MemoryDevice). */
  assumeZeroed?: boolean;
  /** Discard the whole filesystem range first (cheap on MemoryDevice; FileDevice writes zeros). */
  discard?: boolean;
}

export interface MkfsResult {
  blocksCount: number;
  blocksPerGroup: number;
  groupCount: number;
  inodesCount: number;
  inodesPerGroup: number;
  reservedGdtBlocks: number;
  rBlocksCount: number;
  freeBlocksCount: number;
  freeInodesCount: number;
  overheadBlocks: number;
  journalBlocks: number;
  journalExtents: PhysExtent[];
  uuid: Uint8Array;
  hashSeed: Uint8Array;
  /** Bytes passed to device.write. */
  bytesWritten: number;
  /** Bytes passed to device.zeroOut (0 when the device was known to read zeros). */
  bytesZeroed: number;
}

const ROOT_INO = 2;
const RESIZE_INO = 7;
const JOURNAL_INO = 8;
const LOST_FOUND_INO = 11;
/** Block pointers per indirect block (bs / 4). */
const ADDRS_PER_BLOCK = BLOCK_SIZE_BYTES / 4;
/** i_block slot of the double-indirect pointer. */
const DIND_SLOT = 13;
const SECTORS_PER_BLOCK = BLOCK_SIZE_BYTES / 512;
const LABEL_BYTES_MAX = 16;

interface Ids { uuid: Uint8Array; hashSeed: Uint8Array; fsSeed: number; nowSec: number }

/** A block-aligned write: the blocks starting at `blockIndex`. */
interface BlockWrite { blockIndex: number; data: Uint8Array }

function invalid(detail: string): FsError {
  return new FsError('EINVAL', { syscall: 'mkfs', detail });
}

/** A random RFC 4122 version-4 UUID, as libuuid makes for mke2fs. */
function randomUuid(): Uint8Array {
  const b = new Uint8Array(randomBytes(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  return b;
}

function checkOptions(device: BlockDevice, options: MkfsOptions): { sizeBytes: number; label: Uint8Array } {
  if (device.readOnly) throw new FsError('EROFS', { syscall: 'mkfs', detail: 'device is read-only' });
  const sizeBytes = options.sizeBytes ?? device.sizeBytes;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes > device.sizeBytes) {
    throw invalid(`size ${sizeBytes} is not within the ${device.sizeBytes}-byte device`);
  }
  if (options.uuid !== undefined && options.uuid.length !== 16) throw invalid('uuid must be 16 bytes');
  if (options.hashSeed !== undefined && options.hashSeed.length !== 16) throw invalid('hashSeed must be 16 bytes');
  const label = new TextEncoder().encode(options.label ?? '');
  if (label.length > LABEL_BYTES_MAX) throw invalid(`label of ${label.length} bytes exceeds ${LABEL_BYTES_MAX}`);
  const nowMs = options.now?.getTime() ?? 0;
  // Superblock times are unsigned 40-bit seconds; inode times reach 2446 (encodeTime).
  if (!Number.isFinite(nowMs) || nowMs < 0 || nowMs >= 2 ** 34 * 1000) throw invalid('now must be a date from 1970 to 2514');
  return { sizeBytes, label };
}

const FEATURE_COMPAT = Compat.HAS_JOURNAL | Compat.EXT_ATTR | Compat.RESIZE_INODE | Compat.DIR_INDEX; // 0x3C
const FEATURE_INCOMPAT = Incompat.FILETYPE | Incompat.EXTENTS | Incompat.BIT64 | Incompat.FLEX_BG; // 0x2C2
const FEATURE_RO_COMPAT = RoCompat.SPARSE_SUPER | RoCompat.LARGE_FILE | RoCompat.HUGE_FILE | RoCompat.DIR_NLINK
  | RoCompat.EXTRA_ISIZE | RoCompat.METADATA_CSUM; // 0x46B
/** s_default_mount_opts: user_xattr (0x4) | acl (0x8). */
const DEFAULT_MOUNT_OPTS = 0x0c;
const HASH_HALF_MD4 = 1;
const ERRORS_CONTINUE = 1;
const JNL_BACKUP_BLOCKS = 1;
const CHECKSUM_TYPE_CRC32C = 1;
const EXTRA_ISIZE = 32;

/** s_jnl_blocks: the journal inode's i_block (15 words), then i_size_high, i_size. */
function journalBackup(journalInode: Inode): Uint8Array {
  const out = new Uint8Array(68);
  out.set(journalInode.block, 0);
  const view = new DataView(out.buffer);
  view.setUint32(60, Math.floor(journalInode.size / 2 ** 32), true);
  view.setUint32(64, journalInode.size % 2 ** 32, true);
  return out;
}

/** The primary superblock (s_block_group_nr 0). */
function buildSuperblock(layout: Layout, ids: Ids, label: Uint8Array, journalInode: Inode, kbytesWritten: number): Superblock {
  const g = layout.geometry;
  const sb: Superblock = { ...superblockStruct.decode(new Uint8Array(1024)), raw: new Uint8Array(1024) };
  Object.assign(sb, {
    inodesCount: g.inodesCount, blocksCount: g.blocksCount, rBlocksCount: g.rBlocksCount,
    freeBlocksCount: layout.freeBlocksCount, freeInodesCount: layout.freeInodesCount, firstDataBlock: 0,
    logBlockSize: LOG_BLOCK_SIZE, logClusterSize: LOG_BLOCK_SIZE, blocksPerGroup: g.blocksPerGroup,
    clustersPerGroup: g.blocksPerGroup, inodesPerGroup: g.inodesPerGroup, mtime: 0, wtime: ids.nowSec,
    mntCount: 0, maxMntCount: 0xffff, magic: EXT4_MAGIC, state: State.VALID_FS, errors: ERRORS_CONTINUE,
    lastcheck: ids.nowSec, checkinterval: 0, creatorOs: 0, revLevel: 1, firstIno: FIRST_INO,
    inodeSize: INODE_SIZE_BYTES, blockGroupNr: 0, featureCompat: FEATURE_COMPAT, featureIncompat: FEATURE_INCOMPAT,
    featureRoCompat: FEATURE_RO_COMPAT, uuid: ids.uuid.slice(), reservedGdtBlocks: g.reservedGdtBlocks,
    journalInum: JOURNAL_INO, hashSeed: ids.hashSeed.slice(), defHashVersion: HASH_HALF_MD4,
    jnlBackupType: JNL_BACKUP_BLOCKS, descSize: DESC_SIZE_BYTES, defaultMountOpts: DEFAULT_MOUNT_OPTS,
    mkfsTime: ids.nowSec, jnlBlocks: journalBackup(journalInode), minExtraIsize: EXTRA_ISIZE,
    wantExtraIsize: EXTRA_ISIZE, flags: SbFlags.SIGNED_HASH, logGroupsPerFlex: LOG_GROUPS_PER_FLEX,
    checksumType: CHECKSUM_TYPE_CRC32C, kbytesWritten, overheadClusters: layout.overheadBlocks,
  });
  const volumeName = new Uint8Array(16);
  volumeName.set(label);
  sb.volumeName = volumeName;
  return sb;
}

/**
 * The superblock copy for `group`: the primary at byte 1024 of block 0, a backup as the
 * first 1024 bytes of the group's first block. mke2fs writes backups with s_state 0 and
 * their own s_block_group_nr (each with its own checksum).
 */
function superblockBlock(sb: Superblock, group: number): Uint8Array {
  const block = new Uint8Array(BLOCK_SIZE_BYTES);
  const copy: Superblock = { ...sb, blockGroupNr: group, state: group === 0 ? sb.state : 0 };
  block.set(encodeSuperblock(copy), group === 0 ? SUPERBLOCK_OFFSET_BYTES : 0);
  return block;
}

/** Block and inode bitmaps of initialized groups, and every descriptor with its checksums. */
function buildGroupTables(layout: Layout, ids: Ids): { gdt: Uint8Array; bitmaps: BlockWrite[] } {
  const g = layout.geometry;
  const gdt = new Uint8Array(g.descBlocks * BLOCK_SIZE_BYTES);
  const ctx: GdChecksumContext = { metadataCsum: true, gdtCsum: false, fsSeed: ids.fsSeed, uuid: ids.uuid, descSize: DESC_SIZE_BYTES };
  const bitmaps: BlockWrite[] = [];
  const empty = groupDescStruct.decode(new Uint8Array(DESC_SIZE_BYTES));
  layout.groups.forEach((gl, group) => {
    let blockBitmapCsum = 0;
    let inodeBitmapCsum = 0;
    if (blockBitmapIsWritten(gl)) {
      const bitmap = new Uint8Array(BLOCK_SIZE_BYTES);
      buildBlockBitmap(layout, group, bitmap);
      blockBitmapCsum = blockBitmapChecksum(ids.fsSeed, bitmap, g.blocksPerGroup);
      bitmaps.push({ blockIndex: gl.blockBitmap, data: bitmap });
    }
    if ((gl.flags & GroupFlags.INODE_UNINIT) === 0) {
      const bitmap = new Uint8Array(BLOCK_SIZE_BYTES);
      buildInodeBitmap(layout, group, bitmap);
      inodeBitmapCsum = inodeBitmapChecksum(ids.fsSeed, bitmap, g.inodesPerGroup);
      bitmaps.push({ blockIndex: gl.inodeBitmap, data: bitmap });
    }
    encodeGroupDesc({
      ...empty, blockBitmap: gl.blockBitmap, inodeBitmap: gl.inodeBitmap, inodeTable: gl.inodeTable,
      freeBlocksCount: gl.freeBlocks, freeInodesCount: gl.freeInodes, usedDirsCount: gl.usedDirs,
      flags: gl.flags | GroupFlags.ITABLE_ZEROED, blockBitmapCsum, inodeBitmapCsum, itableUnused: gl.itableUnused,
    }, gdt, group, DESC_SIZE_BYTES);
    sealGroupDesc(gdt, group, ctx);
  });
  return { gdt, bitmaps };
}

/** Groups other than 0 holding a backup, in order (1, 3, 5, 7, 9, 25, …). */
function backupGroups(layout: Layout): number[] {
  const out: number[] = [];
  for (let group = 1; group < layout.geometry.groupCount; group++) if (groupHasSuper(group)) out.push(group);
  return out;
}

/**
 * The resize inode's blocks (ext4-format.md §3): the DIND block points at each primary
 * reserved GDT block (slot (descBlocks + k) mod 1024), and each primary reserved GDT
 * block is an indirect block listing its copies in the backup groups. 1 GiB: block 2
 * lists 32770, 98306, 163842, 229378.
 */
function buildResizeBlocks(layout: Layout): BlockWrite[] {
  const g = layout.geometry;
  const backups = backupGroups(layout);
  const dind = new Uint8Array(BLOCK_SIZE_BYTES);
  const dindView = new DataView(dind.buffer);
  const writes: BlockWrite[] = [{ blockIndex: layout.resizeDindBlock, data: dind }];
  for (let k = 0; k < g.reservedGdtBlocks; k++) {
    const primary = 1 + g.descBlocks + k;
    dindView.setUint32(((g.descBlocks + k) % ADDRS_PER_BLOCK) * 4, primary, true);
    const ind = new Uint8Array(BLOCK_SIZE_BYTES);
    const indView = new DataView(ind.buffer);
    backups.forEach((group, j) => indView.setUint32(j * 4, primary + group * g.blocksPerGroup, true));
    writes.push({ blockIndex: primary, data: ind });
  }
  return writes;
}

function blankInode(): Inode {
  return { ...inodeStruct.decode(new Uint8Array(INODE_SIZE_BYTES)), raw: new Uint8Array(INODE_SIZE_BYTES) };
}

/** A live inode as mke2fs makes it: all times = now (whole seconds), i_extra_isize 32. */
function liveInode(ids: Ids, mode: number, sizeBytes: number, links: number, blocks: number, flags: number): Inode {
  const t = encodeTime({ sec: ids.nowSec, nsec: 0 });
  return {
    ...blankInode(), mode, size: sizeBytes, linksCount: links, blocks: blocks * SECTORS_PER_BLOCK, flags,
    atime: t.base, ctime: t.base, mtime: t.base, crtime: t.base,
    atimeExtra: t.extra, ctimeExtra: t.extra, mtimeExtra: t.extra, crtimeExtra: t.extra, extraIsize: EXTRA_ISIZE,
  };
}

/** An i_block extent root: leaf entries, or (depth 1) one index to `leafBlock`. */
function extentRoot(extents: PhysExtent[], leafBlock: number | null): Uint8Array {
  const root = new Uint8Array(I_BLOCK_BYTES);
  if (leafBlock === null) {
    assert(extents.length <= ROOT_EXTENTS_MAX, 'extents fit the inode root');
    encodeExtentHeader(root, { entries: extents.length, max: ROOT_EXTENTS_MAX, depth: 0, generation: 0 });
    extents.forEach((e, i) => encodeExtent(root, i, { ...e, unwritten: false }));
  } else {
    // mke2fs fills the root with the first 4 extents, then splits it: the index
    // overwrites slot 0 and extents 2-4 stay behind in slots 1-3, past eh_entries
    // (unused but checksummed). We leave the same bytes so images compare equal.
    extents.slice(0, ROOT_EXTENTS_MAX).forEach((e, i) => encodeExtent(root, i, { ...e, unwritten: false }));
    encodeExtentHeader(root, { entries: 1, max: ROOT_EXTENTS_MAX, depth: 1, generation: 0 });
    encodeExtentIndex(root, 0, { lblk: 0, leaf: leafBlock });
  }
  return root;
}

function journalInodeOf(layout: Layout, ids: Ids): Inode {
  const n = layout.geometry.journalBlocks;
  const treeBlocks = layout.journalLeafBlock === null ? 0 : 1;
  const inode = liveInode(ids, FileType.REG | 0o600, n * BLOCK_SIZE_BYTES, 1, n + treeBlocks, InodeFlags.EXTENTS);
  inode.block = extentRoot(layout.journalExtents, layout.journalLeafBlock);
  return inode;
}

function resizeInodeOf(layout: Layout, ids: Ids): Inode {
  const g = layout.geometry;
  const blocks = 1 + g.reservedGdtBlocks * (1 + backupGroups(layout).length);
  // i_size covers the whole double-indirect range: (apb² + apb + 12) blocks.
  const sizeBytes = (ADDRS_PER_BLOCK * ADDRS_PER_BLOCK + ADDRS_PER_BLOCK + 12) * BLOCK_SIZE_BYTES;
  const inode = liveInode(ids, FileType.REG | 0o600, sizeBytes, 1, blocks, 0);
  new DataView(inode.block.buffer).setUint32(DIND_SLOT * 4, layout.resizeDindBlock, true);
  return inode;
}

function dirInode(ids: Ids, mode: number, firstBlock: number, blockCount: number, links: number): Inode {
  const inode = liveInode(ids, FileType.DIR | mode, blockCount * BLOCK_SIZE_BYTES, links, blockCount, InodeFlags.EXTENTS);
  inode.block = extentRoot([{ lblk: 0, pblk: firstBlock, len: blockCount }], null);
  return inode;
}

/**
 * Group 0's first inode-table block: inodes 1..16. mke2fs writes every reserved inode
 * with a checksum (1..10, i_extra_isize 0, so only the low 16 bits); inode 1 (bad blocks)
 * also gets its three times; 2, 7, 8 and 11 are live.
 */
function buildInodeBlock(layout: Layout, ids: Ids, journalInode: Inode): Uint8Array {
  const block = new Uint8Array(BLOCK_SIZE_BYTES);
  const inodes = new Map<number, Inode>([
    [ROOT_INO, dirInode(ids, 0o755, layout.rootDirBlock, 1, 3)],
    [RESIZE_INO, resizeInodeOf(layout, ids)],
    [JOURNAL_INO, journalInode],
    [LOST_FOUND_INO, dirInode(ids, 0o700, layout.lostFoundBlocks[0], LOST_FOUND_BLOCKS, 2)],
  ]);
  for (let ino = 1; ino <= LOST_FOUND_INO; ino++) {
    let inode = inodes.get(ino);
    if (inode === undefined) {
      inode = blankInode();
      if (ino === 1) Object.assign(inode, { atime: ids.nowSec >>> 0, ctime: ids.nowSec >>> 0, mtime: ids.nowSec >>> 0 });
    }
    const inodeSeed = inodeChecksumSeed(ids.fsSeed, ino, inode.generation);
    block.set(encodeInode(inode, { inodeSeed }), (ino - 1) * INODE_SIZE_BYTES);
  }
  return block;
}

function dirEntry(block: Uint8Array, offset: number, inode: number, recLen: number, name: string): void {
  encodeDirEntry(block, offset, { inode, recLen, name: new TextEncoder().encode(name), fileType: DirFileType.DIR });
}

/** Root's block ("." ".." "lost+found") and lost+found's four, each with its 0xDE tail. */
function buildDirBlocks(layout: Layout, ids: Ids): BlockWrite[] {
  const limit = BLOCK_SIZE_BYTES - 12; // the checksum tail takes the last 12 bytes
  const root = new Uint8Array(BLOCK_SIZE_BYTES);
  dirEntry(root, 0, ROOT_INO, 12, '.');
  dirEntry(root, 12, ROOT_INO, 12, '..');
  dirEntry(root, 24, LOST_FOUND_INO, limit - 24, 'lost+found');
  writeDirTail(root);
  sealDirBlock(root, inodeChecksumSeed(ids.fsSeed, ROOT_INO, 0));
  const writes: BlockWrite[] = [{ blockIndex: layout.rootDirBlock, data: root }];
  const lfSeed = inodeChecksumSeed(ids.fsSeed, LOST_FOUND_INO, 0);
  layout.lostFoundBlocks.forEach((blockIndex, i) => {
    const block = new Uint8Array(BLOCK_SIZE_BYTES);
    if (i === 0) {
      dirEntry(block, 0, LOST_FOUND_INO, 12, '.');
      dirEntry(block, 12, ROOT_INO, limit - 12, '..');
      writeDirTail(block);
    } else {
      initEmptyDirBlock(block, true);
    }
    sealDirBlock(block, lfSeed);
    writes.push({ blockIndex, data: block });
  });
  return writes;
}

/** An empty jbd2 v2 journal: s_start 0, s_sequence 1, no features (the kernel adds them). */
function buildJournalBlocks(layout: Layout, ids: Ids): BlockWrite[] {
  const jsb: JournalSuperblock = {
    blockType: BlockType.SUPERBLOCK_V2, sequence: 0, blockSize: BLOCK_SIZE_BYTES, maxLen: layout.geometry.journalBlocks,
    first: 1, sequenceFirst: 1, start: 0, errno: 0, featureCompat: 0, featureIncompat: 0, featureRoCompat: 0,
    uuid: ids.uuid.slice(), nrUsers: 1, maxTransaction: 0, maxTransData: 0, checksumType: 0, numFcBlocks: 0,
    checksum: 0, raw: new Uint8Array(JSB_SIZE_BYTES),
  };
  const first = new Uint8Array(BLOCK_SIZE_BYTES);
  first.set(encodeJournalSuperblock(jsb));
  const writes: BlockWrite[] = [{ blockIndex: layout.journalExtents[0].pblk, data: first }];
  if (layout.journalLeafBlock !== null) {
    const leaf = new Uint8Array(BLOCK_SIZE_BYTES);
    const max = nodeMaxEntries(BLOCK_SIZE_BYTES);
    assert(layout.journalExtents.length <= max, `journal extents fit one leaf (${max})`);
    encodeExtentHeader(leaf, { entries: layout.journalExtents.length, max, depth: 0, generation: 0 });
    layout.journalExtents.forEach((e, i) => encodeExtent(leaf, i, { ...e, unwritten: false }));
    sealExtentBlock(leaf, inodeChecksumSeed(ids.fsSeed, JOURNAL_INO, 0));
    writes.push({ blockIndex: layout.journalLeafBlock, data: leaf });
  }
  return writes;
}

const COALESCE_BYTES_MAX = 8 * 1024 * 1024;

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Half-open byte ranges that must read as zeros: inode tables and the journal. */
function zeroRanges(layout: Layout): [number, number][] {
  const g = layout.geometry;
  const blocks: [number, number][] = layout.groups.map((gl) => [gl.inodeTable, gl.inodeTable + g.inodeTableBlocks]);
  for (const e of layout.journalExtents) blocks.push([e.pblk, e.pblk + e.len]);
  blocks.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [start, end] of blocks) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last[1] === start) last[1] = end;
    else merged.push([start, end]);
  }
  return merged.map(([start, end]) => [start * BLOCK_SIZE_BYTES, end * BLOCK_SIZE_BYTES]);
}

/** Sorted, adjacent blocks joined into writes of at most 8 MiB. Returns bytes written. */
async function writeBlocks(device: BlockDevice, writes: BlockWrite[]): Promise<number> {
  writes.sort((a, b) => a.blockIndex - b.blockIndex);
  let bytes = 0;
  for (let i = 0; i < writes.length;) {
    let j = i + 1;
    let blockEnd = writes[i].blockIndex + writes[i].data.length / BLOCK_SIZE_BYTES;
    while (j < writes.length && writes[j].blockIndex === blockEnd && (blockEnd - writes[i].blockIndex) * BLOCK_SIZE_BYTES < COALESCE_BYTES_MAX) {
      assert(writes[j].blockIndex >= blockEnd, `block ${writes[j].blockIndex} written once`);
      blockEnd += writes[j].data.length / BLOCK_SIZE_BYTES;
      j++;
    }
    assert(j === writes.length || writes[j].blockIndex >= blockEnd, `block ${writes[j]?.blockIndex} written once`);
    const run = new Uint8Array((blockEnd - writes[i].blockIndex) * BLOCK_SIZE_BYTES);
    for (let k = i; k < j; k++) run.set(writes[k].data, (writes[k].blockIndex - writes[i].blockIndex) * BLOCK_SIZE_BYTES);
    await device.write(writes[i].blockIndex * BLOCK_SIZE_BYTES, run);
    bytes += run.length;
    i = j;
  }
  return bytes;
}

/** Everything but the primary superblock block: backups, GDTs, bitmaps, inodes, files. */
function metadataWrites(layout: Layout, ids: Ids, sb: Superblock, journalInode: Inode): BlockWrite[] {
  const { gdt, bitmaps } = buildGroupTables(layout, ids);
  const writes: BlockWrite[] = [...bitmaps, ...buildResizeBlocks(layout), ...buildDirBlocks(layout, ids), ...buildJournalBlocks(layout, ids)];
  for (const group of [0, ...backupGroups(layout)]) {
    const first = group * layout.geometry.blocksPerGroup;
    if (group !== 0) writes.push({ blockIndex: first, data: superblockBlock(sb, group) });
    writes.push({ blockIndex: first + 1, data: gdt });
  }
  writes.push({ blockIndex: layout.groups[0].inodeTable, data: buildInodeBlock(layout, ids, journalInode) });
  return writes;
}

/**
 * Make an empty ext4 filesystem on `device` (see the header for what is written and
 * what it costs). Throws FsError EINVAL for sizes or options out of range, EROFS for a
 * read-only device.
 */
export async function mkfs(device: BlockDevice, options: MkfsOptions = {}): Promise<MkfsResult> {
  const { sizeBytes, label } = checkOptions(device, options);
  const geometry = computeGeometry({ sizeBytes, inodeRatio: options.inodeRatio, journalBlocks: options.journalBlocks });
  const layout = planLayout(geometry);
  const uuid = options.uuid?.slice() ?? randomUuid();
  const ids: Ids = {
    uuid, hashSeed: options.hashSeed?.slice() ?? randomUuid(), fsSeed: crc32c(0xffffffff, uuid),
    nowSec: Math.floor((options.now ?? new Date()).getTime() / 1000),
  };
  let knownZero = options.assumeZeroed === true;
  if (!knownZero && options.discard === true) {
    await device.discard(0, geometry.blocksCount * BLOCK_SIZE_BYTES);
    knownZero = true; // the BlockDevice contract: discarded ranges read back as zeros
  }
  let bytesZeroed = 0;
  if (!knownZero) {
    for (const [start, end] of zeroRanges(layout)) {
      await device.zeroOut(start, end - start);
      bytesZeroed += end - start;
    }
  }
  const journalInode = journalInodeOf(layout, ids);
  // s_kbytes_written needs the byte count before the superblock exists: plan with a
  // placeholder (same sizes), count, then build the real blocks.
  const draft = metadataWrites(layout, ids, buildSuperblock(layout, ids, label, journalInode, 0), journalInode)
    .filter((w) => !(knownZero && isAllZero(w.data)));
  const plannedBytes = draft.reduce((sum, w) => sum + w.data.length, BLOCK_SIZE_BYTES) + bytesZeroed;
  const sb = buildSuperblock(layout, ids, label, journalInode, Math.ceil(plannedBytes / 1024));
  const writes = metadataWrites(layout, ids, sb, journalInode).filter((w) => !(knownZero && isAllZero(w.data)));
  let bytesWritten = await writeBlocks(device, writes);
  await device.flush();
  bytesWritten += await writeBlocks(device, [{ blockIndex: 0, data: superblockBlock(sb, 0) }]);
  await device.flush();
  assert(bytesWritten + bytesZeroed === plannedBytes, `wrote the ${plannedBytes} bytes planned`);
  return {
    blocksCount: geometry.blocksCount, blocksPerGroup: geometry.blocksPerGroup, groupCount: geometry.groupCount,
    inodesCount: geometry.inodesCount, inodesPerGroup: geometry.inodesPerGroup, reservedGdtBlocks: geometry.reservedGdtBlocks,
    rBlocksCount: geometry.rBlocksCount, freeBlocksCount: layout.freeBlocksCount, freeInodesCount: layout.freeInodesCount,
    overheadBlocks: layout.overheadBlocks, journalBlocks: geometry.journalBlocks, journalExtents: layout.journalExtents,
    uuid: ids.uuid, hashSeed: ids.hashSeed, bytesWritten, bytesZeroed,
  };
}
