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

  it('Ext4Mount.open refuses read-write on a read-only device with EROFS', async () => {
    const device = await FileDevice.open(img, { readOnly: true });
    await expect(Ext4Mount.open(device, { readOnly: false })).rejects.toMatchObject({ code: 'EROFS' });
    await device.close();
  });
});
