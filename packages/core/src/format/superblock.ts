/**
 * The ext4 superblock: 1024 bytes at byte 1024 of the device (ext4-format.md §2).
 * decode/encode/verify plus the feature bits and the open policy (which features
 * ext4ts can mount read-write, read-only, or not at all).
 */
import { crc32c } from './crc32c.js';
import { defineStruct, type StructValue } from './struct.js';
import { corrupted, badChecksum, FsError } from '../vfs/errors.js';

export const SUPERBLOCK_OFFSET_BYTES = 1024;
export const SUPERBLOCK_SIZE_BYTES = 1024;
export const EXT4_MAGIC = 0xef53;
export const CHECKSUM_OFFSET = 0x3fc;

export const Compat = {
  DIR_PREALLOC: 0x1, IMAGIC_INODES: 0x2, HAS_JOURNAL: 0x4, EXT_ATTR: 0x8, RESIZE_INODE: 0x10,
  DIR_INDEX: 0x20, LAZY_BG: 0x40, SPARSE_SUPER2: 0x200, FAST_COMMIT: 0x400, STABLE_INODES: 0x800,
  ORPHAN_FILE: 0x1000,
} as const;
export const Incompat = {
  COMPRESSION: 0x1, FILETYPE: 0x2, RECOVER: 0x4, JOURNAL_DEV: 0x8, META_BG: 0x10, EXTENTS: 0x40,
  BIT64: 0x80, MMP: 0x100, FLEX_BG: 0x200, EA_INODE: 0x400, DIRDATA: 0x1000, CSUM_SEED: 0x2000,
  LARGEDIR: 0x4000, INLINE_DATA: 0x8000, ENCRYPT: 0x10000, CASEFOLD: 0x20000,
} as const;
export const RoCompat = {
  SPARSE_SUPER: 0x1, LARGE_FILE: 0x2, BTREE_DIR: 0x4, HUGE_FILE: 0x8, GDT_CSUM: 0x10, DIR_NLINK: 0x20,
  EXTRA_ISIZE: 0x40, HAS_SNAPSHOT: 0x80, QUOTA: 0x100, BIGALLOC: 0x200, METADATA_CSUM: 0x400,
  REPLICA: 0x800, READONLY: 0x1000, PROJECT: 0x2000, SHARED_BLOCKS: 0x4000, VERITY: 0x8000,
  ORPHAN_PRESENT: 0x10000,
} as const;

export const FEATURE_NAMES: { compat: Record<number, string>; incompat: Record<number, string>; roCompat: Record<number, string> } = {
  compat: { 0x1: 'dir_prealloc', 0x2: 'imagic_inodes', 0x4: 'has_journal', 0x8: 'ext_attr', 0x10: 'resize_inode', 0x20: 'dir_index', 0x40: 'lazy_bg', 0x200: 'sparse_super2', 0x400: 'fast_commit', 0x800: 'stable_inodes', 0x1000: 'orphan_file' },
  incompat: { 0x1: 'compression', 0x2: 'filetype', 0x4: 'needs_recovery', 0x8: 'journal_dev', 0x10: 'meta_bg', 0x40: 'extent', 0x80: '64bit', 0x100: 'mmp', 0x200: 'flex_bg', 0x400: 'ea_inode', 0x1000: 'dirdata', 0x2000: 'metadata_csum_seed', 0x4000: 'large_dir', 0x8000: 'inline_data', 0x10000: 'encrypt', 0x20000: 'casefold' },
  roCompat: { 0x1: 'sparse_super', 0x2: 'large_file', 0x4: 'btree_dir', 0x8: 'huge_file', 0x10: 'uninit_bg', 0x20: 'dir_nlink', 0x40: 'extra_isize', 0x80: 'snapshot', 0x100: 'quota', 0x200: 'bigalloc', 0x400: 'metadata_csum', 0x800: 'replica', 0x1000: 'read-only', 0x2000: 'project', 0x4000: 'shared_blocks', 0x8000: 'verity', 0x10000: 'orphan_present' },
};

/** s_state bits. */
export const State = { VALID_FS: 1, ERROR_FS: 2, ORPHAN_FS: 4 } as const;
/** s_flags bits. */
export const SbFlags = { SIGNED_HASH: 0x1, UNSIGNED_HASH: 0x2, TEST_FS: 0x4 } as const;

export const superblockStruct = defineStruct('superblock', SUPERBLOCK_SIZE_BYTES, [
  { name: 'inodesCount', offset: 0x00, kind: 'u32' },
  { name: 'blocksCount', lo: [0x04, 'u32'], hi: [0x150, 'u32'] },
  { name: 'rBlocksCount', lo: [0x08, 'u32'], hi: [0x154, 'u32'] },
  { name: 'freeBlocksCount', lo: [0x0c, 'u32'], hi: [0x158, 'u32'] },
  { name: 'freeInodesCount', offset: 0x10, kind: 'u32' },
  { name: 'firstDataBlock', offset: 0x14, kind: 'u32' },
  { name: 'logBlockSize', offset: 0x18, kind: 'u32' },
  { name: 'logClusterSize', offset: 0x1c, kind: 'u32' },
  { name: 'blocksPerGroup', offset: 0x20, kind: 'u32' },
  { name: 'clustersPerGroup', offset: 0x24, kind: 'u32' },
  { name: 'inodesPerGroup', offset: 0x28, kind: 'u32' },
  { name: 'mtime', lo: [0x2c, 'u32'], hi: [0x275, 'u8'] },
  { name: 'wtime', lo: [0x30, 'u32'], hi: [0x274, 'u8'] },
  { name: 'mntCount', offset: 0x34, kind: 'u16' },
  { name: 'maxMntCount', offset: 0x36, kind: 'u16' },
  { name: 'magic', offset: 0x38, kind: 'u16' },
  { name: 'state', offset: 0x3a, kind: 'u16' },
  { name: 'errors', offset: 0x3c, kind: 'u16' },
  { name: 'minorRevLevel', offset: 0x3e, kind: 'u16' },
  { name: 'lastcheck', lo: [0x40, 'u32'], hi: [0x277, 'u8'] },
  { name: 'checkinterval', offset: 0x44, kind: 'u32' },
  { name: 'creatorOs', offset: 0x48, kind: 'u32' },
  { name: 'revLevel', offset: 0x4c, kind: 'u32' },
  { name: 'defResuid', offset: 0x50, kind: 'u16' },
  { name: 'defResgid', offset: 0x52, kind: 'u16' },
  { name: 'firstIno', offset: 0x54, kind: 'u32' },
  { name: 'inodeSize', offset: 0x58, kind: 'u16' },
  { name: 'blockGroupNr', offset: 0x5a, kind: 'u16' },
  { name: 'featureCompat', offset: 0x5c, kind: 'u32' },
  { name: 'featureIncompat', offset: 0x60, kind: 'u32' },
  { name: 'featureRoCompat', offset: 0x64, kind: 'u32' },
  { name: 'uuid', offset: 0x68, bytes: 16 },
  { name: 'volumeName', offset: 0x78, bytes: 16 },
  { name: 'lastMounted', offset: 0x88, bytes: 64 },
  { name: 'algorithmUsageBitmap', offset: 0xc8, kind: 'u32' },
  { name: 'preallocBlocks', offset: 0xcc, kind: 'u8' },
  { name: 'preallocDirBlocks', offset: 0xcd, kind: 'u8' },
  { name: 'reservedGdtBlocks', offset: 0xce, kind: 'u16' },
  { name: 'journalUuid', offset: 0xd0, bytes: 16 },
  { name: 'journalInum', offset: 0xe0, kind: 'u32' },
  { name: 'journalDev', offset: 0xe4, kind: 'u32' },
  { name: 'lastOrphan', offset: 0xe8, kind: 'u32' },
  { name: 'hashSeed', offset: 0xec, bytes: 16 },
  { name: 'defHashVersion', offset: 0xfc, kind: 'u8' },
  { name: 'jnlBackupType', offset: 0xfd, kind: 'u8' },
  { name: 'descSize', offset: 0xfe, kind: 'u16' },
  { name: 'defaultMountOpts', offset: 0x100, kind: 'u32' },
  { name: 'firstMetaBg', offset: 0x104, kind: 'u32' },
  { name: 'mkfsTime', lo: [0x108, 'u32'], hi: [0x276, 'u8'] },
  { name: 'jnlBlocks', offset: 0x10c, bytes: 68 },
  { name: 'minExtraIsize', offset: 0x15c, kind: 'u16' },
  { name: 'wantExtraIsize', offset: 0x15e, kind: 'u16' },
  { name: 'flags', offset: 0x160, kind: 'u32' },
  { name: 'raidStride', offset: 0x164, kind: 'u16' },
  { name: 'mmpUpdateInterval', offset: 0x166, kind: 'u16' },
  { name: 'mmpBlock', offset: 0x168, kind: 'u64' },
  { name: 'raidStripeWidth', offset: 0x170, kind: 'u32' },
  { name: 'logGroupsPerFlex', offset: 0x174, kind: 'u8' },
  { name: 'checksumType', offset: 0x175, kind: 'u8' },
  { name: 'kbytesWritten', offset: 0x178, kind: 'u64' },
  { name: 'errorCount', offset: 0x194, kind: 'u32' },
  { name: 'mountOpts', offset: 0x200, bytes: 64 },
  { name: 'usrQuotaInum', offset: 0x240, kind: 'u32' },
  { name: 'grpQuotaInum', offset: 0x244, kind: 'u32' },
  { name: 'overheadClusters', offset: 0x248, kind: 'u32' },
  { name: 'backupBgs0', offset: 0x24c, kind: 'u32' },
  { name: 'backupBgs1', offset: 0x250, kind: 'u32' },
  { name: 'lpfIno', offset: 0x268, kind: 'u32' },
  { name: 'prjQuotaInum', offset: 0x26c, kind: 'u32' },
  { name: 'checksumSeed', offset: 0x270, kind: 'u32' },
  { name: 'encoding', offset: 0x27c, kind: 'u16' },
  { name: 'encodingFlags', offset: 0x27e, kind: 'u16' },
  { name: 'orphanFileInum', offset: 0x280, kind: 'u32' },
  { name: 'checksum', offset: CHECKSUM_OFFSET, kind: 'u32' },
] as const, { rawKey: 'raw' });

export type SuperblockFields = StructValue<typeof superblockStruct.fields>;
/** A decoded superblock; `raw` keeps the exact bytes read so unknown fields survive encode. */
export interface Superblock extends SuperblockFields { raw: Uint8Array }

export function has64bit(sb: Pick<SuperblockFields, 'featureIncompat'>): boolean {
  return (sb.featureIncompat & Incompat.BIT64) !== 0;
}
export function hasMetadataCsum(sb: Pick<SuperblockFields, 'featureRoCompat'>): boolean {
  return (sb.featureRoCompat & RoCompat.METADATA_CSUM) !== 0;
}

/** Decode a 1024-byte superblock. Checks magic only; call verifySuperblock for the rest. */
export function decodeSuperblock(bytes: Uint8Array): Superblock {
  if (bytes.length < SUPERBLOCK_SIZE_BYTES) throw corrupted('superblock buffer too short');
  const raw = bytes.slice(0, SUPERBLOCK_SIZE_BYTES);
  const sb = superblockStruct.decode(raw) as Superblock;
  sb.raw = raw;
  if (sb.magic !== EXT4_MAGIC) throw corrupted(`bad superblock magic 0x${sb.magic.toString(16)}`);
  if (!has64bit(sb)) {
    // The _hi halves mean nothing without 64bit; they may hold stale bytes.
    sb.blocksCount %= 2 ** 32;
    sb.rBlocksCount %= 2 ** 32;
    sb.freeBlocksCount %= 2 ** 32;
  }
  return sb;
}

/** Encode over the raw bytes the superblock was decoded from, and set its checksum. */
export function encodeSuperblock(sb: Superblock): Uint8Array {
  const out = sb.raw.slice();
  superblockStruct.encodeInto(sb, out);
  if (hasMetadataCsum(sb)) new DataView(out.buffer).setUint32(CHECKSUM_OFFSET, superblockChecksum(out), true);
  return out;
}

/** The superblock checksum: crc32c(~0, bytes[0, 0x3FC)) — seeded with ~0, not the fs seed. */
export function superblockChecksum(raw: Uint8Array): number {
  return crc32c(0xffffffff, raw, 0, CHECKSUM_OFFSET);
}

export function blockSizeBytes(sb: Pick<SuperblockFields, 'logBlockSize'>): number {
  return 1024 * 2 ** sb.logBlockSize;
}

export function groupCount(sb: Pick<SuperblockFields, 'blocksCount' | 'firstDataBlock' | 'blocksPerGroup'>): number {
  return Math.ceil((sb.blocksCount - sb.firstDataBlock) / sb.blocksPerGroup);
}

/** The metadata checksum seed (ext4-format.md §4). */
export function fsChecksumSeed(sb: Pick<SuperblockFields, 'featureIncompat' | 'checksumSeed' | 'uuid'>): number {
  if ((sb.featureIncompat & Incompat.CSUM_SEED) !== 0) return sb.checksumSeed >>> 0;
  return crc32c(0xffffffff, sb.uuid);
}

/**
 * Geometry and checksum checks on a decoded superblock. Every value later used as an
 * index, a divisor or a size is bounded here, so nothing downstream can loop or
 * overflow on a corrupt image. Returns nothing; throws EUCLEAN / EBADMSG.
 */
export function verifySuperblock(sb: Superblock, deviceSizeBytes: number, options: { skipChecksum?: boolean } = {}): void {
  if (hasMetadataCsum(sb)) {
    if (sb.checksumType !== 1) throw corrupted(`unknown superblock checksum type ${sb.checksumType}`);
    if (options.skipChecksum !== true && superblockChecksum(sb.raw) !== sb.checksum) throw badChecksum('superblock checksum mismatch');
  }
  if (sb.logBlockSize > 6) throw corrupted(`block size 2^(10+${sb.logBlockSize}) out of range`);
  const bs = blockSizeBytes(sb);
  if (sb.revLevel > 1) throw corrupted(`unknown revision level ${sb.revLevel}`);
  if (sb.logClusterSize !== sb.logBlockSize && (sb.featureRoCompat & RoCompat.BIGALLOC) === 0) {
    throw corrupted('cluster size differs from block size without bigalloc');
  }
  if (sb.blocksPerGroup === 0 || sb.blocksPerGroup > bs * 8 || sb.blocksPerGroup % 8 !== 0) {
    throw corrupted(`blocks per group ${sb.blocksPerGroup} out of range`);
  }
  if (sb.inodesPerGroup === 0 || sb.inodesPerGroup > bs * 8 || sb.inodesPerGroup % 8 !== 0) {
    throw corrupted(`inodes per group ${sb.inodesPerGroup} out of range`);
  }
  const inodeSize = sb.revLevel === 0 ? 128 : sb.inodeSize;
  if (inodeSize < 128 || inodeSize > bs || (inodeSize & (inodeSize - 1)) !== 0) {
    throw corrupted(`inode size ${inodeSize} invalid`);
  }
  if (sb.firstDataBlock !== (bs === 1024 ? 1 : 0)) throw corrupted(`first data block ${sb.firstDataBlock} invalid`);
  if (sb.blocksCount <= sb.firstDataBlock) throw corrupted('block count too small');
  if (sb.blocksCount * bs > deviceSizeBytes) {
    throw corrupted(`filesystem of ${sb.blocksCount * bs} bytes is larger than the ${deviceSizeBytes}-byte device`);
  }
  const groups = groupCount(sb);
  if (sb.inodesCount !== groups * sb.inodesPerGroup) {
    throw corrupted(`inode count ${sb.inodesCount} != ${groups} groups × ${sb.inodesPerGroup}`);
  }
  if (has64bit(sb) && (sb.descSize < 64 || sb.descSize > 1024 || (sb.descSize & (sb.descSize - 1)) !== 0)) {
    throw corrupted(`group descriptor size ${sb.descSize} invalid`);
  }
  if (sb.revLevel >= 1 && (sb.firstIno < 11 || sb.firstIno >= sb.inodesCount)) {
    throw corrupted(`first inode ${sb.firstIno} invalid`);
  }
  if (sb.logGroupsPerFlex > 31) throw corrupted(`flex group size 2^${sb.logGroupsPerFlex} invalid`);
}

/** What ext4ts can do with an image, by its feature bits (ext4-format.md §2 refusal policy). */
export interface FeatureVerdict {
  /** Mountable at all. */
  mountable: boolean;
  /** Mountable read-write. */
  writable: boolean;
  /** Why not, naming the features. */
  reasons: string[];
}

const INCOMPAT_SUPPORTED = Incompat.FILETYPE | Incompat.RECOVER | Incompat.EXTENTS | Incompat.BIT64 | Incompat.FLEX_BG | Incompat.CSUM_SEED;
const INCOMPAT_READ_ONLY = Incompat.META_BG | Incompat.LARGEDIR;
const RO_COMPAT_SUPPORTED = RoCompat.SPARSE_SUPER | RoCompat.LARGE_FILE | RoCompat.HUGE_FILE | RoCompat.DIR_NLINK | RoCompat.EXTRA_ISIZE | RoCompat.METADATA_CSUM | RoCompat.GDT_CSUM;
const COMPAT_WRITABLE = Compat.HAS_JOURNAL | Compat.EXT_ATTR | Compat.RESIZE_INODE | Compat.DIR_INDEX;

function namesOf(bits: number, table: Record<number, string>): string[] {
  const names: string[] = [];
  for (let b = 0; b < 32; b++) {
    const bit = 2 ** b;
    if ((bits & bit) !== 0) names.push(table[bit] ?? `unknown(0x${bit.toString(16)})`);
  }
  return names;
}

export function featureVerdict(sb: Pick<SuperblockFields, 'featureCompat' | 'featureIncompat' | 'featureRoCompat'>): FeatureVerdict {
  const reasons: string[] = [];
  const incompatUnknown = (sb.featureIncompat & ~(INCOMPAT_SUPPORTED | INCOMPAT_READ_ONLY)) >>> 0;
  if (incompatUnknown !== 0) {
    reasons.push(`unsupported incompat features: ${namesOf(incompatUnknown, FEATURE_NAMES.incompat).join(', ')}`);
    return { mountable: false, writable: false, reasons };
  }
  let writable = true;
  const incompatRo = sb.featureIncompat & INCOMPAT_READ_ONLY;
  if (incompatRo !== 0) { writable = false; reasons.push(`read-only for: ${namesOf(incompatRo, FEATURE_NAMES.incompat).join(', ')}`); }
  const roUnknown = (sb.featureRoCompat & ~RO_COMPAT_SUPPORTED) >>> 0;
  if (roUnknown !== 0) { writable = false; reasons.push(`read-only for ro_compat features: ${namesOf(roUnknown, FEATURE_NAMES.roCompat).join(', ')}`); }
  if ((sb.featureRoCompat & RoCompat.METADATA_CSUM) !== 0 && (sb.featureRoCompat & RoCompat.GDT_CSUM) !== 0) {
    return { mountable: false, writable: false, reasons: [...reasons, 'metadata_csum and uninit_bg are both set'] };
  }
  const compatOther = (sb.featureCompat & ~COMPAT_WRITABLE) >>> 0;
  if (compatOther !== 0) { writable = false; reasons.push(`read-only for compat features: ${namesOf(compatOther, FEATURE_NAMES.compat).join(', ')}`); }
  if ((sb.featureIncompat & Incompat.EXTENTS) === 0) {
    writable = false;
    reasons.push('read-only: no extent feature (block-mapped files are read but not written)');
  }
  return { mountable: true, writable, reasons };
}

/** Throw the FsError a mount should fail with, if any. */
export function checkMountable(sb: Superblock, wantWrite: boolean): FeatureVerdict {
  const v = featureVerdict(sb);
  if (!v.mountable) throw new FsError('ENOTSUP', { syscall: 'mount', detail: v.reasons.join('; ') });
  if (wantWrite && !v.writable) throw new FsError('EROFS', { syscall: 'mount', detail: v.reasons.join('; ') });
  return v;
}

export function featureNames(sb: Pick<SuperblockFields, 'featureCompat' | 'featureIncompat' | 'featureRoCompat'>): string[] {
  return [
    ...namesOf(sb.featureCompat, FEATURE_NAMES.compat),
    ...namesOf(sb.featureIncompat, FEATURE_NAMES.incompat),
    ...namesOf(sb.featureRoCompat, FEATURE_NAMES.roCompat),
  ];
}
