/**
 * Revoke blocks (ext4-format.md §9): a header, be32 r_count = bytes used including the
 * 16-byte header, then one record per revoked fs block (be64 with the 64BIT feature,
 * else be32), then — with csum v2/v3 — the 4-byte tail checksum in the last 4 bytes.
 *
 *   | magic | type 5 | tid | r_count | rec0 (8) | rec1 (8) | ... | 0 0 ... | tail csum |
 *   0       4        8     12        16                                     bs-4
 *
 * A 4 KiB block with 64-bit records and a tail holds (4096 - 16 - 4) / 8 = 509 records.
 */
import { assert } from '../assert.js';
import { BlockType, encodeJournalHeader, sealJournalBlockTail } from '../format/jbd2.js';
import { corrupted } from '../vfs/errors.js';

export const REVOKE_HEADER_BYTES = 16;
const R_COUNT_OFFSET = 12;

/** Records per revoke block. */
export function revokeRecordsPerBlock(blockSizeBytes: number, bit64: boolean, csumTailBytes: number): number {
  return Math.floor((blockSizeBytes - REVOKE_HEADER_BYTES - csumTailBytes) / (bit64 ? 8 : 4));
}

/** Revoke blocks that `recordCount` records need (0 for none). */
export function revokeBlocksFor(recordCount: number, blockSizeBytes: number, bit64: boolean, csumTailBytes: number): number {
  return Math.ceil(recordCount / revokeRecordsPerBlock(blockSizeBytes, bit64, csumTailBytes));
}

/**
 * Builds the revoke blocks for `blockNrs` (64-bit records), sealed with the tail
 * checksum when `seed` is given.
 */
export function encodeRevokeBlocks(blockNrs: readonly number[], tid: number, blockSizeBytes: number, seed: number | undefined): Uint8Array[] {
  const tailBytes = seed === undefined ? 0 : 4;
  const perBlock = revokeRecordsPerBlock(blockSizeBytes, true, tailBytes);
  const blocks: Uint8Array[] = [];
  for (let i = 0; i < blockNrs.length; i += perBlock) {
    const chunk = blockNrs.slice(i, i + perBlock);
    const block = new Uint8Array(blockSizeBytes);
    const view = new DataView(block.buffer);
    encodeJournalHeader(block, BlockType.REVOKE, tid);
    view.setUint32(R_COUNT_OFFSET, REVOKE_HEADER_BYTES + chunk.length * 8);
    chunk.forEach((blockNr, k) => {
      assert(Number.isSafeInteger(blockNr) && blockNr >= 0, `revoke of block ${blockNr}`);
      view.setBigUint64(REVOKE_HEADER_BYTES + k * 8, BigInt(blockNr));
    });
    if (seed !== undefined) sealJournalBlockTail(block, seed);
    blocks.push(block);
  }
  return blocks;
}

/** The records of one revoke block. Throws EUCLEAN when r_count is out of bounds. */
export function decodeRevokeRecords(block: Uint8Array, bit64: boolean, csumTailBytes: number): number[] {
  const view = new DataView(block.buffer, block.byteOffset, block.length);
  const countBytes = view.getUint32(R_COUNT_OFFSET);
  const recordBytes = bit64 ? 8 : 4;
  if (countBytes < REVOKE_HEADER_BYTES || countBytes > block.length - csumTailBytes) {
    throw corrupted(`revoke block r_count ${countBytes} outside [${REVOKE_HEADER_BYTES}, ${block.length - csumTailBytes}]`);
  }
  const records: number[] = [];
  for (let at = REVOKE_HEADER_BYTES; at + recordBytes <= countBytes; at += recordBytes) {
    records.push(bit64 ? Number(view.getBigUint64(at)) : view.getUint32(at));
  }
  return records;
}

/** tid a is after tid b, modulo 2^32 (jbd2 tids wrap). */
export function tidGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

export function tidGeq(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** Recovery's revoke table: fs block → the newest tid that revoked it. */
export class RevokeTable {
  private readonly newest = new Map<number, number>();

  get size(): number {
    return this.newest.size;
  }

  set(blockNr: number, tid: number): void {
    const seen = this.newest.get(blockNr);
    if (seen === undefined || tidGt(tid, seen)) this.newest.set(blockNr, tid >>> 0);
  }

  /** A block logged by transaction `tid` is revoked when some tid ≥ it revoked it. */
  revokes(blockNr: number, tid: number): boolean {
    const seen = this.newest.get(blockNr);
    return seen !== undefined && tidGeq(seen, tid);
  }
}
