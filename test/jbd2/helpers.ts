// Shared pieces of the jbd2 interop suites: journal geometry from debugfs, the RECOVER
// flag in the fs superblock, image copies and block-level image comparison.
import { copyFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { FileDevice } from '@ext4ts/core';
import {
  Incompat, SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES, decodeSuperblock, encodeSuperblock, type Superblock,
} from '../../packages/core/src/format/superblock.js';
import type { JournalGeometry } from '../../packages/core/src/jbd2/log-map.js';
import { BLOCK_SIZE_BYTES, debugfsStat } from '../helpers/e2fs.js';

/** The journal inode's extents as debugfs prints them (journal block n = file block n). */
export async function journalGeometry(img: string): Promise<JournalGeometry> {
  const stat = await debugfsStat(img, '<8>');
  const extents = (stat.extents ?? []).map((e) => ({ logicalStart: e.logicalStart, physicalStart: e.physicalStart, blockCount: e.blockCount }));
  if (extents.length === 0) throw new Error(`${img}: journal inode has no extents`);
  return { blockSizeBytes: BLOCK_SIZE_BYTES, extents };
}

export async function readSuperblock(device: FileDevice): Promise<Superblock> {
  const bytes = new Uint8Array(SUPERBLOCK_SIZE_BYTES);
  await device.read(SUPERBLOCK_OFFSET_BYTES, bytes);
  return decodeSuperblock(bytes);
}

/** Sets or clears incompat RECOVER in the primary superblock (what ext4 does around the journal). */
export async function setRecoverFlag(device: FileDevice, on: boolean): Promise<void> {
  const sb = await readSuperblock(device);
  sb.featureIncompat = on ? sb.featureIncompat | Incompat.RECOVER : sb.featureIncompat & ~Incompat.RECOVER;
  await device.write(SUPERBLOCK_OFFSET_BYTES, encodeSuperblock(sb));
  await device.flush();
}

export function copyImage(source: string, dir: string, name: string): string {
  const target = path.join(dir, name);
  copyFileSync(source, target);
  return target;
}

/** Block numbers (4 KiB) where two images differ. */
export function differingBlocks(a: string, b: string): number[] {
  const x = readFileSync(a);
  const y = readFileSync(b);
  if (x.length !== y.length) throw new Error(`${a} and ${b} differ in size`);
  const out: number[] = [];
  for (let off = 0; off < x.length; off += BLOCK_SIZE_BYTES) {
    if (x.compare(y, off, off + BLOCK_SIZE_BYTES, off, off + BLOCK_SIZE_BYTES) !== 0) out.push(off / BLOCK_SIZE_BYTES);
  }
  return out;
}

/** Byte offsets inside one block where two images differ (for failure messages). */
export function differingBytes(a: string, b: string, blockNr: number, limit = 16): number[] {
  const x = readFileSync(a);
  const y = readFileSync(b);
  const out: number[] = [];
  for (let i = blockNr * BLOCK_SIZE_BYTES; i < (blockNr + 1) * BLOCK_SIZE_BYTES && out.length < limit; i++) if (x[i] !== y[i]) out.push(i - blockNr * BLOCK_SIZE_BYTES);
  return out;
}

/**
 * Bytes of block 0 that e2fsck rewrites whenever it writes the superblock, journal replay
 * included (observed with -E journal_only): s_wtime (0x30, hi 0x274), s_lastcheck (0x40,
 * hi 0x277), s_kbytes_written (0x178) and so the checksum (0x3FC). Offsets in block 0.
 */
export const E2FSCK_STAMPED_BYTES = new Set(
  [[0x30, 4], [0x274, 1], [0x40, 4], [0x277, 1], [0x178, 8], [0x3fc, 4]].flatMap(([at, n]) =>
    Array.from({ length: n }, (_, i) => SUPERBLOCK_OFFSET_BYTES + at + i)),
);

/**
 * Superblock summaries e2fsck rewrites even with -E journal_only: s_free_blocks_count
 * (0x0C, hi 0x158), s_free_inodes_count (0x10), recomputed from the group descriptors, and
 * s_mnt_count (0x34), reset to 0. The kernel's journaled superblock carries stale values
 * (it keeps the free counts in per-cpu counters and writes them only at commit_super):
 * observed 14319 free blocks / mount count 1 in the kernel's copy vs 12969 / 0 after
 * e2fsck. Offsets in block 0.
 */
export const E2FSCK_SUMMARY_BYTES = new Set(
  [[0x0c, 4], [0x158, 4], [0x10, 4], [0x34, 2]].flatMap(([at, n]) =>
    Array.from({ length: n }, (_, i) => SUPERBLOCK_OFFSET_BYTES + at + i)),
);

/**
 * Offsets inside a 64-byte group descriptor that e2fsck rewrites on any write-back of the
 * descriptors (ext2fs_set_gdt_csum): bg_flags (0x12), bg_itable_unused (0x1C, hi 0x32),
 * recomputed from the inode bitmap, and bg_checksum (0x1E). The kernel never lowers
 * itable_unused when inodes are freed: observed 15840 in its copy vs 15991 after e2fsck.
 */
export const E2FSCK_GDT_SUMMARY_OFFSETS = new Set([0x12, 0x13, 0x1c, 0x1d, 0x1e, 0x1f, 0x32, 0x33]);
