/**
 * ext4/extents-write: changes to one inode's on-disk extent tree (write-api.ts
 * ExtentWriter; ext4-format.md §6). The read side is ./extents.ts; every tree written
 * here passes its checks (and e2fsck's).
 *
 * Every change is a *leaf edit*: find the path root → leaf for a logical block, compute
 * the leaf's new extent list, then fix the tree around it:
 *
 *   too many entries  → overflow (below): entries move to nodes with room, or the node
 *                       splits and its parent takes the new index entries (which may
 *                       overflow in turn); a full root moves its entries into a new
 *                       block and becomes an index one level higher (depth growth);
 *   no entries        → free the leaf (revoke + free), remove its index entry (which may
 *                       empty the parent in turn); an empty root becomes an empty leaf;
 *   first lblk moved  → rewrite ei_block up the path while the entry is its node's first
 *                       (the index-start rule: ei_block = child's first logical block);
 *   more free slots   → narrow (below); a root index with one child pulls that child up
 *                       when it fits in i_block (depth shrink, after removals).
 *
 * e2fsck's rule (pass 1, e2fsprogs e2fsck/extents.c: e2fsck_check_rebuild_extents counts,
 * e2fsck_should_rebuild_extents decides; the messages are problem.c's "extent tree (at
 * level L) could be narrower" / "could be shorter", asked as "Optimize?", so -fn reports
 * them and this project counts them as failures). Levels count from the root (level 0,
 * in i_block). For each level e2fsck sums, over its nodes, the entries and the capacity
 * (the header's max: 4 for the root, 340 for a 4 KiB block, 84 for 1 KiB — (block size
 * − 12) / 12), a block node that is not full counting one slot less (so a node left one
 * short by an append split is not "free"). With E = (block size − 12) / 12 (340 / 84):
 *
 *   narrower  capacity − entries > E at some level: more than a block's worth of free
 *             slots. Per node that is max − entries for the root and full nodes,
 *             max − 1 − entries else (slackOf);
 *   shorter   a level's entries < the counted capacity of a level above it (its leaves
 *             would fit in the index level, or in the root's 4).
 *
 * A level's free slots are nodes × (max − 1) − entries + (nodes exactly full): they
 * depend on how many nodes hold the entries, not on where the entries sit. A level of as
 * few nodes as hold its entries never breaks the rule; one node more is allowed only
 * while the rest are all but full. So the writer adds a node to a level only when the
 * level can afford it, and gives one back when it must:
 *
 *   overflow  a node would hold more than max. A sibling with room for the excess takes
 *             it (the two share the entries evenly). Else, over the whole level (across
 *             parents — levelView reads every node's header), the nearest window of
 *             nodes with room: taken (shared evenly) if it is two nodes, or if a split
 *             would put the level over E. Else the node splits: a full node and the
 *             excess when it grew at its end (appends), the excess and a full node when
 *             it grew at its start (descending writes at the file's front), halves else.
 *             A level with no room anywhere can always afford the split.
 *   narrow    a node now has more free slots. A sibling it fits in with takes it over
 *             (a node fewer). Else, only if the level is now over E: the smallest window
 *             of nodes around it, shared evenly over as few nodes as hold it, that brings
 *             the level back within E (the whole level always does).
 *
 *   append split of 341 extents (max 340)      split in the middle
 *     B: e0 … e340  ──▶  B: e0 … e339            B: e0 … e340  ──▶  B: e0 … e169
 *                        N: e340                                    N: e170 … e340
 *
 * So every edit leaves every level within both rules: inserts add free slots only by a
 * split the level can afford, removals add them one entry at a time and narrow takes them
 * back, and the depth follows (growth when the root overflows, shrink when its only child
 * fits in it). A window is rewritten whole (each node decoded and re-encoded once).
 *
 * Journal credits. A two-node move costs about what a split does (the two nodes, the
 * index nodes above whose entries change, an allocation's or a free's bitmap, GDT block
 * and superblock) and is covered by what callers reserve for a leaf edit (writeCredits
 * in map_blocks.ts: two blocks per 170 extents + 16). A wider window dirties a node per
 * node of the window: before one is rewritten the handle must hold planCredits (an upper
 * bound) plus CREDITS_RESERVE for the rest of the call, and is extended (h.extend) when
 * it does not. If the journal refuses, an overflow splits instead and a narrow leaves the
 * level as it is: a valid tree, one e2fsck may call "could be narrower".
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
 * inode's table block. A punch over n leaves repeats that n times. An overflow with no
 * sibling to take it, or a narrow with no sibling to merge with, also reads the headers
 * of the whole level; a window rewrites as many nodes as it is wide. That is what the
 * rule costs, since it is about whole levels: a random insert into a full leaf must
 * bring free slots from wherever the level has them. Measured, one handle per 1-block
 * insert: 3000 extents in random order at 4 KiB (9 leaves) ~32 µs an insert, 0.25 nodes
 * rewritten by rebalances, the widest window 6; 7600 at 1 KiB (91 leaves under two index
 * blocks) ~71 µs, 7.7 nodes, the widest 71, one handle in five extended. (The writer
 * before took ~94 µs / ~148 µs for the same inserts: it pulled entries from the right at
 * every insert into a leaf with room, and its trees broke the rule.) Ascending inserts
 * cost what they did.
 *
 * Lookups binary-search node bytes and decode two entries; the two commonest inserts
 * change the leaf in place (tryAppend: one entry's length; tryInsertInPlace: a memmove
 * and one entry) — only splits, moves, merges, removals and conversions decode and
 * re-encode whole nodes. The append of buffer_head writeback has a synchronous twin
 * (mapOrAllocateNow) when nothing it touches needs a read. Measured: a synchronous
 * 1-block append ~2 µs, 1.3 of them the inode write; a random 1-block insert into a
 * 300-extent file ~26 µs (was ~100).
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

/**
 * Credits a rebalance leaves in the handle (asking the journal for more if need be): what
 * the rest of the edit may still dirty — the inode, a depth shrink's free, the next leaf
 * of a range.
 */
const CREDITS_RESERVE = 8;

/** An index node above a level being rebalanced: its entries (changed in memory, written by settleIndexes) and its parent. */
interface IndexRef {
  /** 0 = the root in i_block. */
  pblk: number;
  depth: number;
  items: ExtentIndex[];
  parent: IndexRef | undefined;
  /** Entries and the last entry's first block when read (free slots grown: narrow; grown at the end: split like an append). */
  readonly entriesRead: number;
  readonly lastRead: number;
  dirty: boolean;
  freed: boolean;
}

/** A node of a level: its block, entry count and parent. */
interface LevelNode {
  pblk: number;
  entries: number;
  parent: IndexRef;
}

/** Where an overfull node's new entries went: the shape of its split. */
type Growth = 'end' | 'start' | 'middle';

function indexRef(pblk: number, depth: number, items: ExtentIndex[], parent: IndexRef | undefined): IndexRef {
  return { pblk, depth, items: items.slice(), parent, entriesRead: items.length, lastRead: items[items.length - 1]?.lblk ?? -1, dirty: false, freed: false };
}

/** The entry of `parent` that points at `child`. */
function slotOf(parent: IndexRef, child: number): number {
  const slot = parent.items.findIndex((e) => e.leaf === child);
  assert(slot >= 0, `index node ${parent.pblk} points at ${child}`);
  return slot;
}

/** ei_block of `child`'s entry in `parent` becomes `lblk`. */
function setStart(parent: IndexRef, child: number, lblk: number): void {
  const slot = slotOf(parent, child);
  if (parent.items[slot].lblk === lblk) return;
  const items = parent.items.slice();
  items[slot] = { lblk, leaf: child };
  parent.items = items;
  parent.dirty = true;
}

function removeEntry(parent: IndexRef, child: number): void {
  const slot = slotOf(parent, child);
  parent.items = parent.items.filter((_, i) => i !== slot);
  parent.dirty = true;
}

/** Free slots e2fsck counts in a block node of `entries`: max − entries, max taken one lower when the node is not full. */
function slackOf(entries: number, cap: number): number {
  return entries >= cap ? 0 : cap - 1 - entries;
}

/** slackOf summed over `nodes` nodes sharing `entries` evenly (sizes differing by at most one). */
function evenSlack(entries: number, nodes: number, cap: number): number {
  return Math.max(0, nodes * (cap - 1) - entries);
}

/** `total` entries in `nodes` nodes, sizes differing by at most one. */
function evenSizes(total: number, nodes: number): number[] {
  return Array.from({ length: nodes }, (_, i) => Math.floor(total / nodes) + (i < total % nodes ? 1 : 0));
}

/** The nodes an overfull node of `total` entries splits into: full ones before the rest (grown at its end), after it (at its start), or even. */
function splitSizes(total: number, growth: Growth, cap: number): number[] {
  const nodes = Math.ceil(total / cap);
  if (growth === 'middle') return evenSizes(total, nodes);
  const sizes = Array.from({ length: nodes }, (_, i) => (i < nodes - 1 ? cap : total - (nodes - 1) * cap));
  return growth === 'end' ? sizes : sizes.reverse();
}

/**
 * The fewest consecutive nodes of `view` around view[p] (both ends included) whose other
 * nodes have `need` free entries in all; undefined if the level has not that many.
 */
function roomWindow(view: readonly LevelNode[], p: number, need: number, cap: number): [number, number] | undefined {
  // left[a] / right[b]: free entries in the a nodes before p / the b nodes after it (only as far as needed).
  const left = [0], right = [0];
  for (let i = p - 1; i >= 0 && left[left.length - 1] < need; i--) left.push(left[left.length - 1] + cap - view[i].entries);
  for (let i = p + 1; i < view.length && right[right.length - 1] < need; i++) right.push(right[right.length - 1] + cap - view[i].entries);
  let best: [number, number] | undefined;
  let b = right.length - 1;
  for (let a = 0; a < left.length; a++) {
    if (left[a] + right[b] < need) continue;
    while (b > 0 && left[a] + right[b - 1] >= need) b--;
    if (best === undefined || a + b < best[0] + best[1]) best = [a, b];
  }
  return best === undefined ? undefined : [p - best[0], p + best[1]];
}

/** Where a node's entries grew: past its last first block, before its first, or between. */
function growthOf(before: readonly { lblk: number }[], after: readonly { lblk: number }[]): Growth {
  if (before.length === 0) return 'middle';
  if (after[after.length - 1].lblk > before[before.length - 1].lblk) return 'end';
  return after[0].lblk < before[0].lblk ? 'start' : 'middle';
}

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

  /**
   * Store `items` in the non-root node path[level]: the common case writes it and its
   * index start; an empty node is freed, an overfull one hands entries on (overflow), and
   * one whose free slots grew may let its level narrow (narrow).
   */
  private async storeNode(path: PathNode[], level: number, items: Extent[] | ExtentIndex[]): Promise<void> {
    const node = path[level];
    assert(level > 0 && node.pblk !== 0, 'storeNode works on block nodes');
    if (items.length === 0) {
      await this.freeTreeBlock(node.pblk);
      await this.removeIndexEntry(path, level - 1);
      return;
    }
    const cap = this.maxEntries;
    const before = node.items;
    if (items.length <= cap) {
      node.items = items;
      await this.writeNode(node);
      await this.fixIndexStart(path, level);
      if (slackOf(items.length, cap) > slackOf(before.length, cap)) {
        await this.narrow({ pblk: node.pblk, entries: items.length, parent: this.refsOf(path, level)[level - 1] }, node.depth);
      }
      return;
    }
    const x = { pblk: node.pblk, entries: items.length, parent: this.refsOf(path, level)[level - 1] };
    await this.overflow(x, node.depth, items, growthOf(before, items));
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

  // -------------------------------------------------------------------------------
  // Keeping each level as narrow as e2fsck wants (the rule in the header)

  /** The index nodes path[0..level) as IndexRefs, each hanging from the one before. */
  private refsOf(path: readonly PathNode[], level: number): IndexRef[] {
    const refs: IndexRef[] = [];
    for (let l = 0; l < level; l++) refs.push(indexRef(path[l].pblk, path[l].depth, path[l].items as ExtentIndex[], refs[l - 1]));
    return refs;
  }

  /** Entries of block node `pblk` (header only). */
  private async entriesOf(pblk: number, depth: number): Promise<number> {
    const header = decodeExtentHeader(await this.mount.ext4.cache.read(pblk, `extent node of inode ${this.ino}`));
    if (header.depth !== depth) throw corrupted(`inode ${this.ino}: extent node ${pblk} depth ${header.depth}, expected ${depth}`);
    if (header.entries > this.maxEntries) throw corrupted(`inode ${this.ino}: extent node ${pblk} has ${header.entries} entries`);
    return header.entries;
  }

  /** The nodes left and right of `x` under its parent (headers only). */
  private async siblingsOf(x: LevelNode, depth: number): Promise<(LevelNode | undefined)[]> {
    const items = x.parent.items;
    const slot = slotOf(x.parent, x.pblk);
    const at = async (i: number): Promise<LevelNode | undefined> =>
      i < 0 || i >= items.length ? undefined : { pblk: items[i].leaf, entries: await this.entriesOf(items[i].leaf, depth), parent: x.parent };
    return [await at(slot - 1), await at(slot + 1)];
  }

  /**
   * Every node of depth `depth` (below the root) in logical order, across parents, with
   * its entry count (header only) and the index nodes above it decoded: what e2fsck
   * counts for that level. Reads only (cached); one per node of the level.
   */
  private async levelView(depth: number): Promise<LevelNode[]> {
    const root = this.readRoot();
    assert(depth < root.depth, 'a level view is of block nodes');
    let row: IndexRef[] = [indexRef(0, root.depth, root.items as ExtentIndex[], undefined)];
    while (row[0].depth > depth + 1) {
      const next: IndexRef[] = [];
      for (const ref of row) {
        for (const e of ref.items) {
          const node = await this.readNode(e.leaf, ref.depth - 1);
          if (node.items.length === 0) throw corrupted(`inode ${this.ino}: empty extent index node ${e.leaf}`);
          next.push(indexRef(e.leaf, node.depth, node.items as ExtentIndex[], ref));
        }
      }
      row = next;
    }
    const nodes: LevelNode[] = [];
    for (const ref of row) for (const e of ref.items) nodes.push({ pblk: e.leaf, entries: await this.entriesOf(e.leaf, depth), parent: ref });
    return nodes;
  }

  /** Whether the handle has `credits` and a reserve left, extending it if need be. */
  private reserveCredits(credits: number): boolean {
    const want = credits + CREDITS_RESERVE;
    return this.h.creditsLeft >= want || this.h.extend(want - this.h.creditsLeft);
  }

  /**
   * Blocks a rebalance of `window` into `nodes` nodes may dirty, at most: the nodes, the
   * index nodes above them (entries and starts), a new node's block and its bitmap, GDT
   * block and superblock, a freed node's (and an emptied parent's) bitmap, GDT block and
   * superblock. A split above it (the parent overfull) asks for its own.
   */
  private planCredits(window: readonly LevelNode[], nodes: number): number {
    const above = new Set<number>();
    for (const n of window) for (let r: IndexRef | undefined = n.parent; r !== undefined && r.pblk !== 0; r = r.parent) above.add(r.pblk);
    const w = window.length;
    return Math.max(w, nodes) + above.size + 4 * Math.max(0, nodes - w) + (nodes < w ? 3 * (w - nodes + above.size) : 0);
  }

  /**
   * Node `x` (depth `depth`) would hold `items`, more than a block holds. In order:
   *   1. a sibling with room for the excess: the two share the entries evenly;
   *   2. otherwise, over the whole level (across parents): the nearest window of nodes
   *      around x with room for the excess. One of two nodes: shared evenly as in 1;
   *   3. otherwise a split of x — into a full node and the excess when x grew at its end
   *      (appends), the excess and a full node when it grew at its start (descending
   *      inserts at the front of the file), halves else — if the level's free slots then
   *      stay within e2fsck's one block (or the level is full: nowhere else to go);
   *   4. otherwise the window of 2, shared evenly (free slots only ever drop): as many
   *      nodes rewritten as the window is wide, credits extended for it — and if the
   *      journal will not grow the handle, the split of 3 (a valid tree, not as narrow).
   */
  private async overflow(x: LevelNode, depth: number, items: Extent[] | ExtentIndex[], growth: Growth): Promise<void> {
    const cap = this.maxEntries;
    const excess = items.length - cap;
    const [left, right] = await this.siblingsOf(x, depth);
    const room = (n: LevelNode | undefined): number => (n === undefined ? -1 : cap - n.entries);
    const sibling = room(right) >= excess && room(right) >= room(left) ? right : room(left) >= excess ? left : undefined;
    if (sibling !== undefined) {
      const window = sibling === left ? [sibling, x] : [x, sibling];
      if (this.reserveCredits(this.planCredits(window, 2))) {
        await this.rebalance(depth, window, x.pblk, items, evenSizes(items.length + sibling.entries, 2));
        return;
      }
    }
    const view = await this.levelView(depth);
    const p = view.findIndex((n) => n.pblk === x.pblk);
    assert(p >= 0, 'the overfull node is in its level');
    view[p].entries = items.length;
    const split = splitSizes(items.length, growth, cap);
    let others = 0;
    for (let i = 0; i < view.length; i++) if (i !== p) others += slackOf(view[i].entries, cap);
    const splitFits = others + split.reduce((s, n) => s + slackOf(n, cap), 0) <= cap;
    const span = roomWindow(view, p, excess, cap);
    if (span !== undefined && (span[1] - span[0] <= 1 || !splitFits)) {
      const window = view.slice(span[0], span[1] + 1);
      if (this.reserveCredits(this.planCredits(window, window.length))) {
        const total = window.reduce((s, n) => s + n.entries, 0);
        await this.rebalance(depth, window, x.pblk, items, evenSizes(total, window.length));
        return;
      }
    }
    await this.rebalance(depth, [view[p]], x.pblk, items, split);
  }

  /**
   * Node `x` (depth `depth`, already written) has more free slots than before. A sibling
   * it fits in with takes it over (one node fewer); otherwise, if the level's free slots
   * now exceed e2fsck's one block, the smallest window of nodes around x (grown towards
   * the emptier side) whose even share in as few nodes as hold it brings the level back
   * within the rule is rewritten so. A window wider than two needs its credits (extended
   * if need be); without them the level stays as it is (valid, not as narrow).
   */
  private async narrow(x: LevelNode, depth: number): Promise<void> {
    const cap = this.maxEntries;
    const [left, right] = await this.siblingsOf(x, depth);
    const fits = (n: LevelNode | undefined): n is LevelNode => n !== undefined && n.entries + x.entries <= cap;
    const sibling = fits(left) && (!fits(right) || left.entries <= right.entries) ? left : fits(right) ? right : undefined;
    if (sibling !== undefined) {
      const window = sibling === left ? [sibling, x] : [x, sibling];
      if (this.reserveCredits(this.planCredits(window, 1))) await this.rebalance(depth, window, undefined, undefined, [x.entries + sibling.entries]);
      return;
    }
    const view = await this.levelView(depth);
    let slack = 0;
    for (const n of view) slack += slackOf(n.entries, cap);
    if (slack <= cap) return;
    const p = view.findIndex((n) => n.pblk === x.pblk);
    assert(p >= 0, 'the narrowed node is in its level');
    let lo = p, hi = p, total = view[p].entries, before = slackOf(view[p].entries, cap);
    const after = (): number => slack - before + evenSlack(total, Math.ceil(total / cap), cap);
    while (after() > cap) {
      const l = lo > 0 ? view[lo - 1] : undefined;
      const r = hi + 1 < view.length ? view[hi + 1] : undefined;
      assert(l !== undefined || r !== undefined, 'the whole level, evenly shared, is within the rule');
      const n = r !== undefined && (l === undefined || r.entries <= l.entries) ? view[++hi] : view[--lo];
      total += n.entries;
      before += slackOf(n.entries, cap);
    }
    const window = view.slice(lo, hi + 1);
    const nodes = Math.ceil(total / cap);
    if (!this.reserveCredits(this.planCredits(window, nodes))) return;
    await this.rebalance(depth, window, undefined, undefined, evenSizes(total, nodes));
  }

  /**
   * Rewrite the consecutive nodes `window` (depth `depth`; node `xPblk`, if given, holding
   * `xItems` instead of what is on disk) as nodes of `sizes` entries: the window's blocks
   * in order, new blocks after its last (under that node's parent), blocks left over
   * freed. Then the index nodes above: ei_block of every node whose first block moved,
   * the new nodes' entries, the freed ones' out — see settleIndexes.
   */
  private async rebalance(depth: number, window: readonly LevelNode[], xPblk: number | undefined, xItems: Extent[] | ExtentIndex[] | undefined, sizes: readonly number[]): Promise<void> {
    const all: (Extent | ExtentIndex)[] = [];
    for (const n of window) for (const item of n.pblk === xPblk ? xItems! : (await this.readNode(n.pblk, depth)).items) all.push(item);
    if (!(sizes.reduce((s, n) => s + n, 0) === all.length && sizes.every((n) => n >= 1 && n <= this.maxEntries))) {
      assert(false, `rebalance of ${all.length} entries into nodes of ${sizes.join(',')}`);
    }
    const w = window.length, t = sizes.length;
    const blocks = window.slice(0, Math.min(w, t)).map((n) => n.pblk);
    for (let i = w; i < t; i++) blocks.push(await this.newTreeBlock(window[w - 1].pblk));
    const firsts: number[] = [];
    let at = 0;
    for (let i = 0; i < t; i++) {
      const items = all.slice(at, at + sizes[i]) as Extent[] | ExtentIndex[];
      at += sizes[i];
      firsts.push(items[0].lblk);
      await this.writeNode({ pblk: blocks[i], depth, items, idx: 0 }, i >= w);
    }
    for (let i = 0; i < Math.min(w, t); i++) setStart(window[i].parent, window[i].pblk, firsts[i]);
    if (t > w) {
      const last = window[w - 1];
      const items = last.parent.items.slice();
      items.splice(slotOf(last.parent, last.pblk) + 1, 0, ...blocks.slice(w).map((leaf, j) => ({ lblk: firsts[w + j], leaf })));
      last.parent.items = items;
      last.parent.dirty = true;
    }
    for (let i = t; i < w; i++) {
      removeEntry(window[i].parent, window[i].pblk);
      await this.freeTreeBlock(window[i].pblk);
    }
    await this.settleIndexes([...new Set(window.map((n) => n.parent))]);
  }

  /**
   * Index nodes (one depth) whose entries rebalance changed in memory: an emptied one is
   * freed and leaves its parent, a first block that moved is carried up, and each is
   * written once. Then an overfull one (a split's parent) overflows in turn, a root of
   * more than 4 entries moves them into a new block (depth growth), and one whose free
   * slots grew narrows its level.
   */
  private async settleIndexes(changed: IndexRef[]): Promise<void> {
    const cap = this.maxEntries;
    const touched: IndexRef[] = [];
    for (let row = changed; row.length > 0;) {
      const up = new Set<IndexRef>();
      for (const ref of row) {
        touched.push(ref);
        const parent = ref.parent;
        if (parent === undefined) continue;
        if (ref.items.length === 0) {
          ref.freed = true;
          removeEntry(parent, ref.pblk);
          await this.freeTreeBlock(ref.pblk);
        } else setStart(parent, ref.pblk, ref.items[0].lblk);
        if (parent.dirty) up.add(parent);
      }
      row = [...up]; // (a depth above: none of them touched yet)
    }
    let overfull: IndexRef | undefined;
    const narrowed: IndexRef[] = [];
    for (const ref of touched) {
      if (ref.freed || !ref.dirty) continue;
      if (ref.pblk === 0) {
        await this.settleRoot(ref);
      } else if (ref.items.length > cap) {
        assert(overfull === undefined, 'one index node takes new entries');
        overfull = ref;
      } else {
        await this.writeNode({ pblk: ref.pblk, depth: ref.depth, items: ref.items, idx: 0 });
        if (slackOf(ref.items.length, cap) > slackOf(ref.entriesRead, cap)) narrowed.push(ref);
      }
    }
    if (overfull !== undefined) {
      const growth = overfull.items[overfull.items.length - 1].lblk > overfull.lastRead ? 'end' : 'middle';
      await this.overflow({ pblk: overfull.pblk, entries: overfull.items.length, parent: overfull.parent! }, overfull.depth, overfull.items, growth);
    }
    // (A rebalance either adds index entries or removes them: never both an overfull and a narrowed node.)
    // The first from the refs (the tree is as they say); later ones found again, as the first may have moved them.
    for (let i = 0; i < narrowed.length; i++) {
      const ref = narrowed[i];
      if (i === 0 && overfull === undefined) {
        await this.narrow({ pblk: ref.pblk, entries: ref.items.length, parent: ref.parent! }, ref.depth);
        continue;
      }
      if (ref.depth >= this.rootDepth()) continue;
      const node = (await this.levelView(ref.depth)).find((n) => n.pblk === ref.pblk);
      if (node !== undefined) await this.narrow(node, ref.depth);
    }
  }

  /** The root's index entries after a rebalance below it: written, or moved into a new block if more than 4 (depth growth). */
  private async settleRoot(ref: IndexRef): Promise<void> {
    assert(ref.items.length > 0, 'a rebalance keeps a node');
    if (ref.items.length <= ROOT_MAX_ENTRIES) {
      await this.writeNode({ pblk: 0, depth: ref.depth, items: ref.items, idx: 0 });
      return;
    }
    assert(ref.depth < EXT_MAX_DEPTH, 'extent tree depth stays ≤ 5');
    const pblk = await this.newTreeBlock(this.inodeGroupGoal());
    await this.writeNode({ pblk, depth: ref.depth, items: ref.items, idx: 0 }, true);
    await this.writeNode({ pblk: 0, depth: ref.depth + 1, items: [{ lblk: ref.items[0].lblk, leaf: pblk }], idx: 0 });
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
 * to follow). An entry more in a leaf with room never makes its level wider for e2fsck,
 * so nothing else moves. One memmove, one entry, one checksum instead of decoding and
 * re-encoding the leaf: every random write that lands in a leaf with room. False: use
 * insertExtent.
 */
async function tryInsertInPlace(edit: TreeEdit, found: Found, extent: Extent): Promise<boolean> {
  const leaf = found.path[found.path.length - 1];
  const at = found.beforeIndex + 1;
  if (leaf.entries >= leaf.capacity || (at === 0 && leaf.pblk !== 0)) return false;
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
