/** Generic iomap buffered I/O over the page cache (mm/): the filesystem supplies IomapOps and WritebackOps. */
export * from './types.js';
export { ITER_STALE_RETRIES_MAX, iomapIter, type IomapActor } from './iter.js';
export {
  READAHEAD_WINDOW_PAGES_MAX, READAHEAD_WINDOW_PAGES_MIN, createReadaheadState, iomapRead,
  type IomapReadOptions, type ReadaheadState,
} from './buffered-read.js';
export { iomapWrite, iomapWriteRange, type IomapWriteOptions, type WriteRange } from './buffered-write.js';
export {
  IOEND_BYTES_MAX_DEFAULT, WRITEBACK_BATCH_BYTES_MAX_DEFAULT, inlineSubmit, iomapCacheWritebackOps, iomapSortMergeIoends,
  iomapWriteAndWait, iomapWriteback, writebackErrorCheck,
  type IoendSubmit, type IomapWritebackOptions, type WritebackRange,
} from './writeback.js';
export {
  iomapTruncatePage, iomapZeroRange, rangeNeedsWriteback, truncatePagecache, truncatePagecacheRange, type IomapZeroOptions,
} from './zero.js';
export { iomapPageMkwrite, type IomapMkwriteOptions } from './mkwrite.js';
