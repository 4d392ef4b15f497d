/**
 * Transactions and handles.
 *
 * A transaction moves running → locked → committing → committed → (checkpointed, gone):
 * - running: handles join it (start) and dirty blocks in it;
 * - locked: its commit has begun; no new handle joins, the ones inside finish (drain);
 * - committing: drained; its blocks are copied (snapshot) and written to the log;
 * - committed: durable in the log, waiting for checkpoint to write the blocks home.
 * Its tid is given when it is locked and found non-empty, so tids in the log are always
 * consecutive (an empty transaction costs nothing and uses no tid).
 */
import { assert } from '../assert.js';
import type { JournalHandle } from './handle.js';

export type TransactionState = 'running' | 'locked' | 'committing' | 'committed' | 'empty';

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((ok, fail) => { resolve = ok; reject = fail; });
  promise.catch(() => undefined); // a rejection nobody awaited must not crash the process
  return { promise, resolve, reject };
}

export class Transaction {
  state: TransactionState = 'running';
  /** Assigned when the commit starts; -1 before. */
  tid = -1;
  /** Blocks dirtied in this transaction, in first-dirty order (= log order). */
  readonly dirty = new Set<number>();
  /** Blocks revoked in this transaction (never also in `dirty`). */
  readonly revoked = new Set<number>();
  handleCount = 0;
  /** Credits held by live handles and not used yet. */
  creditsReserved = 0;
  /** The blocks' bytes when the commit started (copies). */
  snapshot = new Map<number, Uint8Array>();
  /** Where the transaction sits in the log, once written. */
  logStart = -1;
  logBlocks = 0;
  /** A commit was asked for (timer, full, fsync, close). */
  commitRequested: Promise<void> | undefined;
  /** Resolved when it stops being the running transaction. */
  readonly locked = deferred();
  /** Resolved when its last handle stops after it is locked. */
  readonly drained = deferred();
  /** Run once committed (or found empty): see JournalHandle.onCommitted. */
  readonly commitCallbacks: (() => void)[] = [];
  /** Awaited by the commit before its commit block: see JournalHandle.orderData. */
  readonly orderedData: (() => Promise<void>)[] = [];
  /** Run on a dirty block's live bytes when the commit freezes it: see JournalHandle.setFrozenTrigger. */
  readonly frozenTriggers = new Map<number, (bytes: Uint8Array) => void>();

  /** Mark committed (or empty) and run the commit callbacks, in registration order. */
  finish(state: 'committed' | 'empty'): void {
    this.state = state;
    this.orderedData.length = 0;
    this.frozenTriggers.clear();
    const callbacks = this.commitCallbacks.splice(0);
    for (const callback of callbacks) callback();
  }

  /** Blocks this transaction accounts for against the max transaction size. */
  get blocksCharged(): number {
    return this.dirty.size + this.creditsReserved;
  }

  get isEmpty(): boolean {
    return this.dirty.size === 0 && this.revoked.size === 0;
  }
}

/** What a handle needs from the journal (kept narrow so the handle stays simple). */
export interface HandleHost {
  accessBlock(handle: Handle, blockNr: number): Promise<Uint8Array>;
  accessBlockNow(handle: Handle, blockNr: number): Uint8Array | undefined;
  createBlock(handle: Handle, blockNr: number): Uint8Array;
  dirtyBlock(handle: Handle, blockNr: number): void;
  revokeBlock(handle: Handle, blockNr: number): void;
  extendHandle(handle: Handle, credits: number): boolean;
}

export class Handle implements JournalHandle {
  /** Blocks this handle took access to, with the live buffer it was given. */
  readonly buffers = new Map<number, Uint8Array>();
  stopped = false;

  constructor(
    private readonly host: HandleHost,
    readonly transaction: Transaction,
    public credits: number,
  ) {}

  get creditsLeft(): number {
    return this.credits;
  }

  getWriteAccess(blockNr: number): Promise<Uint8Array> {
    assert(!this.stopped, 'getWriteAccess on a stopped handle');
    return this.host.accessBlock(this, blockNr);
  }

  getWriteAccessNow(blockNr: number): Uint8Array | undefined {
    assert(!this.stopped, 'getWriteAccessNow on a stopped handle');
    return this.host.accessBlockNow(this, blockNr);
  }

  getCreateAccess(blockNr: number): Uint8Array {
    assert(!this.stopped, 'getCreateAccess on a stopped handle');
    return this.host.createBlock(this, blockNr);
  }

  dirtyMetadata(blockNr: number): void {
    assert(!this.stopped, 'dirtyMetadata on a stopped handle');
    if (!this.buffers.has(blockNr)) assert(false, `dirtyMetadata(${blockNr}) without getWriteAccess/getCreateAccess`);
    this.host.dirtyBlock(this, blockNr);
  }

  revoke(blockNr: number): void {
    assert(!this.stopped, 'revoke on a stopped handle');
    this.host.revokeBlock(this, blockNr);
  }

  onCommitted(callback: () => void): void {
    assert(!this.stopped, 'onCommitted on a stopped handle');
    this.transaction.commitCallbacks.push(callback);
  }

  orderData(wait: () => Promise<void>): void {
    assert(!this.stopped, 'orderData on a stopped handle');
    this.transaction.orderedData.push(wait);
  }

  setFrozenTrigger(blockNr: number, freeze: (bytes: Uint8Array) => void): void {
    assert(!this.stopped, 'setFrozenTrigger on a stopped handle');
    if (!(this.buffers.has(blockNr) && this.transaction.dirty.has(blockNr))) assert(false, `setFrozenTrigger(${blockNr}) on a block this handle dirtied`);
    this.transaction.frozenTriggers.set(blockNr, freeze);
  }

  hasFrozenTrigger(blockNr: number): boolean {
    assert(!this.stopped, 'hasFrozenTrigger on a stopped handle');
    return this.transaction.frozenTriggers.has(blockNr);
  }

  extend(credits: number): boolean {
    assert(!this.stopped, 'extend on a stopped handle');
    assert(Number.isInteger(credits) && credits >= 0, `extend by ${credits}`);
    return this.host.extendHandle(this, credits);
  }
}
