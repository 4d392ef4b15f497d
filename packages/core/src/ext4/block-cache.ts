/**
 * BlockCache: metadata blocks (inode tables, extent nodes, directory and index blocks,
 * indirect blocks) read from the device by physical block number, kept in a bounded
 * LRU. File data never goes through here: the read path reads data runs straight into
 * the caller's buffer.
 *
 * A block is verified once per *kind* (an extent node, a dir leaf, ...) and remembers
 * it, so a hot directory block costs one crc32c on first use and none after (a 4 KiB
 * crc in TypeScript is ~10 µs). Concurrent misses on the same block share one read.
 *
 * Every block number is checked against the filesystem before the device sees it, so
 * a corrupt pointer gives EUCLEAN, never a read outside the filesystem.
 */
import type { BlockDevice } from '../device/block-device.js';
import { MetaCache } from '../buffer/meta-cache.js';
import { corrupted } from '../vfs/errors.js';

/** Default bound: 4096 blocks = 16 MiB of metadata at 4 KiB blocks. */
export const BLOCK_CACHE_BLOCKS_MAX = 4096;

interface CachedBlock {
  data: Uint8Array;
  /** Kinds this block has passed verification as (usually one). */
  verifiedAs: string[];
}

export class BlockCache {
  private readonly cache: MetaCache<number, CachedBlock>;
  private readonly inflight = new Map<number, Promise<CachedBlock>>();
  /**
   * The journal's newest bytes of a block, if it holds one (journal.peek). Asked first on
   * every read: while the journal holds a block, the device and the cached copy may be
   * stale (the buffer-identity rule in jbd2/journal.ts). Those bytes were written by this
   * engine and are not re-verified.
   */
  overlay: ((blockIndex: number) => Uint8Array | undefined) | undefined;

  constructor(
    readonly device: BlockDevice,
    readonly blockSizeBytes: number,
    /** The filesystem's first usable block (blocks before it hold the boot sector). */
    readonly firstBlock: number,
    /** Blocks in the filesystem: valid block numbers are [firstBlock, blocksCount). */
    readonly blocksCount: number,
    maxBlocks = BLOCK_CACHE_BLOCKS_MAX,
  ) {
    this.cache = new MetaCache(maxBlocks);
  }

  get stats(): { hits: number; misses: number; size: number } {
    return { hits: this.cache.hits, misses: this.cache.misses, size: this.cache.size };
  }

  /** Throw EUCLEAN unless [blockIndex, blockIndex + blockCount) lies inside the filesystem. */
  checkRange(blockIndex: number, blockCount: number, what: string): void {
    if (!Number.isSafeInteger(blockIndex) || blockIndex < this.firstBlock || blockCount < 1 || blockIndex + blockCount > this.blocksCount) {
      throw corrupted(`${what}: blocks [${blockIndex}, ${blockIndex + blockCount}) outside the filesystem [${this.firstBlock}, ${this.blocksCount})`);
    }
  }

  /**
   * The block's bytes (shared: callers must not modify them). `verify` runs once per
   * `kind` for the lifetime of the cached copy; if it throws, the block is not marked.
   */
  async read(blockIndex: number, what: string, kind?: string, verify?: (data: Uint8Array) => void): Promise<Uint8Array> {
    this.checkRange(blockIndex, 1, what);
    const live = this.overlay?.(blockIndex);
    if (live !== undefined) return live;
    let entry = this.cache.get(blockIndex);
    if (entry === undefined) entry = await this.load(blockIndex);
    if (kind !== undefined && verify !== undefined && !entry.verifiedAs.includes(kind)) {
      verify(entry.data);
      entry.verifiedAs.push(kind);
    }
    return entry.data;
  }

  private load(blockIndex: number): Promise<CachedBlock> {
    const pending = this.inflight.get(blockIndex);
    if (pending !== undefined) return pending;
    const promise = (async () => {
      const data = new Uint8Array(this.blockSizeBytes);
      await this.device.read(blockIndex * this.blockSizeBytes, data);
      const entry: CachedBlock = { data, verifiedAs: [] };
      this.cache.set(blockIndex, entry);
      return entry;
    })();
    this.inflight.set(blockIndex, promise);
    const forget = (): void => { this.inflight.delete(blockIndex); };
    promise.then(forget, forget);
    return promise;
  }

  /**
   * The device now holds `data` at `blockIndex` (a checkpoint wrote it home): keep a copy
   * if the block is cached, so the cache never serves an older version.
   */
  refresh(blockIndex: number, data: Uint8Array): void {
    const entry = this.cache.get(blockIndex);
    if (entry !== undefined) entry.data.set(data);
  }

  /** Drop a block (after it is rewritten, or to force re-verification). */
  invalidate(blockIndex: number): void {
    this.cache.delete(blockIndex);
  }

  clear(): void {
    this.cache.clear();
  }
}
