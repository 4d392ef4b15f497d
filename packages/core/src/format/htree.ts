/**
 * Hashed directory index blocks (ext4-format.md §7 "htree").
 *
 *   dx_root  block 0:  "." (12) | ".." (rec_len bs-12) | root info (8) | count/limit | entries… | dx_tail
 *   dx_node          : fake dirent (inode 0, rec_len bs) | count/limit | entries… | dx_tail
 *
 * Entry 0's hash is implicitly 0 (its slot holds count/limit); entries are {hash, block}.
 */
import { crc32c } from './crc32c.js';
import { badChecksum, corrupted } from '../vfs/errors.js';

export const DX_ENTRY_BYTES = 8;
export const DX_TAIL_BYTES = 8;
export const DX_ROOT_INFO_OFFSET = 0x18;
export const DX_NODE_COUNT_OFFSET = 8;

export interface DxEntry { hash: number; block: number }
export interface DxRootInfo { hashVersion: number; infoLength: number; indirectLevels: number; unusedFlags: number }
export interface DxBlock {
  countOffset: number;
  limit: number;
  count: number;
  entries: DxEntry[];
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

/** The limit a dx block must carry: what fits before the tail (if metadata_csum). */
export function dxLimit(blockSizeBytes: number, countOffset: number, withCsum: boolean): number {
  return Math.floor((blockSizeBytes - countOffset - (withCsum ? DX_TAIL_BYTES : 0)) / DX_ENTRY_BYTES);
}

export function decodeDxRootInfo(block: Uint8Array): DxRootInfo {
  const o = DX_ROOT_INFO_OFFSET;
  if (dv(block).getUint32(o, true) !== 0) throw corrupted('dx_root reserved field is not zero');
  return { hashVersion: block[o + 4], infoLength: block[o + 5], indirectLevels: block[o + 6], unusedFlags: block[o + 7] };
}

/** Count offset in a dx_root: after "." and ".." (24 bytes) and the root info. */
export function dxRootCountOffset(info: DxRootInfo): number {
  return DX_ROOT_INFO_OFFSET + info.infoLength;
}

/** Parse the count/limit header and `count` entries at countOffset, bounds-checked. */
export function decodeDxEntries(block: Uint8Array, countOffset: number, expectedLimit: number, label: string): DxBlock {
  const v = dv(block);
  const limit = v.getUint16(countOffset, true);
  const count = v.getUint16(countOffset + 2, true);
  if (limit !== expectedLimit) throw corrupted(`${label}: dx limit ${limit}, expected ${expectedLimit}`);
  if (count === 0 || count > limit) throw corrupted(`${label}: dx count ${count} out of range (limit ${limit})`);
  const entries: DxEntry[] = [];
  for (let i = 0; i < count; i++) {
    const o = countOffset + i * DX_ENTRY_BYTES;
    entries.push({ hash: i === 0 ? 0 : v.getUint32(o, true), block: v.getUint32(o + 4, true) });
    if (i > 1 && entries[i].hash < entries[i - 1].hash) throw corrupted(`${label}: dx hashes out of order at ${i}`);
  }
  return { countOffset, limit, count, entries };
}

export function encodeDxEntries(block: Uint8Array, countOffset: number, limit: number, entries: DxEntry[]): void {
  const v = dv(block);
  for (let i = 0; i < entries.length; i++) {
    const o = countOffset + i * DX_ENTRY_BYTES;
    if (i > 0) v.setUint32(o, entries[i].hash, true);
    v.setUint32(o + 4, entries[i].block, true);
  }
  v.setUint16(countOffset, limit, true);
  v.setUint16(countOffset + 2, entries.length, true);
}

/**
 * dx checksum: crc32c over block[0, countOffset + 8·count), then the tail's
 * dt_reserved word as stored, then 4 zero bytes (the checksum slot).
 */
export function dxChecksum(block: Uint8Array, countOffset: number, inodeSeed: number): number {
  const v = dv(block);
  const limit = v.getUint16(countOffset, true);
  const count = v.getUint16(countOffset + 2, true);
  const tail = countOffset + limit * DX_ENTRY_BYTES;
  let c = crc32c(inodeSeed, block, 0, countOffset + count * DX_ENTRY_BYTES);
  c = crc32c(c, block, tail, tail + 4);
  return crc32c(c, new Uint8Array(4));
}

export function dxTailOffset(block: Uint8Array, countOffset: number): number {
  return countOffset + dv(block).getUint16(countOffset, true) * DX_ENTRY_BYTES;
}

export function sealDxBlock(block: Uint8Array, countOffset: number, inodeSeed: number): void {
  const tail = dxTailOffset(block, countOffset);
  dv(block).setUint32(tail + 4, dxChecksum(block, countOffset, inodeSeed), true);
}

export function verifyDxBlock(block: Uint8Array, countOffset: number, inodeSeed: number, label: string): void {
  const tail = dxTailOffset(block, countOffset);
  if (tail + DX_TAIL_BYTES > block.length) throw corrupted(`${label}: dx limit leaves no room for the tail`);
  const stored = dv(block).getUint32(tail + 4, true);
  const want = dxChecksum(block, countOffset, inodeSeed);
  if (stored !== want) throw badChecksum(`${label}: dx checksum 0x${stored.toString(16)} != 0x${want.toString(16)}`);
}

/** Whether a block looks like a dx_node: a fake dirent with inode 0 spanning the whole block. */
export function isDxNode(block: Uint8Array): boolean {
  const v = dv(block);
  return v.getUint32(0, true) === 0 && v.getUint16(4, true) === block.length && block[6] === 0;
}
