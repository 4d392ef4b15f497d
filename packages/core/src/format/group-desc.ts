/**
 * Block group descriptors (ext4-format.md §3): 32 bytes, or s_desc_size (64) with the
 * 64bit feature. The table starts in the block after the superblock.
 */
import { crc32c, crc32cU32le, crc32cZeros } from './crc32c.js';
import { crc16 } from './crc16.js';
import { defineStruct, type StructValue } from './struct.js';
import { badChecksum } from '../vfs/errors.js';

export const GroupFlags = { INODE_UNINIT: 0x1, BLOCK_UNINIT: 0x2, ITABLE_ZEROED: 0x4 } as const;
export const GD_CHECKSUM_OFFSET = 0x1e;

export const groupDescStruct = defineStruct('group descriptor', 64, [
  { name: 'blockBitmap', lo: [0x00, 'u32'], hi: [0x20, 'u32'] },
  { name: 'inodeBitmap', lo: [0x04, 'u32'], hi: [0x24, 'u32'] },
  { name: 'inodeTable', lo: [0x08, 'u32'], hi: [0x28, 'u32'] },
  { name: 'freeBlocksCount', lo: [0x0c, 'u16'], hi: [0x2c, 'u16'] },
  { name: 'freeInodesCount', lo: [0x0e, 'u16'], hi: [0x2e, 'u16'] },
  { name: 'usedDirsCount', lo: [0x10, 'u16'], hi: [0x30, 'u16'] },
  { name: 'flags', offset: 0x12, kind: 'u16' },
  { name: 'excludeBitmap', lo: [0x14, 'u32'], hi: [0x34, 'u32'] },
  { name: 'blockBitmapCsum', lo: [0x18, 'u16'], hi: [0x38, 'u16'] },
  { name: 'inodeBitmapCsum', lo: [0x1a, 'u16'], hi: [0x3a, 'u16'] },
  { name: 'itableUnused', lo: [0x1c, 'u16'], hi: [0x32, 'u16'] },
  { name: 'checksum', offset: GD_CHECKSUM_OFFSET, kind: 'u16' },
] as const);

export type GroupDesc = StructValue<typeof groupDescStruct.fields>;

/** Decode descriptor `group` from a GDT buffer of descSize-byte records. */
export function decodeGroupDesc(gdt: Uint8Array, group: number, descSize: number): GroupDesc {
  return groupDescStruct.decode(gdt, group * descSize, Math.min(descSize, 64));
}

/** Encode descriptor `group` into the GDT buffer (checksum as given; see groupDescChecksum). */
export function encodeGroupDesc(gd: GroupDesc, gdt: Uint8Array, group: number, descSize: number): void {
  groupDescStruct.encodeInto(gd, gdt, group * descSize, Math.min(descSize, 64));
}

export interface GdChecksumContext {
  metadataCsum: boolean;
  gdtCsum: boolean;
  fsSeed: number;
  uuid: Uint8Array;
  descSize: number;
}

/**
 * bg_checksum over the encoded descriptor at gdt[group*descSize, +descSize):
 * metadata_csum: low 16 bits of crc32c(fsSeed, le32 group ‖ desc with checksum = 0);
 * gdt_csum: crc16 over uuid ‖ le32 group ‖ desc without the checksum field.
 */
export function groupDescChecksum(gdt: Uint8Array, group: number, ctx: GdChecksumContext): number {
  const start = group * ctx.descSize;
  const end = start + ctx.descSize;
  const csumAt = start + GD_CHECKSUM_OFFSET;
  if (ctx.metadataCsum) {
    // In place, the checksum field fed as two zero bytes: no copy of the descriptor.
    let c = crc32c(crc32cU32le(ctx.fsSeed, group), gdt, start, csumAt);
    c = crc32cZeros(c, 2);
    return crc32c(c, gdt, csumAt + 2, end) & 0xffff;
  }
  if (ctx.gdtCsum) {
    const le = new Uint8Array(4);
    new DataView(le.buffer).setUint32(0, group, true);
    let c = crc16(0xffff, ctx.uuid);
    c = crc16(c, le);
    c = crc16(c, gdt.subarray(start, csumAt));
    if (ctx.descSize > GD_CHECKSUM_OFFSET + 2) c = crc16(c, gdt.subarray(csumAt + 2, end));
    return c;
  }
  return 0;
}

/** Set the checksum field of descriptor `group` in place. */
export function sealGroupDesc(gdt: Uint8Array, group: number, ctx: GdChecksumContext): void {
  const sum = groupDescChecksum(gdt, group, ctx);
  new DataView(gdt.buffer, gdt.byteOffset).setUint16(group * ctx.descSize + GD_CHECKSUM_OFFSET, sum, true);
}

export function verifyGroupDesc(gdt: Uint8Array, group: number, ctx: GdChecksumContext): void {
  if (!ctx.metadataCsum && !ctx.gdtCsum) return;
  const stored = new DataView(gdt.buffer, gdt.byteOffset).getUint16(group * ctx.descSize + GD_CHECKSUM_OFFSET, true);
  const want = groupDescChecksum(gdt, group, ctx);
  if (stored !== want) throw badChecksum(`group ${group} descriptor checksum 0x${stored.toString(16)} != 0x${want.toString(16)}`);
}
