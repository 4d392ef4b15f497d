/**
 * Journal: jbd2 for ext4ts — handles with credits, one running and at most one
 * committing transaction, commit, checkpoint, and the journal superblock kept as the
 * kernel keeps it (ext4-format.md §9). Generic: fs block numbers only, no ext4.
 *
 * ## The buffer-identity rule (how the caller's metadata cache and the journal agree)
 * The journal owns the newest bytes of every block it holds, in `live` (one
 * Uint8Array per fs block), from the first getWriteAccess/getCreateAccess until the
 * block is checkpointed home (or revoked):
 * - `journal.peek(blockNr)` returns those bytes or undefined. The caller's cache MUST
 *   ask `peek` first on every metadata read: while the journal holds a block, the
 *   device and any cached copy may be stale. The bytes returned are read-only for
 *   everyone except a handle that has write access.
 * - getWriteAccess returns the live buffer if there is one (the same object for every
 *   handle, across transactions, until checkpoint), else reads `readBlock` (the
 *   caller's cache) and copies it into a new live buffer. The caller's cached copy is
 *   never modified by the journal.
 * - Checkpoint writes a block home, then calls `onCheckpointed(blockNr, bytes)` so the
 *   cache can refresh its copy, and drops the live buffer unless the running (or a
 *   committing) transaction still uses it or a live handle holds it.
 * - revoke drops the live buffer: the block is no longer metadata; the caller drops it
 *   from its cache too.
 * - The caller never writes a block home itself while the journal holds it.
 *
 * ## Write ordering (what makes a commit durable only after its blocks)
 *   [jsb FUA, only when the log was empty or features change]
 *   → descriptors + data + revokes (parallel writes) → flush → commit block (FUA)
 * data=ordered: the waits handles registered with orderData run beside the log writes
 * (after the transaction's handles have drained) and are awaited before that flush, so
 * the file data a transaction's metadata points at is durable before its commit block.
 * Checkpoint: home writes (only of committed transactions) → flush → jsb FUA (new tail).
 * So the jsb never points past a transaction whose blocks are not home, and a commit
 * block is never durable before the blocks it covers.
 *
 * ## Hooks for the filesystem
 * - onFirstDirty: awaited before the first transaction goes into an empty log (s_start
 *   0 → non-zero); ext4 sets incompat RECOVER there and writes its superblock.
 * - onLogEmpty: awaited after a checkpoint leaves the log empty and s_start = 0 is on
 *   disk (close, explicit checkpoint); ext4 clears RECOVER there on a clean unmount.
 * - frozen triggers (JournalHandle.setFrozenTrigger): run on a dirty block's live bytes
 *   when its transaction is frozen for commit (drained, before the snapshot); ext4
 *   encodes its superblock there, once per transaction.
 *
 * ## Rules for callers
 * - Never call commit()/close(), or start() a second handle, while holding a handle: a
 *   commit waits for every handle of its transaction to stop (jbd2 nests handles of one
 *   task instead; ext4ts callers pass their handle down).
 * - A freed block may be reused only after the transaction that revoked it commits
 *   (the allocator's job, as in ext4); checkpoint relies on that.
 *
 * Cost per commit of n blocks: n + ceil(n/254) + 2 log blocks (descriptor(s), commit)
 * written in ~2 device writes per contiguous log run, 1 flush, 1 FUA write; checkpoint:
 * one write per contiguous home run, 1 flush, 1 FUA jsb write.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import {
  BlockType, JBD2_CRC32C_CHKSUM, JCompat, JIncompat, encodeJournalSuperblock, journalSeed, type JournalSuperblock,
} from '../format/jbd2.js';
import { FsError, corrupted } from '../vfs/errors.js';
import { buildTransactionBlocks, tagsPerDescriptor, transactionLogBlocks } from './commit.js';
import type { MetadataJournal } from './handle.js';
import { LogMap, type JournalGeometry } from './log-map.js';
import { readJournalSuperblockAt } from './recovery.js';
import { revokeBlocksFor } from './revoke.js';
import { Handle, Transaction, deferred, type HandleHost } from './transaction.js';

/** Like ext4's default `commit=5`. */
export const COMMIT_INTERVAL_MS_DEFAULT = 5000;
/** jbd2 caps a transaction at a quarter of the log. */
export const MAX_TRANSACTION_LOG_FRACTION = 4;
/**
 * start() retries at most this many times to join a transaction with room. Each retry
 * follows a commit that emptied the running transaction, so one retry is the norm; more
 * happen only when other handles fill the fresh transaction first.
 */
const START_ATTEMPTS_MAX = 64;

export interface JournalOptions {
  /** Reads fs block `blockNr` through the caller's metadata cache; the journal copies it. */
  readBlock(blockNr: number): Promise<Uint8Array>;
  /** Awaited before the log goes from empty to holding a transaction (set RECOVER). */
  onFirstDirty?(): Promise<void>;
  /** Awaited once s_start = 0 is durable after a checkpoint (clear RECOVER). */
  onLogEmpty?(): Promise<void>;
  /** The device now holds `bytes` at `blockNr` (checkpoint wrote it home). */
  onCheckpointed?(blockNr: number, bytes: Uint8Array): void;
  /** Commit the running transaction this long after its first change; 0 = never by timer. */
  commitIntervalMs?: number;
  /** Max blocks one transaction may dirty; default (and ceiling) a quarter of the log. */
  maxTransactionBlocks?: number;
  /** Valid fs blocks are [0, fsBlockCount); default every block of the device. */
  fsBlockCount?: number;
  /** Commit time source (ms since the epoch); default Date.now. */
  nowMs?(): number;
}

export interface JournalStats {
  commits: number;
  blocksLogged: number;
  checkpoints: number;
  blocksCheckpointed: number;
  /** Log blocks held by committed, not yet checkpointed transactions. */
  logBlocksUsed: number;
  logBlocksTotal: number;
  nextTid: number;
}

export class Journal implements MetadataJournal, HandleHost {
  readonly blockSizeBytes: number;
  readonly maxTransactionBlocks: number;
  private readonly map: LogMap;
  private readonly seed: number;
  private readonly first: number;
  private readonly last: number;
  private readonly logLength: number;
  private readonly fsBlockCount: number;
  /** The newest bytes of every block the journal holds (see the buffer-identity rule). */
  private readonly live = new Map<number, Uint8Array>();
  /** Live handles holding each block: such a block's live buffer is never dropped. */
  private readonly pins = new Map<number, number>();
  private readonly loading = new Map<number, Promise<Uint8Array>>();
  private running: Transaction | undefined;
  /** The transaction being locked/drained/written (at most one). */
  private committing: Transaction | undefined;
  private readonly committed: Transaction[] = [];
  /**
   * For each block with a snapshot in a committed transaction, that transaction (only the
   * newest keeps one: supersede). Kept so that neither a commit nor a handle's stop walks
   * every committed transaction per block — fsync-heavy work commits many between
   * checkpoints.
   */
  private readonly snapshotHolder = new Map<number, Transaction>();
  /** Serializes commits and checkpoints: each runs alone, in order. */
  private ioChain: Promise<void> = Promise.resolve();
  private nextTid: number;
  /** Next log block to write. */
  private head: number;
  private logBlocksUsed = 0;
  private timer: NodeJS.Timeout | undefined;
  private aborted: FsError | undefined;
  private closed = false;
  private readonly counters = { commits: 0, blocksLogged: 0, checkpoints: 0, blocksCheckpointed: 0 };

  private constructor(
    private readonly device: BlockDevice,
    geometry: JournalGeometry,
    map: LogMap,
    private jsb: JournalSuperblock,
    private readonly block0: Uint8Array,
    private readonly options: JournalOptions,
  ) {
    this.blockSizeBytes = geometry.blockSizeBytes;
    this.map = map;
    this.seed = journalSeed(jsb.uuid);
    this.first = jsb.first;
    this.last = jsb.maxLen;
    this.logLength = this.last - this.first;
    const ceiling = Math.floor(jsb.maxLen / MAX_TRANSACTION_LOG_FRACTION);
    this.maxTransactionBlocks = Math.min(options.maxTransactionBlocks ?? ceiling, ceiling);
    assert(this.maxTransactionBlocks >= 1, 'a transaction holds at least one block');
    // The largest transaction (plus its descriptors, a revoke block and its commit) fits
    // in the log with room to spare, so checkpointing everything always makes room.
    assert(transactionLogBlocks(this.maxTransactionBlocks, 0, this.blockSizeBytes) + 1 <= this.logLength / 2, 'max transaction fits in half the log');
    const deviceBlocks = Math.floor(device.sizeBytes / this.blockSizeBytes);
    this.fsBlockCount = Math.min(options.fsBlockCount ?? deviceBlocks, deviceBlocks);
    this.nextTid = jsb.sequenceFirst >>> 0;
    this.head = this.first;
  }

  /**
   * Opens the journal for writing. The log must be empty (s_start = 0): run
   * recoverJournal first. Throws EROFS on a read-only device, ENOTSUP for a v1 or
   * fast-commit journal, EUCLEAN when the log needs recovery or is corrupt.
   */
  static async open(device: BlockDevice, geometry: JournalGeometry, options: JournalOptions): Promise<Journal> {
    if (device.readOnly) throw new FsError('EROFS', { syscall: 'journal open' });
    const map = new LogMap(device, geometry);
    const jsb = await readJournalSuperblockAt(device, map);
    if (jsb.blockType !== BlockType.SUPERBLOCK_V2) throw new FsError('ENOTSUP', { syscall: 'journal open', detail: 'v1 journal superblock' });
    if ((jsb.featureIncompat & JIncompat.FAST_COMMIT) !== 0) throw new FsError('ENOTSUP', { syscall: 'journal open', detail: 'fast-commit journal' });
    if (jsb.start !== 0) throw corrupted('journal needs recovery (s_start != 0): run recoverJournal first', { syscall: 'journal open' });
    const block0 = new Uint8Array(geometry.blockSizeBytes);
    await map.read(device, 0, block0);
    return new Journal(device, geometry, map, jsb, block0, options);
  }

  /** Whether the journal was aborted (an I/O error, or abort()): it takes no more handles. */
  get isAborted(): boolean {
    return this.aborted !== undefined;
  }

  get stats(): JournalStats {
    return { ...this.counters, logBlocksUsed: this.logBlocksUsed, logBlocksTotal: this.logLength, nextTid: this.nextTid };
  }

  /** The journal superblock as last written (or read). */
  get superblock(): Readonly<JournalSuperblock> {
    return this.jsb;
  }

  /** The newest bytes of `blockNr` if the journal holds it (read-only; see the rule above). */
  peek(blockNr: number): Uint8Array | undefined {
    return this.live.get(blockNr);
  }

  // ---------------------------------------------------------------------------------
  // Handles

  async start(credits: number): Promise<Handle> {
    assert(Number.isInteger(credits) && credits >= 1, `start(${credits})`);
    if (credits > this.maxTransactionBlocks) {
      throw new FsError('ENOSPC', { syscall: 'journal start', detail: `${credits} credits > max transaction ${this.maxTransactionBlocks}` });
    }
    for (let attempt = 0; attempt < START_ATTEMPTS_MAX; attempt++) {
      this.checkUsable();
      // A locked transaction's handles finish before any new handle starts, so a commit
      // snapshot never holds half of a later handle's changes.
      const draining = this.committing;
      if (draining !== undefined && draining.state === 'locked') {
        await draining.drained.promise;
        continue;
      }
      const transaction = this.running ?? this.newRunning();
      if (transaction.blocksCharged + this.revokeCharge(transaction) + credits <= this.maxTransactionBlocks) {
        transaction.handleCount++;
        transaction.creditsReserved += credits;
        return new Handle(this, transaction, credits);
      }
      void this.requestCommit(transaction);
      await transaction.drained.promise;
    }
    assert(false, 'start found no transaction with room');
  }

  async stop(handle: Handle): Promise<void> {
    assert(handle instanceof Handle && !handle.stopped, 'stop of a live handle of this journal');
    const transaction = handle.transaction;
    handle.stopped = true;
    transaction.creditsReserved -= handle.credits;
    handle.credits = 0;
    for (const blockNr of handle.buffers.keys()) {
      this.unpin(blockNr);
      this.forgetIfUnused(blockNr);
    }
    handle.buffers.clear();
    transaction.handleCount--;
    assert(transaction.handleCount >= 0 && transaction.creditsReserved >= 0, 'handle accounting');
    if (transaction.handleCount === 0 && transaction.state === 'locked') transaction.drained.resolve();
  }

  private newRunning(): Transaction {
    assert(this.running === undefined, 'one running transaction');
    this.running = new Transaction();
    return this.running;
  }

  /** Revoke records count against the transaction like the blocks that hold them. */
  private revokeCharge(transaction: Transaction): number {
    return revokeBlocksFor(transaction.revoked.size, this.blockSizeBytes, true, 4);
  }

  private pin(handle: Handle, blockNr: number, buffer: Uint8Array): void {
    if (!handle.buffers.has(blockNr)) this.pins.set(blockNr, (this.pins.get(blockNr) ?? 0) + 1);
    handle.buffers.set(blockNr, buffer);
  }

  private unpin(blockNr: number): void {
    const count = this.pins.get(blockNr);
    assert(count !== undefined && count > 0, 'pin count');
    if (count === 1) this.pins.delete(blockNr);
    else this.pins.set(blockNr, count - 1);
  }

  /** Drops the live buffer of a block taken for access but dirtied nowhere. */
  private forgetIfUnused(blockNr: number): void {
    if (this.pins.has(blockNr) || this.running?.dirty.has(blockNr) || this.committing?.dirty.has(blockNr)) return;
    if (this.snapshotHolder.has(blockNr)) return;
    this.live.delete(blockNr);
  }

  private checkBlockNr(blockNr: number): void {
    // (Messages built only on failure: this runs for every block a handle touches.)
    if (!(Number.isSafeInteger(blockNr) && blockNr >= 0 && blockNr < this.fsBlockCount)) assert(false, `block ${blockNr} outside the filesystem`);
    if (this.map.containsFsBlock(blockNr)) assert(false, `block ${blockNr} belongs to the journal`);
  }

  async accessBlock(handle: Handle, blockNr: number): Promise<Uint8Array> {
    this.checkBlockNr(blockNr);
    this.checkUsable();
    let buffer = this.live.get(blockNr);
    if (buffer === undefined) {
      let pending = this.loading.get(blockNr);
      if (pending === undefined) {
        pending = this.load(blockNr);
        this.loading.set(blockNr, pending);
      }
      const loaded = await pending;
      // Another handle may have created or revoked it meanwhile: the live buffer wins.
      buffer = this.live.get(blockNr);
      if (buffer === undefined) {
        buffer = loaded;
        this.live.set(blockNr, buffer);
      }
    }
    handle.transaction.revoked.delete(blockNr); // logging a block again cancels its revoke
    this.pin(handle, blockNr, buffer);
    return buffer;
  }

  accessBlockNow(handle: Handle, blockNr: number): Uint8Array | undefined {
    this.checkBlockNr(blockNr);
    this.checkUsable();
    const buffer = this.live.get(blockNr);
    if (buffer === undefined) return undefined;
    handle.transaction.revoked.delete(blockNr); // logging a block again cancels its revoke
    this.pin(handle, blockNr, buffer);
    return buffer;
  }

  private async load(blockNr: number): Promise<Uint8Array> {
    try {
      const bytes = await this.options.readBlock(blockNr);
      assert(bytes.length === this.blockSizeBytes, `readBlock(${blockNr}) returned ${bytes.length} bytes`);
      return bytes.slice();
    } finally {
      this.loading.delete(blockNr);
    }
  }

  createBlock(handle: Handle, blockNr: number): Uint8Array {
    this.checkBlockNr(blockNr);
    this.checkUsable();
    let buffer = this.live.get(blockNr);
    if (buffer === undefined) {
      buffer = new Uint8Array(this.blockSizeBytes);
      this.live.set(blockNr, buffer);
    } else {
      buffer.fill(0);
    }
    handle.transaction.revoked.delete(blockNr);
    this.pin(handle, blockNr, buffer);
    return buffer;
  }

  dirtyBlock(handle: Handle, blockNr: number): void {
    const transaction = handle.transaction;
    const buffer = handle.buffers.get(blockNr);
    if (!(buffer !== undefined && this.live.get(blockNr) === buffer)) assert(false, `block ${blockNr}: the handle's buffer is the live one`);
    if (transaction.dirty.has(blockNr)) return;
    if (handle.credits <= 0) assert(false, `handle out of credits dirtying block ${blockNr}`);
    handle.credits--;
    transaction.creditsReserved--;
    transaction.dirty.add(blockNr);
    if (transaction.state === 'running') this.armTimer(transaction);
  }

  revokeBlock(handle: Handle, blockNr: number): void {
    this.checkBlockNr(blockNr);
    const transaction = handle.transaction;
    transaction.dirty.delete(blockNr);
    transaction.revoked.add(blockNr);
    if (handle.buffers.delete(blockNr)) this.unpin(blockNr);
    this.live.delete(blockNr);
    if (transaction.state === 'running') this.armTimer(transaction);
  }

  extendHandle(handle: Handle, credits: number): boolean {
    const transaction = handle.transaction;
    if (transaction.state !== 'running') return false;
    if (transaction.blocksCharged + this.revokeCharge(transaction) + credits > this.maxTransactionBlocks) return false;
    handle.credits += credits;
    transaction.creditsReserved += credits;
    return true;
  }

  // ---------------------------------------------------------------------------------
  // Commit

  /** Commits the running transaction and waits until it is durable; flushes the device. */
  async commit(): Promise<void> {
    this.checkUsable();
    const transaction = this.running;
    if (transaction !== undefined && (!transaction.isEmpty || transaction.handleCount > 0)) {
      await this.requestCommit(transaction);
      if (transaction.state !== 'empty') return; // the commit block went out FUA
    } else {
      await this.ioChain;
    }
    this.checkUsable();
    // Nothing to commit: still make completed writes (file data) durable, like fsync.
    await this.device.flush();
  }

  private requestCommit(transaction: Transaction): Promise<void> {
    if (transaction.commitRequested !== undefined) return transaction.commitRequested;
    const done = this.ioChain.then(() => this.commitTransaction(transaction));
    this.ioChain = done.catch(() => undefined);
    transaction.commitRequested = done;
    return done;
  }

  private armTimer(transaction: Transaction): void {
    const intervalMs = this.options.commitIntervalMs ?? COMMIT_INTERVAL_MS_DEFAULT;
    if (intervalMs <= 0 || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.running === transaction && this.aborted === undefined && !this.closed) {
        this.requestCommit(transaction).catch(() => undefined); // the error is kept in `aborted`
      }
    }, intervalMs);
    this.timer.unref();
  }

  private async commitTransaction(transaction: Transaction): Promise<void> {
    if (this.aborted !== undefined) {
      // Waiters in start() wake up and find the journal aborted.
      transaction.locked.resolve();
      transaction.drained.resolve();
      throw this.aborted;
    }
    await this.lockAndDrain(transaction);
    if (transaction.isEmpty) {
      transaction.finish('empty');
      this.committing = undefined;
      return;
    }
    try {
      await this.writeTransaction(transaction);
    } catch (error) {
      throw this.abortWith(error, 'commit');
    }
  }

  private async lockAndDrain(transaction: Transaction): Promise<void> {
    assert(transaction.state === 'running' && this.running === transaction, 'commit of the running transaction');
    assert(this.committing === undefined, 'one commit at a time');
    this.running = undefined;
    this.committing = transaction;
    transaction.state = 'locked';
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    transaction.locked.resolve();
    if (transaction.handleCount === 0) transaction.drained.resolve();
    await transaction.drained.promise;
    const next = this.running as Transaction | undefined; // handles may have run while we waited
    assert(next === undefined || next.handleCount === 0, 'no handle started while draining');
  }

  private async writeTransaction(transaction: Transaction): Promise<void> {
    transaction.state = 'committing';
    transaction.tid = this.nextTid;
    this.nextTid = (this.nextTid + 1) >>> 0;
    for (const blockNr of transaction.dirty) {
      const live = this.live.get(blockNr);
      assert(live !== undefined, `dirty block ${blockNr} has a live buffer`);
      // Frozen: no handle of this transaction is left and none of the next has started.
      transaction.frozenTriggers.get(blockNr)?.(live);
      transaction.snapshot.set(blockNr, live.slice());
    }
    // data=ordered: the data goes out while the log is written; both finish before the flush.
    const ordered = Promise.all(transaction.orderedData.splice(0).map((wait) => wait()));
    ordered.catch(() => undefined); // awaited below; a throw before then must not leave it unhandled
    const blockNrs = [...transaction.dirty];
    const revoked = [...transaction.revoked];
    const logBlocks = transactionLogBlocks(blockNrs.length, revoked.length, this.blockSizeBytes);
    assert(logBlocks <= this.logLength, 'transaction fits in the log');
    if (this.logLength - this.logBlocksUsed < logBlocks) await this.checkpointNow({ block: this.head, tid: transaction.tid });
    assert(this.logLength - this.logBlocksUsed >= logBlocks, 'checkpoint made room');
    await this.prepareSuperblock(transaction, revoked.length > 0);
    const built = buildTransactionBlocks({
      tid: transaction.tid, blockNrs, data: transaction.snapshot, revoked, seed: this.seed, uuid: this.jsb.uuid,
      blockSizeBytes: this.blockSizeBytes, commitTimeMs: (this.options.nowMs ?? Date.now)(),
    });
    transaction.logStart = this.head;
    await this.writeLog(this.head, built.body);
    await ordered;
    const commitAt = this.advance(this.head, built.body.length);
    await this.device.flush();
    await this.device.write(this.map.offsetBytes(commitAt), built.commit, { fua: true });
    this.head = this.advance(commitAt, 1);
    transaction.logBlocks = built.body.length + 1;
    assert(transaction.logBlocks === logBlocks, 'log blocks as predicted');
    this.logBlocksUsed += logBlocks;
    transaction.finish('committed');
    this.supersede(transaction);
    this.committed.push(transaction);
    this.committing = undefined;
    this.counters.commits++;
    this.counters.blocksLogged += logBlocks;
  }

  /**
   * Checkpoint writes all committed transactions at once, so only the newest committed
   * copy of a block (or its revoke) matters: older copies are dropped as soon as a newer
   * transaction commits, which bounds snapshot memory by distinct blocks, not log size.
   */
  private supersede(newer: Transaction): void {
    for (const blockNr of newer.dirty) {
      this.snapshotHolder.get(blockNr)?.snapshot.delete(blockNr);
      this.snapshotHolder.set(blockNr, newer);
    }
    for (const blockNr of newer.revoked) {
      this.snapshotHolder.get(blockNr)?.snapshot.delete(blockNr);
      this.snapshotHolder.delete(blockNr);
    }
  }


  /** Log block `count` blocks after `block`, wrapping inside [first, last). */
  private advance(block: number, count: number): number {
    return this.first + ((block - this.first + count) % this.logLength);
  }

  /** Writes `blocks` at consecutive log positions from `start`, one device write per contiguous run. */
  private async writeLog(start: number, blocks: readonly Uint8Array[]): Promise<void> {
    const bs = this.blockSizeBytes;
    const writes: Promise<void>[] = [];
    let index = 0;
    let at = start;
    while (index < blocks.length) {
      const piece = Math.min(blocks.length - index, this.last - at); // up to the wrap
      for (const run of this.map.runs(at, piece)) {
        const buffer = new Uint8Array(run.blockCount * bs);
        for (let k = 0; k < run.blockCount; k++) buffer.set(blocks[index + (run.journalStart - at) + k], k * bs);
        writes.push(this.device.write(run.fsStart * bs, buffer));
      }
      index += piece;
      at = this.advance(at, piece);
    }
    await Promise.all(writes);
  }

  /**
   * Before writing `transaction`: the log must name it as its start if it was empty, and
   * the features must say what the log holds (64BIT|CSUM_V3, REVOKE once used).
   */
  private async prepareSuperblock(transaction: Transaction, usesRevoke: boolean): Promise<void> {
    const jsb = this.jsb;
    const wantIncompat = (jsb.featureIncompat & ~(JIncompat.CSUM_V2 | JIncompat.ASYNC_COMMIT)) | JIncompat.BIT64 | JIncompat.CSUM_V3 | (usesRevoke ? JIncompat.REVOKE : 0);
    const wasEmpty = jsb.start === 0;
    const featuresChange = wantIncompat !== jsb.featureIncompat || jsb.checksumType !== JBD2_CRC32C_CHKSUM || (jsb.featureCompat & JCompat.CHECKSUM) !== 0;
    if (!wasEmpty && !featuresChange) return;
    if (wasEmpty) await this.options.onFirstDirty?.();
    const next: JournalSuperblock = {
      ...jsb,
      featureIncompat: wantIncompat,
      featureCompat: jsb.featureCompat & ~JCompat.CHECKSUM,
      checksumType: JBD2_CRC32C_CHKSUM,
      start: wasEmpty ? this.head : jsb.start,
      sequenceFirst: wasEmpty ? transaction.tid : jsb.sequenceFirst,
    };
    await this.writeSuperblock(next);
  }

  private async writeSuperblock(jsb: JournalSuperblock): Promise<void> {
    const encoded = encodeJournalSuperblock(jsb);
    const block = this.block0.slice();
    block.set(encoded, 0);
    await this.device.write(this.map.offsetBytes(0), block, { fua: true });
    this.jsb = { ...jsb, raw: encoded, checksum: new DataView(encoded.buffer).getUint32(0xfc) };
  }

  // ---------------------------------------------------------------------------------
  // Checkpoint

  /** Writes every committed transaction home and advances the log tail. */
  checkpoint(): Promise<void> {
    this.checkUsable();
    const done = this.ioChain.then(() => this.checkpointNow(undefined));
    this.ioChain = done.catch(() => undefined);
    return done;
  }

  /**
   * Runs inside ioChain. `nextTail` is where the log starts when it becomes empty and a
   * commit is about to be written there (then s_start stays non-zero, as the kernel's
   * tail = head); without it an empty log gets s_start = 0 and onLogEmpty runs.
   */
  private async checkpointNow(nextTail: { block: number; tid: number } | undefined): Promise<void> {
    try {
      await this.checkpointCommitted();
      await this.updateTail(nextTail);
    } catch (error) {
      throw this.abortWith(error, 'checkpoint');
    }
  }

  private async checkpointCommitted(): Promise<void> {
    if (this.committed.length === 0) return;
    const versions = new Map<number, Uint8Array>();
    for (const transaction of this.committed) {
      for (const [blockNr, bytes] of transaction.snapshot) versions.set(blockNr, bytes);
      for (const blockNr of transaction.revoked) versions.delete(blockNr);
    }
    await this.writeHome(versions);
    await this.device.flush();
    for (const transaction of this.committed) this.logBlocksUsed -= transaction.logBlocks;
    this.committed.length = 0;
    this.snapshotHolder.clear();
    assert(this.logBlocksUsed === 0, 'log empty after checkpoint of everything committed');
    const stillUsed = new Set<number>([...(this.running?.dirty ?? []), ...(this.committing?.dirty ?? [])]);
    for (const [blockNr, bytes] of versions) {
      if (!stillUsed.has(blockNr) && !this.pins.has(blockNr)) this.live.delete(blockNr);
      this.options.onCheckpointed?.(blockNr, bytes);
    }
    this.counters.checkpoints++;
    this.counters.blocksCheckpointed += versions.size;
  }

  /** Home writes sorted by block, one device write per run of consecutive blocks. */
  private async writeHome(versions: ReadonlyMap<number, Uint8Array>): Promise<void> {
    const bs = this.blockSizeBytes;
    const sorted = [...versions.keys()].sort((a, b) => a - b);
    const RUN_BLOCKS_MAX = 256;
    const writes: Promise<void>[] = [];
    for (let i = 0; i < sorted.length;) {
      let end = i + 1;
      while (end < sorted.length && end - i < RUN_BLOCKS_MAX && sorted[end] === sorted[end - 1] + 1) end++;
      const buffer = new Uint8Array((end - i) * bs);
      for (let k = i; k < end; k++) buffer.set(versions.get(sorted[k]) as Uint8Array, (k - i) * bs);
      writes.push(this.device.write(sorted[i] * bs, buffer));
      i = end;
    }
    await Promise.all(writes);
  }

  private async updateTail(nextTail: { block: number; tid: number } | undefined): Promise<void> {
    assert(this.committed.length === 0, 'tail moves only past checkpointed transactions');
    const jsb = this.jsb;
    if (nextTail !== undefined) {
      if (jsb.start === nextTail.block && jsb.sequenceFirst === nextTail.tid) return;
      await this.writeSuperblock({ ...jsb, start: nextTail.block, sequenceFirst: nextTail.tid });
      return;
    }
    if (jsb.start === 0 && jsb.sequenceFirst === this.nextTid) return;
    const wasEmpty = jsb.start === 0;
    await this.writeSuperblock({ ...jsb, start: 0, sequenceFirst: this.nextTid });
    this.head = this.first;
    if (!wasEmpty) await this.options.onLogEmpty?.();
  }

  // ---------------------------------------------------------------------------------
  // Shutdown

  /**
   * Commits, checkpoints everything, marks the log empty (s_start = 0, s_sequence =
   * next tid) and runs onLogEmpty. Rejects with the abort error if the journal aborted.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.checkUsable();
    assert(this.running === undefined || this.running.handleCount === 0, 'close with live handles');
    await this.commit();
    await this.checkpoint();
    this.closed = true;
    this.stopTimer();
  }

  /**
   * Stops the journal where it is, like jbd2_journal_abort: no further I/O; every later
   * call rejects. The log on disk stays as it is, for recovery (tests use this as a crash).
   */
  abort(reason = 'journal aborted'): void {
    this.aborted ??= new FsError('EIO', { syscall: 'journal', detail: reason });
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private abortWith(error: unknown, what: string): FsError {
    const detail = `${what} failed: ${error instanceof Error ? error.message : String(error)}`;
    this.aborted ??= FsError.is(error) ? new FsError(error.code, { syscall: 'journal', detail, cause: error }) : new FsError('EIO', { syscall: 'journal', detail, cause: error });
    this.stopTimer();
    return this.aborted;
  }

  private checkUsable(): void {
    if (this.aborted !== undefined) throw this.aborted;
    assert(!this.closed, 'journal is closed');
  }
}

export { tagsPerDescriptor };
