/**
 * The log blocks of one transaction, as ext4ts writes them (csum v3, 64-bit tags):
 *
 *   | desc | d0 | d1 | ... | d253 | desc | d254 | ... | revoke | ... | commit |
 *
 * A descriptor holds up to 254 tags at 4 KiB blocks: 12-byte header, the first tag
 * (16 bytes) followed by the 16-byte journal UUID, later tags with SAME_UUID (16 bytes
 * each), the last one with LAST_TAG, and the 4-byte tail checksum:
 * 12 + 32 + 16 × 253 = 4092 = 4096 − 4. Data blocks follow their descriptor in tag
 * order; a block starting with the jbd2 magic is logged with those 4 bytes zeroed and
 * its tag marked ESCAPE. Each tag carries crc32c(crc32c(seed, be32 tid), logged copy).
 * Revoke blocks carry 64-bit records. The commit block carries the commit time and a
 * checksum over the whole block.
 *
 * Cost per transaction of n blocks and r revokes: n + ceil(n / 254) + ceil(r / 509) + 1
 * log blocks written, each data block copied once into the log buffer (the snapshot is
 * logged as it is; an escaped block is copied once more).
 */
import { assert } from '../assert.js';
import {
  BlockType, COMMIT_CHKSUM_OFFSET, COMMIT_NSEC_OFFSET, COMMIT_SEC_OFFSET, JBD2_HEADER_BYTES, JBD2_MAGIC, TagFlags,
  commitBlockChecksum, encodeJournalHeader, encodeJournalTag3, journalDataChecksum, sealJournalBlockTail,
} from '../format/jbd2.js';
import { encodeRevokeBlocks, revokeBlocksFor } from './revoke.js';

const TAG3_BYTES = 16;
const UUID_BYTES = 16;
const TAIL_BYTES = 4;

/** Tags one descriptor block holds (csum v3: 254 at 4 KiB, 62 at 1 KiB). */
export function tagsPerDescriptor(blockSizeBytes: number): number {
  return 1 + Math.floor((blockSizeBytes - JBD2_HEADER_BYTES - TAIL_BYTES - TAG3_BYTES - UUID_BYTES) / TAG3_BYTES);
}

/** Log blocks a transaction of `blockCount` blocks and `revokeCount` revokes occupies. */
export function transactionLogBlocks(blockCount: number, revokeCount: number, blockSizeBytes: number): number {
  const descriptors = Math.ceil(blockCount / tagsPerDescriptor(blockSizeBytes));
  return blockCount + descriptors + revokeBlocksFor(revokeCount, blockSizeBytes, true, TAIL_BYTES) + 1;
}

export interface TransactionImage {
  tid: number;
  /** Blocks in log order and the bytes to log for each (the snapshot; not modified). */
  blockNrs: readonly number[];
  data: ReadonlyMap<number, Uint8Array>;
  revoked: readonly number[];
  seed: number;
  uuid: Uint8Array;
  blockSizeBytes: number;
  commitTimeMs: number;
}

export interface TransactionBlocks {
  /** Descriptors with their data blocks, then revoke blocks: everything before the commit. */
  body: Uint8Array[];
  commit: Uint8Array;
  escapedCount: number;
}

/** Builds every log block of one transaction. */
export function buildTransactionBlocks(image: TransactionImage): TransactionBlocks {
  const { tid, blockNrs, data, blockSizeBytes: bs, seed } = image;
  const perDescriptor = tagsPerDescriptor(bs);
  const body: Uint8Array[] = [];
  let escapedCount = 0;
  for (let i = 0; i < blockNrs.length; i += perDescriptor) {
    const group = blockNrs.slice(i, i + perDescriptor);
    const descriptor = new Uint8Array(bs);
    encodeJournalHeader(descriptor, BlockType.DESCRIPTOR, tid);
    body.push(descriptor);
    let at = JBD2_HEADER_BYTES;
    group.forEach((blockNr, k) => {
      const source = data.get(blockNr);
      assert(source !== undefined && source.length === bs, `snapshot of block ${blockNr}`);
      let flags = k === 0 ? 0 : TagFlags.SAME_UUID;
      if (k === group.length - 1) flags |= TagFlags.LAST_TAG;
      // The snapshot is logged as it is (read, never written); only an escaped block needs a copy.
      let logged = source;
      if (((source[0] << 24) | (source[1] << 16) | (source[2] << 8) | source[3]) >>> 0 === JBD2_MAGIC) {
        logged = source.slice();
        logged.fill(0, 0, 4);
        flags |= TagFlags.ESCAPE;
        escapedCount++;
      }
      encodeJournalTag3(descriptor, at, { blockNr, flags, checksum: journalDataChecksum(seed, tid, logged) });
      at += TAG3_BYTES;
      if (k === 0) {
        descriptor.set(image.uuid, at);
        at += UUID_BYTES;
      }
      body.push(logged);
    });
    assert(at <= bs - TAIL_BYTES, 'tags fit in the descriptor');
    sealJournalBlockTail(descriptor, seed);
  }
  body.push(...encodeRevokeBlocks(image.revoked, tid, bs, seed));
  return { body, commit: buildCommitBlock(tid, bs, seed, image.commitTimeMs), escapedCount };
}

/** A csum-v3 commit block: header, type/size 0, h_chksum[0], commit sec/nsec. */
export function buildCommitBlock(tid: number, blockSizeBytes: number, seed: number, commitTimeMs: number): Uint8Array {
  const block = new Uint8Array(blockSizeBytes);
  const view = new DataView(block.buffer);
  encodeJournalHeader(block, BlockType.COMMIT, tid);
  const sec = Math.floor(commitTimeMs / 1000);
  view.setBigUint64(COMMIT_SEC_OFFSET, BigInt(sec));
  view.setUint32(COMMIT_NSEC_OFFSET, Math.floor((commitTimeMs - sec * 1000) * 1e6));
  view.setUint32(COMMIT_CHKSUM_OFFSET, commitBlockChecksum(block, seed));
  return block;
}
