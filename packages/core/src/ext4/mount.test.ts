/**
 * Ext4Mount read-write against e2fsprogs: a journaled inode change survives a clean
 * unmount (e2fsck -fn clean, debugfs sees it) and a crash before checkpoint (the image
 * is left with RECOVER set; e2fsck, the kernel and Ext4Mount itself replay it).
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { Ext4Mount } from './mount.js';
import { Incompat } from '../format/superblock.js';
import { blockAllocator } from './balloc.js';

let dir: string;
let img: string;

function e2fsck(path: string, flags = '-fn'): { code: number; out: string } {
  const r = spawnSync('e2fsck', [flags, path], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

function debugfsStat(path: string, what: string): string {
  return execFileSync('debugfs', ['-R', `stat ${what}`, path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ext4ts-mount-'));
  img = join(dir, 'a.img');
  execFileSync('truncate', ['-s', '64M', img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', img]);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Set root's mtime and uid inside one handle that also rewrites group 0 and the superblock. */
async function touchRoot(mount: Ext4Mount): Promise<void> {
  await mount.transact(3, async (h) => {
    await mount.writeInode(h, 2, (raw) => { raw.mtime = 1_234_567_890; raw.uid = 4242; });
    await mount.writeGroup(h, 0);
    await mount.writeSuperblock(h);
  });
}

/** A read-write open replays the crash image: root's change is there, and e2fsck -fn is clean after close. */
async function expectReplayedByReadWriteOpen(path: string): Promise<void> {
  const device = await FileDevice.open(path);
  const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
  expect((await mount.inode(2)).uid).toBe(4242);
  await mount.close();
  await device.close();
  const fsck = e2fsck(path);
  expect(fsck.out).not.toMatch(/\?|recover|WARNING/i);
  expect(fsck.code).toBe(0);
}

describe('Ext4Mount read-write', () => {
  it('Ext4Mount.open sets RECOVER while mounted and close clears it; the change is home and e2fsck -fn is clean', async () => {
    const device = await FileDevice.open(img);
    const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    expect(mount.ext4.sb.featureIncompat & Incompat.RECOVER).toBe(Incompat.RECOVER);
    expect(execFileSync('dumpe2fs', ['-h', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).toMatch(/needs_recovery/);
    await touchRoot(mount);
    expect((await mount.inode(2)).uid).toBe(4242);
    await mount.close();
    await device.close();
    const fsck = e2fsck(img);
    expect(fsck.out).not.toMatch(/\?|recover|WARNING/i);
    expect(fsck.code).toBe(0);
    const stat = debugfsStat(img, '<2>');
    expect(stat).toMatch(/User:\s+4242/);
    expect(stat).toMatch(/mtime: 0x499602d2/);
    expect(execFileSync('dumpe2fs', ['-h', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).not.toMatch(/needs_recovery/);
  });

  it('a crash after sync (commit, no checkpoint) is replayed by e2fsck -fy, by the kernel-compatible log, and by Ext4Mount', async () => {
    const device = await FileDevice.open(img);
    const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    await touchRoot(mount);
    await mount.sync();
    mount.journal!.abort(); // crash: nothing more reaches the device
    await device.close();
    // Home location still has the old inode: the change lives only in the log.
    expect(debugfsStat(img, '<2>')).not.toMatch(/User:\s+4242/);

    const byE2fsck = join(dir, 'e2fsck.img');
    copyFileSync(img, byE2fsck);
    const replay = e2fsck(byE2fsck, '-fy');
    expect(replay.out).toMatch(/recovering journal/);
    expect(debugfsStat(byE2fsck, '<2>')).toMatch(/User:\s+4242/);
    const after = e2fsck(byE2fsck);
    expect(after.code).toBe(0);

    await expectReplayedByReadWriteOpen(img);
    expect(debugfsStat(img, '<2>')).toMatch(/User:\s+4242/);
  });

  it('a torn home superblock (bad checksum, RECOVER set) is replayed from the journal by a read-write open; a read-only open still refuses it with EBADMSG', async () => {
    const device = await FileDevice.open(img);
    const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    await touchRoot(mount); // journals block 0 (the superblock) with RECOVER set
    await mount.sync();
    mount.journal!.abort();
    // Tear: the second 512-byte sector of the superblock gets other bytes.
    const sector = Buffer.alloc(512, 0x5a);
    await device.write(1536, sector);
    await device.close();

    const readOnlyCopy = join(dir, 'ro.img');
    copyFileSync(img, readOnlyCopy);
    const ro = await FileDevice.open(readOnlyCopy, { readOnly: true });
    await expect(Ext4Mount.open(ro, { readOnly: true, ignoreJournal: true })).rejects.toMatchObject({ code: 'EBADMSG' });
    await ro.close();

    await expectReplayedByReadWriteOpen(img);
  });

  it('writeSuperblock takes block 0 once per transaction; the commit logs the counts after its last handle (replayed: e2fsck -fn clean)', async () => {
    const device = await FileDevice.open(img);
    const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    const freeBefore = mount.ext4.sb.freeBlocksCount;
    for (let i = 0; i < 5; i++) {
      await mount.transact(4, async (h) => {
        const run = await blockAllocator.allocate(mount, h, { goal: 5000 + 100 * i, count: 3 }); // writes the superblock
        expect(run.count).toBe(3);
        expect(h.hasFrozenTrigger(0)).toBe(true);
      });
    }
    await mount.sync();
    mount.journal!.abort(); // crash: the counts live only in the log
    await device.close();
    const replayed = await FileDevice.open(img);
    const again = await Ext4Mount.open(replayed, { readOnly: false, commitIntervalMs: 0 });
    expect(again.ext4.sb.freeBlocksCount).toBe(freeBefore - 15);
    expect(again.ext4.sb.freeBlocksCount).toBe(again.ext4.groups.reduce((n, gd) => n + gd.freeBlocksCount, 0));
    await again.close();
    await replayed.close();
    const fsck = e2fsck(img);
    expect(fsck.out).toMatch(/Block bitmap differences|Free blocks count wrong for group/); // allocated, owned by no file
    expect(fsck.out).not.toMatch(/Free blocks count wrong \(/); // the superblock's own count is right
  });

  it('writeInode starts from the slot bytes when the inode cache holds an older copy of them', async () => {
    const device = await FileDevice.open(img);
    const mount = await Ext4Mount.open(device, { readOnly: false, commitIntervalMs: 0 });
    const { ext4 } = mount;
    await mount.inode(2); // cached
    const offsetBytes = (2 - 1) * ext4.inodeSizeBytes; // root: group 0, slot 1
    const blockNr = ext4.groups[0].inodeTable + Math.floor(offsetBytes / ext4.blockSizeBytes);
    await mount.transact(2, async (h) => {
      const block = await h.getWriteAccess(blockNr); // a change behind the cache: i_uid_lo = 777
      new DataView(block.buffer, block.byteOffset).setUint16(offsetBytes % ext4.blockSizeBytes + 2, 777, true);
      h.dirtyMetadata(blockNr);
      const written = await mount.writeInode(h, 2, (raw) => { raw.mtime = 1_111_111_111; });
      expect(written.uid).toBe(777);
      expect(written.mtime.sec).toBe(1_111_111_111);
      // From the cache (now of these bytes): the next change keeps both.
      const again = await mount.writeInode(h, 2, (raw) => { raw.gid = 55; });
      expect([again.uid, again.gid, again.mtime.sec]).toEqual([777, 55, 1_111_111_111]);
    });
    await mount.close();
    await device.close();
    const fsck = e2fsck(img);
    expect(fsck.code, fsck.out).toBe(0);
    const stat = debugfsStat(img, '<2>');
    expect(stat).toMatch(/User:\s+777\s+Group:\s+55/);
  });

  it('Ext4Mount.open refuses read-write on a read-only device with EROFS', async () => {
    const device = await FileDevice.open(img, { readOnly: true });
    await expect(Ext4Mount.open(device, { readOnly: false })).rejects.toMatchObject({ code: 'EROFS' });
    await device.close();
  });
});
