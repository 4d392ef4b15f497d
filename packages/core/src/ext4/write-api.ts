/**
 * The contracts between the pieces of ext4's write path, so allocation, file mapping,
 * directories and namespace operations can be built and tested apart. Every call runs
 * inside a journal handle of an Ext4Mount (mount.ts) and changes metadata only through
 * it: mount.writeInode / writeGroup / writeSuperblock, or h.getWriteAccess +
 * h.dirtyMetadata for bitmaps, extent blocks and directory blocks (checksums sealed
 * before dirtyMetadata).
 *
 * Credits: each function documents the most blocks it may dirty; callers start handles
 * big enough (or extend()).
 */
import type { JournalHandle } from '../jbd2/handle.js';
import type { Ext4Mount } from './mount.js';

/** A physical run of filesystem blocks, [start, start + count). */
export interface BlockRun {
  start: number;
  count: number;
}

export interface BlockAllocRequest {
  /** Preferred first block: the allocator searches from here (then the goal's group, then others). */
  goal: number;
  /** Blocks wanted in one contiguous run. */
  count: number;
  /** Fewest acceptable (default 1): a shorter run is returned when no run of `count` is free. */
  minCount?: number;
  /** May dip into the reserved blocks (s_r_blocks_count): root-owned files, fs metadata. */
  useReserved?: boolean;
  /**
   * The blocks were reserved by delayed allocation (writeback allocating delayed blocks):
   * they may come out of the delalloc reservation. Every other allocation leaves the
   * reserved blocks free (ext4_claim_free_clusters), or writeback could find no space for
   * data a write already accepted.
   */
  fromDelallocReservation?: boolean;
}

export interface MapOrAllocateOptions {
  unwritten: boolean;
  goal?: number;
  /** The holes being filled are delayed blocks whose space delalloc reserved (BlockAllocRequest). */
  fromDelallocReservation?: boolean;
}

/** ext4/balloc. */
export interface BlockAllocator {
  /**
   * Allocate one contiguous run near the goal: set bitmap bits (materialising BLOCK_UNINIT
   * groups), lower group and superblock free counts. ENOSPC (FsError) when fewer than
   * minCount blocks are free for this caller. Never returns a block freed by a transaction
   * that has not committed yet (the journal's reuse rule). Dirties ≤ 3 blocks (bitmap,
   * GDT block, superblock).
   */
  allocate(mount: Ext4Mount, h: JournalHandle, request: BlockAllocRequest): Promise<BlockRun>;
  /** Free a run: clear bits, raise counts. Dirties ≤ 3 blocks per group touched. */
  free(mount: Ext4Mount, h: JournalHandle, run: BlockRun): Promise<void>;
  /** Free blocks available to a caller (minus the reserve unless useReserved). */
  freeBlocks(mount: Ext4Mount, useReserved: boolean): number;
}

/** ext4/ialloc. */
export interface InodeAllocator {
  /**
   * A free inode number (≥ s_first_ino): directories spread across groups, files near
   * their parent (Orlov-like). Initialises INODE_UNINIT groups, keeps bg_itable_unused and
   * used_dirs_count. The inode's slot is left for the caller to fill (mount.writeInode).
   */
  allocate(mount: Ext4Mount, h: JournalHandle, request: { parentIno: number; isDir: boolean }): Promise<number>;
  /** Free an inode number (bit, counts, used_dirs); the caller has set dtime and links 0. */
  free(mount: Ext4Mount, h: JournalHandle, ino: number, isDir: boolean): Promise<void>;
}

/** A logical → physical mapping returned by the extent writer. */
export interface MappedRun {
  lblk: number;
  count: number;
  pblk: number;
  unwritten: boolean;
  /** Allocated by this call (its contents on disk are garbage until written). */
  fresh: boolean;
}

/** ext4/extents (writes to the on-disk extent tree of one inode). */
export interface ExtentWriter {
  /**
   * Make [lblk, lblk + count) mapped, allocating what is a hole (as unwritten extents if
   * `unwritten`), inserting with merging, splitting leaves and growing depth as needed;
   * i_blocks is kept exact. Returns the mapping of the whole range in logical order.
   */
  mapOrAllocate(mount: Ext4Mount, h: JournalHandle, ino: number, lblk: number, count: number, options: MapOrAllocateOptions): Promise<MappedRun[]>;
  /** Remove [lblk, lblk + count) from the tree (punch/truncate), freeing data and emptied tree blocks. */
  removeRange(mount: Ext4Mount, h: JournalHandle, ino: number, lblk: number, count: number): Promise<void>;
  /** Mark [lblk, lblk + count) written where it is unwritten (splitting extents as needed). */
  convertUnwritten(mount: Ext4Mount, h: JournalHandle, ino: number, lblk: number, count: number): Promise<void>;
}

/** ext4/dir-write + ext4/htree-write. */
export interface DirectoryWriter {
  /** Fill a new directory's first block ("." and "..") and set its size; links are the caller's. */
  initDir(mount: Ext4Mount, h: JournalHandle, dirIno: number, parentIno: number): Promise<void>;
  /** Add a name (EEXIST if present): linear while the dir is one block, htree once it outgrows it. */
  addEntry(mount: Ext4Mount, h: JournalHandle, dirIno: number, name: Uint8Array, ino: number, fileType: number): Promise<void>;
  /** Remove a name; returns the inode it named (ENOENT if absent). */
  removeEntry(mount: Ext4Mount, h: JournalHandle, dirIno: number, name: Uint8Array): Promise<number>;
  /** Point an existing name at another inode (rename over a target, ".." fix-up). */
  setEntry(mount: Ext4Mount, h: JournalHandle, dirIno: number, name: Uint8Array, ino: number, fileType: number): Promise<void>;
  /** True when the directory holds only "." and "..". */
  isEmpty(mount: Ext4Mount, dirIno: number): Promise<boolean>;
}
