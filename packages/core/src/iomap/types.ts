/**
 * The iomap contract: the filesystem answers one question — "what is at this file
 * offset, for how long?" — with a typed mapping, and everything else (folios, per-block
 * state, the iteration loop, short writes, EOF zeroing, writeback walking, ioends) is
 * generic code in iomap/ over the page cache in mm/. Generic: nothing here knows ext4.
 *
 * Every operation is the same loop (Linux's iomap_iter):
 *
 *   let pos = start;
 *   while (pos < end) {
 *     const map = await ops.begin(inode, pos, end - pos, flags);   // one mapping
 *     const done = await actor(map, pos, min(end, map.offset + map.length)); // folios
 *     await ops.end?.(inode, pos, end - pos, done, flags, map);
 *     pos += done;                                                  // 0 ⇒ stop (short)
 *   }
 *
 * Ranges are half-open, in bytes; mappings are block aligned.
 */
import type { AddressSpace } from '../mm/mapping.js';

/** What a mapping says about [offsetBytes, offsetBytes + lengthBytes). */
export const IomapType = {
  /** No blocks: reads as zeros; a write must allocate (or reserve). */
  HOLE: 0,
  /** Reserved but not allocated (delayed allocation): reads as zeros unless cached. */
  DELALLOC: 1,
  /** Allocated and written: device bytes at addrBytes. */
  MAPPED: 2,
  /** Allocated, not yet written (fallocate, or allocated at writeback): reads as zeros. */
  UNWRITTEN: 3,
} as const;
export type IomapType = (typeof IomapType)[keyof typeof IomapType];

/** Flags on a mapping. */
export const IomapFlags = {
  /** Blocks allocated by this begin(): their device contents are garbage. */
  NEW: 0x1,
  /** The mapping was found stale after locking: the loop re-maps (Linux IOMAP_F_STALE). */
  STALE: 0x2,
} as const;

/** Why begin() is called (bits; Linux IOMAP_WRITE/ZERO/FAULT/REPORT). */
export const IomapOp = {
  READ: 0,
  WRITE: 0x1,
  ZERO: 0x2,
  FAULT: 0x4,
  REPORT: 0x8,
} as const;

export interface Iomap {
  offsetBytes: number;
  lengthBytes: number;
  type: IomapType;
  /** Device byte address of offsetBytes (MAPPED, UNWRITTEN); -1 otherwise. */
  addrBytes: number;
  flags: number;
  /**
   * The filesystem's mapping sequence number when this mapping was made (ext4: the extent
   * status tree's seq). After locking a folio, iomap asks ops.valid(); a changed cookie
   * means truncate/writeback/punch moved things and the mapping is fetched again.
   */
  validityCookie: number;
}

/** The per-file state iomap needs; the filesystem's inode object implements it. */
export interface IomapInode {
  /** The file's page cache. */
  readonly mapping: AddressSpace;
  /** i_size as the page cache sees it (raised by writes, before any disk size). */
  sizeBytes: number;
  readonly blockSizeBytes: number;
}

export interface IomapOps {
  /** Map the start of [offsetBytes, offsetBytes + lengthBytes); may return less. */
  begin(inode: IomapInode, offsetBytes: number, lengthBytes: number, op: number): Promise<Iomap>;
  /**
   * After the actor handled `doneBytes` of the mapping: e.g. a short delalloc write punches
   * the reservation of the untouched tail of a new delayed range.
   */
  end?(inode: IomapInode, offsetBytes: number, lengthBytes: number, doneBytes: number, op: number, iomap: Iomap): Promise<void>;
  /** Whether `iomap` is still current (compare the validity cookie). */
  valid?(inode: IomapInode, iomap: Iomap): boolean;
}

/** A run of dirty data being written back: folio ranges → one contiguous device range. */
export interface Ioend {
  inode: IomapInode;
  /** File range [offsetBytes, offsetBytes + lengthBytes). */
  offsetBytes: number;
  lengthBytes: number;
  /** Device byte address of offsetBytes. */
  addrBytes: number;
  /** The mapping type the blocks had when written (UNWRITTEN ⇒ convert at completion). */
  type: IomapType;
  /** Folio pieces in file order: [folio data pointer + offset, length] in shared memory. */
  pieces: IoendPiece[];
  /** Set when the device write failed. */
  error?: Error;
}

export interface IoendPiece {
  /** Byte pointer into the wasm memory (folio data). */
  ptr: number;
  lengthBytes: number;
}

export interface WritebackOps {
  /**
   * The mapping writeback uses for dirty data at offsetBytes (allocating a whole delayed
   * extent as unwritten, in the seed's design). Must not return DELALLOC. May return HOLE
   * (extension, as Linux's writeback does): dirty blocks whose extent was punched or
   * truncated away while their zeroed bytes stayed dirty in a large folio; writeback skips them.
   */
  mapBlocks(inode: IomapInode, offsetBytes: number, dirtyLengthBytes: number): Promise<Iomap>;
  /**
   * Extension: whether a mapping returned by mapBlocks is still current (its cookie). While
   * it is, writeback reuses it for the next dirty blocks inside it; absent = always reuse.
   */
  valid?(inode: IomapInode, iomap: Iomap): boolean;
  /**
   * Completion work that touches metadata (convert unwritten, raise the on-disk size), on
   * the engine thread, after the data is on the device; merged, sorted ioends.
   */
  ioendsCompleted(ioends: readonly Ioend[]): Promise<void>;
}
