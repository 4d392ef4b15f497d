/**
 * jbd2: the journal (generic: fs block numbers only). ext4 opens a Journal over the
 * journal inode's extents after recoverJournal has emptied the log; see journal.ts for
 * the buffer-identity rule its metadata cache must follow.
 */
export type { JournalHandle, MetadataJournal } from './handle.js';
export { Journal, COMMIT_INTERVAL_MS_DEFAULT, type JournalOptions, type JournalStats } from './journal.js';
export { LogMap, type JournalExtent, type JournalGeometry } from './log-map.js';
export { recoverJournal, readJournalSuperblockAt, type RecoverOptions, type RecoveryReport } from './recovery.js';
export { tagsPerDescriptor, transactionLogBlocks } from './commit.js';
