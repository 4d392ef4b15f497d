/**
 * Every limit of the page cache (mm/), named in one place; the relationships between them
 * are asserted once at load, one assertion and one comment each.
 */
import { assert } from '../assert.js';
import { ARENA_ORDER_MAX, ARENA_UNIT_BYTES, ARENA_UNIT_SHIFT, FOLIO_BLOCK_BYTES_MIN } from '../wasm/layout.js';

/** The cache unit: one 4 KiB page (= one arena unit). Folio indices count these. */
export const PAGE_BYTES = ARENA_UNIT_BYTES;
export const PAGE_SHIFT = ARENA_UNIT_SHIFT;
/** Largest folio: order 11 = 2048 pages = 8 MiB (ext4's cap: at most 2048 blocks per folio). */
export const FOLIO_ORDER_MAX = ARENA_ORDER_MAX;
/** Blocks per folio never exceed this, whatever the block size (mapping order caps follow from it). */
export const FOLIO_BLOCKS_MAX = 2048;
/** Filesystem block sizes the cache supports: 1 KiB..4 KiB (block size ≤ page size). */
export const BLOCK_BYTES_MIN = FOLIO_BLOCK_BYTES_MIN;
export const BLOCK_BYTES_MAX = PAGE_BYTES;

/** Smallest cache: 16 pages (tests); a real engine configures hundreds of MiB. */
export const CACHE_BYTES_MIN = 16 * PAGE_BYTES;
/** A cache holds at least this many of its largest folios (its folio order cap follows). */
export const CACHE_LARGEST_FOLIOS_MIN = 4;

/** Defaults (fractions of cacheBytesMax): background writeback at 20 %, writers throttled at 40 %. */
export const DIRTY_BACKGROUND_PERCENT_DEFAULT = 20;
export const DIRTY_PERCENT_DEFAULT = 40;
/** Dirty data older than this is written back by the flusher (Linux dirty_expire_centisecs = 3000). */
export const DIRTY_EXPIRE_MS_DEFAULT = 30_000;
/** The flusher wakes this often (Linux dirty_writeback_centisecs = 500). */
export const WRITEBACK_INTERVAL_MS_DEFAULT = 5_000;
export const WRITEBACK_INTERVAL_MS_MIN = 1;

/**
 * A background flush asks each mapping for at most this much per turn, so one big dirty
 * file does not starve the others (Linux: MAX_WRITEBACK_PAGES = 4 MiB; here two of the
 * largest folios).
 */
export const FLUSH_CHUNK_BYTES = 2 * (PAGE_BYTES << FOLIO_ORDER_MAX);
/** Mapping turns in one flusher pass (a pass that finds more work schedules another). */
export const FLUSH_TURNS_PER_PASS_MAX = 4096;

/** Engine-thread waiters queued on one folio's lock. */
export const FOLIO_LOCK_WAITERS_MAX = 4096;
/** Writers waiting in throttle() at once. */
export const THROTTLE_WAITERS_MAX = 65_536;
/**
 * While writeback is in flight, a writer passing throttle() lets the event loop run at most
 * this often (one setImmediate), so the workers' completions reach the engine thread. A
 * writer whose awaits all settle at once never yields otherwise: measured, a 256 MiB write
 * of 1 MiB calls saw no completion until the hard limit, then stalled 30 ms there.
 */
export const THROTTLE_YIELD_INTERVAL_MS = 1;
/** Allocations waiting for memory at once. */
export const MEMORY_WAITERS_MAX = 65_536;
/**
 * After plain LRU eviction fails to free a block of the wanted order (buddy fragmentation),
 * try reclaiming the aligned region around this many of the least recently used folios.
 */
export const EVICT_REGION_CANDIDATES_MAX = 8;
/** Pages per mapping chunk: the largest folio, so no folio straddles two chunks. */
export const MAPPING_CHUNK_PAGES = 1 << FOLIO_ORDER_MAX;
export const MAPPING_CHUNK_SHIFT = FOLIO_ORDER_MAX;
/** File page indices are below 2^32 (16 TiB at 4 KiB: ext4's extent limit of 2^32 blocks). */
export const PAGE_INDEX_LIMIT = 2 ** 32;

// The largest folio holds exactly the blocks-per-folio cap at 4 KiB blocks.
assert((1 << FOLIO_ORDER_MAX) === FOLIO_BLOCKS_MAX, 'largest folio = 2048 pages');
// A block fits a page (block size > page size would need a minimum folio order).
assert(BLOCK_BYTES_MIN <= BLOCK_BYTES_MAX && BLOCK_BYTES_MAX === PAGE_BYTES, 'blocks fit a page');
// The smallest cache still holds CACHE_LARGEST_FOLIOS_MIN folios of order ≥ 0.
assert(CACHE_BYTES_MIN >= CACHE_LARGEST_FOLIOS_MIN * PAGE_BYTES, 'smallest cache holds its minimum folios');
// Background writeback starts strictly before writers are throttled.
assert(DIRTY_BACKGROUND_PERCENT_DEFAULT < DIRTY_PERCENT_DEFAULT, 'background threshold below hard limit');
// Dirty data may not fill the cache: clean memory must remain for reads and new folios.
assert(DIRTY_PERCENT_DEFAULT + 100 / CACHE_LARGEST_FOLIOS_MIN <= 100, 'default dirty limit leaves a folio free');
// Expired data is looked for at least once per expiry period.
assert(WRITEBACK_INTERVAL_MS_DEFAULT <= DIRTY_EXPIRE_MS_DEFAULT, 'flusher interval within the expiry');
// A mapping chunk is exactly one largest folio.
assert(MAPPING_CHUNK_PAGES === 1 << MAPPING_CHUNK_SHIFT, 'chunk shift names chunk size');
