/** The generic page cache: large folios in shared memory, per-inode mappings, LRU, dirty limits, flusher. */
export * as mmConstants from './constants.js';
export {
  Folio, FolioStateTable, bitsClear, bitsFind, bitsSet, folioWordEndWriteback, folioWordLockBlocking, folioWordOrder,
  folioWordStartWriteback, folioWordTryLock, folioWordUnlock, folioWordWaitWritebackBlocking,
  type BlockRange, type FolioBitKind, type FolioStateShare,
} from './folio.js';
export { AddressSpace, type AddressSpaceOptions, type GetFolioOptions, type InvalidateResult } from './mapping.js';
export {
  PageCache, createPageCache,
  type PageCacheOptions, type PageCacheStats, type WritebackOps, type WritebackReason, type WritebackRequest,
} from './page-cache.js';
