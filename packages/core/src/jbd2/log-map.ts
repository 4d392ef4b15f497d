/**
 * LogMap: where journal block n lives on the filesystem device.
 *
 * The journal is a file (ext4: inode 8); the caller maps it and hands us its physical
 * extents in file order. Journal block n = file block n, so the extents must cover
 * [0, blockCount) without gaps. Lookup is a binary search over the extents (a fresh
 * mke2fs journal has 1-3 extents, so this is a handful of comparisons).
 *
 *   journal blocks   0 ........ 9 | 10 ........ 24 | 25 ....... 1023
 *   fs blocks        15 ...... 24 | 26 ........ 40 | 1066 ..... 2064   (64 MiB mkfs, §1)
 *
 * Generic: block numbers are filesystem blocks; nothing here knows ext4.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import { corrupted } from '../vfs/errors.js';

/** One physical run of the journal file: journal blocks [logicalStart, logicalStart + blockCount). */
export interface JournalExtent {
  logicalStart: number;
  physicalStart: number;
  blockCount: number;
}

/** What both the writer (Journal) and recoverJournal need to find the log on a device. */
export interface JournalGeometry {
  /** The filesystem block size (= the journal block size). */
  blockSizeBytes: number;
  /** The journal file's physical extents, in file order, covering [0, n) without gaps. */
  extents: readonly JournalExtent[];
}

/** A contiguous run of journal blocks that is also contiguous on the device. */
export interface LogRun {
  journalStart: number;
  fsStart: number;
  blockCount: number;
}

export class LogMap {
  readonly blockSizeBytes: number;
  /** Journal blocks mapped by the extents. */
  readonly blockCount: number;
  private readonly extents: readonly JournalExtent[];

  /** Throws EUCLEAN if the extents leave a gap, overlap, or point outside the device. */
  constructor(device: BlockDevice, geometry: JournalGeometry) {
    const { blockSizeBytes, extents } = geometry;
    assert(Number.isInteger(blockSizeBytes) && blockSizeBytes >= 1024 && (blockSizeBytes & (blockSizeBytes - 1)) === 0, `block size ${blockSizeBytes}`);
    const deviceBlocks = Math.floor(device.sizeBytes / blockSizeBytes);
    let next = 0;
    for (const e of extents) {
      if (e.logicalStart !== next) throw corrupted(`journal extents: expected logical block ${next}, got ${e.logicalStart}`);
      if (!Number.isSafeInteger(e.blockCount) || e.blockCount < 1) throw corrupted(`journal extent of ${e.blockCount} blocks`);
      if (!Number.isSafeInteger(e.physicalStart) || e.physicalStart < 0 || e.physicalStart + e.blockCount > deviceBlocks) {
        throw corrupted(`journal extent [${e.physicalStart}, ${e.physicalStart + e.blockCount}) outside the device (${deviceBlocks} blocks)`);
      }
      next += e.blockCount;
    }
    if (next === 0) throw corrupted('journal has no blocks');
    this.blockSizeBytes = blockSizeBytes;
    this.blockCount = next;
    this.extents = extents.map((e) => ({ ...e }));
  }

  private extentIndexOf(journalBlock: number): number {
    assert(Number.isInteger(journalBlock) && journalBlock >= 0 && journalBlock < this.blockCount, `journal block ${journalBlock} outside [0, ${this.blockCount})`);
    let lo = 0;
    let hi = this.extents.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.extents[mid].logicalStart <= journalBlock) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The fs block holding journal block `journalBlock`. */
  fsBlock(journalBlock: number): number {
    const e = this.extents[this.extentIndexOf(journalBlock)];
    return e.physicalStart + (journalBlock - e.logicalStart);
  }

  /** Byte offset on the device of journal block `journalBlock`. */
  offsetBytes(journalBlock: number): number {
    return this.fsBlock(journalBlock) * this.blockSizeBytes;
  }

  /** Splits journal blocks [journalStart, journalStart + blockCount) into device-contiguous runs. */
  runs(journalStart: number, blockCount: number): LogRun[] {
    assert(journalStart + blockCount <= this.blockCount, 'run inside the journal');
    const out: LogRun[] = [];
    let at = journalStart;
    const end = journalStart + blockCount;
    while (at < end) {
      const e = this.extents[this.extentIndexOf(at)];
      const runBlocks = Math.min(end, e.logicalStart + e.blockCount) - at;
      out.push({ journalStart: at, fsStart: e.physicalStart + (at - e.logicalStart), blockCount: runBlocks });
      at += runBlocks;
    }
    return out;
  }

  /** True when fs block `fsBlock` belongs to the journal itself. */
  containsFsBlock(fsBlock: number): boolean {
    return this.extents.some((e) => fsBlock >= e.physicalStart && fsBlock < e.physicalStart + e.blockCount);
  }

  async read(device: BlockDevice, journalBlock: number, target: Uint8Array): Promise<void> {
    assert(target.length === this.blockSizeBytes, 'one journal block');
    await device.read(this.offsetBytes(journalBlock), target);
  }
}
