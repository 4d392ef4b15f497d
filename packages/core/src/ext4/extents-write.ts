/**
 * ext4/extents-write: changes to one inode's on-disk extent tree (write-api.ts
 * ExtentWriter; ext4-format.md §6). The read side is ./extents.ts; every tree written
 * here passes its checks (and e2fsck's).
 *
 * Every change is a *leaf edit*: find the path root → leaf for a logical block, compute
 * the leaf's new extent list, then fix the tree around it:
 *
 *   too many entries  → split the leaf in halves, insert an index entry in the parent
 *                       (which may split in turn); a full root moves its entries into a
 *                       new block and becomes an index one level higher (depth growth);
 *   no entries        → free the leaf (revoke + free), remove its index entry (which may
 *                       empty the parent in turn); an empty root becomes an empty leaf;
 *   first lblk moved  → rewrite ei_block up the path while the entry is its node's first
 *                       (the index-start rule: ei_block = child's first logical block);
 *   not full          → pull entries from the right sibling(s) under the same parent
 *                       (e2fsck flags a level with more than one block of free slots as
 *                       "could be narrower"); a root index with one child pulls that
 *                       child up when it fits in i_block (depth shrink, after removals).
 *
 *   split of a leaf holding 341 extents (max 340): the left stays full
 *     parent [.. (L0→B) ..]            parent [.. (L0→B) (L340→N) ..]
 *     B: e0 … e340            ──▶      B: e0 … e339    N: e340
 *
 * Adjacent extents merge when logically and physically contiguous, of the same
 * written-ness, and short enough (32768 written / 32767 unwritten).
 *
 * Allocation goal (unless the caller gives one): right after the physical end of the
 * extent before lblk (its pblk + (lblk − its lblk)), else the first block of the inode's
 * group. Data blocks respect the 5% reserve; tree blocks may use it (so a split never
 * fails half way for want of one block once the data is allocated).
 *
 * i_blocks counts data + tree blocks in 512-byte units and is adjusted by every
 * allocation and free; EXTENTS_FL is set. The root's changes and i_blocks go out in one
 * writeInode at the end of each call.
 *
 * Cost per leaf edit: depth cached reads; dirties the leaf (+1 per split/merge level,
 * +1 new block each), the bitmap/GDT/superblock of each allocation or free, and the
 * inode's table block. A punch over n leaves repeats that n times. Lookups binary-search
 * node bytes and decode two entries; the two commonest inserts change the leaf in place
 * (tryAppend: one entry's length; tryInsertInPlace: a memmove and one entry) — only
 * splits, merges, removals and conversions decode and re-encode whole nodes. The append
 * of buffer_head writeback has a synchronous twin (mapOrAllocateNow) when nothing it
 * touches needs a read. Measured: a synchronous 1-block append ~2 µs, 1.3 of them the
 * inode write; a random 1-block insert into a 300-extent file ~26 µs (was ~100).
 */
import { assert } from '../assert.js';
import {
  EXT_INIT_MAX_LEN, EXT_MAX_DEPTH, EXT_UNWRITTEN_MAX_LEN, ROOT_MAX_ENTRIES, decodeExtent, decodeExtentHeader,
  decodeExtentIndex, encodeExtent, encodeExtentHeader, encodeExtentIndex, extentEntryLblk, nodeMaxEntries, sealExtentBlock,
  makeExtent, type Extent, type ExtentIndex, EXTENT_ENTRY_BYTES, EXTENT_HEADER_BYTES, EXTENT_MAGIC,
} from '../format/extent.js';
import { InodeFlags, I_BLOCK_BYTES, type Inode } from '../format/inode.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { corrupted } from '../vfs/errors.js';
import { allocateBlocksNow, blockAllocator } from './balloc.js';
import type { Ext4Inode } from './inode.js';
import { LBLK_LIMIT } from './extents.js';
import type { Ext4Mount } from './mount.js';
import { inodeLocation } from './super.js';
import type { ExtentWriter, MapOrAllocateOptions, MappedRun } from './write-api.js';

/** One node on a root → leaf path. pblk 0 = the root in i_block. */
interface PathNode {
  pblk: number;
  depth: number;
  /** Leaf extents (depth 0) or index entries (depth > 0). */
  items: Extent[] | ExtentIndex[];
  /** The entry followed (index nodes) or searched (leaf). */
  idx: number;
}

/**
 * A node on a root → leaf path as bytes, for lookups: binary search over the entries'
 * first blocks, and only the entries looked at decoded (a leaf holds up to 340).
 */
interface NodeBytes {
  /** 0 = the root in i_block. */
  pblk: number;
  depth: number;
  bytes: Uint8Array;
  entries: number;
  /** Entries the node may hold (the root 4; a block its header's max). */
  capacity: number;
  /** Index nodes: the entry followed. */
  idx: number;
}

/** Binary search over a node's bytes: the last entry whose first block is ≤ `lblk`, or -1. */
function lastEntryAtOrBefore(node: NodeBytes, lblk: number): number {
  let lo = 0;
  let hi = node.entries; // invariant: entries < lo start ≤ lblk < entries ≥ hi
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (extentEntryLblk(node.bytes, mid) <= lblk) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** pullFromRight stops when the handle has fewer credits left than this (one step dirties ≤ 3 nodes + a free's 3 blocks). */
const PULL_CREDITS_MIN = 8;

function maxLenOf(unwritten: boolean): number {
  return unwritten ? EXT_UNWRITTEN_MAX_LEN : EXT_INIT_MAX_LEN;
}

/**
 * Merge neighbours that are logically and physically contiguous and of one kind. Extent
 * objects are never changed in place (a merge makes a new one), so the ones that do not
 * merge are shared, not copied.
 */
export function mergeExtents(items: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of items) {
    const last = out[out.length - 1];
    if (last !== undefined && last.lblk + last.len === e.lblk && last.pblk + last.len === e.pblk
      && last.unwritten === e.unwritten && last.len + e.len <= maxLenOf(e.unwritten)) {
      out[out.length - 1] = makeExtent(last.lblk, last.len + e.len, last.pblk, last.unwritten);
    } else out.push(e);
  }
  return out;
}

/** The entry of `node` to follow (or search from) for `lblk`: the last one starting at or before it (0 if none). */
function indexFor(node: PathNode, lblk: number): number {
  return Math.max(0, lastAtOrBefore(node.items, lblk));
}

/**
 * Binary search (ext4_ext_binsearch): the index of the last item whose lblk ≤ `lblk`
 * in items sorted by lblk, or -1 if none. A leaf holds up to 340 extents; a linear
 * scan of every node on the path per block was most of a random write's tree cost.
 */
function lastAtOrBefore(items: readonly { lblk: number }[], lblk: number): number {
  let lo = 0;
  let hi = items.length; // invariant: items[< lo].lblk ≤ lblk < items[≥ hi].lblk
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (items[mid].lblk <= lblk) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** One call's view of an inode's tree: the root copy, i_blocks delta, helpers. */
class TreeEdit {
  readonly root: Uint8Array;
  private blocksDelta = 0;
  private readonly maxEntries: number;
  private readonly seed: number;

  private constructor(readonly mount: Ext4Mount, readonly h: JournalHandle, readonly ino: number, root: Uint8Array, seed: number, readonly flags: number) {
    this.root = root;
    this.seed = seed;
    this.maxEntries = nodeMaxEntries(mount.ext4.blockSizeBytes);
  }

  static async open(mount: Ext4Mount, h: JournalHandle, ino: number): Promise<TreeEdit> {
    return TreeEdit.of(mount, h, ino, mount.ext4.inodeCache.get(ino) ?? await mount.inode(ino));
  }

  static of(mount: Ext4Mount, h: JournalHandle, ino: number, inode: Ext4Inode): TreeEdit {
    const root = inode.block.slice(0, I_BLOCK_BYTES);
    if ((inode.flags & InodeFlags.EXTENTS) === 0) {
      if (root.some((b) => b !== 0)) throw corrupted(`inode ${ino} is block-mapped; the extent writer needs an extent tree`);
      encodeExtentHeader(root, { entries: 0, max: ROOT_MAX_ENTRIES, depth: 0, generation: 0 });
    } else if ((root[0] | (root[1] << 8)) !== EXTENT_MAGIC) { // (no DataView: .buffer would move the 60 bytes off the heap)
      throw corrupted(`inode ${ino} has EXTENTS_FL but no extent header`);
    }
    if ((inode.flags & InodeFlags.HUGE_FILE) !== 0) throw corrupted(`inode ${ino}: HUGE_FILE i_blocks units are not supported`);
    return new TreeEdit(mount, h, ino, root, inode.csumSeed, inode.flags);
  }

  /** Write the root, i_blocks and EXTENTS_FL into the inode. */
  async finish(): Promise<void> {
    if (this.finishNow()) return;
    await this.mount.writeInode(this.h, this.ino, (raw) => this.intoInode(raw));
  }

  /** finish() without a promise when the journal holds the inode's table block; false: nothing done. */
  finishNow(): boolean {
    return this.mount.writeInodeNow(this.h, this.ino, (raw) => this.intoInode(raw)) !== undefined;
  }

  private intoInode(raw: Inode): void {
    raw.block = this.root.slice();
    raw.flags |= InodeFlags.EXTENTS;
    raw.blocks += this.blocksDelta * (this.mount.ext4.blockSizeBytes / 512);
    if (raw.blocks < 0) assert(false, `inode ${this.ino} i_blocks stays ≥ 0`);
  }

  /** Data blocks this edit allocated without allocData (the synchronous append). */
  countDataBlocks(count: number): void {
    this.blocksDelta += count;
  }

  // -------------------------------------------------------------------------------
  // Nodes

  private decodeItems(node: Uint8Array, depth: number, entries: number): Extent[] | ExtentIndex[] {
    const items: (Extent | ExtentIndex)[] = [];
    for (let i = 0; i < entries; i++) items.push(depth === 0 ? decodeExtent(node, i) : decodeExtentIndex(node, i));
    return items as Extent[] | ExtentIndex[];
  }

  /** The root (in i_block): no read, no promise. */
  readRoot(): PathNode {
    const header = decodeExtentHeader(this.root);
    if (header.depth > EXT_MAX_DEPTH) throw corrupted(`inode ${this.ino}: extent depth ${header.depth}`);
    return { pblk: 0, depth: header.depth, items: this.decodeItems(this.root, header.depth, header.entries), idx: 0 };
  }

  async readNode(pblk: number, depth: number): Promise<PathNode> {
    return this.nodeOf(pblk, depth, pblk === 0 ? this.root : await this.mount.ext4.cache.read(pblk, `extent node of inode ${this.ino}`));
  }

  private nodeOf(pblk: number, depth: number, node: Uint8Array): PathNode {
    const header = decodeExtentHeader(node);
    if (header.depth !== depth) throw corrupted(`inode ${this.ino}: extent node ${pblk} depth ${header.depth}, expected ${depth}`);
    return { pblk, depth, items: this.decodeItems(node, depth, header.entries), idx: 0 };
  }

  private rootDepth(): number {
    const depth = decodeExtentHeader(this.root).depth;
    if (depth > EXT_MAX_DEPTH) throw corrupted(`inode ${this.ino}: extent depth ${depth}`);
    return depth;
  }

  /** Encode a node's items (whole node) and dirty it; `fresh` blocks are never read. */
  async writeNode(node: PathNode, fresh = false): Promise<void> {
    const isRoot = node.pblk === 0;
    const max = isRoot ? ROOT_MAX_ENTRIES : this.maxEntries;
    if (node.items.length > max) assert(false, `extent node holds ${node.items.length} ≤ ${max}`);
    assert(node.items.length > 0 || node.depth === 0, 'only leaves may be empty');
    const bytes = isRoot ? this.root : fresh ? this.h.getCreateAccess(node.pblk) : await this.h.getWriteAccess(node.pblk);
    bytes.fill(0, 0, isRoot ? I_BLOCK_BYTES : bytes.length);
    encodeExtentHeader(bytes, { entries: node.items.length, max, depth: node.depth, generation: 0 });
    for (let i = 0; i < node.items.length; i++) {
      if (node.depth === 0) encodeExtent(bytes, i, (node.items as Extent[])[i]);
      else encodeExtentIndex(bytes, i, (node.items as ExtentIndex[])[i]);
    }
    if (isRoot) return;
    if (this.mount.ext4.metadataCsum) sealExtentBlock(bytes, this.seed);
    this.h.dirtyMetadata(node.pblk);
  }

  /** The leaf's bytes to change: the root itself, or the block with write access taken (undefined: that needs a read). */
  leafBytesNow(leaf: NodeBytes): Uint8Array | undefined {
    return leaf.pblk === 0 ? this.root : this.h.getWriteAccessNow(leaf.pblk);
  }

  async leafBytes(leaf: NodeBytes): Promise<Uint8Array> {
    return this.leafBytesNow(leaf) ?? this.h.getWriteAccess(leaf.pblk);
  }

  /** Extent `index` of leaf `leaf` becomes `extent` in `bytes` (leafBytes): one entry encoded, the block sealed and dirtied. */
  setLeafEntry(leaf: NodeBytes, bytes: Uint8Array, index: number, extent: Extent): void {
    if (!(index >= 0 && index < leaf.entries)) assert(false, `entry ${index} of a ${leaf.entries}-entry leaf`);
    encodeExtent(bytes, index, extent);
    this.sealLeaf(leaf, bytes);
  }

  /** `extent` goes in at `index` of leaf `leaf` in `bytes` (leafBytes), the entries after it moving up one: the block sealed and dirtied. */
  insertLeafEntry(leaf: NodeBytes, bytes: Uint8Array, index: number, extent: Extent): void {
    if (!(index >= 0 && index <= leaf.entries && leaf.entries < leaf.capacity)) assert(false, `insert at ${index} of a ${leaf.entries}/${leaf.capacity}-entry leaf`);
    const at = EXTENT_HEADER_BYTES + index * EXTENT_ENTRY_BYTES;
    bytes.copyWithin(at + EXTENT_ENTRY_BYTES, at, EXTENT_HEADER_BYTES + leaf.entries * EXTENT_ENTRY_BYTES);
    leaf.entries += 1;
    encodeExtentHeader(bytes, { ...decodeExtentHeader(bytes), entries: leaf.entries });
    encodeExtent(bytes, index, extent);
    this.sealLeaf(leaf, bytes);
  }

  private sealLeaf(leaf: NodeBytes, bytes: Uint8Array): void {
    if (leaf.pblk === 0) return; // the root goes into the inode at finish
    if (this.mount.ext4.metadataCsum) sealExtentBlock(bytes, this.seed);
    this.h.dirtyMetadata(leaf.pblk);
  }

  inodeGroupGoal(): number {
    const { ext4 } = this.mount;
    return ext4.sb.firstDataBlock + inodeLocation(ext4, this.ino).group * ext4.sb.blocksPerGroup;
  }

  async newTreeBlock(goal: number): Promise<number> {
    const run = await blockAllocator.allocate(this.mount, this.h, { goal, count: 1, useReserved: true });
    this.blocksDelta += 1;
    return run.start;
  }

  async freeTreeBlock(pblk: number): Promise<void> {
    this.h.revoke(pblk);
    this.mount.ext4.cache.invalidate(pblk);
    await blockAllocator.free(this.mount, this.h, { start: pblk, count: 1 });
    this.blocksDelta -= 1;
  }

  async allocData(goal: number, count: number, fromDelallocReservation = false): Promise<{ start: number; count: number }> {
    const run = await blockAllocator.allocate(this.mount, this.h, { goal, count, minCount: 1, fromDelallocReservation });
    this.blocksDelta += run.count;
    return run;
  }

  async freeData(pblk: number, count: number): Promise<void> {
    await blockAllocator.free(this.mount, this.h, { start: pblk, count });
    this.blocksDelta -= count;
  }

  // -------------------------------------------------------------------------------
  // Paths

  /** The root's header and bytes (no read, no promise). */
  rootBytes(): NodeBytes {
    return this.nodeBytes(0, -1, this.root);
  }

  /** A node's bytes checked against its header (`depth` -1: the root, any depth). */
  private nodeBytes(pblk: number, depth: number, bytes: Uint8Array): NodeBytes {
    const header = decodeExtentHeader(bytes);
    if (depth >= 0 ? header.depth !== depth : header.depth > EXT_MAX_DEPTH) {
      throw corrupted(`inode ${this.ino}: extent node ${pblk} depth ${header.depth}${depth >= 0 ? `, expected ${depth}` : ''}`);
    }
    const capacity = pblk === 0 ? ROOT_MAX_ENTRIES : Math.min(header.max, this.maxEntries);
    if (header.entries > capacity) throw corrupted(`inode ${this.ino}: extent node ${pblk} has ${header.entries} entries, room for ${capacity}`);
    return { pblk, depth: header.depth, bytes, entries: header.entries, capacity, idx: 0 };
  }

  /** The path to the leaf for `lblk`, as bytes; nodes below the root come from the journal if it holds them, else the cache. */
  async findBytes(lblk: number): Promise<NodeBytes[]> {
    const path: NodeBytes[] = [];
    let node = this.rootBytes();
    while (node.depth > 0) {
      const child = this.followBytes(path, node, lblk);
      node = this.nodeBytes(child, node.depth - 1, this.mount.journal?.peek(child) ?? await this.mount.ext4.cache.read(child, `extent node of inode ${this.ino}`));
    }
    path.push(node);
    return path;
  }

  /**
   * findBytes without a promise, when every node below the root is held by the journal
   * (the leaf a file is being appended to, after its first change in the transaction);
   * undefined otherwise.
   */
  findBytesNow(lblk: number): NodeBytes[] | undefined {
    const path: NodeBytes[] = [];
    let node = this.rootBytes();
    while (node.depth > 0) {
      const child = this.followBytes(path, node, lblk);
      const bytes = this.mount.journal?.peek(child);
      if (bytes === undefined) return undefined;
      node = this.nodeBytes(child, node.depth - 1, bytes);
    }
    path.push(node);
    return path;
  }

  /** Index node `node` joins the path; the child block to follow for `lblk`. */
  private followBytes(path: NodeBytes[], node: NodeBytes, lblk: number): number {
    if (node.entries === 0) throw corrupted(`inode ${this.ino}: empty extent index node ${node.pblk}`);
    if (path.length >= EXT_MAX_DEPTH) throw corrupted(`inode ${this.ino}: extent tree too deep`);
    node.idx = Math.max(0, lastEntryAtOrBefore(node, lblk));
    path.push(node);
    return decodeExtentIndex(node.bytes, node.idx).leaf;
  }

  /** The logical block where the leaf of a byte path stops covering: the next index start above it. */
  leafEndBytes(path: readonly NodeBytes[]): number {
    let end = LBLK_LIMIT;
    for (let level = 0; level < path.length - 1; level++) {
      const node = path[level];
      if (node.idx + 1 < node.entries) end = Math.min(end, extentEntryLblk(node.bytes, node.idx + 1));
    }
    return end;
  }

  /** The path to the leaf that holds (or would hold) `lblk`. */
  async findPath(lblk: number): Promise<PathNode[]> {
    const path: PathNode[] = [];
    let node = this.readRoot();
    for (;;) {
      node.idx = indexFor(node, lblk);
      path.push(node);
      if (node.depth === 0) return path;
      if (path.length > EXT_MAX_DEPTH + 1) throw corrupted(`inode ${this.ino}: extent tree too deep`);
      node = await this.readNode((node.items as ExtentIndex[])[node.idx].leaf, node.depth - 1);
    }
  }

  /** The logical block where the leaf of `path` stops covering: the next index start above it. */
  leafEnd(path: readonly PathNode[]): number {
    let end = LBLK_LIMIT;
    for (let level = 0; level < path.length - 1; level++) {
      const node = path[level];
      if (node.idx + 1 < node.items.length) end = Math.min(end, node.items[node.idx + 1].lblk);
    }
    return end;
  }

  // -------------------------------------------------------------------------------
  // Leaf edits

  /** Give the leaf at the end of `path` new extents (sorted) and fix the tree around it. */
  async replaceLeaf(path: PathNode[], extents: Extent[]): Promise<void> {
    let items = mergeExtents(extents);
    const leafLevel = path.length - 1;
    let leaf = path[leafLevel];
    if (leafLevel === 0) {
      if (items.length <= ROOT_MAX_ENTRIES) {
        leaf.items = items;
        await this.writeNode(leaf);
        return;
      }
      // Depth growth: the root's extents move into a new leaf; the root indexes it.
      const pblk = await this.newTreeBlock(items[0].pblk);
      const root: PathNode = { pblk: 0, depth: 1, items: [{ lblk: items[0].lblk, leaf: pblk }], idx: 0 };
      leaf = { pblk, depth: 0, items: [], idx: 0 };
      path.splice(0, 1, root, leaf);
      await this.writeNode(root);
      items = items.slice();
    }
    await this.storeNode(path, path.length - 1, items);
  }

  /** Store `items` in the non-root node path[level], splitting, freeing or merging as needed. */
  private async storeNode(path: PathNode[], level: number, items: Extent[] | ExtentIndex[]): Promise<void> {
    const node = path[level];
    assert(level > 0 && node.pblk !== 0, 'storeNode works on block nodes');
    if (items.length === 0) {
      await this.freeTreeBlock(node.pblk);
      await this.removeIndexEntry(path, level - 1);
      return;
    }
    if (items.length <= this.maxEntries) {
      node.items = items;
      await this.writeNode(node);
      await this.fixIndexStart(path, level);
      await this.pullFromRight(path, level);
      return;
    }
    // Keep the left node full and start a new one with the overflow (as the kernel does
    // for appends): a file written in order gets full leaves, and a middle split's
    // slack is taken back by pullFromRight on the next edit there.
    const half = this.maxEntries;
    node.items = items.slice(0, half) as Extent[] | ExtentIndex[];
    await this.writeNode(node);
    await this.fixIndexStart(path, level);
    const right: PathNode = { pblk: await this.newTreeBlock(node.pblk), depth: node.depth, items: items.slice(half) as Extent[] | ExtentIndex[], idx: 0 };
    await this.writeNode(right, true);
    await this.insertIndexEntry(path, level - 1, { lblk: right.items[0].lblk, leaf: right.pblk });
  }

  /** Insert `entry` after the followed entry of index node path[level]. */
  private async insertIndexEntry(path: PathNode[], level: number, entry: ExtentIndex): Promise<void> {
    const node = path[level];
    const items = (node.items as ExtentIndex[]).slice();
    items.splice(node.idx + 1, 0, entry);
    if (level > 0) {
      await this.storeNode(path, level, items);
      return;
    }
    if (items.length <= ROOT_MAX_ENTRIES) {
      node.items = items;
      await this.writeNode(node);
      return;
    }
    // Depth growth at the root: its index entries move into a new index block.
    assert(node.depth < EXT_MAX_DEPTH, 'extent tree depth stays ≤ 5');
    const pblk = await this.newTreeBlock(this.inodeGroupGoal());
    const moved: PathNode = { pblk, depth: node.depth, items, idx: node.idx };
    await this.writeNode(moved, true);
    const root: PathNode = { pblk: 0, depth: node.depth + 1, items: [{ lblk: items[0].lblk, leaf: pblk }], idx: 0 };
    await this.writeNode(root);
    path.splice(0, 1, root, moved);
  }

  /** Remove the followed entry of index node path[level] (its child is gone). */
  private async removeIndexEntry(path: PathNode[], level: number): Promise<void> {
    const node = path[level];
    const items = (node.items as ExtentIndex[]).filter((_, i) => i !== node.idx);
    if (level > 0) {
      await this.storeNode(path, level, items);
      return;
    }
    node.items = items;
    if (items.length === 0) node.depth = 0; // the tree is empty: the root becomes an empty leaf
    await this.writeNode(node);
  }

  /** Keep the parent's ei_block equal to path[level]'s first logical block, up the path. */
  private async fixIndexStart(path: PathNode[], level: number): Promise<void> {
    for (let l = level; l > 0; l--) {
      const first = path[l].items[0].lblk;
      const parent = path[l - 1];
      const entry = (parent.items as ExtentIndex[])[parent.idx];
      if (entry.lblk === first) return;
      const items = (parent.items as ExtentIndex[]).slice();
      items[parent.idx] = { ...entry, lblk: first };
      parent.items = items;
      await this.writeNode(parent);
      if (parent.idx !== 0) return;
    }
  }

  /**
   * Keep the level compact (e2fsck calls a level whose free slots exceed one block
   * "could be narrower"): while path[level] is not full, pull entries from the head of
   * its right sibling (same parent), moving right; a sibling left empty is freed. Each
   * step dirties 2 nodes + the parent; it stops early when the handle runs low on
   * credits (the tree stays valid, just less compact).
   */
  private async pullFromRight(path: PathNode[], level: number): Promise<void> {
    const parent = path[level - 1];
    let node = path[level];
    while (node.items.length < this.maxEntries && parent.idx + 1 < parent.items.length && this.h.creditsLeft >= PULL_CREDITS_MIN) {
      const rightEntry = (parent.items as ExtentIndex[])[parent.idx + 1];
      const right = await this.readNode(rightEntry.leaf, node.depth);
      const take = Math.min(this.maxEntries - node.items.length, right.items.length);
      node.items = [...node.items, ...right.items.slice(0, take)] as Extent[] | ExtentIndex[];
      await this.writeNode(node);
      const rest = right.items.slice(take) as Extent[] | ExtentIndex[];
      if (rest.length === 0) {
        await this.freeTreeBlock(right.pblk);
        const parentPath = path.slice(0, level);
        parentPath[level - 1] = { ...parent, idx: parent.idx + 1 };
        await this.removeIndexEntry(parentPath, level - 1);
        return;
      }
      right.items = rest;
      await this.writeNode(right);
      const items = (parent.items as ExtentIndex[]).slice();
      items[parent.idx + 1] = { ...rightEntry, lblk: rest[0].lblk };
      parent.items = items;
      await this.writeNode(parent);
      parent.idx += 1;
      path[level] = right;
      node = right;
    }
  }

  /** While the root indexes a single child that fits in i_block, pull it up. */
  async shrinkDepth(): Promise<void> {
    for (;;) {
      const root = await this.readNode(0, this.rootDepth());
      if (root.depth === 0 || root.items.length !== 1) return;
      const childPblk = (root.items as ExtentIndex[])[0].leaf;
      const child = await this.readNode(childPblk, root.depth - 1);
      if (child.items.length > ROOT_MAX_ENTRIES) return;
      await this.writeNode({ pblk: 0, depth: child.depth, items: child.items, idx: 0 });
      await this.freeTreeBlock(childPblk);
    }
  }
}

// ---------------------------------------------------------------------------------
// The three operations

/** What lookup found at a logical block. */
interface Found {
  /** The extent holding the block, if any. */
  extent: Extent | undefined;
  /** In a hole: where it ends (the next extent, or the leaf's end). */
  holeEnd: number;
  goal: number;
  /** The path to the leaf searched (bytes), the index in the leaf of the extent before a hole (-1: none) and that extent. */
  path: NodeBytes[];
  beforeIndex: number;
  before: Extent | undefined;
}

/** The extent holding `lblk`, or the hole there (up to the next extent or leaf end), plus a goal. */
async function lookup(edit: TreeEdit, lblk: number): Promise<Found> {
  return lookupIn(edit, await edit.findBytes(lblk), lblk);
}

/** lookup in the leaf of `path`: a binary search, two entries decoded at most. */
function lookupIn(edit: TreeEdit, path: NodeBytes[], lblk: number): Found {
  const leaf = path[path.length - 1];
  const i = lastEntryAtOrBefore(leaf, lblk);
  const e = i >= 0 ? decodeExtent(leaf.bytes, i) : undefined;
  if (e !== undefined && lblk < e.lblk + e.len) return { extent: e, holeEnd: lblk, goal: 0, path, beforeIndex: -1, before: undefined };
  const holeEnd = i + 1 < leaf.entries ? extentEntryLblk(leaf.bytes, i + 1) : edit.leafEndBytes(path);
  return { extent: undefined, holeEnd, goal: goalAfter(edit, e, lblk), path, beforeIndex: i, before: e };
}

/** Whether `extent` continues `before` (logically, physically, same kind, within the length cap). */
function continues(before: Extent, extent: Extent): boolean {
  return before.lblk + before.len === extent.lblk && before.pblk + before.len === extent.pblk
    && before.unwritten === extent.unwritten && before.len + extent.len <= maxLenOf(extent.unwritten);
}

/**
 * The append fast path (ext4_ext_insert_extent's "can be merged" case): a new extent
 * that continues the extent before its hole, logically and physically, grows that
 * extent in place — one entry re-encoded in the leaf (checksummed if a block), no list
 * rebuild, no split, no change to the leaf's first block or entry count, so nothing
 * above it moves. This is what a file written in order costs per allocation (the
 * buffer_head path allocates one block at a time). False: try the next way.
 */
async function tryAppend(edit: TreeEdit, found: Found, extent: Extent): Promise<boolean> {
  const before = found.before;
  if (before === undefined || !continues(before, extent)) return false;
  assert(extent.lblk + extent.len <= found.holeEnd, 'the appended blocks stay inside the hole');
  const leaf = found.path[found.path.length - 1];
  edit.setLeafEntry(leaf, await edit.leafBytes(leaf), found.beforeIndex, makeExtent(before.lblk, before.len + extent.len, before.pblk, before.unwritten));
  return true;
}

/**
 * The insert fast path (the kernel's memmove in ext4_ext_insert_extent): a new extent
 * that merges with neither neighbour goes into a leaf with room, entries after it moving
 * up one. Taken only where insertExtent would change nothing else, so the tree comes out
 * the same: not as the first entry of a leaf block (its parent's index entry would have
 * to follow), and only if the leaf ends full or has no right sibling (else insertExtent
 * pulls entries from that sibling, which keeps the level as narrow as e2fsck wants it).
 * One memmove, one entry, one checksum instead of decoding and re-encoding the leaf: a
 * file of up to 4 extents (the root), or a leaf at the end of its parent — a random write
 * into a file of a few hundred extents. False: use insertExtent.
 */
async function tryInsertInPlace(edit: TreeEdit, found: Found, extent: Extent): Promise<boolean> {
  const leaf = found.path[found.path.length - 1];
  const parent = found.path.length > 1 ? found.path[found.path.length - 2] : undefined;
  const at = found.beforeIndex + 1;
  if (leaf.entries >= leaf.capacity || (at === 0 && leaf.pblk !== 0)) return false;
  if (parent !== undefined && leaf.entries + 1 < leaf.capacity && parent.idx + 1 < parent.entries) return false; // insertExtent would pull from the right
  if (at < leaf.entries && continues(extent, decodeExtent(leaf.bytes, at))) return false; // merges with the next: insertExtent
  assert(extent.lblk + extent.len <= found.holeEnd, 'the inserted blocks stay inside the hole');
  edit.insertLeafEntry(leaf, await edit.leafBytes(leaf), at, extent);
  return true;
}

function goalAfter(edit: TreeEdit, before: Extent | undefined, lblk: number): number {
  if (before === undefined) return edit.inodeGroupGoal();
  return Math.min(before.pblk + (lblk - before.lblk), edit.mount.ext4.blocksCount - 1);
}

/** Insert `extent` into its leaf and fix the tree around it (split, merge, index starts). */
async function insertExtent(edit: TreeEdit, extent: Extent): Promise<void> {
  const path = await edit.findPath(extent.lblk);
  const leaf = path[path.length - 1].items as Extent[];
  const items = leaf.slice();
  items.splice(lastAtOrBefore(items, extent.lblk - 1) + 1, 0, extent);
  await edit.replaceLeaf(path, items);
}

function checkRange(lblk: number, count: number): void {
  // (Messages built only on failure: buffer_head writeback comes here for every block.)
  if (!(Number.isInteger(lblk) && lblk >= 0)) assert(false, `lblk ${lblk}`);
  if (!(Number.isInteger(count) && count >= 0 && lblk + count <= LBLK_LIMIT)) assert(false, `range ${lblk}+${count} inside 2^32`);
}

async function mapOrAllocate(
  mount: Ext4Mount, h: JournalHandle, ino: number, lblk: number, count: number, options: MapOrAllocateOptions,
): Promise<MappedRun[]> {
  checkRange(lblk, count);
  const edit = await TreeEdit.open(mount, h, ino);
  const out: MappedRun[] = [];
  const push = (run: MappedRun): void => {
    const last = out[out.length - 1];
    if (last !== undefined && last.lblk + last.count === run.lblk && last.pblk + last.count === run.pblk
      && last.unwritten === run.unwritten && last.fresh === run.fresh) last.count += run.count;
    else out.push(run);
  };
  const end = lblk + count;
  let cursor = lblk;
  let goal = options.goal;
  let reshaped = false;
  try {
    while (cursor < end) {
      const found = await lookup(edit, cursor);
      if (found.extent !== undefined) {
        const e = found.extent;
        const len = Math.min(e.lblk + e.len, end) - cursor;
        push({ lblk: cursor, count: len, pblk: e.pblk + (cursor - e.lblk), unwritten: e.unwritten, fresh: false });
        cursor += len;
        continue;
      }
      const want = Math.min(found.holeEnd, end) - cursor;
      const run = await edit.allocData(goal ?? found.goal, Math.min(want, maxLenOf(options.unwritten)), options.fromDelallocReservation === true);
      const extent = makeExtent(cursor, run.count, run.start, options.unwritten);
      if (!await tryAppend(edit, found, extent) && !await tryInsertInPlace(edit, found, extent)) {
        await insertExtent(edit, extent);
        reshaped = true;
      }
      push({ lblk: cursor, count: run.count, pblk: run.start, unwritten: options.unwritten, fresh: true });
      cursor += run.count;
      goal = run.start + run.count;
    }
    // Merges may have left the root with one small child: e2fsck asks for the shorter tree.
    // (An append or insert in place removes no entry: nothing to shrink.)
    if (reshaped) await edit.shrinkDepth();
  } finally {
    await edit.finish();
  }
  return out;
}

/**
 * mapOrAllocate without a promise, for what buffer_head writeback asks at nearly every
 * block: the range is already mapped by one extent, or it is a hole right after an
 * extent and the blocks right after that extent's are free — the append in place, with
 * the allocation exactly at the goal (allocateBlocksNow). Undefined, with nothing
 * changed, whenever something would need a read (a tree node, the inode's table block,
 * the bitmap, the GDT block or the superblock not in the journal), another allocation is
 * in flight, or the tree would change shape: the caller then uses mapOrAllocate.
 */
export function mapOrAllocateNow(
  mount: Ext4Mount, h: JournalHandle, ino: number, lblk: number, count: number, options: MapOrAllocateOptions,
): MappedRun[] | undefined {
  checkRange(lblk, count);
  const inode = mount.ext4.inodeCache.get(ino);
  if (inode === undefined || count === 0 || (inode.flags & InodeFlags.EXTENTS) === 0) return undefined;
  const edit = TreeEdit.of(mount, h, ino, inode);
  const path = edit.findBytesNow(lblk);
  if (path === undefined) return undefined;
  const found = lookupIn(edit, path, lblk);
  if (found.extent !== undefined) {
    const e = found.extent;
    if (e.lblk + e.len < lblk + count) return undefined; // more than one extent: the general walk
    return [{ lblk, count, pblk: e.pblk + (lblk - e.lblk), unwritten: e.unwritten, fresh: false }];
  }
  const before = found.before;
  if (before === undefined || lblk + count > found.holeEnd || (options.goal !== undefined && options.goal !== found.goal)) return undefined;
  const goal = before.pblk + before.len;
  if (!continues(before, makeExtent(lblk, count, goal, options.unwritten))) return undefined;
  // Everything the append writes must be at hand before the allocation changes anything.
  const leaf = path[path.length - 1];
  const leafBytes = edit.leafBytesNow(leaf);
  if (leafBytes === undefined || h.getWriteAccessNow(mount.inodeBlockOf(ino)) === undefined) return undefined;
  const run = allocateBlocksNow(mount, h, { goal, count, fromDelallocReservation: options.fromDelallocReservation === true });
  if (run === undefined) return undefined;
  assert(run.start === goal && run.count === count, 'the synchronous allocation is exactly the goal run');
  edit.countDataBlocks(count);
  edit.setLeafEntry(leaf, leafBytes, found.beforeIndex, makeExtent(before.lblk, before.len + count, before.pblk, before.unwritten));
  const written = edit.finishNow();
  assert(written, 'the inode table block stays in the journal while the handle holds it');
  return [{ lblk, count, pblk: goal, unwritten: options.unwritten, fresh: true }];
}

/**
 * Walk the leaves overlapping [lblk, end): `edit` returns a leaf's new extents, or
 * undefined to leave it. After a change the path is found again from the same block.
 */
async function forEachLeaf(edit: TreeEdit, lblk: number, end: number, change: (leaf: Extent[]) => Promise<Extent[] | undefined>): Promise<void> {
  let cursor = lblk;
  for (let guard = 0; cursor < end; guard++) {
    assert(guard < 4 * 1024 * 1024, 'forEachLeaf terminates');
    const path = await edit.findPath(cursor);
    const leaf = path[path.length - 1].items as Extent[];
    const next = await change(leaf);
    if (next !== undefined) {
      await edit.replaceLeaf(path, next);
      continue;
    }
    cursor = edit.leafEnd(path);
  }
}

async function removeRange(mount: Ext4Mount, h: JournalHandle, ino: number, lblk: number, count: number): Promise<void> {
  checkRange(lblk, count);
  const end = lblk + count;
  const edit = await TreeEdit.open(mount, h, ino);
  try {
    await forEachLeaf(edit, lblk, end, async (leaf) => {
      if (!leaf.some((e) => e.lblk < end && lblk < e.lblk + e.len)) return undefined;
      const kept: Extent[] = [];
      for (const e of leaf) {
        const eEnd = e.lblk + e.len;
        if (eEnd <= lblk || e.lblk >= end) { kept.push(e); continue; }
        const cutStart = Math.max(e.lblk, lblk), cutEnd = Math.min(eEnd, end);
        await edit.freeData(e.pblk + (cutStart - e.lblk), cutEnd - cutStart);
        if (e.lblk < cutStart) kept.push(makeExtent(e.lblk, cutStart - e.lblk, e.pblk, e.unwritten));
        if (cutEnd < eEnd) kept.push(makeExtent(cutEnd, eEnd - cutEnd, e.pblk + (cutEnd - e.lblk), e.unwritten));
      }
      return kept;
    });
    await edit.shrinkDepth();
  } finally {
    await edit.finish();
  }
}

async function convertUnwritten(mount: Ext4Mount, h: JournalHandle, ino: number, lblk: number, count: number): Promise<void> {
  checkRange(lblk, count);
  const end = lblk + count;
  const edit = await TreeEdit.open(mount, h, ino);
  try {
    await forEachLeaf(edit, lblk, end, async (leaf) => {
      if (!leaf.some((e) => e.unwritten && e.lblk < end && lblk < e.lblk + e.len)) return undefined;
      const out: Extent[] = [];
      for (const e of leaf) {
        const eEnd = e.lblk + e.len;
        if (!e.unwritten || eEnd <= lblk || e.lblk >= end) { out.push(e); continue; }
        // Up to three pieces: unwritten head, written middle, unwritten tail.
        const midStart = Math.max(e.lblk, lblk), midEnd = Math.min(eEnd, end);
        if (e.lblk < midStart) out.push(makeExtent(e.lblk, midStart - e.lblk, e.pblk, e.unwritten));
        out.push(makeExtent(midStart, midEnd - midStart, e.pblk + (midStart - e.lblk), false));
        if (midEnd < eEnd) out.push(makeExtent(midEnd, eEnd - midEnd, e.pblk + (midEnd - e.lblk), e.unwritten));
      }
      return out;
    });
    await edit.shrinkDepth();
  } finally {
    await edit.finish();
  }
}

/** The ext4ts extent writer. */
export const extentWriter: ExtentWriter = { mapOrAllocate, removeRange, convertUnwritten };
