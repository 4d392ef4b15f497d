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

// Little-endian fields read and written byte by byte: a DataView per call would be an
// allocation per extent entry (the buffer_head path decodes and encodes entries for
// every block it allocates). Entry offsets are checked against the node, as DataView would.
function entryAt(node: Uint8Array, index: number): number {
  const o = EXTENT_HEADER_BYTES + index * EXTENT_ENTRY_BYTES;
  if (index < 0 || o + EXTENT_ENTRY_BYTES > node.length) throw corrupted(`extent entry ${index} lies past its ${node.length}-byte node`);
  return o;
}

function u16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}

function u32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

function put16(b: Uint8Array, o: number, value: number): void {
  b[o] = value;
  b[o + 1] = value >>> 8;
}

function put32(b: Uint8Array, o: number, value: number): void {
  b[o] = value;
  b[o + 1] = value >>> 8;
  b[o + 2] = value >>> 16;
  b[o + 3] = value >>> 24;
}

export function decodeExtentHeader(node: Uint8Array): ExtentHeader {
  if (node.length < EXTENT_HEADER_BYTES || u16(node, 0) !== EXTENT_MAGIC) {
    throw corrupted('extent node has a bad magic');
  }
  return { entries: u16(node, 2), max: u16(node, 4), depth: u16(node, 6), generation: u32(node, 8) };
}

export function encodeExtentHeader(node: Uint8Array, h: ExtentHeader): void {
  if (node.length < EXTENT_HEADER_BYTES) throw corrupted('extent node too short for its header');
  put16(node, 0, EXTENT_MAGIC);
  put16(node, 2, h.entries);
  put16(node, 4, h.max);
  put16(node, 6, h.depth);
  put32(node, 8, h.generation);
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

/** The first logical block of entry `index` (extent or index entry: both start with it), without decoding the rest. */
export function extentEntryLblk(node: Uint8Array, index: number): number {
  return u32(node, entryAt(node, index));
}

/**
 * Every Extent the engine makes comes from here, so they all share one shape: the tree
 * code walks hundreds of them per leaf, and a property read that meets more than four
 * shapes (spreads, literals in other orders) falls off V8's fast path.
 */
export function makeExtent(lblk: number, len: number, pblk: number, unwritten: boolean): Extent {
  return { lblk, len, pblk, unwritten };
}

/** A block number from its low 32 and high 16 bits (a double only when it needs to be). */
function join48(lo: number, hi: number): number {
  return hi === 0 ? lo : hi * 0x1_0000_0000 + lo;
}

/** A block number's high 16 bits. (No `%` on a double: that is a call to fmod.) */
function high16(value: number): number {
  return value < 0x1_0000_0000 ? 0 : Math.floor(value / 0x1_0000_0000);
}

export function decodeExtent(node: Uint8Array, index: number): Extent {
  const o = entryAt(node, index);
  const rawLen = u16(node, o + 4);
  const unwritten = rawLen > EXT_INIT_MAX_LEN;
  return makeExtent(u32(node, o), unwritten ? rawLen - EXT_INIT_MAX_LEN : rawLen, join48(u32(node, o + 8), u16(node, o + 6)), unwritten);
}

export function encodeExtent(node: Uint8Array, index: number, e: Extent): void {
  if (e.unwritten ? e.len > EXT_UNWRITTEN_MAX_LEN : e.len > EXT_INIT_MAX_LEN) {
    throw corrupted(`extent length ${e.len} too large`);
  }
  const o = entryAt(node, index);
  const hi = high16(e.pblk);
  put32(node, o, e.lblk);
  put16(node, o + 4, e.unwritten ? e.len + EXT_INIT_MAX_LEN : e.len);
  put16(node, o + 6, hi);
  put32(node, o + 8, e.pblk - hi * 0x1_0000_0000);
}

export function decodeExtentIndex(node: Uint8Array, index: number): ExtentIndex {
  const o = entryAt(node, index);
  return { lblk: u32(node, o), leaf: join48(u32(node, o + 4), u16(node, o + 8)) };
}

export function encodeExtentIndex(node: Uint8Array, index: number, x: ExtentIndex): void {
  const o = entryAt(node, index);
  const hi = high16(x.leaf);
  put32(node, o, x.lblk);
  put32(node, o + 4, x.leaf - hi * 0x1_0000_0000);
  put16(node, o + 8, hi);
  put16(node, o + 10, 0);
}

/** Offset of the tail checksum in a block node: just past `max` entries. */
export function extentTailOffset(max: number): number {
  return EXTENT_HEADER_BYTES + max * EXTENT_ENTRY_BYTES;
}

export function extentBlockChecksum(block: Uint8Array, inodeSeed: number): number {
  return crc32c(inodeSeed, block, 0, extentTailOffset(u16(block, 4)));
}

export function sealExtentBlock(block: Uint8Array, inodeSeed: number): void {
  const tail = extentTailOffset(u16(block, 4));
  if (tail + 4 > block.length) throw corrupted(`extent block max ${u16(block, 4)} leaves no room for its tail`);
  put32(block, tail, extentBlockChecksum(block, inodeSeed));
}

export function verifyExtentBlock(block: Uint8Array, inodeSeed: number, pblk: number): void {
  const max = u16(block, 4);
  const tail = extentTailOffset(max);
  if (tail + 4 > block.length) throw corrupted(`extent block ${pblk} max ${max} leaves no room for its tail`);
  const stored = u32(block, tail);
  const want = extentBlockChecksum(block, inodeSeed);
  if (stored !== want) throw badChecksum(`extent block ${pblk} checksum 0x${stored.toString(16)} != 0x${want.toString(16)}`);
}
