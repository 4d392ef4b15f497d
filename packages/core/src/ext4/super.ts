/**
 * Opening a filesystem: the superblock, the feature policy and the group descriptor
 * table, checked once so every later lookup can trust the geometry (ext4-format.md §2–§4).
 *
 * Cost of an open: one 1 KiB superblock read, ceil(groups × descSize / bs) GDT block
 * reads (one for ≤ 64 groups at 4 KiB), one crc32c per descriptor; with a journal, one
 * inode-table block and the journal superblock block.
 */
import type { BlockDevice } from '../device/block-device.js';
import {
  SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES, Compat, Incompat, RoCompat, SbFlags,
  blockSizeBytes, checkMountable, decodeSuperblock, fsChecksumSeed, groupCount, has64bit, hasMetadataCsum,
  verifySuperblock, type FeatureVerdict, type Superblock,
} from '../format/superblock.js';
import { GroupFlags, decodeGroupDesc, verifyGroupDesc, type GdChecksumContext, type GroupDesc } from '../format/group-desc.js';
import { hashSeedWords } from '../format/dirhash.js';
import { decodeJournalSuperblock, verifyJournalSuperblock } from '../format/jbd2.js';
import { JOURNAL_INO } from '../format/inode.js';
import { corrupted, FsError } from '../vfs/errors.js';
import { BlockCache, BLOCK_CACHE_BLOCKS_MAX } from './block-cache.js';
import { readInode, INODE_CACHE_MAX, type Ext4Inode } from './inode.js';
import { mapBlock } from './extents.js';
import { MetaCache } from '../buffer/meta-cache.js';

export interface OpenOptions {
  /** Only read-only opens exist so far; `false` is refused with EROFS. */
  readOnly?: boolean;
  /** Open even though the journal holds transactions that were never replayed. */
  ignoreJournal?: boolean;
  /**
   * Accept a superblock whose checksum does not match, when it says the journal needs
   * recovery: a crash can tear the checkpoint write of block 0 between its sectors, and
   * the journal still holds the committed copy. Only for the read-write open, which
   * replays at once and then re-opens with every check (ext4/mount.ts).
   */
  tornSuperblockBeforeReplay?: boolean;
  /** Bound on cached metadata blocks. */
  cacheBlocksMax?: number;
}

/** Everything the rest of ext4/ needs to know about an open filesystem. */
export interface Ext4Super {
  readonly device: BlockDevice;
  readonly sb: Superblock;
  readonly verdict: FeatureVerdict;
  readonly blockSizeBytes: number;
  readonly blocksCount: number;
  readonly groupCount: number;
  readonly inodesCount: number;
  readonly inodesPerGroup: number;
  readonly inodeSizeBytes: number;
  /** Blocks of one group's inode table. */
  readonly inodeTableBlocks: number;
  readonly descSizeBytes: number;
  readonly groups: readonly GroupDesc[];
  readonly metadataCsum: boolean;
  /** gdt_csum or metadata_csum: only then do the UNINIT group flags mean anything. */
  readonly groupCsum: boolean;
  readonly hugeFile: boolean;
  readonly largeDir: boolean;
  readonly dirIndex: boolean;
  readonly fileType: boolean;
  readonly fsSeed: number;
  readonly hashSeed: Uint32Array;
  /** s_flags UNSIGNED_HASH: dx hash versions 0..2 become 3..5. */
  readonly hashUnsigned: boolean;
  /** Head of the orphan list (s_last_orphan); nonzero means an unclean close. */
  readonly lastOrphan: number;
  /** The journal has transactions to replay (only with ignoreJournal can this be true). */
  readonly journalNeedsRecovery: boolean;
  readonly cache: BlockCache;
  readonly inodeCache: MetaCache<number, Ext4Inode>;
}

async function readSuperblock(device: BlockDevice): Promise<Superblock> {
  // Read whole sectors around the superblock: a 4 KiB-sector device cannot read 1 KiB.
  const sector = device.sectorSizeBytes;
  const start = Math.floor(SUPERBLOCK_OFFSET_BYTES / sector) * sector;
  const end = Math.ceil((SUPERBLOCK_OFFSET_BYTES + SUPERBLOCK_SIZE_BYTES) / sector) * sector;
  if (end > device.sizeBytes) throw corrupted('device too small to hold a superblock');
  const bytes = new Uint8Array(end - start);
  await device.read(start, bytes);
  return decodeSuperblock(bytes.subarray(SUPERBLOCK_OFFSET_BYTES - start));
}

/** Groups holding a superblock backup (and so a GDT copy) under the sb's feature set. */
export function groupHasSuper(sb: Superblock, group: number): boolean {
  if (group === 0) return true;
  if ((sb.featureCompat & Compat.SPARSE_SUPER2) !== 0) return group === sb.backupBgs0 || group === sb.backupBgs1;
  if (group <= 1 || (sb.featureRoCompat & RoCompat.SPARSE_SUPER) === 0) return true;
  if ((group & 1) === 0) return false;
  for (const base of [3, 5, 7]) {
    let p = base;
    while (p < group) p *= base;
    if (p === group) return true;
  }
  return false;
}

/**
 * The block holding GDT block `index`: contiguous after the primary superblock, except
 * meta_bg descriptor blocks past s_first_meta_bg, which sit at the start of the first
 * group of their meta group (after that group's superblock copy, if any).
 */
export function gdtBlockLocation(sb: Superblock, index: number, descPerBlock: number): number {
  const metaBg = (sb.featureIncompat & Incompat.META_BG) !== 0;
  if (!metaBg || index < sb.firstMetaBg) return sb.firstDataBlock + 1 + index;
  const group = index * descPerBlock;
  return sb.firstDataBlock + group * sb.blocksPerGroup + (groupHasSuper(sb, group) ? 1 : 0);
}

interface Geometry {
  bs: number;
  groups: number;
  descSize: number;
  gdtBlocks: number;
  inodeTableBlocks: number;
  /** End of the primary sb + GDT + reserved GDT area, which no group metadata may overlap. */
  primaryMetaEnd: number;
}

function geometryOf(sb: Superblock, device: BlockDevice): Geometry {
  const bs = blockSizeBytes(sb);
  if (bs % device.sectorSizeBytes !== 0) {
    throw new FsError('EINVAL', { syscall: 'mount', detail: `block size ${bs} is smaller than the ${device.sectorSizeBytes}-byte sector` });
  }
  const groups = groupCount(sb);
  const descSize = has64bit(sb) ? sb.descSize : 32;
  const gdtBlocks = Math.ceil((groups * descSize) / bs);
  const metaBg = (sb.featureIncompat & Incompat.META_BG) !== 0;
  const contiguous = metaBg ? Math.min(gdtBlocks, sb.firstMetaBg) : gdtBlocks;
  const reserved = (sb.featureCompat & Compat.RESIZE_INODE) !== 0 ? sb.reservedGdtBlocks : 0;
  if (reserved > bs / 4) throw corrupted(`reserved GDT blocks ${reserved} exceed ${bs / 4}`);
  const primaryMetaEnd = sb.firstDataBlock + 1 + contiguous + reserved;
  if (primaryMetaEnd > sb.blocksCount) throw corrupted('group descriptor table runs past the filesystem');
  const inodeSize = sb.revLevel === 0 ? 128 : sb.inodeSize;
  return { bs, groups, descSize, gdtBlocks, inodeTableBlocks: Math.ceil((sb.inodesPerGroup * inodeSize) / bs), primaryMetaEnd };
}

async function readGdt(device: BlockDevice, sb: Superblock, g: Geometry): Promise<Uint8Array> {
  const gdt = new Uint8Array(g.gdtBlocks * g.bs);
  const descPerBlock = g.bs / g.descSize;
  for (let i = 0; i < g.gdtBlocks; i++) {
    const block = gdtBlockLocation(sb, i, descPerBlock);
    if (block >= sb.blocksCount) throw corrupted(`GDT block ${i} at ${block} lies past the filesystem`);
    await device.read(block * g.bs, gdt.subarray(i * g.bs, (i + 1) * g.bs));
  }
  return gdt;
}

/** One descriptor's checks: checksum, counts, and where its bitmaps and table lie. */
function checkGroupDesc(sb: Superblock, g: Geometry, gdt: Uint8Array, group: number, ctx: GdChecksumContext): GroupDesc {
  verifyGroupDesc(gdt, group, ctx);
  const gd = decodeGroupDesc(gdt, group, g.descSize);
  const inside = (block: number, count: number, what: string): void => {
    if (block < g.primaryMetaEnd || block + count > sb.blocksCount) {
      throw corrupted(`group ${group} ${what} at block ${block} (+${count}) is outside [${g.primaryMetaEnd}, ${sb.blocksCount})`);
    }
  };
  inside(gd.blockBitmap, 1, 'block bitmap');
  inside(gd.inodeBitmap, 1, 'inode bitmap');
  inside(gd.inodeTable, g.inodeTableBlocks, 'inode table');
  if (gd.freeInodesCount > sb.inodesPerGroup) throw corrupted(`group ${group} free inode count ${gd.freeInodesCount} > ${sb.inodesPerGroup}`);
  if (gd.itableUnused > sb.inodesPerGroup) throw corrupted(`group ${group} itable_unused ${gd.itableUnused} > ${sb.inodesPerGroup}`);
  return gd;
}

/** Open and check the superblock and group descriptors; no inode is read yet. */
async function openGeometry(device: BlockDevice, options: OpenOptions): Promise<{ sb: Superblock; g: Geometry; groups: GroupDesc[]; verdict: FeatureVerdict }> {
  const sb = await readSuperblock(device);
  const torn = options.tornSuperblockBeforeReplay === true && (sb.featureIncompat & Incompat.RECOVER) !== 0;
  verifySuperblock(sb, device.sizeBytes, { skipChecksum: torn });
  const verdict = checkMountable(sb, options.readOnly === false);
  if (options.readOnly === false) throw new FsError('EROFS', { syscall: 'mount', detail: 'ext4ts mounts read-only for now' });
  const g = geometryOf(sb, device);
  const gdt = await readGdt(device, sb, g);
  const metadataCsum = hasMetadataCsum(sb);
  const ctx: GdChecksumContext = {
    metadataCsum,
    gdtCsum: (sb.featureRoCompat & RoCompat.GDT_CSUM) !== 0,
    fsSeed: fsChecksumSeed(sb),
    uuid: sb.uuid,
    descSize: g.descSize,
  };
  const groups: GroupDesc[] = [];
  for (let group = 0; group < g.groups; group++) groups.push(checkGroupDesc(sb, g, gdt, group, ctx));
  return { sb, g, groups, verdict };
}

/**
 * Open a filesystem read-only: superblock, features, descriptors, and the journal's
 * state. Throws FsError: EUCLEAN/EBADMSG for a corrupt image, ENOTSUP for features
 * ext4ts cannot read, EROFS for a read-write request, EBUSY when the journal needs
 * recovery (unless `ignoreJournal`).
 */
export async function openSuper(device: BlockDevice, options: OpenOptions = {}): Promise<Ext4Super> {
  const { sb, g, groups, verdict } = await openGeometry(device, options);
  const ext4: Ext4Super = {
    device, sb, verdict, groups,
    blockSizeBytes: g.bs,
    blocksCount: sb.blocksCount,
    groupCount: g.groups,
    inodesCount: sb.inodesCount,
    inodesPerGroup: sb.inodesPerGroup,
    inodeSizeBytes: sb.revLevel === 0 ? 128 : sb.inodeSize,
    inodeTableBlocks: g.inodeTableBlocks,
    descSizeBytes: g.descSize,
    metadataCsum: hasMetadataCsum(sb),
    groupCsum: hasMetadataCsum(sb) || (sb.featureRoCompat & RoCompat.GDT_CSUM) !== 0,
    hugeFile: (sb.featureRoCompat & RoCompat.HUGE_FILE) !== 0,
    largeDir: (sb.featureIncompat & Incompat.LARGEDIR) !== 0,
    dirIndex: (sb.featureCompat & Compat.DIR_INDEX) !== 0,
    fileType: (sb.featureIncompat & Incompat.FILETYPE) !== 0,
    fsSeed: fsChecksumSeed(sb),
    hashSeed: hashSeedWords(sb.hashSeed),
    hashUnsigned: (sb.flags & SbFlags.UNSIGNED_HASH) !== 0,
    lastOrphan: sb.lastOrphan,
    journalNeedsRecovery: false,
    cache: new BlockCache(device, g.bs, sb.firstDataBlock + 1, sb.blocksCount, options.cacheBlocksMax ?? BLOCK_CACHE_BLOCKS_MAX),
    inodeCache: new MetaCache(INODE_CACHE_MAX),
  };
  const needsRecovery = await journalNeedsRecovery(ext4);
  if (needsRecovery && options.ignoreJournal !== true) {
    throw new FsError('EBUSY', { syscall: 'mount', detail: 'journal needs recovery (replay it with e2fsck or the kernel, or open with ignoreJournal)' });
  }
  return { ...ext4, journalNeedsRecovery: needsRecovery };
}

/**
 * Whether the journal holds unreplayed transactions: incompat RECOVER on the fs, or a
 * nonzero s_start in an internal journal's superblock.
 */
async function journalNeedsRecovery(ext4: Ext4Super): Promise<boolean> {
  const { sb } = ext4;
  if ((sb.featureIncompat & Incompat.RECOVER) !== 0) return true;
  if ((sb.featureCompat & Compat.HAS_JOURNAL) === 0) return false;
  if ((sb.featureIncompat & Incompat.JOURNAL_DEV) !== 0 || sb.journalInum === 0) return false;
  if (sb.journalInum !== JOURNAL_INO && (sb.journalInum < sb.firstIno || sb.journalInum > sb.inodesCount)) {
    throw corrupted(`journal inode ${sb.journalInum} invalid`);
  }
  const inode = await readInode(ext4, sb.journalInum);
  const journalBlocks = Math.floor(inode.size / ext4.blockSizeBytes);
  const first = await mapBlock(ext4, inode, 0);
  if (first.kind !== 'mapped') throw corrupted('journal block 0 is not mapped');
  const block = await ext4.cache.read(first.pblk, 'journal superblock');
  const jsb = decodeJournalSuperblock(block);
  verifyJournalSuperblock(jsb, ext4.blockSizeBytes, journalBlocks);
  // The journal superblock is rewritten by replay; keep no stale copy.
  ext4.cache.invalidate(first.pblk);
  return jsb.start !== 0;
}

/** Which group holds inode `ino`, and its index there. */
export function inodeLocation(ext4: Ext4Super, ino: number): { group: number; index: number } {
  return { group: Math.floor((ino - 1) / ext4.inodesPerGroup), index: (ino - 1) % ext4.inodesPerGroup };
}

/** A group's flags, or 0 when they carry no meaning (no group checksum feature). */
export function groupFlags(ext4: Ext4Super, group: number): number {
  return ext4.groupCsum ? ext4.groups[group].flags : 0;
}

export { GroupFlags };
