/**
 * jbd2 journal structures (ext4-format.md §9). Everything here is BIG-endian.
 * Block types: 1 descriptor, 2 commit, 3 superblock v1, 4 superblock v2, 5 revoke.
 */
import { crc32c } from './crc32c.js';
import { badChecksum, corrupted } from '../vfs/errors.js';

export const JBD2_MAGIC = 0xc03b3998;
export const JBD2_HEADER_BYTES = 12;
export const BlockType = { DESCRIPTOR: 1, COMMIT: 2, SUPERBLOCK_V1: 3, SUPERBLOCK_V2: 4, REVOKE: 5, FC: 6 } as const;
export const JCompat = { CHECKSUM: 0x1 } as const;
export const JIncompat = { REVOKE: 0x1, BIT64: 0x2, ASYNC_COMMIT: 0x4, CSUM_V2: 0x8, CSUM_V3: 0x10, FAST_COMMIT: 0x20 } as const;
export const JBD2_KNOWN_INCOMPAT = 0x3f;
export const JBD2_CRC32C_CHKSUM = 4;
export const TagFlags = { ESCAPE: 1, SAME_UUID: 2, DELETED: 4, LAST_TAG: 8 } as const;

export interface JournalHeader { magic: number; blockType: number; sequence: number }

export interface JournalSuperblock {
  blockType: number;
  sequence: number;
  blockSize: number;
  maxLen: number;
  first: number;
  /** tid of the first transaction expected in the log. */
  sequenceFirst: number;
  /** Log block of the first transaction; 0 ⇔ the journal is empty. */
  start: number;
  errno: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  uuid: Uint8Array;
  nrUsers: number;
  maxTransaction: number;
  maxTransData: number;
  checksumType: number;
  numFcBlocks: number;
  checksum: number;
  /** The whole 1024 bytes as read, so unmodelled fields survive an encode. */
  raw: Uint8Array;
}

export const JSB_SIZE_BYTES = 1024;
const JSB_CHECKSUM_OFFSET = 0xfc;

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.length);
}

export function decodeJournalHeader(block: Uint8Array): JournalHeader {
  const v = dv(block);
  return { magic: v.getUint32(0), blockType: v.getUint32(4), sequence: v.getUint32(8) };
}

export function encodeJournalHeader(block: Uint8Array, blockType: number, sequence: number): void {
  const v = dv(block);
  v.setUint32(0, JBD2_MAGIC);
  v.setUint32(4, blockType);
  v.setUint32(8, sequence >>> 0);
}

export function decodeJournalSuperblock(bytes: Uint8Array): JournalSuperblock {
  if (bytes.length < JSB_SIZE_BYTES) throw corrupted('journal superblock truncated');
  const raw = bytes.slice(0, JSB_SIZE_BYTES);
  const v = dv(raw);
  const h = decodeJournalHeader(raw);
  if (h.magic !== JBD2_MAGIC) throw corrupted('journal superblock has a bad magic');
  if (h.blockType !== BlockType.SUPERBLOCK_V1 && h.blockType !== BlockType.SUPERBLOCK_V2) {
    throw corrupted(`journal superblock has block type ${h.blockType}`);
  }
  return {
    blockType: h.blockType,
    sequence: h.sequence,
    blockSize: v.getUint32(0x0c),
    maxLen: v.getUint32(0x10),
    first: v.getUint32(0x14),
    sequenceFirst: v.getUint32(0x18),
    start: v.getUint32(0x1c),
    errno: v.getInt32(0x20),
    featureCompat: v.getUint32(0x24),
    featureIncompat: v.getUint32(0x28),
    featureRoCompat: v.getUint32(0x2c),
    uuid: raw.slice(0x30, 0x40),
    nrUsers: v.getUint32(0x40),
    maxTransaction: v.getUint32(0x48),
    maxTransData: v.getUint32(0x4c),
    checksumType: raw[0x50],
    numFcBlocks: v.getUint32(0x54),
    checksum: v.getUint32(JSB_CHECKSUM_OFFSET),
    raw,
  };
}

export function journalUsesCsum(jsb: Pick<JournalSuperblock, 'featureIncompat'>): boolean {
  return (jsb.featureIncompat & (JIncompat.CSUM_V2 | JIncompat.CSUM_V3)) !== 0;
}

/** Encode over jsb.raw; the checksum (v2/v3) is crc32c(~0, 1024 bytes with it zeroed). */
export function encodeJournalSuperblock(jsb: JournalSuperblock): Uint8Array {
  const out = jsb.raw.slice();
  const v = dv(out);
  encodeJournalHeader(out, jsb.blockType, jsb.sequence);
  v.setUint32(0x0c, jsb.blockSize);
  v.setUint32(0x10, jsb.maxLen);
  v.setUint32(0x14, jsb.first);
  v.setUint32(0x18, jsb.sequenceFirst >>> 0);
  v.setUint32(0x1c, jsb.start);
  v.setInt32(0x20, jsb.errno);
  v.setUint32(0x24, jsb.featureCompat);
  v.setUint32(0x28, jsb.featureIncompat);
  v.setUint32(0x2c, jsb.featureRoCompat);
  out.set(jsb.uuid, 0x30);
  v.setUint32(0x40, jsb.nrUsers);
  v.setUint32(0x48, jsb.maxTransaction);
  v.setUint32(0x4c, jsb.maxTransData);
  out[0x50] = jsb.checksumType;
  v.setUint32(0x54, jsb.numFcBlocks);
  v.setUint32(JSB_CHECKSUM_OFFSET, 0);
  if (journalUsesCsum(jsb)) v.setUint32(JSB_CHECKSUM_OFFSET, crc32c(0xffffffff, out));
  return out;
}

/** Checks a journal superblock against the fs (block size, length) and its checksum. */
export function verifyJournalSuperblock(jsb: JournalSuperblock, fsBlockSize: number, journalBlocks: number): void {
  if (jsb.blockType !== BlockType.SUPERBLOCK_V2 && jsb.featureIncompat !== 0) throw corrupted('v1 journal with incompat features');
  if (jsb.blockSize !== fsBlockSize) throw corrupted(`journal block size ${jsb.blockSize} != fs block size ${fsBlockSize}`);
  if (jsb.maxLen > journalBlocks || jsb.maxLen < 1024) throw corrupted(`journal length ${jsb.maxLen} invalid (inode has ${journalBlocks} blocks)`);
  if (jsb.first === 0 || jsb.first >= jsb.maxLen) throw corrupted(`journal first block ${jsb.first} invalid`);
  if (jsb.start !== 0 && (jsb.start < jsb.first || jsb.start >= jsb.maxLen)) throw corrupted(`journal start ${jsb.start} invalid`);
  if ((jsb.featureIncompat & ~JBD2_KNOWN_INCOMPAT) !== 0) {
    throw corrupted(`journal has unknown incompat features 0x${jsb.featureIncompat.toString(16)}`);
  }
  const v2 = (jsb.featureIncompat & JIncompat.CSUM_V2) !== 0;
  const v3 = (jsb.featureIncompat & JIncompat.CSUM_V3) !== 0;
  if (v2 && v3) throw corrupted('journal has both csum v2 and v3');
  if (v2 || v3) {
    if (jsb.checksumType !== JBD2_CRC32C_CHKSUM) throw corrupted(`journal checksum type ${jsb.checksumType}`);
    const copy = jsb.raw.slice();
    dv(copy).setUint32(JSB_CHECKSUM_OFFSET, 0);
    if (crc32c(0xffffffff, copy) !== jsb.checksum) throw badChecksum('journal superblock checksum mismatch');
  }
}

/** The journal checksum seed: crc32c(~0, jsb uuid). */
export function journalSeed(uuid: Uint8Array): number {
  return crc32c(0xffffffff, uuid);
}

/** Descriptor/revoke block tail: be32 crc32c(seed, block with the last 4 bytes zero). */
export function journalBlockTailChecksum(block: Uint8Array, seed: number): number {
  const copy = block.slice();
  dv(copy).setUint32(copy.length - 4, 0);
  return crc32c(seed, copy);
}

export function sealJournalBlockTail(block: Uint8Array, seed: number): void {
  dv(block).setUint32(block.length - 4, journalBlockTailChecksum(block, seed));
}

export function journalBlockTailValid(block: Uint8Array, seed: number): boolean {
  return dv(block).getUint32(block.length - 4) === journalBlockTailChecksum(block, seed);
}

/** The size of one descriptor tag for a journal's feature set. */
export function journalTagBytes(featureIncompat: number): number {
  if ((featureIncompat & JIncompat.CSUM_V3) !== 0) return 16;
  let size = 8; // blocknr + checksum(16) + flags(16)
  if ((featureIncompat & JIncompat.BIT64) !== 0) size += 4;
  // csum v2 tags carry 2 bytes of padding after the (16-bit) checksummed tag: 10 or 14 bytes.
  if ((featureIncompat & JIncompat.CSUM_V2) !== 0) size += 2;
  return size;
}

export interface JournalTag { blockNr: number; flags: number; checksum: number }

export function decodeJournalTag(block: Uint8Array, offset: number, featureIncompat: number): JournalTag {
  const v = dv(block);
  const bit64 = (featureIncompat & JIncompat.BIT64) !== 0;
  if ((featureIncompat & JIncompat.CSUM_V3) !== 0) {
    const lo = v.getUint32(offset);
    const hi = bit64 ? v.getUint32(offset + 8) : 0;
    return { blockNr: hi * 2 ** 32 + lo, flags: v.getUint32(offset + 4), checksum: v.getUint32(offset + 12) };
  }
  const lo = v.getUint32(offset);
  const hi = bit64 ? v.getUint32(offset + 8) : 0;
  return { blockNr: hi * 2 ** 32 + lo, checksum: v.getUint16(offset + 4), flags: v.getUint16(offset + 6) };
}

export function encodeJournalTag3(block: Uint8Array, offset: number, tag: JournalTag): void {
  const v = dv(block);
  v.setUint32(offset, tag.blockNr % 2 ** 32);
  v.setUint32(offset + 4, tag.flags);
  v.setUint32(offset + 8, Math.floor(tag.blockNr / 2 ** 32));
  v.setUint32(offset + 12, tag.checksum >>> 0);
}

/** Data block tag checksum (v3): crc32c(crc32c(seed, be32 tid), journal copy of the block). */
export function journalDataChecksum(seed: number, tid: number, data: Uint8Array): number {
  const t = new Uint8Array(4);
  dv(t).setUint32(0, tid >>> 0);
  return crc32c(crc32c(seed, t), data);
}

export const COMMIT_CHKSUM_OFFSET = 0x10;
export const COMMIT_SEC_OFFSET = 0x30;
export const COMMIT_NSEC_OFFSET = 0x38;

/** Commit block checksum: crc32c(seed, block with h_chksum[0] zeroed). */
export function commitBlockChecksum(block: Uint8Array, seed: number): number {
  const copy = block.slice();
  dv(copy).setUint32(COMMIT_CHKSUM_OFFSET, 0);
  return crc32c(seed, copy);
}
