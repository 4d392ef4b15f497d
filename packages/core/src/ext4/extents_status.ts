/**
 * The extent status (ES) tree: per inode, what is known about each logical block, as
 * sorted, non-overlapping, half-open ranges of exactly one kind (seed-series.md §1.1):
 *
 *   WRITTEN    mapped to pblk, data on disk          ┐ a partial cache of the on-disk
 *   UNWRITTEN  mapped to pblk, reads as zeroes       │ extent tree: reclaimable, it can
 *   HOLE       nothing allocated                     ┘ be read again from disk
 *   DELAYED    written in the page cache, space reserved but not allocated — stored
 *              nowhere else, so never reclaimed; delalloc accounting rests on it (§1.3)
 *
 * Kinds are exclusive (DELAYED is never combined with WRITTEN/UNWRITTEN, as since 6.12).
 * Inserting a range first removes whatever covered it, splitting the neighbours, then
 * merges with neighbours of the same kind: WRITTEN/UNWRITTEN only when physically
 * contiguous, HOLE/DELAYED on logical adjacency alone. Splitting a mapped record keeps the
 * right pblk on both sides:
 *
 *   before   [100 ─────────── WRITTEN @5000 ──────────── 110)
 *   remove            [103 ── 106)
 *   after    [100 ─ @5000 ─ 103)      [106 ─ @5006 ─ 110)
 *
 * Sequence counter (`seq`, the iomap validity cookie): bumped by every insert, by every
 * remove/insertDelayed that changes something — whatever changes what a mapping handed
 * out earlier would say. cacheExtent() and reclaim() do NOT bump it (the TODO of §1.1):
 * caching records state that already held on disk, and dropping a cached record only
 * turns a hit back into a miss that the on-disk tree answers the same way, so a mapping
 * built before either is still right. The caller's side of that bargain: cacheExtent()
 * must only be given what the on-disk tree says right now.
 *
 * Storage: records are 16-byte packed words in small sorted chunks (at most 64 records),
 * chunks in a sorted JS array — a two-level B-tree:
 *
 *   word 0 u32 logical start │ word 1 u32 last logical block (inclusive, so a record may
 *   span all 2^32 blocks) │ word 2 u32 pblk low │ word 3 bits 0–15 pblk high, bits 16–19
 *   status (one-hot), bit 20 REFERENCED (a shrinker hint: looked up since the last sweep)
 *
 * Word 0 at a 16-byte stride is what the wasm extentSearch kernel reads (wasm/layout.ts),
 * but the wasm record's 28-bit count cannot hold a hole or delayed range of up to 2^32
 * blocks (splitting them would break "adjacent mergeable records are always merged"), and
 * a wasm call costs more than a 6-step binary search in a 64-record chunk; so records live
 * in ordinary typed arrays owned by the engine thread.
 *
 * Cost model (n records, C = 64 per chunk, n/C chunks):
 * - lookup: one compare against the last-found record (hit: ~O(1)); else a binary search
 *   over chunk starts then one in the chunk: log2(n/C) + log2(C) ≈ log2(n) reads. No
 *   allocation when the caller passes its own EsLookup.
 * - insert/remove/insertDelayed: a lookup, a walk over the k records the range touches,
 *   then the splice: usually in place (one copyWithin of ≤ C records, ≤ 1 KiB); when the
 *   range spans chunks or a chunk over- or underflows, a rebuild of the end chunks (≤ 2C
 *   records, ~2 KiB, copied twice) and an O(n/C) array splice. k ≤ 4 for inserts that
 *   cover no whole record. So ~O(log n + C + k), and the C term is memmove speed.
 * - cacheExtent: one rebuild per uncached gap in the range (usually one).
 * - findFirst/nextDelayed: skip whole chunks without the wanted kind (a per-chunk status
 *   mask), so O(log n + n/C + C) worst case.
 * - reclaim(m): a clock sweep over chunks, O(n) worst case, then a walk of the chunk list
 *   merging underfull chunks. Memory: 16 bytes per record plus ~100 bytes per chunk
 *   (chunks start at 4 records and double up to 64; every chunk but a lone one holds ≥ 16).
 *
 * One tree per inode, used by one thread (the engine's); nothing here is shared memory.
 */
import { assert } from '../assert.js';

/** Logical blocks are u32: every file's address space is [0, 2^32) (same as extents.ts LBLK_LIMIT). */
export const ES_LBLK_LIMIT = 2 ** 32;
/** Physical blocks are 48-bit (ext4 64bit feature). */
export const ES_PBLK_LIMIT = 2 ** 48;

/** Record kinds, one-hot so that findFirst() takes a mask of them. */
export const EsStatus = {
  WRITTEN: 1,
  UNWRITTEN: 2,
  DELAYED: 4,
  HOLE: 8,
} as const;
export type EsStatus = (typeof EsStatus)[keyof typeof EsStatus];
export const ES_STATUS_ALL = EsStatus.WRITTEN | EsStatus.UNWRITTEN | EsStatus.DELAYED | EsStatus.HOLE;

/** One extent status record: logical [lblk, lblk + len) is `status` (at pblk when mapped, else pblk 0). */
export interface EsRecord {
  lblk: number;
  len: number;
  pblk: number;
  status: EsStatus;
}

/**
 * The answer of lookup(). On a hit, the covering record; on a miss, the uncached gap
 * [lblk, nextLblk) around the queried block (status 0), so a caller can bound the hole it
 * then asks the on-disk tree about.
 */
export interface EsLookup {
  found: boolean;
  /** Hit: the record's start (≤ the queried block). Miss: the queried block. */
  lblk: number;
  /** Hit: the record's length. Miss: nextLblk − lblk. */
  len: number;
  pblk: number;
  status: EsStatus | 0;
  /** Start of the first record after the queried block's record or gap; ES_LBLK_LIMIT if none. */
  nextLblk: number;
  /** The tree's seq when this answer was given (the iomap validity cookie). */
  seq: number;
}

export function newEsLookup(): EsLookup {
  return { found: false, lblk: 0, len: 0, pblk: 0, status: 0, nextLblk: 0, seq: 0 };
}

// ─── Packed record words ────────────────────────────────────────────────────────────────

const WORDS_PER_RECORD = 4;
const WORD_START = 0;
const WORD_LAST = 1;
const WORD_PBLK_LOW = 2;
const WORD_META = 3;
const META_PBLK_HIGH_MASK = 0xffff;
const META_STATUS_SHIFT = 16;
const META_STATUS_MASK = 0xf;
const META_REFERENCED = 1 << 20;
const PBLK_HIGH_UNIT = 2 ** 32;

/** Most records in one chunk: a rebuild copies at most a few of these (~1 KiB each). */
const CHUNK_RECORDS_MAX = 64;
/** A chunk left with fewer records than this after a change is merged with a neighbour. */
const CHUNK_RECORDS_MIN = 16;
/** Capacity of a new chunk: most inodes hold one to three records. */
const CHUNK_RECORDS_INITIAL = 4;
/** Records that replace a cut range: left rest, the new record, right rest, right neighbour. */
const PIECES_MAX = 4;
/**
 * A splice gathers the head of A's chunk, the pieces, the tail of B's chunk, and a whole
 * neighbour chunk when that is still below MIN (so < MIN + MAX + pieces in all).
 */
const GATHER_RECORDS_MAX = 3 * CHUNK_RECORDS_MAX + PIECES_MAX;

// A split chunk (MAX + 1 records) gives two halves of at least MIN: no split makes a chunk
// that the next change would merge again.
assert(Math.floor((CHUNK_RECORDS_MAX + 1) / 2) >= CHUNK_RECORDS_MIN, 'split halves stay above the merge threshold');
// Merging an underfull chunk with a neighbour that overflows MAX splits into halves ≥ MIN.
assert(CHUNK_RECORDS_MIN * 2 <= CHUNK_RECORDS_MAX, 'merge threshold is below half a chunk');
// The gather buffer holds what a splice or a reclaim merge collects.
assert(GATHER_RECORDS_MAX >= 2 * CHUNK_RECORDS_MAX, 'gather holds two chunks');
assert(CHUNK_RECORDS_INITIAL <= CHUNK_RECORDS_MAX, 'a new chunk fits the maximum');
// Status and REFERENCED bits sit above the 16 pblk-high bits: 48-bit pblks.
assert(META_PBLK_HIGH_MASK + 1 === ES_PBLK_LIMIT / PBLK_HIGH_UNIT, 'pblk high bits give 48-bit pblks');
assert(ES_STATUS_ALL === META_STATUS_MASK, 'the status field holds every kind');

/**
 * Scratch shared by all trees of this thread: trees are used by one thread and no method
 * calls out while it fills these, so one copy suffices and the hot path never allocates.
 */
const pieces = new Uint32Array(PIECES_MAX * WORDS_PER_RECORD);
const gather = new Uint32Array(GATHER_RECORDS_MAX * WORDS_PER_RECORD);

/** Recency clock shared by every tree: the shrinker reclaims from the least recently used trees first. */
let esClock = 0;

interface Chunk {
  /** count × 4 words of packed records, sorted by start; capacity = words.length / 4. */
  words: Uint32Array;
  count: number;
  /** Covers (⊇) the statuses of its records, so findFirst() skips chunks without the wanted kind. */
  statusMask: number;
}

function recordEnd(words: Uint32Array, offset: number): number {
  return words[offset + WORD_LAST] + 1;
}

function recordPblk(words: Uint32Array, offset: number): number {
  return words[offset + WORD_PBLK_LOW] + (words[offset + WORD_META] & META_PBLK_HIGH_MASK) * PBLK_HIGH_UNIT;
}

function recordStatus(words: Uint32Array, offset: number): EsStatus {
  return ((words[offset + WORD_META] >>> META_STATUS_SHIFT) & META_STATUS_MASK) as EsStatus;
}

function isMapped(status: number): boolean {
  return status === EsStatus.WRITTEN || status === EsStatus.UNWRITTEN;
}

function writeRecord(words: Uint32Array, offset: number, start: number, end: number, pblk: number, meta: number): void {
  words[offset + WORD_START] = start;
  words[offset + WORD_LAST] = end - 1;
  words[offset + WORD_PBLK_LOW] = pblk >>> 0;
  words[offset + WORD_META] = (meta & ~META_PBLK_HIGH_MASK) | Math.floor(pblk / PBLK_HIGH_UNIT);
}

/**
 * Copy `count` records between packed arrays. Measured here: a JS word loop costs ~4 ns a
 * word, set(subarray) ~80 ns flat plus memcpy speed; so loop up to two records, else set.
 */
function copyRecords(source: Uint32Array, sourceRecord: number, target: Uint32Array, targetRecord: number, count: number): void {
  const sourceOffset = sourceRecord * WORDS_PER_RECORD;
  const targetOffset = targetRecord * WORDS_PER_RECORD;
  if (count > 2) {
    target.set(source.subarray(sourceOffset, sourceOffset + count * WORDS_PER_RECORD), targetOffset);
    return;
  }
  for (let word = 0; word < count * WORDS_PER_RECORD; word++) target[targetOffset + word] = source[sourceOffset + word];
}

function newChunk(capacityRecords: number): Chunk {
  return { words: new Uint32Array(capacityRecords * WORDS_PER_RECORD), count: 0, statusMask: 0 };
}

function chunkStatusMask(chunk: Chunk): number {
  let mask = 0;
  for (let offset = 0; offset < chunk.count * WORDS_PER_RECORD; offset += WORDS_PER_RECORD) {
    mask |= recordStatus(chunk.words, offset);
  }
  return mask;
}

/** Copy `count` gathered records from record `from` into `chunk`, resizing it to fit (grow ×2, shrink when ¼ used). */
function fillChunk(chunk: Chunk, from: number, count: number): void {
  assert(count >= 1 && count <= CHUNK_RECORDS_MAX, 'a chunk holds 1..MAX records');
  const capacity = chunk.words.length / WORDS_PER_RECORD;
  if (count > capacity || (capacity > CHUNK_RECORDS_INITIAL && count * 4 <= capacity)) {
    const grown = count > capacity ? Math.max(count, capacity * 2) : count * 2;
    const next = Math.min(CHUNK_RECORDS_MAX, Math.max(CHUNK_RECORDS_INITIAL, grown));
    chunk.words = new Uint32Array(next * WORDS_PER_RECORD);
  }
  copyRecords(gather, from, chunk.words, 0, count);
  chunk.count = count;
  chunk.statusMask = chunkStatusMask(chunk);
}

function checkRange(lblk: number, len: number): void {
  assert(Number.isInteger(lblk) && lblk >= 0 && lblk < ES_LBLK_LIMIT, 'lblk is a u32');
  assert(Number.isInteger(len) && len >= 1, 'len is a positive integer');
  assert(lblk + len <= ES_LBLK_LIMIT, 'range ends inside the 2^32-block address space');
}

function checkPblk(lblk: number, len: number, pblk: number, status: EsStatus): void {
  assert(status === EsStatus.WRITTEN || status === EsStatus.UNWRITTEN || status === EsStatus.DELAYED
    || status === EsStatus.HOLE, `status ${status} is exactly one kind`);
  if (isMapped(status)) {
    assert(Number.isInteger(pblk) && pblk >= 0, 'pblk is a non-negative integer');
    assert(pblk + len <= ES_PBLK_LIMIT, 'mapped range ends below 2^48');
  } else {
    assert(pblk === 0, `a ${status === EsStatus.HOLE ? 'hole' : 'delayed range'} at ${lblk} has pblk 0`);
  }
}

// ─── The tree ───────────────────────────────────────────────────────────────────────────

export interface ExtentStatusTreeOptions {
  /** Shrinker that counts this tree's records against its budget (and may reclaim them). */
  shrinker?: EsShrinker;
}

export class ExtentStatusTree {
  private chunks: Chunk[] = [];
  /** chunkStarts[c] = first start of chunks[c]: the top-level search reads this one small array, not the chunks. */
  private chunkStarts = new Uint32Array(1);
  private seqValue = 0;
  private records = 0;
  private delayedRecords = 0;
  private delayedBlocks = 0;
  /** Bumped whenever records move (any change, reclaim included): guards the last-found cache. */
  private layoutVersion = 0;
  private lastChunk = 0;
  private lastIndex = 0;
  private lastVersion = -1;
  /** Start of the chunk where the next reclaim sweep begins (the clock hand). */
  private reclaimCursorLblk = 0;
  /** Position set by locate(). */
  private posChunk = 0;
  private posIndex = 0;
  /** Set by cut(): the old records [A, B) that the pieces replace, and what they held. */
  private cutChunkA = 0;
  private cutIndexA = 0;
  private cutChunkB = 0;
  private cutIndexB = 0;
  private cutRecords = 0;
  private cutDelayedRecords = 0;
  private cutCoveredBlocks = 0;
  private cutDelayedBlocks = 0;
  private pieceCount = 0;
  private readonly shrinker: EsShrinker | undefined;
  /** esClock value of the last lookup or change (read by the shrinker). */
  lastUsedTick = 0;

  constructor(options: ExtentStatusTreeOptions = {}) {
    this.shrinker = options.shrinker;
    this.shrinker?.register(this);
  }

  /** Changes whenever a lookup could answer differently (never by cacheExtent/reclaim). */
  get seq(): number { return this.seqValue; }
  get recordCount(): number { return this.records; }
  get delayedRecordCount(): number { return this.delayedRecords; }
  /** Records reclaim() may drop: all but DELAYED ones. */
  get reclaimableCount(): number { return this.records - this.delayedRecords; }
  /** Blocks in DELAYED records: equals the inode's reserved data blocks. */
  get delayedBlockCount(): number { return this.delayedBlocks; }
  get chunkCount(): number { return this.chunks.length; }

  /**
   * What the tree knows about `lblk`: the covering record, or a miss with the start of
   * the next record. Checks the last record found first. Marks a hit REFERENCED.
   */
  lookup(lblk: number, into: EsLookup = newEsLookup()): EsLookup {
    assert(lblk >= 0 && lblk < ES_LBLK_LIMIT, 'lblk is a u32');
    this.lastUsedTick = ++esClock;
    into.seq = this.seqValue;
    let chunkIndex = this.lastChunk;
    let index = this.lastIndex;
    let words = this.lastVersion === this.layoutVersion ? this.chunks[chunkIndex].words : undefined;
    let offset = index * WORDS_PER_RECORD;
    if (words === undefined || words[offset + WORD_START] > lblk || words[offset + WORD_LAST] < lblk) {
      if (!this.locate(lblk)) return this.answerMiss(lblk, this.chunks.length > 0 ? this.chunks[0].words[WORD_START] : ES_LBLK_LIMIT, into);
      chunkIndex = this.posChunk;
      index = this.posIndex;
      words = this.chunks[chunkIndex].words;
      offset = index * WORDS_PER_RECORD;
      if (words[offset + WORD_LAST] < lblk) return this.answerMiss(lblk, this.startAfter(chunkIndex, index), into);
      this.lastChunk = chunkIndex;
      this.lastIndex = index;
      this.lastVersion = this.layoutVersion;
    }
    words[offset + WORD_META] |= META_REFERENCED;
    into.found = true;
    into.lblk = words[offset + WORD_START];
    into.len = recordEnd(words, offset) - into.lblk;
    into.pblk = recordPblk(words, offset);
    into.status = recordStatus(words, offset);
    into.nextLblk = this.startAfter(chunkIndex, index);
    return into;
  }

  /**
   * Make [lblk, lblk + len) exactly `status` (at pblk when mapped): remove what was there
   * (splitting neighbours), insert, merge. Returns how many DELAYED blocks it replaced —
   * the reservation the caller now consumes (since 6.12 counted here, seed §1.3).
   */
  insert(lblk: number, len: number, pblk: number, status: EsStatus): number {
    checkRange(lblk, len);
    checkPblk(lblk, len, pblk, status);
    this.cut(lblk, lblk + len, status, pblk);
    const replacedDelayed = this.cutDelayedBlocks;
    this.splice();
    this.delayedBlocks += (status === EsStatus.DELAYED ? len : 0) - replacedDelayed;
    this.changed();
    return replacedDelayed;
  }

  /**
   * Cache an on-disk extent or hole: insert only the parts of [lblk, lblk + len) that no
   * record covers (so delayed ranges are never disturbed), merging as insert() does.
   * Does not bump seq (see the header). Returns the number of blocks newly cached.
   */
  cacheExtent(lblk: number, len: number, pblk: number, status: EsStatus): number {
    checkRange(lblk, len);
    checkPblk(lblk, len, pblk, status);
    assert(status !== EsStatus.DELAYED, 'delayed ranges are inserted, never cached');
    const end = lblk + len;
    let cached = 0;
    let cursor = lblk;
    while (cursor < end) {
      let gapEnd: number;
      if (this.locate(cursor)) {
        const words = this.chunks[this.posChunk].words;
        const offset = this.posIndex * WORDS_PER_RECORD;
        const recordEndLblk = recordEnd(words, offset);
        if (recordEndLblk > cursor) { cursor = recordEndLblk; continue; }
        gapEnd = Math.min(end, this.startAfter(this.posChunk, this.posIndex));
      } else {
        gapEnd = Math.min(end, this.chunks.length > 0 ? this.chunks[0].words[WORD_START] : ES_LBLK_LIMIT);
      }
      this.cut(cursor, gapEnd, status, isMapped(status) ? pblk + (cursor - lblk) : 0);
      assert(this.cutCoveredBlocks === 0, 'a gap covers no record');
      this.splice();
      cached += gapEnd - cursor;
      cursor = gapEnd;
    }
    if (cached > 0) this.afterChange();
    return cached;
  }

  /**
   * Forget [lblk, lblk + len) (truncate, punch, a short write's unused delalloc). Returns
   * how many DELAYED blocks were removed — the reservation the caller releases. len may be 0.
   */
  remove(lblk: number, len: number): number {
    if (len === 0) return 0;
    checkRange(lblk, len);
    this.cut(lblk, lblk + len, 0, 0);
    if (this.cutCoveredBlocks === 0) return 0;
    const removedDelayed = this.cutDelayedBlocks;
    this.splice();
    this.delayedBlocks -= removedDelayed;
    this.changed();
    return removedDelayed;
  }

  /**
   * Make [lblk, lblk + len) DELAYED (a buffered write over it). Returns the blocks that
   * were not delayed before: exactly what the caller must reserve. Already all delayed:
   * returns 0 and changes nothing (seq unchanged).
   */
  insertDelayed(lblk: number, len: number): number {
    checkRange(lblk, len);
    // Adjacent DELAYED records always merge, so a fully delayed range lies in one record.
    if (this.locate(lblk)) {
      const words = this.chunks[this.posChunk].words;
      const offset = this.posIndex * WORDS_PER_RECORD;
      if (recordStatus(words, offset) === EsStatus.DELAYED && recordEnd(words, offset) >= lblk + len) return 0;
    }
    const replacedDelayed = this.insert(lblk, len, 0, EsStatus.DELAYED);
    assert(replacedDelayed < len, 'a range not all delayed gains delayed blocks');
    return len - replacedDelayed;
  }

  /** The first DELAYED record ending after lblk, or undefined. */
  nextDelayed(lblk: number): EsRecord | undefined {
    return this.findFirst(lblk, ES_LBLK_LIMIT, EsStatus.DELAYED);
  }

  /**
   * The first record whose kind is in `statusMask` and which intersects [lblk, endLblk);
   * whole, not clipped to the range. Chunks without such a kind are skipped whole.
   */
  findFirst(lblk: number, endLblk: number, statusMask: number): EsRecord | undefined {
    assert(lblk >= 0 && lblk < endLblk && endLblk <= ES_LBLK_LIMIT, 'range is a non-empty part of the address space');
    assert((statusMask & ~ES_STATUS_ALL) === 0 && statusMask !== 0, 'mask names record kinds');
    let chunkIndex = 0;
    let index = 0;
    if (this.locate(lblk)) {
      chunkIndex = this.posChunk;
      index = this.posIndex;
    }
    for (; chunkIndex < this.chunks.length; chunkIndex++, index = 0) {
      const chunk = this.chunks[chunkIndex];
      if (chunk.words[WORD_START] >= endLblk) break;
      if ((chunk.statusMask & statusMask) === 0) continue;
      for (let offset = index * WORDS_PER_RECORD; offset < chunk.count * WORDS_PER_RECORD; offset += WORDS_PER_RECORD) {
        if (chunk.words[offset + WORD_START] >= endLblk) return undefined;
        if ((recordStatus(chunk.words, offset) & statusMask) !== 0 && recordEnd(chunk.words, offset) > lblk) {
          return this.recordAt(chunk.words, offset);
        }
      }
    }
    return undefined;
  }

  /** The records intersecting [lblk, endLblk), in order. The tree must not change meanwhile. */
  *iterate(lblk = 0, endLblk: number = ES_LBLK_LIMIT): IterableIterator<EsRecord> {
    assert(lblk >= 0 && lblk <= endLblk && endLblk <= ES_LBLK_LIMIT, 'range lies in the address space');
    const version = this.layoutVersion;
    let chunkIndex = 0;
    let index = 0;
    if (this.locate(lblk)) {
      chunkIndex = this.posChunk;
      index = this.posIndex;
    }
    for (; chunkIndex < this.chunks.length; chunkIndex++, index = 0) {
      for (; index < this.chunks[chunkIndex].count; index++) {
        assert(version === this.layoutVersion, 'the tree did not change during iteration');
        const words = this.chunks[chunkIndex].words;
        const offset = index * WORDS_PER_RECORD;
        if (words[offset + WORD_START] >= endLblk) return;
        if (recordEnd(words, offset) > lblk) yield this.recordAt(words, offset);
      }
    }
  }

  /**
   * Drop up to maxToDrop non-DELAYED records to bound memory; DELAYED ones never (they
   * exist nowhere else). Order: a clock sweep from where the last one stopped; a record
   * looked up since the sweep last passed is spared once (its REFERENCED bit cleared), so
   * the least recently looked-up records go first. Drops exactly
   * min(maxToDrop, reclaimableCount). Does not bump seq.
   */
  reclaim(maxToDrop: number): number {
    assert(Number.isInteger(maxToDrop) && maxToDrop >= 0, 'maxToDrop is a count');
    const target = Math.min(maxToDrop, this.reclaimableCount);
    if (target === 0) return 0;
    const chunkTotal = this.chunks.length;
    let chunkIndex = this.locate(this.reclaimCursorLblk) ? this.posChunk : 0;
    let dropped = 0;
    // Lap one clears REFERENCED bits as it goes, so lap two can drop every reclaimable record.
    for (let visited = 0; visited <= 2 * chunkTotal && dropped < target; visited++) {
      dropped += this.sweepChunk(this.chunks[chunkIndex], target - dropped);
      chunkIndex = (chunkIndex + 1) % chunkTotal;
    }
    assert(dropped === target, 'two laps drop every reclaimable record asked for');
    this.reclaimCursorLblk = this.chunks[chunkIndex].count > 0 ? this.chunks[chunkIndex].words[WORD_START] : 0;
    this.records -= dropped;
    this.layoutVersion++;
    this.normalizeChunks();
    this.shrinker?.noteRecords(-dropped, 0);
    return dropped;
  }

  /** Forget this tree (inode eviction). It must hold no DELAYED blocks: their reservations would leak. */
  dispose(): void {
    assert(this.delayedBlocks === 0, 'an evicted inode has no delayed blocks');
    this.shrinker?.unregister(this);
    this.chunks = [];
    this.records = 0;
    this.delayedRecords = 0;
    this.layoutVersion++;
  }

  /**
   * Check every structural invariant (tests, and debugging): chunks sized and sorted,
   * records in bounds, non-overlapping, adjacent mergeable records merged, kinds exclusive,
   * counters and chunk masks right.
   */
  checkInvariants(): void {
    let records = 0, delayedRecords = 0, delayedBlocks = 0;
    let previous: EsRecord | undefined;
    for (const [chunkIndex, chunk] of this.chunks.entries()) {
      assert(chunk.count >= 1 && chunk.count <= CHUNK_RECORDS_MAX, `chunk ${chunkIndex} holds 1..MAX records`);
      assert(chunk.count >= CHUNK_RECORDS_MIN || this.chunks.length === 1, `chunk ${chunkIndex} holds ≥ MIN records (or is alone)`);
      assert(chunk.count * WORDS_PER_RECORD <= chunk.words.length, `chunk ${chunkIndex} fits its capacity`);
      assert((chunkStatusMask(chunk) & ~chunk.statusMask) === 0, `chunk ${chunkIndex} status mask covers its records`);
      assert(this.chunkStarts[chunkIndex] === chunk.words[WORD_START], `chunk ${chunkIndex} start is indexed`);
      for (let offset = 0; offset < chunk.count * WORDS_PER_RECORD; offset += WORDS_PER_RECORD) {
        const record = this.recordAt(chunk.words, offset);
        assert(record.len >= 1, `record at ${record.lblk} is not empty`);
        assert(isMapped(record.status) ? record.pblk + record.len <= ES_PBLK_LIMIT : record.pblk === 0,
          `record at ${record.lblk} has a valid pblk`);
        if (previous !== undefined) {
          assert(previous.lblk + previous.len <= record.lblk, `record at ${record.lblk} does not overlap the one before`);
          assert(!mergeable(previous, record), `records at ${previous.lblk} and ${record.lblk} are merged`);
        }
        records++;
        if (record.status === EsStatus.DELAYED) { delayedRecords++; delayedBlocks += record.len; }
        previous = record;
      }
    }
    assert(records === this.records, 'record count is current');
    assert(delayedRecords === this.delayedRecords, 'delayed record count is current');
    assert(delayedBlocks === this.delayedBlocks, 'delayed block count is current');
  }

  // ─── Internals ────────────────────────────────────────────────────────────────────────

  /** Set posChunk/posIndex to the last record starting at or before lblk; false if there is none. */
  private locate(lblk: number): boolean {
    const chunks = this.chunks;
    const chunkStarts = this.chunkStarts;
    let low = 0, high = chunks.length - 1, chunkIndex = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (chunkStarts[middle] <= lblk) { chunkIndex = middle; low = middle + 1; } else high = middle - 1;
    }
    if (chunkIndex < 0) return false;
    const words = chunks[chunkIndex].words;
    let index = 0;
    low = 1;
    high = chunks[chunkIndex].count - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (words[middle * WORDS_PER_RECORD + WORD_START] <= lblk) { index = middle; low = middle + 1; } else high = middle - 1;
    }
    this.posChunk = chunkIndex;
    this.posIndex = index;
    return true;
  }

  /** Start of the record after (chunkIndex, index), or ES_LBLK_LIMIT. */
  private startAfter(chunkIndex: number, index: number): number {
    const chunk = this.chunks[chunkIndex];
    if (index + 1 < chunk.count) return chunk.words[(index + 1) * WORDS_PER_RECORD + WORD_START];
    return chunkIndex + 1 < this.chunks.length ? this.chunks[chunkIndex + 1].words[WORD_START] : ES_LBLK_LIMIT;
  }

  private answerMiss(lblk: number, nextLblk: number, into: EsLookup): EsLookup {
    into.found = false;
    into.lblk = lblk;
    into.len = nextLblk - lblk;
    into.pblk = 0;
    into.status = 0;
    into.nextLblk = nextLblk;
    return into;
  }

  private recordAt(words: Uint32Array, offset: number): EsRecord {
    const lblk = words[offset + WORD_START];
    return { lblk, len: recordEnd(words, offset) - lblk, pblk: recordPblk(words, offset), status: recordStatus(words, offset) };
  }

  /**
   * Compute what replaces the records around [lblk, end): walk the records from the last
   * one starting before lblk (a possible left rest or left merge partner) through the
   * first one starting at end (a right merge partner), keep their parts outside the
   * range, put the new record (insertStatus ≠ 0) between, and merge as pieces are pushed.
   *
   *   old     [ A ────────────┐   [ B ]   ┌────────── C ][ D ]
   *   range                 [lblk ─────────── end)
   *   pieces  [ A rest ─────)[ new ──────────)[ C rest ][ D ]   (then merged where mergeable)
   */
  private cut(lblk: number, end: number, insertStatus: number, insertPblk: number): void {
    this.pieceCount = 0;
    this.cutRecords = this.cutDelayedRecords = this.cutCoveredBlocks = this.cutDelayedBlocks = 0;
    let chunkIndex = 0, index = 0;
    if (lblk > 0 && this.locate(lblk - 1)) { chunkIndex = this.posChunk; index = this.posIndex; }
    this.cutChunkA = chunkIndex;
    this.cutIndexA = index;
    let inserted = insertStatus === 0;
    while (chunkIndex < this.chunks.length) {
      const words = this.chunks[chunkIndex].words;
      const offset = index * WORDS_PER_RECORD;
      const start = words[offset + WORD_START];
      if (start > end) break;
      const recordEndLblk = recordEnd(words, offset);
      const status = recordStatus(words, offset);
      const pblk = recordPblk(words, offset);
      const meta = words[offset + WORD_META];
      this.cutRecords++;
      if (status === EsStatus.DELAYED) this.cutDelayedRecords++;
      if (start < lblk) this.pushPiece(start, Math.min(recordEndLblk, lblk), pblk, meta);
      const coveredBlocks = Math.min(recordEndLblk, end) - Math.max(start, lblk);
      if (coveredBlocks > 0) {
        this.cutCoveredBlocks += coveredBlocks;
        if (status === EsStatus.DELAYED) this.cutDelayedBlocks += coveredBlocks;
      }
      if (recordEndLblk > end) {
        if (!inserted) { this.pushPiece(lblk, end, insertPblk, insertStatus << META_STATUS_SHIFT); inserted = true; }
        const restStart = Math.max(start, end);
        this.pushPiece(restStart, recordEndLblk, isMapped(status) ? pblk + (restStart - start) : 0, meta);
      }
      if (++index === this.chunks[chunkIndex].count) { chunkIndex++; index = 0; }
    }
    if (!inserted) this.pushPiece(lblk, end, insertPblk, insertStatus << META_STATUS_SHIFT);
    this.cutChunkB = chunkIndex;
    this.cutIndexB = index;
  }

  /** Append a record to the pieces, merged into the last piece when mergeable. */
  private pushPiece(start: number, end: number, pblk: number, meta: number): void {
    const status = (meta >>> META_STATUS_SHIFT) & META_STATUS_MASK;
    if (this.pieceCount > 0) {
      const offset = (this.pieceCount - 1) * WORDS_PER_RECORD;
      const lastStatus = recordStatus(pieces, offset);
      if (recordEnd(pieces, offset) === start && lastStatus === status
        && (!isMapped(status) || recordPblk(pieces, offset) + (start - pieces[offset + WORD_START]) === pblk)) {
        pieces[offset + WORD_LAST] = end - 1;
        pieces[offset + WORD_META] |= meta & META_REFERENCED;
        return;
      }
    }
    assert(this.pieceCount < PIECES_MAX, 'a cut yields at most PIECES_MAX pieces');
    writeRecord(pieces, this.pieceCount * WORDS_PER_RECORD, start, end, pblk, meta);
    this.pieceCount++;
  }

  /**
   * Replace the old records [A, B) found by cut() with the pieces: in place when one chunk
   * holds them and stays in bounds; else gather the head of A's chunk, the pieces and the
   * tail of B's chunk (plus a neighbour chunk if the result is small), and write them back
   * as ⌈n / MAX⌉ evenly filled chunks in place of the old ones.
   */
  private splice(): void {
    if (!this.spliceInPlace()) this.spliceRebuild();
    let pieceDelayedRecords = 0;
    for (let piece = 0; piece < this.pieceCount; piece++) {
      if (recordStatus(pieces, piece * WORDS_PER_RECORD) === EsStatus.DELAYED) pieceDelayedRecords++;
    }
    const deltaRecords = this.pieceCount - this.cutRecords;
    const deltaDelayedRecords = pieceDelayedRecords - this.cutDelayedRecords;
    this.records += deltaRecords;
    this.delayedRecords += deltaDelayedRecords;
    this.layoutVersion++;
    this.shrinker?.noteRecords(deltaRecords, deltaDelayedRecords);
  }

  /**
   * The common splice: [A, B) lies in one chunk that stays within [MIN, MAX] records (or
   * is the only chunk): shift its tail with copyWithin and write the pieces in place.
   * The chunk's status mask only gains the pieces' kinds (a superset stays correct for
   * skipping; a rebuild makes it exact again).
   */
  private spliceInPlace(): boolean {
    const chunks = this.chunks;
    if (chunks.length === 0) return false;
    const chunk = chunks[this.cutChunkA];
    const endIndex = this.cutChunkB === this.cutChunkA ? this.cutIndexB
      : this.cutChunkB === this.cutChunkA + 1 && this.cutIndexB === 0 ? chunk.count : -1;
    if (endIndex < 0) return false;
    const count = chunk.count - (endIndex - this.cutIndexA) + this.pieceCount;
    if (count > CHUNK_RECORDS_MAX || count < 1 || (count < CHUNK_RECORDS_MIN && chunks.length > 1)) return false;
    if (count * WORDS_PER_RECORD > chunk.words.length) {
      const grown = new Uint32Array(Math.min(CHUNK_RECORDS_MAX, Math.max(count, 2 * chunk.count)) * WORDS_PER_RECORD);
      copyRecords(chunk.words, 0, grown, 0, this.cutIndexA);
      copyRecords(chunk.words, endIndex, grown, this.cutIndexA + this.pieceCount, chunk.count - endIndex);
      chunk.words = grown;
    } else {
      chunk.words.copyWithin((this.cutIndexA + this.pieceCount) * WORDS_PER_RECORD, endIndex * WORDS_PER_RECORD,
        chunk.count * WORDS_PER_RECORD);
    }
    copyRecords(pieces, 0, chunk.words, this.cutIndexA, this.pieceCount);
    for (let piece = 0; piece < this.pieceCount; piece++) chunk.statusMask |= recordStatus(pieces, piece * WORDS_PER_RECORD);
    chunk.count = count;
    this.chunkStarts[this.cutChunkA] = chunk.words[WORD_START];
    return true;
  }

  /** Any other splice: gather and rewrite the end chunks (see splice). */
  private spliceRebuild(): void {
    const chunks = this.chunks;
    let first = this.cutChunkA;
    let last = Math.min(this.cutChunkB, chunks.length - 1);
    let gathered = 0;
    if (chunks.length > 0) {
      copyRecords(chunks[first].words, 0, gather, 0, this.cutIndexA);
      gathered = this.cutIndexA;
    }
    copyRecords(pieces, 0, gather, gathered, this.pieceCount);
    gathered += this.pieceCount;
    if (this.cutChunkB < chunks.length) {
      const tail = chunks[this.cutChunkB];
      copyRecords(tail.words, this.cutIndexB, gather, gathered, tail.count - this.cutIndexB);
      gathered += tail.count - this.cutIndexB;
    }
    if (gathered < CHUNK_RECORDS_MIN && last + 1 < chunks.length) {
      last++;
      copyRecords(chunks[last].words, 0, gather, gathered, chunks[last].count);
      gathered += chunks[last].count;
    } else if (gathered < CHUNK_RECORDS_MIN && first > 0) {
      first--;
      const head = chunks[first];
      gather.copyWithin(head.count * WORDS_PER_RECORD, 0, gathered * WORDS_PER_RECORD);
      copyRecords(head.words, 0, gather, 0, head.count);
      gathered += head.count;
    }
    this.writeBack(first, chunks.length > 0 ? last - first + 1 : 0, gathered);
  }

  /** Replace chunks [first, first + oldCount) by the `gathered` records, reusing chunk objects. */
  private writeBack(first: number, oldCount: number, gathered: number): void {
    const newCount = Math.ceil(gathered / CHUNK_RECORDS_MAX);
    // The common case (no split, no merge) refills the same chunks and allocates nothing.
    const replacements: Chunk[] | undefined = newCount === oldCount ? undefined : [];
    let from = 0;
    for (let k = 0; k < newCount; k++) {
      // Even fill: the first (gathered mod newCount) chunks take one record more.
      const count = Math.floor(gathered / newCount) + (k < gathered % newCount ? 1 : 0);
      const chunk = k < oldCount ? this.chunks[first + k] : newChunk(CHUNK_RECORDS_INITIAL);
      fillChunk(chunk, from, count);
      replacements?.push(chunk);
      from += count;
    }
    if (replacements !== undefined) this.chunks.splice(first, oldCount, ...replacements);
    this.syncChunkStarts(first, replacements === undefined ? first + newCount : this.chunks.length);
  }

  /** Refresh chunkStarts[from, to) (growing it ×2 when the chunk list outgrew it). */
  private syncChunkStarts(from: number, to: number): void {
    if (this.chunkStarts.length < this.chunks.length) {
      const grown = new Uint32Array(Math.max(this.chunks.length, 2 * this.chunkStarts.length));
      grown.set(this.chunkStarts.subarray(0, from));
      this.chunkStarts = grown;
    }
    for (let chunkIndex = from; chunkIndex < to; chunkIndex++) this.chunkStarts[chunkIndex] = this.chunks[chunkIndex].words[WORD_START];
  }

  /** Drop up to maxToDrop unreferenced non-DELAYED records of one chunk; spare and unmark referenced ones. */
  private sweepChunk(chunk: Chunk, maxToDrop: number): number {
    const words = chunk.words;
    let kept = 0, dropped = 0;
    for (let offset = 0; offset < chunk.count * WORDS_PER_RECORD; offset += WORDS_PER_RECORD) {
      const meta = words[offset + WORD_META];
      const delayed = recordStatus(words, offset) === EsStatus.DELAYED;
      if (!delayed && (meta & META_REFERENCED) === 0 && dropped < maxToDrop) { dropped++; continue; }
      if (!delayed) words[offset + WORD_META] = meta & ~META_REFERENCED;
      words.copyWithin(kept * WORDS_PER_RECORD, offset, offset + WORDS_PER_RECORD);
      kept++;
    }
    chunk.count = kept;
    chunk.statusMask = chunkStatusMask(chunk);
    return dropped;
  }

  /**
   * After reclaim: drop empty chunks and merge each chunk below MIN records into the one
   * before it (splitting the pair evenly if it overflows), so that again every chunk but a
   * lone one holds ≥ MIN records. A walk over the chunk list plus copies of merged chunks.
   */
  private normalizeChunks(): void {
    const kept: Chunk[] = [];
    for (const chunk of this.chunks) {
      if (chunk.count === 0) continue;
      const previous = kept[kept.length - 1];
      if (previous === undefined || (previous.count >= CHUNK_RECORDS_MIN && chunk.count >= CHUNK_RECORDS_MIN)) {
        kept.push(chunk);
        continue;
      }
      const total = previous.count + chunk.count;
      copyRecords(previous.words, 0, gather, 0, previous.count);
      copyRecords(chunk.words, 0, gather, previous.count, chunk.count);
      if (total <= CHUNK_RECORDS_MAX) {
        fillChunk(previous, 0, total);
      } else {
        const half = Math.ceil(total / 2);
        fillChunk(previous, 0, half);
        fillChunk(chunk, half, total - half);
        kept.push(chunk);
      }
    }
    this.chunks = kept;
    this.syncChunkStarts(0, kept.length);
  }

  /** After a change lookups can see: new seq, then let the shrinker rebalance. */
  private changed(): void {
    this.seqValue++;
    this.afterChange();
  }

  private afterChange(): void {
    this.lastUsedTick = ++esClock;
    this.shrinker?.balance();
  }
}

function mergeable(left: EsRecord, right: EsRecord): boolean {
  return left.lblk + left.len === right.lblk && left.status === right.status
    && (!isMapped(left.status) || left.pblk + left.len === right.pblk);
}

// ─── Shrinker ───────────────────────────────────────────────────────────────────────────

export interface EsShrinkerOptions {
  /** Most records (of all registered trees) to keep; DELAYED records count but cannot be dropped. */
  recordBudget: number;
  /** When over budget, reclaim down to this fraction of it (hysteresis; default 0.875). */
  reclaimToFraction?: number;
}

/**
 * Keeps the ES trees of many inodes under one record budget, as the kernel's ES shrinker
 * does under memory pressure: when a change pushes the total over the budget, reclaim
 * non-DELAYED records from the least recently used trees first until the total is back to
 * reclaimToFraction × budget. The hysteresis makes a scan rare (one per budget/8 records
 * added); a scan sorts the trees that hold reclaimable records by recency, O(T log T).
 */
export class EsShrinker {
  readonly recordBudget: number;
  readonly reclaimToRecords: number;
  private readonly trees = new Set<ExtentStatusTree>();
  private records = 0;
  private delayedRecords = 0;
  private balancing = false;
  /** Records dropped by this shrinker so far. */
  reclaimedTotal = 0;

  constructor(options: EsShrinkerOptions) {
    const fraction = options.reclaimToFraction ?? 0.875;
    assert(Number.isInteger(options.recordBudget) && options.recordBudget >= 1, 'recordBudget is a positive count');
    assert(fraction > 0 && fraction <= 1, 'reclaimToFraction is in (0, 1]');
    this.recordBudget = options.recordBudget;
    this.reclaimToRecords = Math.floor(options.recordBudget * fraction);
  }

  get recordCount(): number { return this.records; }
  get reclaimableCount(): number { return this.records - this.delayedRecords; }
  get treeCount(): number { return this.trees.size; }

  register(tree: ExtentStatusTree): void {
    assert(!this.trees.has(tree), 'a tree registers once');
    this.trees.add(tree);
    this.noteRecords(tree.recordCount, tree.delayedRecordCount);
  }

  unregister(tree: ExtentStatusTree): void {
    assert(this.trees.delete(tree), 'only a registered tree unregisters');
    this.noteRecords(-tree.recordCount, -tree.delayedRecordCount);
  }

  /** Called by registered trees whenever their record counts change. */
  noteRecords(deltaRecords: number, deltaDelayedRecords: number): void {
    this.records += deltaRecords;
    this.delayedRecords += deltaDelayedRecords;
    assert(this.records >= 0 && this.delayedRecords >= 0 && this.delayedRecords <= this.records, 'shrinker counts stay consistent');
  }

  /** Called by trees after a change: reclaim back under reclaimToRecords when over budget. Returns records dropped. */
  balance(): number {
    if (this.records <= this.recordBudget || this.balancing) return 0;
    return this.scan(this.records - this.reclaimToRecords);
  }

  /** Drop up to maxToDrop non-DELAYED records, least recently used trees first. */
  scan(maxToDrop: number): number {
    assert(!this.balancing, 'scans do not nest');
    this.balancing = true;
    try {
      const candidates = [...this.trees].filter((tree) => tree.reclaimableCount > 0);
      candidates.sort((left, right) => left.lastUsedTick - right.lastUsedTick);
      let dropped = 0;
      for (const tree of candidates) {
        if (dropped >= maxToDrop) break;
        dropped += tree.reclaim(maxToDrop - dropped);
      }
      this.reclaimedTotal += dropped;
      return dropped;
    } finally {
      this.balancing = false;
    }
  }
}
