/**
 * ext4/orphan: the legacy orphan list (ext4-format.md §8 "Orphans"). An inode whose last
 * name is gone while it is still open, or whose blocks are being cut off past a new
 * i_size, is put on the list first, in the same handle as the change that made it an
 * orphan; it leaves the list in the handle that finishes the work. A crash in between
 * leaves it listed, and the next read-write open (processOrphans) finishes the work the
 * way the kernel does: links 0 → free the inode and its blocks; else → drop the blocks
 * past i_size.
 *
 *   s_last_orphan → ino 14 (i_dtime = 12) → ino 12 (i_dtime = 0: end)
 *
 * Cost: add dirties 2 blocks (the inode's table block, the superblock); remove dirties
 * 2 at the head, 3 in the middle (the predecessor's table block too). The list is walked
 * on disk: it holds only the inodes in flight, a handful.
 */
import { assert } from '../assert.js';
import type { JournalHandle } from '../jbd2/handle.js';
import { corrupted } from '../vfs/errors.js';
import type { Ext4Mount } from './mount.js';

/** Blocks orphanAdd / orphanRemove may dirty. */
export const ORPHAN_ADD_CREDITS = 2;
export const ORPHAN_REMOVE_CREDITS = 3;

/** Put `ino` at the head of the list (its i_dtime links to the old head). */
export async function orphanAdd(mount: Ext4Mount, h: JournalHandle, ino: number): Promise<void> {
  const { sb } = mount.ext4;
  assert(ino !== sb.lastOrphan, `inode ${ino} is not already the list head`);
  const next = sb.lastOrphan;
  await mount.writeInode(h, ino, (raw) => { raw.dtime = next; });
  sb.lastOrphan = ino;
  await mount.writeSuperblock(h);
}

/** Whether `ino` is on the list (walks it). */
export async function orphanListed(mount: Ext4Mount, ino: number): Promise<boolean> {
  for await (const listed of orphanWalk(mount)) if (listed === ino) return true;
  return false;
}

/** The listed inode numbers, head first; EUCLEAN on a loop or a bad number. */
export async function* orphanWalk(mount: Ext4Mount): AsyncGenerator<number> {
  const { ext4 } = mount;
  const seen = new Set<number>();
  for (let ino = ext4.sb.lastOrphan; ino !== 0;) {
    if (ino < 1 || ino > ext4.inodesCount || seen.has(ino)) throw corrupted(`orphan list: bad or repeated inode ${ino}`);
    seen.add(ino);
    const next = (await mount.inode(ino)).dtime;
    yield ino;
    ino = next;
  }
}

/**
 * Take `ino` off the list: the predecessor (or s_last_orphan) skips it. Its own i_dtime
 * becomes `dtime` (0 for a live inode, the deletion time for a freed one).
 */
export async function orphanRemove(mount: Ext4Mount, h: JournalHandle, ino: number, dtime: number): Promise<void> {
  const { sb } = mount.ext4;
  const next = (await mount.inode(ino)).dtime;
  if (sb.lastOrphan === ino) {
    sb.lastOrphan = next;
    await mount.writeSuperblock(h);
  } else {
    let prev = 0;
    for await (const listed of orphanWalk(mount)) {
      if ((await mount.inode(listed)).dtime === ino) { prev = listed; break; }
    }
    if (prev === 0) throw corrupted(`inode ${ino} is not on the orphan list`);
    await mount.writeInode(h, prev, (raw) => { raw.dtime = next; });
  }
  await mount.writeInode(h, ino, (raw) => { raw.dtime = dtime; });
}
