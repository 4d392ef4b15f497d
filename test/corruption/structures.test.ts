/**
 * Targeted corruption: one damaged field per case, in every on-disk structure the read path
 * trusts (ARCHITECTURE.md "Errors": metadata read from disk is untrusted). Each case damages a
 * private copy of image A (4 KiB, extents) or B (1 KiB, block maps, two-level htree), mounts
 * it through a guard device and uses the damaged structure; the outcome must be
 *
 *   corrupt  the promise rejects with FsError EUCLEAN or EBADMSG
 *   ok       the operation succeeds with the right data: the damage is legitimately harmless
 *            (unused bytes, fields the read path does not need), and the case says why
 *   code X   another FsError the damage legitimately means (ENOTSUP for an unknown feature)
 *
 * and never another exception, a hang, a write, or a read outside the filesystem or device.
 * Most cases re-seal the damaged structure's checksum, so the structural checks behind the
 * checksum are what is tested; the "checksum" cases damage a byte without re-sealing.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { format, type Ext4Filesystem } from '@ext4ts/core';
import { corruptionImages, type CorruptionImage } from './images.js';
import {
  GuardError, GuardedDevice, blockOf, damaged, describeOutcome, deviceOf, readLimitBytes, expectedWalk, gdtOf, iBlockOf, inodeSlotOf, le, runOn, sealDirLeaf, sealDxBlock,
  sealExtentBlock, sealGroupDesc, sealInode, sealSuperblock, superblockOf, walkTree,
} from './harness.js';

let images: { A: CorruptionImage; B: CorruptionImage };
beforeAll(async () => { images = await corruptionImages(); });

type Expect = 'corrupt' | 'ok' | { code: string };
type Op = (fs: Ext4Filesystem, image: CorruptionImage) => Promise<unknown>;

interface Case {
  name: string;
  image: 'A' | 'B';
  corrupt: (bytes: Uint8Array, image: CorruptionImage) => void;
  op: Op;
  expect: Expect;
  /** For 'ok': check the value (default for walk: the whole tree as built). */
  check?: (value: unknown, image: CorruptionImage) => void;
}

const CORRUPT_CODES = ['EUCLEAN', 'EBADMSG'];

// ---------------------------------------------------------------------------------
// Operations

const mountOnly: Op = async () => undefined;
const walk: Op = (fs) => walkTree(fs);
const read = (p: string): Op => (fs) => fs.readFile(p);
const readdir = (p: string): Op => (fs) => fs.readdir(p, { withFileTypes: true });
const lstat = (p: string): Op => (fs) => fs.lstat(p);
const readlink = (p: string): Op => (fs) => fs.readlink(p);
const stat = (p: string): Op => (fs) => fs.stat(p);

const hashedName = (i: number): string => `entry-${String(i).padStart(4, '0')}-${'n'.repeat(20)}`;
const bigName = (i: number): string => `${String(i).padStart(5, '0')}${'x'.repeat(245)}`;
/** Look up names spread over the whole hash space of a directory (every leaf is likely hit). */
const lookupMany = (dir: string, names: string[]): Op => async (fs) => {
  for (const n of names) await fs.lstat(`${dir}/${n}`);
  return names.length;
};
const lookupHashed = lookupMany('/hashed', Array.from({ length: 40 }, (_, i) => hashedName(i * 10)));
const lookupBig = lookupMany('/big', Array.from({ length: 50 }, (_, i) => bigName(i * 20)));

// ---------------------------------------------------------------------------------
// Field access

const ino = (image: CorruptionImage, p: string): number => {
  const n = image.map.ino.get(p);
  if (n === undefined) throw new Error(`no inode for ${p}`);
  return n;
};
const slot = (bytes: Uint8Array, image: CorruptionImage, p: string): DataView => le(inodeSlotOf(bytes, image, ino(image, p)));
const iblock = (bytes: Uint8Array, image: CorruptionImage, p: string): DataView => le(iBlockOf(inodeSlotOf(bytes, image, ino(image, p))));
const sb = (bytes: Uint8Array): DataView => le(superblockOf(bytes));
const dirBlock = (image: CorruptionImage, p: string, lblk: number): number => {
  const b = image.map.dirBlocks.get(p)?.[lblk];
  if (b === undefined) throw new Error(`no block ${lblk} for ${p}`);
  return b;
};
const etb = (image: CorruptionImage, p: string): number => {
  const b = image.map.extentTreeBlocks.get(p)?.[0];
  if (b === undefined) throw new Error(`no extent tree block for ${p}`);
  return b;
};
const indirect = (image: CorruptionImage, p: string, kind: string): number => {
  const b = image.map.indirectBlocks.get(p)?.find((x) => x.kind === kind)?.block;
  if (b === undefined) throw new Error(`no ${kind} block for ${p}`);
  return b;
};

/** Edit the superblock with `edit`, then re-seal its checksum. */
const sbEdit = (edit: (v: DataView, image: CorruptionImage) => void) => (bytes: Uint8Array, image: CorruptionImage): void => {
  edit(sb(bytes), image);
  sealSuperblock(bytes);
};
/** Edit descriptor `group`, then re-seal it. */
const gdEdit = (group: number, edit: (v: DataView, image: CorruptionImage) => void) => (bytes: Uint8Array, image: CorruptionImage): void => {
  const gdt = gdtOf(bytes, image);
  edit(le(gdt.subarray(group * image.descSizeBytes, (group + 1) * image.descSizeBytes)), image);
  sealGroupDesc(bytes, image, group);
};
/** Edit the inode of path `p`, then re-seal it. */
const inodeEdit = (p: string, edit: (v: DataView, ib: DataView, image: CorruptionImage, bytes: Uint8Array) => void) => (bytes: Uint8Array, image: CorruptionImage): void => {
  edit(slot(bytes, image, p), iblock(bytes, image, p), image, bytes);
  sealInode(bytes, image, ino(image, p));
};
/** Edit the extent tree block of `p`, then re-seal its tail. */
const etbEdit = (p: string, edit: (v: DataView) => void, seal = true) => (bytes: Uint8Array, image: CorruptionImage): void => {
  edit(le(blockOf(bytes, image, etb(image, p))));
  if (seal) sealExtentBlock(bytes, image, etb(image, p), ino(image, p));
};
/** Edit block `lblk` of directory `p` (a linear leaf), then re-seal its tail. */
const leafEdit = (p: string, lblk: number, edit: (v: DataView, block: Uint8Array) => void, seal = true) => (bytes: Uint8Array, image: CorruptionImage): void => {
  const pblk = dirBlock(image, p, lblk);
  const block = blockOf(bytes, image, pblk);
  edit(le(block), block);
  if (seal) sealDirLeaf(bytes, image, pblk, ino(image, p));
};
/** Edit a dx block (root: countOffset 0x20; node: 8) of `p`, then re-seal its dx tail. */
const dxEdit = (p: string, lblk: (image: CorruptionImage, bytes: Uint8Array) => number, countOffset: number, edit: (v: DataView) => void, seal = true) =>
  (bytes: Uint8Array, image: CorruptionImage): void => {
    const pblk = dirBlock(image, p, lblk(image, bytes));
    edit(le(blockOf(bytes, image, pblk)));
    if (seal) sealDxBlock(bytes, image, pblk, ino(image, p), countOffset);
  };
const rootBlock = (): number => 0;
/** The first dx_node of /big: the block the root's entry 0 points at. */
const firstDxNode = (image: CorruptionImage, bytes: Uint8Array): number => le(blockOf(bytes, image, dirBlock(image, '/big', 0))).getUint32(0x24, true);

/** Offsets of the live entries of a linear leaf (after "." and ".."). */
function entryOffsets(block: Uint8Array, withTail: boolean): number[] {
  return format.parseDirBlock(block, withTail).map((e) => e.offset);
}

const EXT_ENTRY = (i: number): number => 12 + 12 * i;

// ---------------------------------------------------------------------------------
// The cases

const superblockCases: Case[] = [
  { name: 'checksum: a byte of s_volume_name flipped, not re-sealed', image: 'A', corrupt: (b) => { b[1024 + 0x78] ^= 0x5a; }, op: mountOnly, expect: 'corrupt' },
  { name: 'magic 0xEF54', image: 'A', corrupt: sbEdit((v) => v.setUint16(0x38, 0xef54, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_log_block_size 7 (128 KiB)', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x18, 7, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_log_block_size 0xFFFFFFFF', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x18, 0xffffffff, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_log_block_size 1 (8 KiB: fs larger than the device)', image: 'A', corrupt: sbEdit((v) => { v.setUint32(0x18, 1, true); v.setUint32(0x1c, 1, true); }), op: walk, expect: 'corrupt' },
  { name: 's_log_block_size 0 on a 4 KiB fs (first data block must become 1)', image: 'A', corrupt: sbEdit((v) => { v.setUint32(0x18, 0, true); v.setUint32(0x1c, 0, true); }), op: walk, expect: 'corrupt' },
  { name: 's_log_block_size 2 on a 1 KiB fs (first data block 1 with 4 KiB blocks)', image: 'B', corrupt: sbEdit((v) => { v.setUint32(0x18, 2, true); v.setUint32(0x1c, 2, true); }), op: walk, expect: 'corrupt' },
  { name: 's_log_cluster_size != s_log_block_size without bigalloc', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x1c, 4, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_blocks_per_group 0', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x20, 0, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_blocks_per_group not a multiple of 8', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x20, 32767, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_blocks_per_group > 8 × block size', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x20, 65536, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_blocks_per_group 8 (512 groups: the GDT would run over the fs)', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x20, 8, true)), op: walk, expect: 'corrupt' },
  { name: 's_blocks_per_group 512 with s_inodes_count scaled to match (B: 8 groups, descriptors 4–7 garbage)', image: 'B',
    corrupt: sbEdit((v) => { v.setUint32(0x20, 512, true); v.setUint32(0x24, 512, true); v.setUint32(0x00, 8 * v.getUint32(0x28, true), true); }), op: walk, expect: 'corrupt' },
  { name: 's_inodes_per_group 0', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x28, 0, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_inodes_per_group not a multiple of 8', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x28, v.getUint32(0x28, true) + 1, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_inodes_per_group > 8 × block size', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x28, 4096 * 8 + 8, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_inodes_count != groups × s_inodes_per_group', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x00, v.getUint32(0x00, true) + 8, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_inodes_per_group halved with s_inodes_count (B: inodes of the upper halves now sit in other groups\' tables)', image: 'B',
    corrupt: sbEdit((v) => { const ipg = v.getUint32(0x28, true) / 2; v.setUint32(0x28, ipg, true); v.setUint32(0x00, 4 * ipg, true); }), op: walk, expect: 'corrupt' },
  { name: 's_inode_size 100 (not a power of two)', image: 'A', corrupt: sbEdit((v) => v.setUint16(0x58, 100, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_inode_size 8192 (> block size)', image: 'A', corrupt: sbEdit((v) => v.setUint16(0x58, 8192, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_inode_size 64 (< 128)', image: 'A', corrupt: sbEdit((v) => v.setUint16(0x58, 64, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_inode_size 512 (valid, wrong: every slot shifts)', image: 'A', corrupt: sbEdit((v) => v.setUint16(0x58, 512, true)), op: walk, expect: 'corrupt' },
  { name: 's_desc_size 32 with 64bit', image: 'A', corrupt: sbEdit((v) => v.setUint16(0xfe, 32, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_desc_size 96 (not a power of two)', image: 'A', corrupt: sbEdit((v) => v.setUint16(0xfe, 96, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_desc_size 2048 (> 1024)', image: 'A', corrupt: sbEdit((v) => v.setUint16(0xfe, 2048, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_desc_size 128 (valid, wrong: the descriptor checksum covers other bytes)', image: 'A', corrupt: sbEdit((v) => v.setUint16(0xfe, 128, true)), op: walk, expect: 'corrupt' },
  { name: 's_first_data_block 1 on a 4 KiB fs', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x14, 1, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_first_data_block 0 on a 1 KiB fs', image: 'B', corrupt: sbEdit((v) => v.setUint32(0x14, 0, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_blocks_count one past the device', image: 'A', corrupt: sbEdit((v, img) => v.setUint32(0x04, img.blocksCount + 1, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_blocks_count_hi 1 (2^32 blocks more)', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x150, 1, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_blocks_count 0', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x04, 0, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_blocks_count 100 (bitmaps and inode table now past the end)', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x04, 100, true)), op: walk, expect: 'corrupt' },
  { name: 'device shorter than s_blocks_count (image truncated by 1 MiB)', image: 'A', corrupt: () => undefined, op: mountOnly, expect: 'corrupt' },
  { name: 's_rev_level 7', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x4c, 7, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_first_ino 3', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x54, 3, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_reserved_gdt_blocks 5000 (> bs/4)', image: 'A', corrupt: sbEdit((v) => v.setUint16(0xce, 5000, true)), op: mountOnly, expect: 'corrupt' },
  { name: 's_log_groups_per_flex 40', image: 'A', corrupt: sbEdit((v) => { v.setUint8(0x174, 40); }), op: mountOnly, expect: 'corrupt' },
  { name: 's_checksum_type 2', image: 'A', corrupt: sbEdit((v) => { v.setUint8(0x175, 2); }), op: mountOnly, expect: 'corrupt' },
  { name: 's_journal_inum 100000 (> inodes count)', image: 'A', corrupt: sbEdit((v) => v.setUint32(0xe0, 100000, true)), op: mountOnly, expect: 'corrupt' },
  // An unknown incompat bit is how an image says "you cannot read me": ENOTSUP, as the kernel refuses.
  { name: 'unknown incompat feature bit 0x80000000 → ENOTSUP', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x60, v.getUint32(0x60, true) | 0x80000000, true)), op: mountOnly, expect: { code: 'ENOTSUP' } },
  // Without dir_index an indexed dir is read linearly, and its dx_root block (".." spanning
  // the block, no 0xDE tail) is not a valid leaf: the kernel fails its checksum the same way.
  { name: 'dir_index feature cleared: a hashed dir read as linear', image: 'A', corrupt: sbEdit((v) => v.setUint32(0x5c, v.getUint32(0x5c, true) & ~0x20, true)), op: readdir('/hashed'), expect: 'corrupt' },
  // The dx hash seed is only as trustworthy as the superblock checksum: a re-sealed new seed
  // sends every hashed lookup to the wrong leaf, which reads as "no such name" (the kernel too).
  { name: 's_hash_seed changed (re-sealed) → hashed lookups miss: ENOENT', image: 'A', corrupt: sbEdit((v) => v.setUint32(0xec, v.getUint32(0xec, true) ^ 0x1234567, true)), op: lookupHashed, expect: { code: 'ENOENT' } },
  // Harmless: the volume name, times and free counts are informational on a read-only mount.
  { name: 'harmless: s_volume_name, s_mtime, s_free_blocks_count rewritten (re-sealed)', image: 'A',
    corrupt: sbEdit((v) => { v.setUint32(0x78, 0x41414141, true); v.setUint32(0x2c, 12345, true); v.setUint32(0x0c, 7, true); }), op: walk, expect: 'ok' },
];

const gdtCases: Case[] = [
  { name: 'checksum: bg_free_blocks_count flipped, not re-sealed', image: 'A', corrupt: (b, img) => { gdtOf(b, img)[0x0c] ^= 1; }, op: mountOnly, expect: 'corrupt' },
  { name: 'checksum: group 2 of B, not re-sealed', image: 'B', corrupt: (b, img) => { gdtOf(b, img)[2 * img.descSizeBytes + 0x0e] ^= 1; }, op: mountOnly, expect: 'corrupt' },
  { name: 'block bitmap past the fs', image: 'A', corrupt: gdEdit(0, (v, img) => v.setUint32(0x00, img.blocksCount + 10, true)), op: mountOnly, expect: 'corrupt' },
  { name: 'block bitmap on the superblock (block 0)', image: 'A', corrupt: gdEdit(0, (v) => v.setUint32(0x00, 0, true)), op: mountOnly, expect: 'corrupt' },
  { name: 'block bitmap on the GDT', image: 'B', corrupt: gdEdit(1, (v, img) => v.setUint32(0x00, img.gdtBlock, true)), op: mountOnly, expect: 'corrupt' },
  { name: 'inode bitmap past the fs (64-bit hi half)', image: 'A', corrupt: gdEdit(0, (v) => v.setUint32(0x24, 1, true)), op: mountOnly, expect: 'corrupt' },
  { name: 'inode bitmap on the superblock of a 1 KiB fs (block 1)', image: 'B', corrupt: gdEdit(3, (v) => v.setUint32(0x04, 1, true)), op: mountOnly, expect: 'corrupt' },
  { name: 'inode table running past the fs end', image: 'A', corrupt: gdEdit(0, (v, img) => v.setUint32(0x08, img.blocksCount - 2, true)), op: mountOnly, expect: 'corrupt' },
  { name: 'inode table on the superblock + GDT', image: 'B', corrupt: gdEdit(0, (v) => v.setUint32(0x08, 1, true)), op: mountOnly, expect: 'corrupt' },
  { name: 'inode table shifted one block (inside the fs, wrong slots)', image: 'A', corrupt: gdEdit(0, (v) => v.setUint32(0x08, v.getUint32(0x08, true) + 1, true)), op: walk, expect: 'corrupt' },
  { name: 'INODE_UNINIT on the group holding the root', image: 'A', corrupt: gdEdit(0, (v) => v.setUint16(0x12, v.getUint16(0x12, true) | 1, true)), op: walk, expect: 'corrupt' },
  { name: 'INODE_UNINIT on group 1 of B (holds names of /big)', image: 'B', corrupt: gdEdit(1, (v) => v.setUint16(0x12, v.getUint16(0x12, true) | 1, true)), op: walk, expect: 'corrupt' },
  { name: 'bg_itable_unused = inodes per group (root above the used range)', image: 'A', corrupt: gdEdit(0, (v, img) => v.setUint16(0x1c, img.inodesPerGroup, true)), op: walk, expect: 'corrupt' },
  { name: 'bg_itable_unused > inodes per group', image: 'A', corrupt: gdEdit(0, (v, img) => v.setUint16(0x1c, img.inodesPerGroup + 8, true)), op: mountOnly, expect: 'corrupt' },
  { name: 'bg_free_inodes_count > inodes per group', image: 'B', corrupt: gdEdit(1, (v, img) => v.setUint16(0x0e, img.inodesPerGroup + 1, true)), op: mountOnly, expect: 'corrupt' },
  // Harmless on a read-only mount: the read path never consults bitmaps or free counts, and a
  // BLOCK_UNINIT bitmap only matters to the allocator.
  { name: 'harmless: BLOCK_UNINIT set, free blocks / dirs counts rewritten (re-sealed)', image: 'A',
    corrupt: gdEdit(0, (v) => { v.setUint16(0x12, v.getUint16(0x12, true) | 2, true); v.setUint16(0x0c, 3, true); v.setUint16(0x10, 999, true); }), op: walk, expect: 'ok' },
];

const inodeCases: Case[] = [
  { name: 'checksum: i_mtime flipped, not re-sealed', image: 'A', corrupt: (b, img) => { inodeSlotOf(b, img, ino(img, '/dir/f1.txt'))[0x10] ^= 1; }, op: stat('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'checksum: root inode, not re-sealed', image: 'B', corrupt: (b, img) => { inodeSlotOf(b, img, 2)[0x20] ^= 4; }, op: walk, expect: 'corrupt' },
  { name: 'mode with file type 0 (a deleted inode still named by its directory)', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint16(0x00, 0o644, true)), op: lstat('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'mode with an invalid file type 0o170000', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint16(0x00, 0o170644, true)), op: lstat('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'all-zero inode slot named by a directory entry', image: 'A', corrupt: (b, img) => { inodeSlotOf(b, img, ino(img, '/dir/f2.txt')).fill(0); }, op: read('/dir/f2.txt'), expect: 'corrupt' },
  { name: 'root inode is a regular file', image: 'A', corrupt: inodeEdit('/', (v) => v.setUint16(0x00, 0o100755, true)), op: walk, expect: 'corrupt' },
  { name: 'directory turned into a regular file: the dir entry still says dir', image: 'A', corrupt: inodeEdit('/dir/sub', (v) => v.setUint16(0x00, 0o100755, true)), op: readdir('/dir/sub'), expect: { code: 'ENOTDIR' } },
  { name: 'i_size_high 2^20 on a regular file (size past the extent address space)', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint32(0x6c, 1 << 20, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'i_size of a directory 2^40 bytes (i_size_high without largedir)', image: 'A', corrupt: inodeEdit('/dir', (v) => v.setUint32(0x6c, 256, true)), op: readdir('/dir'), expect: 'corrupt' },
  // Blocks past a directory's last mapped block are holes, which linear readdir skips (so
  // does the kernel's ext4_readdir); the names are all still there.
  { name: 'ok: i_size of a linear directory not a multiple of the block size', image: 'A', corrupt: inodeEdit('/dir', (v) => v.setUint32(0x04, v.getUint32(0x04, true) + 100, true)), op: readdir('/dir'), expect: 'ok',
    check: (value) => expect((value as { name: string }[]).map((d) => d.name).sort()).toEqual(['f0.txt', 'f1.txt', 'f2.txt', 'f3.txt', 'f4.txt', 'sub']) },
  { name: 'ok: i_size of a linear directory 4 GiB − 4 KiB (a million hole blocks, skipped in one step)', image: 'A', corrupt: inodeEdit('/dir', (v) => v.setUint32(0x04, 0xfffff000, true)), op: readdir('/dir'), expect: 'ok',
    check: (value) => expect((value as { name: string }[]).map((d) => d.name).sort()).toEqual(['f0.txt', 'f1.txt', 'f2.txt', 'f3.txt', 'f4.txt', 'sub']) },
  { name: 'i_size of a hashed directory 0 (index past the directory)', image: 'A', corrupt: inodeEdit('/hashed', (v) => v.setUint32(0x04, 0, true)), op: lookupHashed, expect: 'corrupt' },
  // A larger i_size over the same extents is a sparse tail: the kernel reads it as zeros too.
  { name: 'ok: i_size grown to 1 MiB reads the tail as a hole', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint32(0x04, 1 << 20, true)), op: read('/dir/f1.txt'), expect: 'ok',
    check: (value, img) => { const data = value as Buffer; expect(data.length).toBe(1 << 20); expect(data.subarray(0, 2000).equals(img.files.get('/dir/f1.txt') as Buffer)).toBe(true); expect(data.subarray(2000).every((x) => x === 0)).toBe(true); } },
  { name: 'harmless: i_blocks, i_atime, i_dtime and link count 0 (an orphan is still readable)', image: 'A',
    corrupt: inodeEdit('/dir/f3.txt', (v) => { v.setUint32(0x1c, 12345, true); v.setUint32(0x08, 1, true); v.setUint32(0x14, 99, true); v.setUint16(0x1a, 0, true); }), op: read('/dir/f3.txt'), expect: 'ok',
    check: (value, img) => expect((value as Buffer).equals(img.files.get('/dir/f3.txt') as Buffer)).toBe(true) },
  { name: 'EXTENTS_FL cleared: the extent header read as block pointers', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint32(0x20, v.getUint32(0x20, true) & ~0x80000, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'EXTENTS_FL set on a fast symlink: its text read as an extent header', image: 'A', corrupt: inodeEdit('/fast', (v) => v.setUint32(0x20, v.getUint32(0x20, true) | 0x80000, true)), op: readlink('/fast'), expect: 'corrupt' },
  { name: 'EXTENTS_FL set on a block-mapped file of B', image: 'B', corrupt: inodeEdit('/ind', (v) => v.setUint32(0x20, v.getUint32(0x20, true) | 0x80000, true)), op: read('/ind'), expect: 'corrupt' },
  { name: 'INDEX_FL set on a linear directory', image: 'A', corrupt: inodeEdit('/dir', (v) => v.setUint32(0x20, v.getUint32(0x20, true) | 0x1000, true)), op: lstat('/dir/f0.txt'), expect: 'corrupt' },
  { name: 'INDEX_FL set on a linear directory, then readdir', image: 'A', corrupt: inodeEdit('/dir', (v) => v.setUint32(0x20, v.getUint32(0x20, true) | 0x1000, true)), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'INLINE_DATA flag without the feature', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint32(0x20, v.getUint32(0x20, true) | 0x10000000, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'i_extra_isize 3 (not a multiple of 4)', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint16(0x80, 3, true)), op: stat('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'i_extra_isize 200 (past the 256-byte slot)', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint16(0x80, 200, true)), op: stat('/dir/f1.txt'), expect: 'corrupt' },
  // i_extra_isize 0 is legal (an old 128-byte inode in a bigger slot): only the low
  // checksum half is kept, and the extra timestamps are ignored.
  { name: 'ok: i_extra_isize 0 (no extra fields; re-sealed with the 16-bit checksum)', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint16(0x80, 0, true)), op: read('/dir/f1.txt'), expect: 'ok',
    check: (value, img) => expect((value as Buffer).equals(img.files.get('/dir/f1.txt') as Buffer)).toBe(true) },
  { name: 'i_file_acl past the fs (not needed to read the data)', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (v) => v.setUint32(0x68, 0x7fffffff, true)), op: read('/dir/f1.txt'), expect: 'ok',
    check: (value, img) => expect((value as Buffer).equals(img.files.get('/dir/f1.txt') as Buffer)).toBe(true) },
];

const extentRootCases: Case[] = [
  { name: 'root magic 0', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib) => ib.setUint16(0, 0, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'root eh_entries 5 > eh_max 4', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib) => ib.setUint16(2, 5, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'root eh_max 5 (more than fits in i_block)', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib) => ib.setUint16(4, 5, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'root eh_max 0', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib) => { ib.setUint16(4, 0, true); ib.setUint16(2, 0, true); }), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'root depth 6 (> 5)', image: 'A', corrupt: inodeEdit('/frag', (_, ib) => ib.setUint16(6, 6, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'root depth 0xFFFF', image: 'A', corrupt: inodeEdit('/frag', (_, ib) => ib.setUint16(6, 0xffff, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'root depth 1 on a leaf root: the extent read as an index into a data block', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib) => ib.setUint16(6, 1, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'root depth 2 over a depth-0 leaf block', image: 'A', corrupt: inodeEdit('/frag', (_, ib) => ib.setUint16(6, 2, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'root index pointing past the fs', image: 'A', corrupt: inodeEdit('/frag', (_, ib, img) => ib.setUint32(EXT_ENTRY(0) + 4, img.blocksCount + 7, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'root index pointing past the fs (ei_leaf_hi)', image: 'A', corrupt: inodeEdit('/frag', (_, ib) => ib.setUint16(EXT_ENTRY(0) + 8, 1, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'root index pointing at block 0 (the superblock)', image: 'A', corrupt: inodeEdit('/frag', (_, ib) => ib.setUint32(EXT_ENTRY(0) + 4, 0, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'root index pointing at the inode table (not an extent node)', image: 'A', corrupt: inodeEdit('/frag', (_, ib, img) => ib.setUint32(EXT_ENTRY(0) + 4, img.inodeTables[0], true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'ei_block 5 but the child starts at 0', image: 'A', corrupt: inodeEdit('/frag', (_, ib) => ib.setUint32(EXT_ENTRY(0), 5, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'leaf root extents overlapping', image: 'A', corrupt: inodeEdit('/sparse', (_, ib) => { ib.setUint32(EXT_ENTRY(1), 0, true); }), op: read('/sparse'), expect: 'corrupt' },
  { name: 'leaf root extent of length 0', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib) => ib.setUint16(EXT_ENTRY(0) + 4, 0, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'leaf root extent physical block past the fs', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib, img) => ib.setUint32(EXT_ENTRY(0) + 8, img.blocksCount, true)), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'leaf root extent running over the fs end', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib, img) => { ib.setUint32(EXT_ENTRY(0) + 8, img.blocksCount - 1, true); ib.setUint16(EXT_ENTRY(0) + 4, 100, true); }), op: read('/dir/f1.txt'), expect: 'corrupt' },
  { name: 'leaf root unwritten extent crossing logical block 2^32', image: 'A',
    corrupt: inodeEdit('/dir/f1.txt', (_, ib) => { ib.setUint32(EXT_ENTRY(0), 0xffffff00, true); ib.setUint16(EXT_ENTRY(0) + 4, 0x8000 + 0x200, true); }), op: read('/dir/f1.txt'), expect: 'corrupt' },
  // No extents at all in a file with a size: a file that is one big hole, which is legal.
  { name: 'ok: leaf root with 0 entries reads as a hole', image: 'A', corrupt: inodeEdit('/dir/f1.txt', (_, ib) => ib.setUint16(2, 0, true)), op: read('/dir/f1.txt'), expect: 'ok',
    check: (value) => { expect((value as Buffer).length).toBe(2000); expect((value as Buffer).every((x) => x === 0)).toBe(true); } },
];

const extentBlockCases: Case[] = [
  { name: 'checksum: an extent\'s length flipped, not re-sealed', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(EXT_ENTRY(3) + 4, 2, true), false), op: read('/frag'), expect: 'corrupt' },
  { name: 'magic', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(0, 0x1234, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'eh_entries > eh_max', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(2, 341, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'eh_max 341 (more than fits: the tail would leave the block)', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(4, 341, true), false), op: read('/frag'), expect: 'corrupt' },
  { name: 'eh_max 300 (< max − 2)', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(4, 300, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'eh_depth 1 in a leaf', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(6, 1, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'extents out of order', image: 'A', corrupt: etbEdit('/frag', (v) => { const a = v.getUint32(EXT_ENTRY(2), true); v.setUint32(EXT_ENTRY(2), v.getUint32(EXT_ENTRY(3), true), true); v.setUint32(EXT_ENTRY(3), a, true); }), op: read('/frag'), expect: 'corrupt' },
  { name: 'extents overlapping', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(EXT_ENTRY(2) + 4, 5, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'zero-length extent', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(EXT_ENTRY(5) + 4, 0, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'unwritten extent crossing logical block 2^32', image: 'A',
    corrupt: etbEdit('/frag', (v) => { v.setUint16(2, 12, true); v.setUint32(EXT_ENTRY(11), 0xfffffff0, true); v.setUint16(EXT_ENTRY(11) + 4, 0x8000 + 0x20, true); }), op: read('/frag'), expect: 'corrupt' },
  { name: 'extent physical block past the fs', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint32(EXT_ENTRY(4) + 8, 0x7fffffff, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'extent physical block past the fs (ee_start_hi)', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint16(EXT_ENTRY(4) + 6, 3, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'first extent starting after the index\'s ei_block', image: 'A', corrupt: etbEdit('/frag', (v) => v.setUint32(EXT_ENTRY(0), 1, true)), op: read('/frag'), expect: 'corrupt' },
  { name: 'leaf block turned into an index node pointing at itself', image: 'A',
    corrupt: (b, img) => { etbEdit('/frag', (v) => { v.setUint16(6, 1, true); v.setUint16(2, 1, true); v.setUint32(EXT_ENTRY(0), 0, true); v.setUint32(EXT_ENTRY(0) + 4, etb(img, '/frag'), true); v.setUint16(EXT_ENTRY(0) + 8, 0, true); })(b, img); inodeEdit('/frag', (_, ib) => ib.setUint16(6, 2, true))(b, img); },
    op: read('/frag'), expect: 'corrupt' },
  { name: 'two index blocks pointing at each other (root depth 3)', image: 'A',
    corrupt: (b, img) => {
      const x = etb(img, '/frag');
      const y = etb(img, '/hashed');
      const asIndex = (p: number, other: number): void => {
        const v = le(blockOf(b, img, p));
        v.setUint16(0, 0xf30a, true); v.setUint16(2, 1, true); v.setUint16(4, 340, true); v.setUint16(6, 2, true);
        v.setUint32(EXT_ENTRY(0), 0, true); v.setUint32(EXT_ENTRY(0) + 4, other, true); v.setUint16(EXT_ENTRY(0) + 8, 0, true);
        sealExtentBlock(b, img, p, ino(img, '/frag'));
      };
      asIndex(x, y);
      asIndex(y, x);
      inodeEdit('/frag', (_, ib) => ib.setUint16(6, 3, true))(b, img);
    },
    op: read('/frag'), expect: 'corrupt' },
  { name: 'harmless: eh_generation and an unused entry slot rewritten (re-sealed)', image: 'A',
    corrupt: etbEdit('/frag', (v) => { v.setUint32(8, 77, true); v.setUint32(EXT_ENTRY(200), 0xdeadbeef, true); }), op: read('/frag'), expect: 'ok',
    check: (value, img) => expect((value as Buffer).equals(img.files.get('/frag') as Buffer)).toBe(true) },
];

const dirLeafCases: Case[] = [
  { name: 'checksum: a name byte flipped, not re-sealed', image: 'A', corrupt: leafEdit('/dir', 0, (_, b) => { b[entryOffsets(b, true)[2] + 8] ^= 1; }, false), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'rec_len 0', image: 'A', corrupt: leafEdit('/dir', 0, (v, b) => v.setUint16(entryOffsets(b, true)[3] + 4, 0, true)), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'rec_len 0 in the first entry', image: 'A', corrupt: leafEdit('/dir', 0, (v) => v.setUint16(4, 0, true)), op: lstat('/dir/f0.txt'), expect: 'corrupt' },
  { name: 'rec_len past the block', image: 'A', corrupt: leafEdit('/dir', 0, (v, b) => v.setUint16(entryOffsets(b, true)[3] + 4, 8000, true)), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'rec_len running into the checksum tail', image: 'A', corrupt: leafEdit('/dir', 0, (v, b) => { const last = entryOffsets(b, true).at(-1) as number; v.setUint16(last + 4, v.getUint16(last + 4, true) + 12, true); }), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'rec_len not a multiple of 4', image: 'A', corrupt: leafEdit('/dir', 0, (v, b) => { const o = entryOffsets(b, true)[2]; v.setUint16(o + 4, v.getUint16(o + 4, true) + 2, true); }), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'name_len > rec_len − 8', image: 'A', corrupt: leafEdit('/dir', 0, (_, b) => { b[entryOffsets(b, true)[2] + 6] = 250; }), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'name_len 0 in a live entry', image: 'A', corrupt: leafEdit('/dir', 0, (_, b) => { b[entryOffsets(b, true)[2] + 6] = 0; }), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'missing 0xDE tail (tail turned into a plain entry)', image: 'A', corrupt: leafEdit('/dir', 0, (_, b) => { b[b.length - 12 + 7] = 1; }, false), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'inode number > inodes count', image: 'A', corrupt: leafEdit('/dir', 0, (v, b) => v.setUint32(entryOffsets(b, true)[2], 1_000_000, true)), op: readdir('/dir'), expect: 'corrupt' },
  // Only the root and inodes ≥ s_first_ino can be named by a directory (the kernel's
  // ext4_valid_inum): the reserved ones (journal, resize, bad blocks…) never can.
  { name: 'entry names the journal inode (8)', image: 'A', corrupt: leafEdit('/dir', 0, (v, b) => v.setUint32(entryOffsets(b, true)[2], 8, true)), op: walk, expect: 'corrupt' },
  { name: 'entry names the bad-blocks inode (1)', image: 'A', corrupt: leafEdit('/dir', 0, (v, b) => v.setUint32(entryOffsets(b, true)[2], 1, true)), op: readdir('/dir'), expect: 'corrupt' },
  { name: 'entry names the resize inode (7)', image: 'B', corrupt: leafEdit('/', 0, (v, b) => v.setUint32(entryOffsets(b, true)[2], 7, true)), op: walk, expect: 'corrupt' },
  { name: 'inode number in the never-used range of the group', image: 'A', corrupt: leafEdit('/dir', 0, (v, b, ) => v.setUint32(entryOffsets(b, true)[2], 4000, true)), op: walk, expect: 'corrupt' },
  // Paths resolve "." lexically and readdir omits dots: the on-disk "." is never consulted.
  { name: 'ok: "." names inode 0', image: 'A', corrupt: leafEdit('/dir/sub', 0, (v) => v.setUint32(0, 0, true)), op: walk, expect: 'ok' },
  { name: '".." of a linear dir names an out-of-range inode', image: 'A', corrupt: leafEdit('/dir/sub', 0, (v) => v.setUint32(12, 999_999, true)), op: lstat('/dir/sub/..'), expect: 'corrupt' },
  { name: '"." rec_len not 12', image: 'A', corrupt: leafEdit('/dir/sub', 0, (v) => { v.setUint16(4, 24, true); }), op: lstat('/dir/sub/..'), expect: 'corrupt' },
  // Inode 0 marks an unused slot: the entry is gone, exactly as after unlink.
  { name: 'ok: inode number 0 hides the entry', image: 'A', corrupt: leafEdit('/dir', 0, (v, b) => { const o = entryOffsets(b, true).find((x) => b[x + 8] === 0x66 && b[x + 9] === 0x30) as number; v.setUint32(o, 0, true); }), op: readdir('/dir'), expect: 'ok',
    check: (value) => expect((value as { name: string }[]).map((d) => d.name).sort()).toEqual(['f1.txt', 'f2.txt', 'f3.txt', 'f4.txt', 'sub']) },
  // The kernel trusts file_type for readdir and the inode for stat, as here; e2fsck flags it.
  { name: 'ok: file type mismatch (dir type on a regular file) — readdir shows the entry\'s type, lstat the inode\'s', image: 'A',
    corrupt: leafEdit('/dir', 0, (_, b) => { const o = entryOffsets(b, true).find((x) => b[x + 8] === 0x66 && b[x + 9] === 0x31) as number; b[o + 7] = 2; }),
    op: async (fs) => [(await fs.readdir('/dir', { withFileTypes: true })).find((d) => d.name === 'f1.txt')?.isDirectory(), (await fs.lstat('/dir/f1.txt')).isFile()], expect: 'ok',
    check: (value) => expect(value).toEqual([true, true]) },
  { name: 'ok: slack after the last name rewritten (re-sealed)', image: 'A', corrupt: leafEdit('/dir', 0, (_, b) => { const last = entryOffsets(b, true).at(-1) as number; b[last + 8 + b[last + 6] + 4] = 0x77; }), op: walk, expect: 'ok' },
  { name: 'linear leaf of a hashed dir: rec_len 0', image: 'A', corrupt: leafEdit('/hashed', 1, (v, b) => v.setUint16(entryOffsets(b, true)[1] + 4, 0, true)), op: walk, expect: 'corrupt' },
  { name: 'leaf of B\'s two-level dir: name_len past rec_len', image: 'B', corrupt: leafEdit('/big', 5, (_, b) => { b[entryOffsets(b, true)[1] + 6] = 255; }), op: walk, expect: 'corrupt' },
];

const ROOT_COUNT = 0x20;
const NODE_COUNT = 8;
const dxRootCases: Case[] = [
  { name: 'checksum: a hash flipped, not re-sealed', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint32(0x28, v.getUint32(0x28, true) ^ 0x100, true), false), op: lookupHashed, expect: 'corrupt' },
  { name: 'limit 506 (not the exact 507)', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint16(0x20, 506, true)), op: lookupHashed, expect: 'corrupt' },
  { name: 'limit 0xFFFF (tail outside the block)', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint16(0x20, 0xffff, true), false), op: lookupHashed, expect: 'corrupt' },
  { name: 'count > limit', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint16(0x22, 508, true)), op: lookupHashed, expect: 'corrupt' },
  { name: 'count 0', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint16(0x22, 0, true)), op: lookupHashed, expect: 'corrupt' },
  { name: 'indirect_levels 2 without largedir', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint8(0x1e, 2)), op: lookupHashed, expect: 'corrupt' },
  { name: 'indirect_levels 1 over leaf blocks (a leaf read as a dx_node)', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint8(0x1e, 1)), op: lookupHashed, expect: 'corrupt' },
  { name: 'indirect_levels 0xFF', image: 'B', corrupt: dxEdit('/big', rootBlock, ROOT_COUNT, (v) => v.setUint8(0x1e, 0xff)), op: lookupBig, expect: 'corrupt' },
  { name: 'indirect_levels 0 over dx_nodes (a dx_node read as a leaf)', image: 'B', corrupt: dxEdit('/big', rootBlock, ROOT_COUNT, (v) => v.setUint8(0x1e, 0)), op: lookupBig, expect: 'corrupt' },
  { name: 'hash version 6 (unknown)', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint8(0x1c, 6)), op: lookupHashed, expect: 'corrupt' },
  { name: 'info_length 9', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint8(0x1d, 9)), op: lookupHashed, expect: 'corrupt' },
  { name: 'info_length 0xFF (count/limit would sit past the block\'s start of entries)', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint8(0x1d, 0xff), false), op: lookupHashed, expect: 'corrupt' },
  { name: 'reserved_zero not zero', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint32(0x18, 1, true)), op: lookupHashed, expect: 'corrupt' },
  { name: 'block numbers beyond the directory size', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => { for (let i = 0; i < v.getUint16(0x22, true); i++) v.setUint32(0x24 + 8 * i, 5000 + i, true); }), op: lookupHashed, expect: 'corrupt' },
  { name: 'block number 0 (the root itself)', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => { for (let i = 0; i < v.getUint16(0x22, true); i++) v.setUint32(0x24 + 8 * i, 0, true); }), op: lookupHashed, expect: 'corrupt' },
  { name: 'hashes out of order', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => { const h1 = v.getUint32(0x28, true); v.setUint32(0x28, v.getUint32(0x30, true), true); v.setUint32(0x30, h1, true); }), op: lookupHashed, expect: 'corrupt' },
  { name: '".." rec_len not bs − 12', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint16(12 + 4, 12, true)), op: lookupHashed, expect: 'corrupt' },
  // Entry slots past `count` are outside the dx checksum and never read.
  { name: 'ok: unused entry slots past count rewritten', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => { for (let o = 0x20 + 8 * v.getUint16(0x22, true); o < 0x20 + 8 * 400; o += 4) v.setUint32(o, 0xa5a5a5a5, true); }, false), op: lookupHashed, expect: 'ok' },
  { name: '".." rec_len not bs − 12, then readdir', image: 'A', corrupt: dxEdit('/hashed', rootBlock, ROOT_COUNT, (v) => v.setUint16(12 + 4, 12, true)), op: readdir('/hashed'), expect: 'corrupt' },
];

const dxNodeCases: Case[] = [
  { name: 'checksum: a hash flipped, not re-sealed', image: 'B', corrupt: dxEdit('/big', firstDxNode, NODE_COUNT, (v) => v.setUint32(0x10, v.getUint32(0x10, true) ^ 0x100, true), false), op: lookupBig, expect: 'corrupt' },
  { name: 'limit wrong', image: 'B', corrupt: dxEdit('/big', firstDxNode, NODE_COUNT, (v) => v.setUint16(8, 125, true)), op: lookupBig, expect: 'corrupt' },
  { name: 'count > limit', image: 'B', corrupt: dxEdit('/big', firstDxNode, NODE_COUNT, (v) => v.setUint16(10, 127, true)), op: lookupBig, expect: 'corrupt' },
  { name: 'count 0', image: 'B', corrupt: dxEdit('/big', firstDxNode, NODE_COUNT, (v) => v.setUint16(10, 0, true)), op: lookupBig, expect: 'corrupt' },
  { name: 'hashes out of order', image: 'B', corrupt: dxEdit('/big', firstDxNode, NODE_COUNT, (v) => { const h = v.getUint32(0x10, true); v.setUint32(0x10, v.getUint32(0x18, true), true); v.setUint32(0x18, h, true); }), op: lookupBig, expect: 'corrupt' },
  { name: 'block numbers beyond the directory size', image: 'B', corrupt: dxEdit('/big', firstDxNode, NODE_COUNT, (v) => { for (let i = 0; i < v.getUint16(10, true); i++) v.setUint32(12 + 8 * i, 100_000 + i, true); }), op: lookupBig, expect: 'corrupt' },
  { name: 'leaf pointers aimed at the dx_node itself', image: 'B', corrupt: (b, img) => { const self = firstDxNode(img, b); dxEdit('/big', firstDxNode, NODE_COUNT, (v) => { for (let i = 0; i < v.getUint16(10, true); i++) v.setUint32(12 + 8 * i, self, true); })(b, img); }, op: lookupBig, expect: 'corrupt' },
  { name: 'fake dirent names an inode (not a dx_node any more)', image: 'B', corrupt: dxEdit('/big', firstDxNode, NODE_COUNT, (v) => v.setUint32(0, 12, true)), op: lookupBig, expect: 'corrupt' },
  { name: 'root entry aimed at a leaf instead of a dx_node', image: 'B', corrupt: dxEdit('/big', rootBlock, ROOT_COUNT, (v) => v.setUint32(0x24, 5, true)), op: lookupBig, expect: 'corrupt' },
];

const symlinkCases: Case[] = [
  { name: 'fast symlink size 0', image: 'A', corrupt: inodeEdit('/fast', (v) => v.setUint32(0x04, 0, true)), op: readlink('/fast'), expect: 'corrupt' },
  { name: 'fast symlink size 60 with no block (text read as a block map)', image: 'A', corrupt: inodeEdit('/fast', (v) => v.setUint32(0x04, 60, true)), op: readlink('/fast'), expect: 'corrupt' },
  { name: 'fast symlink size 4096 (≥ block size)', image: 'A', corrupt: inodeEdit('/fast', (v) => v.setUint32(0x04, 4096, true)), op: stat('/fast'), expect: 'corrupt' },
  { name: 'slow symlink size ≥ block size', image: 'A', corrupt: inodeEdit('/slow', (v) => v.setUint32(0x04, 5000, true)), op: readlink('/slow'), expect: 'corrupt' },
  { name: 'slow symlink size_high set', image: 'A', corrupt: inodeEdit('/slow', (v) => v.setUint32(0x6c, 1, true)), op: readlink('/slow'), expect: 'corrupt' },
  { name: 'slow symlink with a hole (no extents)', image: 'A', corrupt: inodeEdit('/slow', (_, ib) => ib.setUint16(2, 0, true)), op: readlink('/slow'), expect: 'corrupt' },
  { name: 'slow symlink with a hole (block map, B)', image: 'B', corrupt: inodeEdit('/slowlink', (_, ib) => ib.setUint32(0, 0, true)), op: readlink('/slowlink'), expect: 'corrupt' },
  { name: 'slow symlink block past the fs (B)', image: 'B', corrupt: inodeEdit('/slowlink', (_, ib) => ib.setUint32(0, 1 << 30, true)), op: stat('/slowlink'), expect: 'corrupt' },
  { name: 'slow symlink with an unwritten extent', image: 'A', corrupt: inodeEdit('/slow', (_, ib) => ib.setUint16(EXT_ENTRY(0) + 4, 0x8001, true)), op: readlink('/slow'), expect: 'corrupt' },
  // A cycle is legal on disk: the walk gives up after 40 links, as Linux does.
  { name: 'self-referencing symlink → ELOOP', image: 'A', corrupt: inodeEdit('/fast', (v, ib) => { v.setUint32(0x04, 4, true); new Uint8Array(ib.buffer, ib.byteOffset, 60).fill(0).set(Buffer.from('fast')); }), op: stat('/fast'), expect: { code: 'ELOOP' } },
];

const indirectCases: Case[] = [
  { name: 'direct pointer past the fs', image: 'B', corrupt: inodeEdit('/ind', (_, ib, img) => ib.setUint32(0, img.blocksCount + 3, true)), op: read('/ind'), expect: 'corrupt' },
  { name: 'direct pointer on the superblock (block 1 of a 1 KiB fs)', image: 'B', corrupt: inodeEdit('/ind', (_, ib) => ib.setUint32(4, 1, true)), op: read('/ind'), expect: 'corrupt' },
  { name: 'IND pointer past the fs', image: 'B', corrupt: inodeEdit('/ind', (_, ib) => ib.setUint32(12 * 4, 0xffffffff, true)), op: read('/ind'), expect: 'corrupt' },
  { name: 'DIND pointer past the fs', image: 'B', corrupt: inodeEdit('/ind', (_, ib, img) => ib.setUint32(13 * 4, img.blocksCount, true)), op: read('/ind'), expect: 'corrupt' },
  { name: 'a pointer inside the IND block past the fs', image: 'B', corrupt: (b, img) => { le(blockOf(b, img, indirect(img, '/ind', 'IND'))).setUint32(40, 0x10000000, true); }, op: read('/ind'), expect: 'corrupt' },
  { name: 'a pointer inside the DIND block past the fs', image: 'B', corrupt: (b, img) => { le(blockOf(b, img, indirect(img, '/ind', 'DIND'))).setUint32(0, 0x7fffffff, true); }, op: read('/ind'), expect: 'corrupt' },
  { name: 'directory IND pointer past the fs', image: 'B', corrupt: inodeEdit('/big', (_, ib, img) => ib.setUint32(12 * 4, img.blocksCount + 100, true)), op: lookupBig, expect: 'corrupt' },
  // TIND is never reached by a 300 KiB file: nothing reads it.
  { name: 'ok: TIND pointer past the fs in a file that never reaches it', image: 'B', corrupt: inodeEdit('/ind', (_, ib) => ib.setUint32(14 * 4, 0xfffffff0, true)), op: read('/ind'), expect: 'ok',
    check: (value, img) => expect((value as Buffer).equals(img.files.get('/ind') as Buffer)).toBe(true) },
];

/** Edit the journal superblock (big-endian jbd2 fields). */
const jsbEdit = (edit: (v: DataView) => void) => (bytes: Uint8Array, image: CorruptionImage): void => {
  if (image.journalSuperblock === undefined) throw new Error('image has no journal');
  edit(le(blockOf(bytes, image, image.journalSuperblock)));
};

const journalCases: Case[] = [
  { name: 'journal superblock magic', image: 'A', corrupt: jsbEdit((v) => v.setUint32(0, 0xc03b3999)), op: mountOnly, expect: 'corrupt' },
  { name: 'journal s_blocksize 1024 on a 4 KiB fs', image: 'A', corrupt: jsbEdit((v) => v.setUint32(0x0c, 1024)), op: mountOnly, expect: 'corrupt' },
  { name: 'journal s_maxlen past the journal inode', image: 'A', corrupt: jsbEdit((v) => v.setUint32(0x10, 0xffffffff)), op: mountOnly, expect: 'corrupt' },
  { name: 'journal s_first 0', image: 'B', corrupt: jsbEdit((v) => v.setUint32(0x14, 0)), op: mountOnly, expect: 'corrupt' },
  { name: 'journal s_start past s_maxlen', image: 'A', corrupt: jsbEdit((v) => v.setUint32(0x1c, 0x7fffffff)), op: mountOnly, expect: 'corrupt' },
  // A valid s_start says "transactions await replay": mount refuses (EBUSY) unless ignoreJournal.
  { name: 'journal s_start = s_first → EBUSY (needs recovery)', image: 'A', corrupt: jsbEdit((v) => v.setUint32(0x1c, v.getUint32(0x14))), op: mountOnly, expect: { code: 'EBUSY' } },
  { name: 's_journal_inum 5 (a zeroed reserved inode)', image: 'A', corrupt: sbEdit((v) => v.setUint32(0xe0, 5, true)), op: mountOnly, expect: 'corrupt' },
];

// Bitmaps are the allocator's: a read-only mount never reads them (the kernel checks their
// checksums only when it loads them to allocate), so damage there cannot change what is read.
const bitmapCases: Case[] = [
  { name: 'ok: block and inode bitmaps zeroed (checksums now wrong too)', image: 'B',
    corrupt: (b, img) => { for (const blk of [...img.blockBitmaps, ...img.inodeBitmaps]) blockOf(b, img, blk).fill(0); }, op: walk, expect: 'ok' },
];

const groups: [string, Case[]][] = [
  ['superblock', superblockCases],
  ['group descriptors', gdtCases],
  ['inode', inodeCases],
  ['extent root (i_block)', extentRootCases],
  ['extent tree block', extentBlockCases],
  ['directory leaf block', dirLeafCases],
  ['dx root', dxRootCases],
  ['dx node', dxNodeCases],
  ['symlink', symlinkCases],
  ['block map (indirect)', indirectCases],
  ['journal superblock', journalCases],
  ['bitmaps', bitmapCases],
];

for (const [structure, cases] of groups) {
  describe(`corruption: ${structure}`, () => {
    for (const c of cases) {
      it(`${c.image}: ${c.name}`, async () => {
        const image = images[c.image];
        let bytes = damaged(image, (b) => c.corrupt(b, image));
        if (c.name.startsWith('device shorter')) bytes = bytes.slice(0, bytes.length - 1024 * 1024);
        const outcome = await runOn(bytes, (fs) => c.op(fs, image), `${structure}: ${c.name}`);
        const shown = describeOutcome(outcome);
        if (c.expect === 'corrupt') {
          expect(outcome.kind === 'fserror' && CORRUPT_CODES.includes(outcome.code), shown).toBe(true);
        } else if (c.expect === 'ok') {
          expect(outcome.kind, shown).toBe('ok');
          if (outcome.kind !== 'ok') return;
          if (c.check !== undefined) c.check(outcome.value, image);
          else if (c.op === walk) expect([...(outcome.value as Map<string, string>)].sort()).toEqual([...expectedWalk(image)].sort());
        } else {
          expect(outcome.kind === 'fserror' && outcome.code === c.expect.code, shown).toBe(true);
        }
      });
    }
  });
}

describe('corruption: the harness', () => {
  it('the guard device fails reads past the filesystem and any write with a GuardError, never an FsError', async () => {
    const image = images.A;
    const device = new GuardedDevice(deviceOf(image.bytes), readLimitBytes(image.bytes));
    await device.read(0, new Uint8Array(4096));
    await expect(device.read(image.bytes.length, new Uint8Array(512))).rejects.toBeInstanceOf(GuardError);
    await expect(device.write(0, new Uint8Array(512))).rejects.toBeInstanceOf(GuardError);
    expect(device.violations).toHaveLength(2);
    // A superblock that shrinks the filesystem shrinks what may be read.
    const shrunk = damaged(image, (b) => sbEdit((v) => v.setUint32(0x04, 100, true))(b, image));
    expect(readLimitBytes(shrunk)).toBe(100 * 4096);
    await device.close();
  });
});

describe('corruption: the images themselves', () => {
  it('both images walk completely and match the trees they were built from', async () => {
    for (const image of [images.A, images.B]) {
      const outcome = await runOn(image.bytes, walk as (fs: Ext4Filesystem) => Promise<unknown>, `pristine ${image.name}`);
      expect(outcome.kind, describeOutcome(outcome)).toBe('ok');
      if (outcome.kind === 'ok') expect([...(outcome.value as Map<string, string>)].sort()).toEqual([...expectedWalk(image)].sort());
    }
  });
});
