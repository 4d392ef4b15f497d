/**
 * The contract between filesystem code and the journal: every metadata change happens
 * inside a handle, block by block, the way jbd2 does it.
 *
 *   const h = await journal.start(credits);      // reserves log space for `credits` blocks
 *   const buf = await h.getWriteAccess(blockNr); // the live bytes of fs block blockNr
 *   ...modify buf, seal its checksum...
 *   h.dirtyMetadata(blockNr);                    // it belongs to the running transaction
 *   await journal.stop(h);
 *
 * Rules (asserted by implementations):
 * - A block is modified only between getWriteAccess/getCreateAccess and dirtyMetadata of
 *   the same handle; the bytes returned stay the same object for as long as the block is
 *   in the running transaction, so several handles modifying it see each other's changes.
 * - Each distinct block a handle dirties costs one credit; revoke records cost no credit
 *   here (they are counted apart). extend() asks for more; false means: stop this
 *   handle and start a new one.
 * - A freed metadata block is revoked, so replay never writes an older copy over
 *   whatever the block is reused for (data, in particular).
 * - Generic: block numbers are filesystem blocks; nothing here knows ext4.
 */
export interface JournalHandle {
  /** Read (via the metadata cache) fs block `blockNr` and declare it will be modified. */
  getWriteAccess(blockNr: number): Promise<Uint8Array>;
  /**
   * getWriteAccess without a read: the live bytes when the journal already holds the
   * block (a running or committing transaction has it, or a handle took it), else
   * undefined and nothing happens. Synchronous — for paths that run per block and
   * want no promise when nothing has to be read.
   */
  getWriteAccessNow(blockNr: number): Uint8Array | undefined;
  /** A block that is new to metadata (just allocated): zero-filled, never read from disk. */
  getCreateAccess(blockNr: number): Uint8Array;
  /** The bytes of `blockNr` (from getWrite/CreateAccess) are changed and final for now. */
  dirtyMetadata(blockNr: number): void;
  /** `blockNr` stops being metadata (freed): cancel its pending writes, record a revoke. */
  revoke(blockNr: number): void;
  /** Ask for `credits` more blocks; false if the transaction cannot grow. */
  extend(credits: number): boolean;
  /** Credits not yet used. */
  readonly creditsLeft: number;
  /**
   * Run `callback` once this handle's transaction is durably committed (or turns out
   * empty): e.g. blocks freed here become reusable only then (ext4's journal callbacks).
   * Never run if the journal aborts first.
   */
  onCommitted(callback: () => void): void;
  /**
   * data=ordered (jbd2's ordered-data inode list, reduced to its essence): this handle's
   * transaction writes its commit block only after `wait()` has resolved — the data its
   * metadata points at (blocks it allocated, a size it raised) is on the device first.
   * The commit calls `wait` once, after every handle of the transaction has stopped, and
   * awaits it beside its own log writes, before the flush that precedes the commit
   * block. `wait` must not start a handle nor wait for anything that waits for this
   * commit: in practice it waits for data writes already submitted. A rejection aborts
   * the journal (ext4's data_err=abort); to ignore a data error, record it and resolve.
   * Dropped if the transaction turns out empty or the journal aborts first.
   */
  orderData(wait: () => Promise<void>): void;
  /**
   * jbd2's frozen trigger (t_frozen): `freeze(bytes)` runs on the live bytes of
   * `blockNr` once this handle's transaction is frozen for commit — every handle of it
   * stopped, just before the bytes are copied for the log — so a block that sums up
   * state many handles change (ext4's superblock free counts) is encoded and
   * checksummed once per transaction instead of at every change. The block must be
   * dirty in this transaction (dirtyMetadata by this handle); the state `freeze` reads
   * must be changed only inside handles. One trigger per block per transaction (a
   * later one replaces it); it must be synchronous and must not throw. Dropped if the
   * journal aborts first.
   */
  setFrozenTrigger(blockNr: number, freeze: (bytes: Uint8Array) => void): void;
  /**
   * Whether `blockNr` is dirty in this handle's transaction with a frozen trigger set:
   * then the block needs no access from this handle — the trigger writes it at commit.
   */
  hasFrozenTrigger(blockNr: number): boolean;
}

/** What the filesystem needs from a journal (or from the no-journal writer used by mkfs/tests). */
export interface MetadataJournal {
  start(credits: number): Promise<JournalHandle>;
  stop(handle: JournalHandle): Promise<void>;
  /** Commit the running transaction and wait until it is durable (fsync/syncfs). */
  commit(): Promise<void>;
}
