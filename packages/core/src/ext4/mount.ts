/**
 * Ext4Mount: an open filesystem, read-only or read-write. Read-write adds the journal and
 * the three kinds of metadata writes everything else is built from:
 *
 *   await mount.transact(credits, async (h) => {
 *     await mount.writeInode(h, ino, (raw) => { raw.linksCount += 1; });   // inode table block
 *     mount.ext4.groups[g].freeBlocksCount -= n; await mount.writeGroup(h, g);  // GDT block
 *     await mount.writeSuperblock(h);                                            // block 0
 *   });
 *
 * Every change goes through a JournalHandle (jbd2/handle.ts): the block's live bytes come
 * from getWriteAccess, are changed and sealed with their checksum, then dirtyMetadata.
 * The metadata cache asks the journal first (BlockCache.overlay), so readers always see
 * the newest bytes, committed or not.
 *
 * Open read-write (the kernel's order): check features → replay the journal if it needs
 * recovery (then re-read everything) → open the Journal → set incompat RECOVER on disk
 * (FUA), so a crash from here on is replayed by whoever mounts next. Close: commit,
 * checkpoint everything home, then clear RECOVER (FUA). While mounted, the in-memory
 * superblock keeps RECOVER set, so every journaled copy of block 0 carries it too.
 *
 * Cost: a handle that changes an inode, a group and the superblock dirties 3 blocks;
 * its commit logs them (+ descriptor + commit block) and checkpoint writes them home.
 * The superblock and each GDT block are encoded once per transaction however many
 * handles change them (frozen triggers: writeSuperblock, writeGroup, which also
 * checksums the changed block bitmaps then); an inode is encoded and checksummed per
 * change.
 */
import { assert } from '../assert.js';
import type { BlockDevice } from '../device/block-device.js';
import {
  Compat, Incompat, encodeSuperblock, checkMountable, SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES, has64bit, RoCompat,
} from '../format/superblock.js';
import { encodeGroupDesc, sealGroupDesc, type GdChecksumContext } from '../format/group-desc.js';
import { decodeInode, encodeInodeInPlace, inodeChecksumSeed, writeInodeChecksum, type Inode } from '../format/inode.js';
import { Journal, recoverJournal, type JournalGeometry, type JournalExtent } from '../jbd2/index.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { FsError } from '../vfs/errors.js';
import { openSuper, gdtBlockLocation, inodeLocation, type Ext4Super, type OpenOptions } from './super.js';
import { readInode, inodeFromDisk, type Ext4Inode } from './inode.js';
import { walkMappings } from './extents.js';
import { blockBitmapChecksum } from '../format/bitmap.js';

export interface MountOpenOptions extends OpenOptions {
  /** Journal commit interval; default 5000 ms like ext4's commit=5; 0 = only on sync. */
  commitIntervalMs?: number;
}

/** What a GDT block's frozen trigger encodes: the groups changed in its transaction, and those whose block bitmap changed. */
interface GdtPending {
  groups: Set<number>;
  blockBitmaps: Set<number>;
}

export class Ext4Mount {
  private closed = false;
  /** Per GDT block, the groups its frozen trigger encodes (the newest transaction's set). */
  private readonly gdtPending = new Map<number, GdtPending>();
  /** What open found on the orphan list and finished (read-write mounts). */
  orphansProcessed: { freed: number; truncated: number } = { freed: 0, truncated: 0 };

  private constructor(
    /** The filesystem's structures; sb and group descriptor objects change in place under handles. */
    readonly ext4: Ext4Super,
    /** Present on read-write mounts. */
    readonly journal: Journal | undefined,
  ) {}

  get readOnly(): boolean {
    return this.journal === undefined;
  }

  static async open(device: BlockDevice, options: MountOpenOptions = {}): Promise<Ext4Mount> {
    if (options.readOnly !== false) return new Ext4Mount(await openSuper(device, options), undefined);
    if (device.readOnly) throw new FsError('EROFS', { syscall: 'mount', detail: 'the device is read-only' });
    // A torn superblock (checksum mismatch with RECOVER set) is tolerated here only: the
    // replay below rewrites block 0 from the journal, and the re-open checks it strictly.
    let ext4 = await openSuper(device, { ...options, readOnly: true, ignoreJournal: true, tornSuperblockBeforeReplay: true });
    checkMountable(ext4.sb, true);
    if ((ext4.sb.featureCompat & Compat.HAS_JOURNAL) === 0) {
      throw new FsError('ENOTSUP', { syscall: 'mount', detail: 'read-write mounts need a journal (has_journal)' });
    }
    let geometry = await journalGeometry(ext4);
    if (ext4.journalNeedsRecovery || (ext4.sb.featureIncompat & Incompat.RECOVER) !== 0) {
      await recoverJournal(device, geometry, { fsBlockCount: ext4.blocksCount });
      // Replay rewrote metadata, the superblock included: start over from the device.
      ext4 = await openSuper(device, { ...options, readOnly: true, ignoreJournal: true });
      await writeSuperblockDirect(ext4, ext4.sb.featureIncompat & ~Incompat.RECOVER);
      geometry = await journalGeometry(ext4);
    }
    const cache = ext4.cache;
    const journal = await Journal.open(device, geometry, {
      readBlock: (blockNr) => readMetadataBlock(ext4, blockNr),
      onCheckpointed: (blockNr, bytes) => cache.refresh(blockNr, bytes),
      commitIntervalMs: options.commitIntervalMs,
      fsBlockCount: ext4.blocksCount,
    });
    cache.overlay = (blockNr) => journal.peek(blockNr);
    ext4.sb.featureIncompat |= Incompat.RECOVER;
    await writeSuperblockDirect(ext4, ext4.sb.featureIncompat);
    const mount = new Ext4Mount(ext4, journal);
    if (ext4.sb.lastOrphan !== 0) {
      // Inodes a crash left half-deleted or half-truncated: finish them like the kernel
      // (namei-write is loaded lazily: it builds on this module).
      const { processOrphans } = await import('./namei-write.js');
      mount.orphansProcessed = await processOrphans(mount);
    }
    return mount;
  }

  private requireWritable(syscall: string): Journal {
    if (this.closed) throw new FsError('EIO', { syscall, detail: 'filesystem is unmounted' });
    if (this.journal === undefined) throw new FsError('EROFS', { syscall });
    return this.journal;
  }

  /** Run `body` inside one journal handle of `credits` blocks. */
  async transact<T>(credits: number, body: (h: JournalHandle) => Promise<T>, syscall = 'write'): Promise<T> {
    const journal = this.requireWritable(syscall);
    const h = await journal.start(credits);
    try {
      return await body(h);
    } finally {
      await journal.stop(h);
    }
  }

  /**
   * Change inode `ino` in its inode table block: `mutate` edits the decoded fields; they
   * are encoded over the slot's own bytes (so the in-inode xattr area survives) and its
   * checksum sealed. Returns the new engine view (also put in the inode cache).
   *
   * Cost: the fields are decoded only when the inode cache's copy is not of these exact
   * slot bytes (a 256-byte compare decides); one encode over the slot in place, one
   * crc32c over it, one 256-byte copy for the cache's compare — no second decode (an
   * encode of in-range fields decodes back to them: encodeInto asserts the range).
   * About 1.3 µs; the buffer_head path pays it for every block it allocates, as the
   * kernel copies its inode into the buffer at every ext4_mark_inode_dirty.
   */
  async writeInode(h: JournalHandle, ino: number, mutate: (raw: Inode) => void): Promise<Ext4Inode> {
    const blockIndex = this.inodeBlockOf(ino);
    const block = h.getWriteAccessNow(blockIndex) ?? await h.getWriteAccess(blockIndex);
    return this.writeInodeIn(h, ino, blockIndex, block, mutate);
  }

  /** writeInode without a promise, when the journal already holds the inode's table block; else undefined (nothing done). */
  writeInodeNow(h: JournalHandle, ino: number, mutate: (raw: Inode) => void): Ext4Inode | undefined {
    const blockIndex = this.inodeBlockOf(ino);
    const block = h.getWriteAccessNow(blockIndex);
    return block === undefined ? undefined : this.writeInodeIn(h, ino, blockIndex, block, mutate);
  }

  /** The inode table block holding `ino`. */
  inodeBlockOf(ino: number): number {
    const { ext4 } = this;
    const { group, index } = inodeLocation(ext4, ino);
    return ext4.groups[group].inodeTable + Math.floor((index * ext4.inodeSizeBytes) / ext4.blockSizeBytes);
  }

  private writeInodeIn(h: JournalHandle, ino: number, blockIndex: number, block: Uint8Array, mutate: (raw: Inode) => void): Ext4Inode {
    const { ext4 } = this;
    const at = (inodeLocation(ext4, ino).index * ext4.inodeSizeBytes) % ext4.blockSizeBytes;
    const slot = block.subarray(at, at + ext4.inodeSizeBytes);
    const cached = ext4.inodeCache.get(ino);
    // The cached fields are changed in place when they are of these exact slot bytes (the
    // views handed out before share them: only isFastSymlink looks, at fields no write
    // changes under it); a failed change drops them from the cache.
    const reuse = cached !== undefined && bytesEqual(cached.raw.raw, slot);
    const raw = reuse ? cached.raw : decodeInode(slot, ext4.inodeSizeBytes);
    const generation = raw.generation;
    raw.block = raw.block.slice(); // earlier views keep their i_block bytes
    try {
      mutate(raw);
      encodeInodeInPlace(raw, slot);
    } catch (error) {
      ext4.inodeCache.delete(ino);
      throw error;
    }
    const seed = ext4.metadataCsum
      ? (cached !== undefined && generation === raw.generation ? cached.csumSeed : inodeChecksumSeed(ext4.fsSeed, ino, raw.generation))
      : undefined;
    if (seed !== undefined) writeInodeChecksum(slot, seed);
    h.dirtyMetadata(blockIndex);
    if (reuse) raw.raw.set(slot);
    else raw.raw = slot.slice();
    const inode = inodeFromDisk(ext4, ino, raw);
    ext4.inodeCache.set(ino, inode);
    return inode;
  }

  /**
   * Put `ext4.groups[group]` (changed in place by the caller) into its GDT block as part
   * of h's transaction. Like the superblock, the descriptors are encoded and checksummed
   * in the GDT block's frozen trigger, once per transaction: the first call for a GDT
   * block in a transaction takes the block (1 credit) and sets the trigger; every call
   * adds its group to the set the trigger encodes. `blockBitmapChanged`: the group's
   * block bitmap changed in this transaction (dirtied by the caller): the trigger also
   * computes its checksum into the descriptor, from the bitmap's bytes as the commit
   * logs them — so a run of allocations in one group costs one 4 KiB crc32c per commit,
   * not one per allocation. Nothing reads descriptors or bitmap checksums from the GDT
   * block while mounted (ext4.groups is the truth), so the block may lag until then.
   */
  async writeGroup(h: JournalHandle, group: number, options: { blockBitmapChanged?: boolean } = {}): Promise<void> {
    if (this.writeGroupNow(h, group, options)) return;
    const blockIndex = this.gdtBlockOf(group);
    await h.getWriteAccess(blockIndex);
    // Another handle of this transaction may have set the trigger while we waited: then this joins it.
    this.writeGroupIn(h, group, blockIndex, options);
  }

  /** writeGroup without a promise when the GDT block is in h's transaction already or held by the journal; false: nothing done. */
  writeGroupNow(h: JournalHandle, group: number, options: { blockBitmapChanged?: boolean } = {}): boolean {
    const blockIndex = this.gdtBlockOf(group);
    if (!h.hasFrozenTrigger(blockIndex) && h.getWriteAccessNow(blockIndex) === undefined) return false;
    this.writeGroupIn(h, group, blockIndex, options);
    return true;
  }

  private gdtBlockOf(group: number): number {
    const { ext4 } = this;
    const descPerBlock = ext4.blockSizeBytes / ext4.descSizeBytes;
    return gdtBlockLocation(ext4.sb, Math.floor(group / descPerBlock), descPerBlock);
  }

  /** Add `group` to the GDT block's set for h's transaction (the block is h's, or in the transaction with its trigger). */
  private writeGroupIn(h: JournalHandle, group: number, blockIndex: number, options: { blockBitmapChanged?: boolean }): void {
    let pending = h.hasFrozenTrigger(blockIndex) ? this.gdtPending.get(blockIndex) : undefined;
    if (pending === undefined) {
      const fresh: GdtPending = { groups: new Set(), blockBitmaps: new Set() };
      h.dirtyMetadata(blockIndex);
      h.setFrozenTrigger(blockIndex, (bytes) => this.encodeGroups(bytes, fresh));
      this.gdtPending.set(blockIndex, fresh);
      pending = fresh;
    }
    pending.groups.add(group);
    if (options.blockBitmapChanged === true) pending.blockBitmaps.add(group);
  }

  /** GDT block frozen trigger: checksum the changed block bitmaps, encode and seal the changed descriptors. */
  private encodeGroups(block: Uint8Array, pending: GdtPending): void {
    const { ext4 } = this;
    const descPerBlock = ext4.blockSizeBytes / ext4.descSizeBytes;
    const ctx: GdChecksumContext = {
      metadataCsum: ext4.metadataCsum,
      gdtCsum: (ext4.sb.featureRoCompat & RoCompat.GDT_CSUM) !== 0,
      fsSeed: ext4.fsSeed,
      uuid: ext4.sb.uuid,
      descSize: ext4.descSizeBytes,
    };
    for (const group of pending.groups) {
      const gd = ext4.groups[group];
      if (ext4.metadataCsum && pending.blockBitmaps.has(group)) {
        const bitmap = this.journal?.peek(gd.blockBitmap);
        assert(bitmap !== undefined, `group ${group}'s changed block bitmap is in the journal`);
        const sum = blockBitmapChecksum(ext4.fsSeed, bitmap, ext4.sb.clustersPerGroup);
        gd.blockBitmapCsum = ext4.descSizeBytes >= 64 ? sum >>> 0 : sum & 0xffff;
      }
      const slot = group % descPerBlock;
      encodeGroupDesc(gd, block, slot, ext4.descSizeBytes);
      sealGroupDesc(block, slot, ctx);
    }
  }

  /**
   * Put the in-memory superblock into block 0 (journaled) as part of h's transaction.
   * Free counts are recomputed from the group descriptors, so e2fsck never finds them
   * stale. The encode happens once per transaction, in a frozen trigger at commit (as
   * Linux keeps free counts in per-CPU counters rather than re-logging block 0 at every
   * allocation): the first call in a transaction takes block 0 (1 credit), encodes it
   * and sets the trigger; later calls in that transaction cost a map lookup. So the
   * superblock a commit logs is the in-memory one after the transaction's last handle —
   * which holds because the superblock and the group descriptors it sums change only
   * inside handles.
   */
  async writeSuperblock(h: JournalHandle): Promise<void> {
    if (this.writeSuperblockNow(h)) return;
    const blockIndex = Math.floor(SUPERBLOCK_OFFSET_BYTES / this.ext4.blockSizeBytes);
    const block = await h.getWriteAccess(blockIndex);
    if (h.hasFrozenTrigger(blockIndex)) return; // another handle of this transaction set it meanwhile
    this.takeSuperblock(h, blockIndex, block);
  }

  /** writeSuperblock without a promise when block 0 is in h's transaction already or held by the journal; false: nothing done. */
  writeSuperblockNow(h: JournalHandle): boolean {
    const blockIndex = Math.floor(SUPERBLOCK_OFFSET_BYTES / this.ext4.blockSizeBytes);
    if (h.hasFrozenTrigger(blockIndex)) return true;
    const block = h.getWriteAccessNow(blockIndex);
    if (block === undefined) return false;
    this.takeSuperblock(h, blockIndex, block);
    return true;
  }

  private takeSuperblock(h: JournalHandle, blockIndex: number, block: Uint8Array): void {
    this.encodeSuperblockInto(block);
    h.dirtyMetadata(blockIndex);
    h.setFrozenTrigger(blockIndex, (bytes) => this.encodeSuperblockInto(bytes));
  }

  /** Encode the in-memory superblock (fresh counts, wtime now) into block 0's bytes. */
  private encodeSuperblockInto(block: Uint8Array): void {
    const { ext4 } = this;
    refreshSuperblockCounts(ext4);
    ext4.sb.wtime = Math.floor(Date.now() / 1000);
    const bytes = encodeSuperblock(ext4.sb);
    block.set(bytes, SUPERBLOCK_OFFSET_BYTES % ext4.blockSizeBytes);
    ext4.sb.raw.set(bytes);
  }

  /** Commit the running transaction and wait until it is durable (fsync / syncfs). */
  async sync(): Promise<void> {
    await this.requireWritable('fsync').commit();
  }

  /**
   * Unmount: commit, checkpoint everything home, clear RECOVER. A read-only mount just
   * forgets its caches. The device stays open (it is the caller's).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.journal === undefined) return;
    await this.journal.close();
    this.ext4.cache.overlay = undefined;
    this.ext4.sb.featureIncompat &= ~Incompat.RECOVER;
    refreshSuperblockCounts(this.ext4);
    await writeSuperblockDirect(this.ext4, this.ext4.sb.featureIncompat);
  }

  /** Re-read an inode (after a change made through another path). */
  async inode(ino: number): Promise<Ext4Inode> {
    return readInode(this.ext4, ino);
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Superblock free counts = the sums over the group descriptors. */
function refreshSuperblockCounts(ext4: Ext4Super): void {
  let freeBlocks = 0, freeInodes = 0;
  for (const gd of ext4.groups) {
    freeBlocks += gd.freeBlocksCount;
    freeInodes += gd.freeInodesCount;
  }
  ext4.sb.freeBlocksCount = freeBlocks;
  ext4.sb.freeInodesCount = freeInodes;
}

/**
 * Write the superblock straight to the device with FUA (not journaled): only for the
 * RECOVER flag at mount and unmount, when nothing else of block 0 is in flight.
 */
async function writeSuperblockDirect(ext4: Ext4Super, featureIncompat: number): Promise<void> {
  ext4.sb.featureIncompat = featureIncompat;
  const bytes = encodeSuperblock(ext4.sb);
  ext4.sb.raw.set(bytes);
  const sector = ext4.device.sectorSizeBytes;
  const start = Math.floor(SUPERBLOCK_OFFSET_BYTES / sector) * sector;
  const end = Math.ceil((SUPERBLOCK_OFFSET_BYTES + SUPERBLOCK_SIZE_BYTES) / sector) * sector;
  const buffer = new Uint8Array(end - start);
  await ext4.device.read(start, buffer);
  buffer.set(bytes, SUPERBLOCK_OFFSET_BYTES - start);
  await ext4.device.write(start, buffer, { fua: true });
  const blockIndex = Math.floor(SUPERBLOCK_OFFSET_BYTES / ext4.blockSizeBytes);
  const cached = new Uint8Array(ext4.blockSizeBytes);
  await ext4.device.read(blockIndex * ext4.blockSizeBytes, cached);
  ext4.cache.refresh(blockIndex, cached);
}

/**
 * A block for the journal to copy: through the cache, except blocks below the cache's
 * first data block (block 0 holds the superblock, which the cache never serves).
 */
async function readMetadataBlock(ext4: Ext4Super, blockNr: number): Promise<Uint8Array> {
  if (blockNr >= ext4.cache.firstBlock) return ext4.cache.read(blockNr, 'journaled metadata block');
  assert(blockNr >= 0, `block ${blockNr} is not a block number`);
  const bytes = new Uint8Array(ext4.blockSizeBytes);
  await ext4.device.read(blockNr * ext4.blockSizeBytes, bytes);
  return bytes;
}

/** The journal inode's physical extents, for Journal.open and recoverJournal. */
async function journalGeometry(ext4: Ext4Super): Promise<JournalGeometry> {
  const inode = await readInode(ext4, ext4.sb.journalInum);
  const blocks = Math.floor(inode.size / ext4.blockSizeBytes);
  const extents: JournalExtent[] = [];
  for await (const m of walkMappings(ext4, inode, 0, blocks)) {
    if (m.kind !== 'mapped') throw new FsError('EUCLEAN', { syscall: 'mount', detail: `journal block ${m.lblk} is not mapped` });
    extents.push({ logicalStart: m.lblk, physicalStart: m.pblk, blockCount: m.len });
  }
  assert(has64bit(ext4.sb) || ext4.blocksCount < 2 ** 32, 'block numbers fit the journal tags');
  return { blockSizeBytes: ext4.blockSizeBytes, extents };
}
