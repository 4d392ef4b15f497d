/**
 * Extent tree nodes (ext4-format.md §6). A node is a 12-byte header and 12-byte entries:
 * index entries at depth > 0, leaf extents at depth 0. The root lives in i_block (60 bytes,
 * max 4 entries); other nodes fill a block (max (bs-12)/12 = 340 at 4 KiB) followed by a
 * crc32c tail.
 *
 *   leaf  ee_len ≤ 32768  → initialized extent of ee_len blocks
 *         ee_len > 32768  → unwritten extent of ee_len - 32768 blocks (reads as zeros)
 */
import { crc32c } from './crc32c.js';
import { badChecksum, corrupted } from '../vfs/errors.js';

export const EXTENT_MAGIC = 0xf30a;
export const EXTENT_HEADER_BYTES = 12;
export const EXTENT_ENTRY_BYTES = 12;
export const EXT_INIT_MAX_LEN = 32768;
export const EXT_UNWRITTEN_MAX_LEN = 32767;
export const EXT_MAX_DEPTH = 5;
export const ROOT_MAX_ENTRIES = 4;

export interface ExtentHeader { entries: number; max: number; depth: number; generation: number }
/** A leaf extent: logical [lblk, lblk+len) maps to physical [pblk, pblk+len). */
export interface Extent { lblk: number; len: number; pblk: number; unwritten: boolean }
/** An index entry: the child node at `leaf` covers logical blocks from `lblk`. */
export interface ExtentIndex { lblk: number; leaf: number }

export function nodeMaxEntries(blockSizeBytes: number): number {
  return Math.floor((blockSizeBytes - EXTENT_HEADER_BYTES) / EXTENT_ENTRY_BYTES);
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

export function decodeExtentHeader(node: Uint8Array): ExtentHeader {
  const v = dv(node);
  if (node.length < EXTENT_HEADER_BYTES || v.getUint16(0, true) !== EXTENT_MAGIC) {
    throw corrupted('extent node has a bad magic');
  }
  return { entries: v.getUint16(2, true), max: v.getUint16(4, true), depth: v.getUint16(6, true), generation: v.getUint32(8, true) };
}

export function encodeExtentHeader(node: Uint8Array, h: ExtentHeader): void {
  const v = dv(node);
  v.setUint16(0, EXTENT_MAGIC, true);
  v.setUint16(2, h.entries, true);
  v.setUint16(4, h.max, true);
  v.setUint16(6, h.depth, true);
  v.setUint32(8, h.generation, true);
}

/**
 * Structural checks on a node (the kernel's ext4_ext_check): entries ≤ max ≤ what fits,
 * max close to what fits, the expected depth, sorted and non-overlapping entries, no
 * zero-length extents, no extent crossing 2^32. Returns the header.
 */
export function checkExtentNode(node: Uint8Array, expectedDepth: number, maxFit: number): ExtentHeader {
  const h = decodeExtentHeader(node);
  if (h.depth !== expectedDepth) throw corrupted(`extent node depth ${h.depth}, expected ${expectedDepth}`);
  if (h.depth > EXT_MAX_DEPTH) throw corrupted(`extent depth ${h.depth} too large`);
  if (h.max > maxFit || h.max < maxFit - 2 || h.max === 0) throw corrupted(`extent node max ${h.max} invalid (fits ${maxFit})`);
  if (h.entries > h.max) throw corrupted(`extent node has ${h.entries} entries, max ${h.max}`);
  if (h.entries === 0 && h.depth > 0) throw corrupted('empty extent index node');
  let prevEnd = -1;
  for (let i = 0; i < h.entries; i++) {
    if (h.depth === 0) {
      const e = decodeExtent(node, i);
      if (e.len === 0) throw corrupted(`zero-length extent at entry ${i}`);
      if (e.lblk < prevEnd) throw corrupted(`extent ${i} at ${e.lblk} overlaps or is out of order`);
      if (e.lblk + e.len > 2 ** 32) throw corrupted(`extent ${i} runs past logical block 2^32`);
      prevEnd = e.lblk + e.len;
    } else {
      const x = decodeExtentIndex(node, i);
      if (x.lblk <= prevEnd && i > 0) throw corrupted(`index ${i} at ${x.lblk} out of order`);
      prevEnd = x.lblk;
    }
  }
  return h;
}

export function decodeExtent(node: Uint8Array, index: number): Extent {
  const v = dv(node);
  const o = EXTENT_HEADER_BYTES + index * EXTENT_ENTRY_BYTES;
  const rawLen = v.getUint16(o + 4, true);
  const unwritten = rawLen > EXT_INIT_MAX_LEN;
  return {
    lblk: v.getUint32(o, true),
    len: unwritten ? rawLen - EXT_INIT_MAX_LEN : rawLen,
    pblk: v.getUint16(o + 6, true) * 2 ** 32 + v.getUint32(o + 8, true),
    unwritten,
  };
}

export function encodeExtent(node: Uint8Array, index: number, e: Extent): void {
  if (e.unwritten ? e.len > EXT_UNWRITTEN_MAX_LEN : e.len > EXT_INIT_MAX_LEN) {
    throw corrupted(`extent length ${e.len} too large`);
  }
  const v = dv(node);
  const o = EXTENT_HEADER_BYTES + index * EXTENT_ENTRY_BYTES;
  v.setUint32(o, e.lblk, true);
  v.setUint16(o + 4, e.unwritten ? e.len + EXT_INIT_MAX_LEN : e.len, true);
  v.setUint16(o + 6, Math.floor(e.pblk / 2 ** 32), true);
  v.setUint32(o + 8, e.pblk % 2 ** 32, true);
}

export function decodeExtentIndex(node: Uint8Array, index: number): ExtentIndex {
  const v = dv(node);
  const o = EXTENT_HEADER_BYTES + index * EXTENT_ENTRY_BYTES;
  return { lblk: v.getUint32(o, true), leaf: v.getUint16(o + 8, true) * 2 ** 32 + v.getUint32(o + 4, true) };
}

export function encodeExtentIndex(node: Uint8Array, index: number, x: ExtentIndex): void {
  const v = dv(node);
  const o = EXTENT_HEADER_BYTES + index * EXTENT_ENTRY_BYTES;
  v.setUint32(o, x.lblk, true);
  v.setUint32(o + 4, x.leaf % 2 ** 32, true);
  v.setUint16(o + 8, Math.floor(x.leaf / 2 ** 32), true);
  v.setUint16(o + 10, 0, true);
}

/** Offset of the tail checksum in a block node: just past `max` entries. */
export function extentTailOffset(max: number): number {
  return EXTENT_HEADER_BYTES + max * EXTENT_ENTRY_BYTES;
}

export function extentBlockChecksum(block: Uint8Array, inodeSeed: number): number {
  const max = dv(block).getUint16(4, true);
  return crc32c(inodeSeed, block, 0, extentTailOffset(max));
}

export function sealExtentBlock(block: Uint8Array, inodeSeed: number): void {
  const max = dv(block).getUint16(4, true);
  dv(block).setUint32(extentTailOffset(max), extentBlockChecksum(block, inodeSeed), true);
}

export function verifyExtentBlock(block: Uint8Array, inodeSeed: number, pblk: number): void {
  const max = dv(block).getUint16(4, true);
  const tail = extentTailOffset(max);
  if (tail + 4 > block.length) throw corrupted(`extent block ${pblk} max ${max} leaves no room for its tail`);
  const stored = dv(block).getUint32(tail, true);
  const want = extentBlockChecksum(block, inodeSeed);
  if (stored !== want) throw badChecksum(`extent block ${pblk} checksum 0x${stored.toString(16)} != 0x${want.toString(16)}`);
}
