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
