/**
 * recoverJournal: replay a jbd2 log left by ext4ts, the kernel or e2fsprogs (§9).
 *
 * Three passes over the log, starting at jsb.s_start with expected tid jsb.s_sequence:
 * 1. SCAN walks descriptors (skipping their data blocks), revoke blocks and commit
 *    blocks while each block has the magic and the expected tid, verifies every
 *    descriptor/revoke/commit checksum, and ends at the first transaction without a
 *    valid commit. It records the structure (tags, data positions, revoke records), so
 *    the later passes read only data blocks.
 * 2. REVOKE builds fs block → newest revoking tid over the committed transactions.
 * 3. REPLAY copies each tagged block home, in log order, unless a tid ≥ its own revoked
 *    it; verifies the tag checksum first (a mismatch skips the block and is reported);
 *    restores the escaped magic.
 * Then: flush, s_sequence = end + 1, s_start = 0, write the journal superblock durably.
 * Clearing the filesystem's RECOVER flag (and re-reading the superblock, which the
 * kernel journals) is the caller's job: this file knows nothing of ext4.
 *
 * Checksum rules when the commit or a descriptor is bad (the kernel's and e2fsck's
 * behaviour, stated in §9): a commit block with a bad checksum ends the log at its
 * transaction — silently when its commit time is older than the previous commit's
 * (stale blocks from an earlier pass over the ring), else reported as `failedCommitTid`.
 * A descriptor or revoke block with a bad checksum makes its transaction suspect: when
 * its commit is found, an older commit time means stale data (end quietly), a newer one
 * means real corruption (EBADMSG, nothing written).
 *
 * Bounds: every loop is bounded by the log length or the block size; a log that walks
 * longer than the journal, a tag pointing outside [0, fsBlockCount) or into the journal,
 * or a bad r_count gives an FsError before any block is written.
 * Not supported: fast-commit replay (ENOTSUP: it is filesystem-specific) and the v1
 * (compat CHECKSUM, crc32) commit checksum, which is not verified.
 *
 * Cost: SCAN reads one block per descriptor/revoke/commit; REPLAY reads and writes one
 * block per tag, plus two flushes and one journal-superblock write.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import {
  BlockType, COMMIT_CHKSUM_OFFSET, COMMIT_SEC_OFFSET, JBD2_MAGIC, JIncompat, TagFlags, commitBlockChecksum,
  decodeJournalHeader, decodeJournalSuperblock, decodeJournalTag, encodeJournalSuperblock, journalBlockTailValid,
  journalDataChecksum, journalSeed, journalTagBytes, verifyJournalSuperblock, type JournalSuperblock,
} from '../format/jbd2.js';
import { FsError, badChecksum, corrupted } from '../vfs/errors.js';
import { LogMap, type JournalGeometry } from './log-map.js';
import { RevokeTable, decodeRevokeRecords, tidGeq } from './revoke.js';

export interface RecoverOptions {
  /** Valid home blocks are [0, fsBlockCount); default: every block of the device. */
  fsBlockCount?: number;
  /** Scan and report only; write nothing. */
  dryRun?: boolean;
}

export interface RecoveryReport {
  /** False when the journal was empty (s_start = 0): nothing was read or written. */
  needed: boolean;
  /** tid of the first transaction in the log (jsb s_sequence before recovery). */
  startTid: number;
  /** tid of the first transaction not replayed: the log ends there. */
  endTid: number;
  transactionsReplayed: number;
  /** Blocks copied home (a block logged by two transactions counts twice). */
  blocksWritten: number;
  /** Tagged blocks skipped because a later (or the same) transaction revoked them. */
  blocksRevoked: number;
  revokeRecords: number;
  /** Fs blocks whose tag checksum did not match: not written (the kernel fails the mount). */
  blocksFailedChecksum: number[];
  /** A commit block with a bad checksum ended the log here (e2fsck: "transaction was corrupt"). */
  failedCommitTid: number | undefined;
  /** jsb s_sequence written afterwards (= endTid + 1). */
  sequenceAfter: number;
}

interface ScannedTag {
  fsBlock: number;
  flags: number;
  checksum: number;
  /** Journal block holding the copy. */
  journalBlock: number;
}

interface ScannedTransaction {
  tid: number;
  tags: ScannedTag[];
  revokes: number[];
  /** A tag pointed outside the filesystem or into the journal. */
  badTag: string | undefined;
}

interface ScanResult {
  transactions: ScannedTransaction[];
  endTid: number;
  failedCommitTid: number | undefined;
}

/** The parts of the journal superblock that shape the log. */
interface LogShape {
  map: LogMap;
  incompat: number;
  csum: 'none' | 'v2' | 'v3';
  seed: number;
  tagBytes: number;
  /** Bytes at the end of descriptor/revoke blocks taken by the tail checksum. */
  tailBytes: number;
  first: number;
  /** One past the last log block (j_last). */
  last: number;
  fsBlockCount: number;
}

/** Reads and verifies the journal superblock at journal block 0. */
export async function readJournalSuperblockAt(device: BlockDevice, map: LogMap): Promise<JournalSuperblock> {
  const block = new Uint8Array(map.blockSizeBytes);
  await map.read(device, 0, block);
  const jsb = decodeJournalSuperblock(block);
  verifyJournalSuperblock(jsb, map.blockSizeBytes, map.blockCount);
  return jsb;
}

function logShape(jsb: JournalSuperblock, map: LogMap, fsBlockCount: number): LogShape {
  // A v1 superblock has no feature fields (jbd2 ignores whatever is stored there).
  const incompat = jsb.blockType === BlockType.SUPERBLOCK_V1 ? 0 : jsb.featureIncompat;
  const csum = (incompat & JIncompat.CSUM_V3) !== 0 ? 'v3' : (incompat & JIncompat.CSUM_V2) !== 0 ? 'v2' : 'none';
  const fcBlocks = (incompat & JIncompat.FAST_COMMIT) !== 0 ? jsb.numFcBlocks || 256 : 0;
  const last = jsb.maxLen - fcBlocks;
  if (last <= jsb.first) throw corrupted(`journal log [${jsb.first}, ${last}) is empty`);
  return {
    map, incompat, csum, seed: journalSeed(jsb.uuid), tagBytes: journalTagBytes(incompat),
    tailBytes: csum === 'none' ? 0 : 4, first: jsb.first, last, fsBlockCount,
  };
}

/**
 * Replays the journal found through `geometry` on `device`, if it holds transactions.
 * Throws FsError (EUCLEAN, EBADMSG, EROFS, ENOTSUP) without writing when the log is
 * corrupt beyond what jbd2 tolerates.
 */
export async function recoverJournal(device: BlockDevice, geometry: JournalGeometry, options: RecoverOptions = {}): Promise<RecoveryReport> {
  const map = new LogMap(device, geometry);
  const jsb = await readJournalSuperblockAt(device, map);
  const deviceBlocks = Math.floor(device.sizeBytes / geometry.blockSizeBytes);
  const fsBlockCount = Math.min(options.fsBlockCount ?? deviceBlocks, deviceBlocks);
  const startTid = jsb.sequenceFirst >>> 0;
  const report: RecoveryReport = {
    needed: jsb.start !== 0, startTid, endTid: startTid, transactionsReplayed: 0, blocksWritten: 0, blocksRevoked: 0,
    revokeRecords: 0, blocksFailedChecksum: [], failedCommitTid: undefined, sequenceAfter: startTid,
  };
  if (jsb.start === 0) return report;
  if ((jsb.featureIncompat & JIncompat.FAST_COMMIT) !== 0 && jsb.blockType === BlockType.SUPERBLOCK_V2) {
    throw new FsError('ENOTSUP', { syscall: 'recoverJournal', detail: 'fast-commit journal replay is not supported' });
  }
  if (device.readOnly && options.dryRun !== true) throw new FsError('EROFS', { syscall: 'recoverJournal', detail: 'journal needs recovery' });
  const shape = logShape(jsb, map, fsBlockCount);

  const scan = await scanPass(device, shape, jsb.start, startTid);
  const committed = scan.transactions.filter((t) => !tidGeq(t.tid, scan.endTid));
  for (const t of committed) if (t.badTag !== undefined) throw corrupted(`journal transaction ${t.tid}: ${t.badTag}`);
  const revoked = revokePass(committed);
  report.endTid = scan.endTid;
  report.failedCommitTid = scan.failedCommitTid;
  report.transactionsReplayed = committed.length;
  report.revokeRecords = committed.reduce((n, t) => n + t.revokes.length, 0);
  report.sequenceAfter = (scan.endTid + 1) >>> 0;
  if (options.dryRun === true) {
    for (const t of committed) for (const tag of t.tags) if (revoked.revokes(tag.fsBlock, t.tid)) report.blocksRevoked++;
    return report;
  }
  await replayPass(device, shape, committed, revoked, report);
  const tagCount = committed.reduce((n, t) => n + t.tags.length, 0);
  assert(report.blocksWritten + report.blocksRevoked + report.blocksFailedChecksum.length === tagCount, 'every tag written, revoked or failed');
  await device.flush();
  jsb.sequenceFirst = report.sequenceAfter;
  jsb.start = 0;
  // The jsb is the first 1024 bytes of journal block 0; the rest of the block is kept.
  const block0 = new Uint8Array(map.blockSizeBytes);
  await map.read(device, 0, block0);
  block0.set(encodeJournalSuperblock(jsb), 0);
  await device.write(map.offsetBytes(0), block0, { fua: true });
  return report;
}

/** Next log block after `block`, wrapping from `last` to `first`. */
function nextLogBlock(shape: LogShape, block: number): number {
  const next = block + 1;
  return next >= shape.last ? shape.first : next;
}

/** Pass 1: the structure of the log and where it ends. */
async function scanPass(device: BlockDevice, shape: LogShape, startBlock: number, startTid: number): Promise<ScanResult> {
  if (startBlock < shape.first || startBlock >= shape.last) throw corrupted(`journal s_start ${startBlock} outside the log`);
  const logLength = shape.last - shape.first;
  const block = new Uint8Array(shape.map.blockSizeBytes);
  const transactions: ScannedTransaction[] = [];
  let at = startBlock;
  let walked = 0;
  let tid = startTid >>> 0;
  let current: ScannedTransaction = { tid, tags: [], revokes: [], badTag: undefined };
  let suspect = false;
  let lastCommitSec = 0n;
  const step = (blocks: number): void => {
    walked += blocks;
    if (walked > logLength) throw corrupted(`journal log from block ${startBlock} runs past its own length (${logLength} blocks)`);
    for (let i = 0; i < blocks; i++) at = nextLogBlock(shape, at);
  };
  for (;;) {
    await shape.map.read(device, at, block);
    const header = decodeJournalHeader(block);
    if (header.magic !== JBD2_MAGIC || header.sequence !== tid) break;
    if (header.blockType === BlockType.DESCRIPTOR) {
      if (shape.csum !== 'none' && !journalBlockTailValid(block, shape.seed)) suspect = true;
      const tags = decodeDescriptorTags(block, shape);
      const dataStart = nextLogBlock(shape, at);
      step(1);
      tags.forEach((tag, i) => {
        const journalBlock = advance(shape, dataStart, i);
        current.badTag ??= checkTagTarget(shape, tag.blockNr);
        current.tags.push({ fsBlock: tag.blockNr, flags: tag.flags, checksum: tag.checksum, journalBlock });
      });
      step(tags.length);
      continue;
    }
    if (header.blockType === BlockType.REVOKE) {
      if (shape.csum !== 'none' && !journalBlockTailValid(block, shape.seed)) suspect = true;
      current.revokes.push(...decodeRevokeRecords(block, (shape.incompat & JIncompat.BIT64) !== 0, shape.tailBytes));
      step(1);
      continue;
    }
    if (header.blockType !== BlockType.COMMIT) break; // unknown block type: the log ends here
    const commitSec = new DataView(block.buffer).getBigUint64(COMMIT_SEC_OFFSET);
    const commitValid = shape.csum === 'none' || commitBlockChecksum(block, shape.seed) === new DataView(block.buffer).getUint32(COMMIT_CHKSUM_OFFSET);
    if (suspect) {
      if (commitSec >= lastCommitSec) throw badChecksum(`journal transaction ${tid}: descriptor or revoke block checksum mismatch`);
      return { transactions, endTid: tid, failedCommitTid: undefined }; // stale blocks from an older pass over the ring
    }
    if (!commitValid) {
      if (commitSec < lastCommitSec) return { transactions, endTid: tid, failedCommitTid: undefined };
      return { transactions, endTid: tid, failedCommitTid: tid };
    }
    lastCommitSec = commitSec;
    transactions.push(current);
    step(1);
    tid = (tid + 1) >>> 0;
    current = { tid, tags: [], revokes: [], badTag: undefined };
  }
  return { transactions, endTid: tid, failedCommitTid: undefined };
}

function advance(shape: LogShape, block: number, count: number): number {
  const logLength = shape.last - shape.first;
  return shape.first + ((block - shape.first + count) % logLength);
}

function checkTagTarget(shape: LogShape, fsBlock: number): string | undefined {
  if (!Number.isSafeInteger(fsBlock) || fsBlock >= shape.fsBlockCount) return `tag for block ${fsBlock} outside the filesystem (${shape.fsBlockCount} blocks)`;
  if (shape.map.containsFsBlock(fsBlock)) return `tag for block ${fsBlock}, which belongs to the journal`;
  return undefined;
}

/** The tags of one descriptor block, up to LAST_TAG or the end of the tag area. */
export function decodeDescriptorTags(block: Uint8Array, shape: Pick<LogShape, 'incompat' | 'tagBytes' | 'tailBytes'>): ReturnType<typeof decodeJournalTag>[] {
  const tags: ReturnType<typeof decodeJournalTag>[] = [];
  const end = block.length - shape.tailBytes;
  let at = 12;
  while (at + shape.tagBytes <= end) {
    const tag = decodeJournalTag(block, at, shape.incompat);
    tags.push(tag);
    at += shape.tagBytes;
    if ((tag.flags & TagFlags.SAME_UUID) === 0) at += 16;
    if ((tag.flags & TagFlags.LAST_TAG) !== 0) break;
  }
  return tags;
}

/** Pass 2: fs block → newest revoking tid, over committed transactions only. */
function revokePass(committed: readonly ScannedTransaction[]): RevokeTable {
  const table = new RevokeTable();
  for (const t of committed) for (const blockNr of t.revokes) table.set(blockNr, t.tid);
  return table;
}

/** Pass 3: copy every unrevoked tagged block home, in log order. */
async function replayPass(device: BlockDevice, shape: LogShape, committed: readonly ScannedTransaction[], revoked: RevokeTable, report: RecoveryReport): Promise<void> {
  const bs = shape.map.blockSizeBytes;
  const block = new Uint8Array(bs);
  const view = new DataView(block.buffer);
  for (const t of committed) {
    for (const tag of t.tags) {
      if (revoked.revokes(tag.fsBlock, t.tid)) {
        report.blocksRevoked++;
        continue;
      }
      assert(tag.journalBlock >= shape.first && tag.journalBlock < shape.last, 'data block inside the log');
      await shape.map.read(device, tag.journalBlock, block);
      if (!tagChecksumValid(shape, t.tid, tag, block)) {
        report.blocksFailedChecksum.push(tag.fsBlock);
        continue;
      }
      if ((tag.flags & TagFlags.ESCAPE) !== 0) view.setUint32(0, JBD2_MAGIC);
      await device.write(tag.fsBlock * bs, block);
      report.blocksWritten++;
    }
  }
}

function tagChecksumValid(shape: LogShape, tid: number, tag: ScannedTag, data: Uint8Array): boolean {
  if (shape.csum === 'none') return true;
  const sum = journalDataChecksum(shape.seed, tid, data);
  return shape.csum === 'v3' ? sum === tag.checksum >>> 0 : (sum & 0xffff) === tag.checksum;
}
