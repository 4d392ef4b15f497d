/**
 * The one file of named constants for state in the shared wasm memory: where each region
 * lies, the packed record layouts the kernels read, and — beside each shared word — the
 * Atomics ordering rule it follows and the race that rule prevents.
 *
 * Memory map (one `WebAssembly.Memory({ shared: true })` per engine, ≤ 4 GiB):
 *
 *   0 ─────────── heapBase ── reservedBase ──────────────────────── arenaBase ─────── arenaEnd
 *   │ AS static  │ (pad to    │ control page │ pad │ scratch slots  │ (pad to 8 MiB) │ buddy arena
 *   │ data: crc  │  64 KiB)   │ 4 KiB        │     │ 32 × 64 KiB    │                │ (page-cache folios)
 *   │ tables     │            │              │     │                │                │
 *
 * heapBase comes from the module (first byte after its static data, 17408 today). Every
 * other boundary is derived from it by the functions below, so the engine thread and each
 * worker compute the same addresses from the same module. Padding is address space only:
 * pages nobody touches cost no physical memory.
 *
 * Plain (non-atomic) data. Kernels read and write bytes with ordinary loads and stores.
 * Rule: a thread that hands bytes it wrote to another thread (a folio filled for
 * writeback, a buffer staged for a client) must publish them with an Atomics store or
 * read-modify-write on a state word AFTER the writes, and the receiver must read that word
 * with Atomics.load (or wake from Atomics.wait) BEFORE reading the bytes. Atomics are
 * sequentially consistent in JS and wasm, so this pair is the happens-before edge; without
 * it the receiver may see stale folio bytes. Per-folio state words (uptodate, dirty,
 * locked, writeback bits) will be added here by the page cache and follow this rule.
 *
 * Re-instantiation. Every instantiation (engine thread or worker) runs the module's start
 * function, which rewrites the crc32c tables with identical bytes; the build guarantees
 * the module has no data segments, so nothing else in memory is ever rewritten by it.
 */
import { assert } from '../assert.js';

export const WASM_PAGE_BYTES = 65536;
/** Declared maximum of the module's imported memory (wasm/build.mjs --maximumMemory): 4 GiB. */
export const WASM_MAXIMUM_PAGES = 65536;
export const WASM_MAXIMUM_BYTES = WASM_PAGE_BYTES * WASM_MAXIMUM_PAGES;

// ─── Reserved region ────────────────────────────────────────────────────────────────────

/** The reserved region starts at heapBase rounded up to this. */
export const RESERVED_ALIGN_BYTES = 65536;
/** The control page: shared i32 words at reservedBase + 4 × index. */
export const CONTROL_PAGE_BYTES = 4096;

/**
 * Bit s set ⇔ scratch slot s is claimed by one WasmCore instance (one per thread).
 * Claim: Atomics.compareExchange(old → old | bit); release: Atomics.and(~bit). The CAS
 * makes two threads that race for the same free slot see one winner (without it both
 * would copy into the same bytes and checksum each other's data); the release→claim pair
 * orders the previous owner's last use before the next owner's first.
 */
export const CONTROL_SCRATCH_CLAIM_INDEX = 0;
/**
 * 0 = no arena over this memory, 1 = an arena claimed it. Claim: compareExchange(0 → 1);
 * release: store 0. Prevents two allocators handing out the same bytes (one per memory).
 */
export const CONTROL_ARENA_CLAIM_INDEX = 1;
/** Control words in use; the rest of the page is reserved for later shared words. */
export const CONTROL_WORD_COUNT = 2;

/** Scratch slots: per-thread staging for crc32c of bytes that live outside wasm memory. */
export const SCRATCH_OFFSET_BYTES = 65536;
export const SCRATCH_SLOT_BYTES = 65536;
/** One claim bit per slot in a single i32 word. */
export const SCRATCH_SLOT_COUNT = 32;
export const RESERVED_BYTES = SCRATCH_OFFSET_BYTES + SCRATCH_SLOT_COUNT * SCRATCH_SLOT_BYTES;

// ─── Buddy arena (arena.ts) ─────────────────────────────────────────────────────────────

/** Smallest block: one 4 KiB page (order 0). */
export const ARENA_UNIT_BYTES = 4096;
export const ARENA_UNIT_SHIFT = 12;
/** Largest block: order 11 = 2048 units = 8 MiB, the largest folio (2048 blocks of 4 KiB). */
export const ARENA_ORDER_MAX = 11;
export const ARENA_BLOCK_BYTES_MAX = ARENA_UNIT_BYTES << ARENA_ORDER_MAX;
/** arenaBase is aligned to the largest block so every block's address is aligned to its size. */
export const ARENA_ALIGN_BYTES = ARENA_BLOCK_BYTES_MAX;

// ─── Extent records (wasm/assembly/extent.ts) ───────────────────────────────────────────

/**
 * Packed extent record, 16 bytes, little-endian, in arrays sorted by logical start with
 * no overlaps:
 *
 *   +0 u32 logical start block │ +4 u32 block count (bits 0–27) | flags (bits 28–31) │ +8 u64 physical start block
 *
 * extentSearch reads only the logical start. Owned by one thread (the engine's ES tree);
 * a reader in another thread needs the publish rule at the top of this file.
 */
export const EXTENT_RECORD_BYTES = 16;
export const EXTENT_RECORD_LOGICAL_OFFSET = 0;
export const EXTENT_RECORD_LENGTH_FLAGS_OFFSET = 4;
export const EXTENT_RECORD_PHYSICAL_OFFSET = 8;
export const EXTENT_RECORD_LENGTH_MASK = 0x0fff_ffff;
export const EXTENT_RECORD_FLAG_UNWRITTEN = 1 << 28;
export const EXTENT_RECORD_FLAG_DELAYED = 1 << 29;
export const EXTENT_RECORD_FLAG_HOLE = 1 << 30;
/** Spare flag bit (bit 31) for the ES tree's use. */
export const EXTENT_RECORD_FLAG_SPARE = 2 ** 31;

// ─── Derived addresses ──────────────────────────────────────────────────────────────────

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

export function reservedBaseOf(heapBase: number): number {
  return alignUp(heapBase, RESERVED_ALIGN_BYTES);
}

export function scratchSlotPtrOf(heapBase: number, slot: number): number {
  return reservedBaseOf(heapBase) + SCRATCH_OFFSET_BYTES + slot * SCRATCH_SLOT_BYTES;
}

/** Byte index of control word `index` (an i32 array index is this / 4). */
export function controlWordPtrOf(heapBase: number, index: number): number {
  return reservedBaseOf(heapBase) + 4 * index;
}

export function arenaBaseOf(heapBase: number): number {
  return alignUp(reservedBaseOf(heapBase) + RESERVED_BYTES, ARENA_ALIGN_BYTES);
}

// Relationships between the constants, checked once at load (one assertion each).
// Control words fit their page, and the page lies below the first scratch slot.
assert(CONTROL_WORD_COUNT * 4 <= CONTROL_PAGE_BYTES, 'control words fit the control page');
assert(CONTROL_PAGE_BYTES <= SCRATCH_OFFSET_BYTES, 'control page lies below the scratch slots');
// One i32 claim word has a bit for every scratch slot.
assert(SCRATCH_SLOT_COUNT <= 32, 'one claim bit per scratch slot');
// Arena units are pages, and the unit shift names the unit size.
assert(1 << ARENA_UNIT_SHIFT === ARENA_UNIT_BYTES, 'arena unit shift matches unit size');
// The extent record's fields tile its 16 bytes.
assert(EXTENT_RECORD_PHYSICAL_OFFSET + 8 === EXTENT_RECORD_BYTES, 'extent record fields tile the record');
// The whole memory is addressable by u32 pointers.
assert(WASM_MAXIMUM_BYTES === 2 ** 32, 'memory is at most 4 GiB');

// ═══ Page cache: per-folio state (added by mm/; nothing above this line was changed) ═══

/**
 * Per-folio state lives in one SharedArrayBuffer beside the wasm memory (mm/folio.ts,
 * FolioStateTable), indexed by **slot** = the folio's first arena unit
 * ((dataPtr − arenaBase) / 4096). A folio of order k owns units [slot, slot + 2^k) of the
 * arena, so slots never collide and no slot allocator is needed:
 *
 *   i32 words:  [0, unitCount)                     one state word per unit (used at a folio's head unit)
 *               [unitCount, unitCount + unitCount/4) per-block bitmap, FOLIO_BITMAP_BITS_PER_UNIT bits per unit
 *
 * State word bits (word `slot`):
 *
 *   bit 0 LOCKED │ 1 LOCK_WAITERS │ 2 UPTODATE │ 3 DIRTY │ 4 WRITEBACK │ 5 WRITEBACK_WAITERS │
 *   6 IN_USE │ 7 ERROR │ bits 8–11 ORDER │ 12–31 zero
 *
 * Ordering rules (every change to a state word is an Atomics read-modify-write or CAS;
 * plain stores to a live slot are forbidden):
 *
 * 1. LOCKED is taken only by compareExchange(v → v | LOCKED) with LOCKED clear in v, so two
 *    threads racing for a folio see one winner. It is released by and(~(LOCKED |
 *    LOCK_WAITERS)) AFTER the holder's last write to the folio's bytes or bitmap; the
 *    next holder's successful CAS is then ordered after those writes (publish rule above).
 * 2. Lost wake-ups. A thread that means to sleep on a bit (LOCKED or WRITEBACK) first sets
 *    the matching *_WAITERS bit by CAS and then waits (Atomics.wait / waitAsync) on exactly
 *    the value it stored. Whoever clears the bit clears *_WAITERS in the same RMW and calls
 *    Atomics.notify(word, all) when the old value had *_WAITERS. If the clear lands between
 *    the waiter's CAS and its wait, the word no longer equals the expected value and the
 *    wait returns 'not-equal' at once — without the exact-value wait the waiter could
 *    sleep forever. Woken waiters re-check and re-set *_WAITERS (spurious wake-ups are
 *    allowed: lock and writeback waiters share the word's wait queue).
 * 3. WRITEBACK is set (or(WRITEBACK), asserted clear before) by the engine thread while
 *    it holds LOCKED, after it has cleared the folio's dirty bits; it is cleared by
 *    and(~(WRITEBACK | WRITEBACK_WAITERS)) after the device write of the folio's bytes has
 *    completed (and, for ext4, after the completion's metadata work), so a waiter that
 *    sees WRITEBACK clear knows the bytes it saw dirty are on the device.
 * 4. UPTODATE/DIRTY and the per-block bitmap are changed by the LOCKED holder (or the
 *    engine thread for a folio nobody else can see). Bitmap words are shared between
 *    neighbouring small folios (4 units per word), so bitmap changes are always
 *    Atomics.or / Atomics.and on whole words, never plain stores: two lock holders of two
 *    different folios in two threads would otherwise lose each other's bits.
 * 5. IN_USE and ORDER are written (Atomics.store) only by the engine thread when it gives a
 *    slot to a new folio or frees it, and only while no other thread holds a reference to
 *    the folio (not locked, not under writeback, unpinned); workers read them to check
 *    that a slot they were handed is live and how big it is.
 *
 * Per-block bitmap of a folio with n blocks (bit numbers relative to slot × 8, like
 * iomap's ifs): [0, n) uptodate, [n, 2n) dirty. n = (4096 << order) / blockBytes, and
 * blockBytes ≥ 1024, so 2n ≤ 8 × 2^order: the bits always fit the folio's own units.
 */
export const FOLIO_STATE_LOCKED = 1 << 0;
export const FOLIO_STATE_LOCK_WAITERS = 1 << 1;
export const FOLIO_STATE_UPTODATE = 1 << 2;
export const FOLIO_STATE_DIRTY = 1 << 3;
export const FOLIO_STATE_WRITEBACK = 1 << 4;
export const FOLIO_STATE_WRITEBACK_WAITERS = 1 << 5;
export const FOLIO_STATE_IN_USE = 1 << 6;
/** A read or writeback of this folio failed (cleared when it is next read successfully). */
export const FOLIO_STATE_ERROR = 1 << 7;
export const FOLIO_STATE_ORDER_SHIFT = 8;
export const FOLIO_STATE_ORDER_MASK = 0xf << FOLIO_STATE_ORDER_SHIFT;
/** Bits of per-block bitmap reserved per arena unit: 2 bits × (4096 / 1024-byte smallest block). */
export const FOLIO_BITMAP_BITS_PER_UNIT = 8;
/** Smallest filesystem block the bitmap has room for. */
export const FOLIO_BLOCK_BYTES_MIN = 1024;

// A folio's ORDER fits its field.
assert(ARENA_ORDER_MAX <= FOLIO_STATE_ORDER_MASK >>> FOLIO_STATE_ORDER_SHIFT, 'folio order fits the state word');
// The flag bits lie below the order field.
assert(FOLIO_STATE_ERROR < 1 << FOLIO_STATE_ORDER_SHIFT, 'folio flags lie below the order field');
// Uptodate + dirty bits of the smallest blocks fill exactly the bits reserved per unit.
assert(2 * (ARENA_UNIT_BYTES / FOLIO_BLOCK_BYTES_MIN) === FOLIO_BITMAP_BITS_PER_UNIT, 'bitmap bits per unit');
// Units own whole bytes of the bitmap, four to an i32 word.
assert(32 % FOLIO_BITMAP_BITS_PER_UNIT === 0, 'whole units per bitmap word');
