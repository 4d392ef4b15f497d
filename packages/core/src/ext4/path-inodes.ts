/**
 * ext4/path-inodes: the per-path table of a mount's regular files in the page cache — one
 * AddressSpace and one path inode (the iomap path's Ext4IomapInode, the buffer_head
 * path's Ext4BufferInode) per Ext4InodeState, found by state (file operations) or by
 * mapping (the cache's flusher) — with the lifecycle both paths share: sync everything,
 * evict one file, release all at unmount.
 *
 * Cost: one WeakMap lookup per call; syncAll visits every file with dirty or in-flight folios.
 */
import { assert } from '../assert.js';
import type { AddressSpace } from '../mm/mapping.js';
import { PAGE_INDEX_LIMIT } from '../mm/constants.js';
import type { PageCache } from '../mm/page-cache.js';
import type { Ext4InodeState } from './map_blocks.js';

export interface PathInode {
  readonly state: Ext4InodeState;
  readonly mapping: AddressSpace;
}

/**
 * What both paths' inodes are: a file's state and its mapping, i_size read and raised
 * through the state. Each path subclasses it, so its ops can tell their own inodes apart.
 */
export class Ext4FileInode implements PathInode {
  constructor(readonly state: Ext4InodeState, readonly mapping: AddressSpace) {}

  get sizeBytes(): number { return this.state.sizeBytes; }
  set sizeBytes(value: number) {
    assert(Number.isSafeInteger(value) && value >= 0, `i_size ${value} is a byte count`);
    this.state.sizeBytes = value;
  }

  get blockSizeBytes(): number { return this.state.blockSizeBytes; }
}

export class PathInodes<I extends PathInode> {
  private readonly byState = new WeakMap<Ext4InodeState, I>();
  private readonly byMapping = new Map<AddressSpace, I>();

  constructor(private readonly cache: PageCache, private readonly make: (state: Ext4InodeState) => I) {}

  /** The file's path inode, made (with its mapping) on first use. */
  of(state: Ext4InodeState): I {
    let inode = this.byState.get(state);
    if (inode === undefined) {
      inode = this.make(state);
      this.byState.set(state, inode);
      this.byMapping.set(inode.mapping, inode);
    }
    return inode;
  }

  /** The path inode if the file has one (no mapping is made). */
  peek(state: Ext4InodeState): I | undefined {
    return this.byState.get(state);
  }

  /** For the cache's writeback hook: the owner of a mapping. */
  ofMapping(mapping: AddressSpace): I {
    const inode = this.byMapping.get(mapping);
    if (inode === undefined) throw new Error('writeback of a mapping this path does not own');
    return inode;
  }

  /** Write back and wait for every file with dirty or in-flight folios. */
  async syncAll(writeAndWait: (inode: I) => Promise<void>): Promise<void> {
    for (const inode of [...this.byMapping.values()]) {
      if (inode.mapping.dirtyFolioCount === 0 && inode.mapping.writebackFolioCount === 0) continue;
      await writeAndWait(inode);
    }
  }

  /** Drop a file's cache without writeback (`dropAll` is the path's truncate_pagecache) and forget it. */
  async evict(state: Ext4InodeState, dropAll: (inode: I) => Promise<void>): Promise<void> {
    const inode = this.byState.get(state);
    if (inode === undefined) return;
    await dropAll(inode);
    inode.mapping.invalidateRange(0, PAGE_INDEX_LIMIT);
    this.forget(inode);
  }

  /** Unmount: every mapping released (the caller synced first). */
  releaseAll(): void {
    for (const inode of [...this.byMapping.values()]) this.forget(inode);
  }

  private forget(inode: I): void {
    this.byState.delete(inode.state);
    this.byMapping.delete(inode.mapping);
    this.cache.releaseMapping(inode.mapping);
  }
}
