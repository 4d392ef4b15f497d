/**
 * Opening: a clean mkfs.ext4 image opens with the geometry dumpe2fs reports; damaged
 * images (made with debugfs or by flipping bytes) fail with the FsError a reader needs:
 * EBADMSG for checksums, EUCLEAN for impossible geometry, EBUSY for a journal that needs
 * recovery (unless ignoreJournal), and inodes in never-used slots are refused.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as hostFs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { FsError } from '../vfs/errors.js';
import { openSuper, type Ext4Super } from './super.js';
import { readInode } from './inode.js';
import { Ext4 } from '../vfs/filesystem.js';

const env = { PATH: '/usr/sbin:/sbin:/usr/bin:/bin' };
let work: string;
let base: string;
let small: string;
const devices: FileDevice[] = [];
let counter = 0;

function tool(name: string, args: string[]): string {
  return execFileSync(name, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Run debugfs -w over a command list (re-sealing a descriptor needs a second command). */
function debugfsScript(img: string, commands: string[]): void {
  const file = join(work, `cmds-${counter++}`);
  hostFs.writeFileSync(file, `${commands.join('\n')}\n`);
  tool('debugfs', ['-w', '-f', file, img]);
}

/** A fresh copy of `img` to damage. */
function copyOf(img: string): string {
  const copy = join(work, `copy-${counter++}.img`);
  hostFs.copyFileSync(img, copy);
  return copy;
}

function poke(img: string, offsetBytes: number, bytes: number[]): void {
  const fd = hostFs.openSync(img, 'r+');
  hostFs.writeSync(fd, Buffer.from(bytes), 0, bytes.length, offsetBytes);
  hostFs.closeSync(fd);
}

async function open(img: string, options: { ignoreJournal?: boolean } = {}): Promise<Ext4Super> {
  const device = await FileDevice.open(img, { readOnly: true });
  devices.push(device);
  return openSuper(device, { readOnly: true, ...options });
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  if (!FsError.is(error)) throw new Error(`expected an FsError, got ${String(error)}`);
  return error.code;
}

beforeAll(() => {
  work = hostFs.mkdtempSync(join(tmpdir(), 'ext4ts-super-'));
  const tree = join(work, 'tree');
  hostFs.mkdirSync(tree);
  hostFs.writeFileSync(join(tree, 'file'), 'data');
  base = join(work, 'base.img');
  tool('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, base, '64M']);
  // 1 KiB blocks: 8192-block groups, so 16 MiB has 2 groups and group 1 is INODE_UNINIT.
  small = join(work, 'small.img');
  tool('mkfs.ext4', ['-q', '-F', '-b', '1024', '-d', tree, small, '16M']);
});

afterAll(async () => {
  for (const d of devices) await d.close();
  hostFs.rmSync(work, { recursive: true, force: true });
});

function dumpe2fsField(img: string, field: string): string {
  const m = new RegExp(`^${field}:\\s+(.*)$`, 'm').exec(tool('dumpe2fs', ['-h', img]));
  if (!m) throw new Error(`no ${field}`);
  return m[1].trim();
}

describe('openSuper', () => {
  it('openSuper reads the geometry dumpe2fs reports', async () => {
    for (const img of [base, small]) {
      const ext4 = await open(img);
      expect(ext4.blocksCount).toBe(Number(dumpe2fsField(img, 'Block count')));
      expect(ext4.inodesCount).toBe(Number(dumpe2fsField(img, 'Inode count')));
      expect(ext4.blockSizeBytes).toBe(Number(dumpe2fsField(img, 'Block size')));
      expect(ext4.inodesPerGroup).toBe(Number(dumpe2fsField(img, 'Inodes per group')));
      expect(ext4.groups.length).toBe(ext4.groupCount);
      expect(ext4.hashUnsigned).toBe(false);
      expect(ext4.journalNeedsRecovery).toBe(false);
    }
  });

  it('openSuper rejects a superblock whose checksum does not match (EBADMSG)', async () => {
    const img = copyOf(base);
    poke(img, 1024 + 0x78, [0x41]); // volume name, checksum left stale
    expect(await codeOf(open(img))).toBe('EBADMSG');
  });

  it('openSuper rejects a bad group descriptor checksum (EBADMSG) and a bitmap outside the fs (EUCLEAN)', async () => {
    const flipped = copyOf(base);
    poke(flipped, 4096 + 0x0c, [0x01]); // group 0 free block count, checksum stale
    expect(await codeOf(open(flipped))).toBe('EBADMSG');
    const moved = copyOf(base);
    debugfsScript(moved, ['set_bg 0 block_bitmap 9999999', 'set_bg 0 checksum calc']);
    expect(await codeOf(open(moved))).toBe('EUCLEAN');
    const onGdt = copyOf(base);
    debugfsScript(onGdt, ['set_bg 0 inode_table 1', 'set_bg 0 checksum calc']);
    expect(await codeOf(open(onGdt))).toBe('EUCLEAN');
  });

  it('openSuper refuses a journal that needs recovery with EBUSY unless ignoreJournal', async () => {
    const flagged = copyOf(base);
    tool('debugfs', ['-w', '-R', 'feature needs_recovery', flagged]);
    const error = await open(flagged).then(() => undefined, (e: unknown) => e as FsError);
    expect(error?.code).toBe('EBUSY');
    expect(error?.detail).toMatch(/journal needs recovery/);
    expect((await open(flagged, { ignoreJournal: true })).journalNeedsRecovery).toBe(true);
    // s_start ≠ 0 in the journal superblock (big-endian at 0x1C) means the same.
    const started = copyOf(base);
    const journalBlock = Number(tool('debugfs', ['-R', 'bmap <8> 0', started]).trim());
    poke(started, journalBlock * 4096 + 0x1c, [0, 0, 0, 1]);
    expect(await codeOf(open(started))).toBe('EBUSY');
    expect(await codeOf(Ext4.mount(await FileDevice.open(started, { readOnly: true })))).toBe('EBUSY');
  });

  it('openSuper opens an image with an orphan list read-only and reports its head', async () => {
    const img = copyOf(base);
    tool('debugfs', ['-w', '-R', 'ssv last_orphan 12', img]);
    const ext4 = await open(img);
    expect(ext4.lastOrphan).toBe(12);
  });

  it('openSuper refuses unknown incompat features (ENOTSUP)', async () => {
    const img = copyOf(base);
    tool('debugfs', ['-w', '-R', 'feature inline_data', img]);
    expect(await codeOf(open(img))).toBe('ENOTSUP');
  });
});

describe('readInode', () => {
  it('readInode refuses inodes outside 1..count and in an INODE_UNINIT group', async () => {
    const ext4 = await open(small);
    expect(ext4.groupCount).toBe(2);
    expect(ext4.groups[1].flags & 1).toBe(1);
    expect(await codeOf(readInode(ext4, 0))).toBe('EUCLEAN');
    expect(await codeOf(readInode(ext4, ext4.inodesCount + 1))).toBe('EUCLEAN');
    expect(await codeOf(readInode(ext4, ext4.inodesPerGroup + 1))).toBe('EUCLEAN');
    // Above group 0's used range (ipg − itable_unused).
    expect(await codeOf(readInode(ext4, ext4.inodesPerGroup - 1))).toBe('EUCLEAN');
    expect((await readInode(ext4, 2)).mode & 0o170000).toBe(0o040000);
  });

  it('readInode rejects an inode whose checksum does not match (EBADMSG)', async () => {
    const img = copyOf(base);
    const where = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(tool('debugfs', ['-R', 'imap /file', img]));
    poke(img, Number(where?.[1]) * 4096 + parseInt(where?.[2] ?? '0', 16) + 0x02, [0x99]); // uid lo
    const fs = await Ext4.mount(await FileDevice.open(img, { readOnly: true }));
    const error = await fs.stat('/file').then(() => undefined, (e: unknown) => e as FsError);
    expect(error?.code).toBe('EBADMSG');
    expect(error?.path).toBe('/file');
  });
});
