// Every namespace error as an FsError with its code and path, the image unchanged after
// it; ENOSPC by filling a small filesystem to its last block (then everything deleted
// gives back exactly what mkfs left); the orphan list across a crash.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import path from 'node:path';
import { Ext4, FileDevice, FsError, mkfs, type Ext4Filesystem } from '@ext4ts/core';
import { e2fsck, requireE2fsprogs } from '../helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { readImageTree } from '../helpers/image-tree.js';
import { orphanAdd } from '../../packages/core/src/ext4/orphan.js';

let tmp: TempDir;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-ns-errors-'); });
afterAll(() => tmp.cleanup());

async function freshImage(name: string, sizeBytes: number): Promise<{ img: string; device: FileDevice }> {
  const img = path.join(tmp.dir, name);
  const device = await FileDevice.open(img, { create: true, sizeBytes });
  await mkfs(device, { sizeBytes, assumeZeroed: true });
  return { img, device };
}

const rw = (device: FileDevice): Promise<Ext4Filesystem> => Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, uid: 0, gid: 0 });

async function expectFsError(p: Promise<unknown>, code: string, shownPath: string): Promise<void> {
  const error = await p.then(() => undefined, (e: unknown) => e);
  expect(FsError.is(error), `${code} ${shownPath}: ${String(error)}`).toBe(true);
  expect((error as FsError).code).toBe(code);
  expect((error as FsError).path).toBe(shownPath);
}

describe('namespace errors', () => {
  it('ENOENT EEXIST ENOTDIR EISDIR ENOTEMPTY ENAMETOOLONG EINVAL EMLINK: FsError with code and path; the tree unchanged; e2fsck clean', async () => {
    const { img, device } = await freshImage('errors.img', 32 * 2 ** 20);
    const fs = await rw(device);
    await fs.mkdir('/d/sub', { recursive: true });
    await fs.mkdir('/empty');
    await fs.writeFile('/file', 'data');
    await fs.symlink('file', '/link');
    const before = (await readImageTree(fs)).tree;
    const cases: [string, () => Promise<unknown>, string][] = [
      ['ENOENT', () => fs.unlink('/nope'), '/nope'],
      ['ENOENT', () => fs.mkdir('/nope/x'), '/nope/x'],
      ['ENOENT', () => fs.rename('/nope', '/x'), '/nope'],
      ['EEXIST', () => fs.mkdir('/d'), '/d'],
      ['EEXIST', () => fs.symlink('t', '/file'), '/file'],
      ['EEXIST', () => fs.link('/file', '/link'), '/file'],
      ['EEXIST', () => fs.open('/file', 'wx'), '/file'],
      ['ENOTDIR', () => fs.mkdir('/file/x'), '/file/x'],
      ['ENOTDIR', () => fs.rmdir('/file'), '/file'],
      ['ENOTDIR', () => fs.rename('/empty', '/file'), '/empty'],
      ['EISDIR', () => fs.unlink('/d'), '/d'],
      ['EISDIR', () => fs.writeFile('/d', 'x'), '/d'],
      ['EISDIR', () => fs.rename('/file', '/empty'), '/file'],
      ['EISDIR', () => fs.truncate('/d', 0), '/d'],
      ['ENOTEMPTY', () => fs.rmdir('/d'), '/d'],
      ['ENOTEMPTY', () => fs.rename('/empty', '/d'), '/empty'],
      ['ENAMETOOLONG', () => fs.writeFile(`/${'x'.repeat(256)}`, 'x'), `/${'x'.repeat(256)}`],
      ['ENAMETOOLONG', () => fs.symlink('y'.repeat(4096), '/long'), '/long'],
      ['EINVAL', () => fs.rename('/d', '/d/sub/inside'), '/d'],
      ['EINVAL', () => fs.rename('/d', '/d/sub'), '/d'],
      ['EPERM', () => fs.link('/d', '/dlink'), '/d'],
    ];
    for (const [code, call, shown] of cases) await expectFsError(call(), code, shown);
    // EMLINK: i_links_count at LINK_MAX (raised through the mount, restored after).
    const ino = (await fs.stat('/file')).ino;
    await fs.mount.transact(1, async (h) => { await fs.mount.writeInode(h, ino, (raw) => { raw.linksCount = 65000; }); });
    await expectFsError(fs.link('/file', '/another'), 'EMLINK', '/file');
    await fs.mount.transact(1, async (h) => { await fs.mount.writeInode(h, ino, (raw) => { raw.linksCount = 1; }); });
    expect((await readImageTree(fs)).tree).toEqual(before);
    await fs.unmount();
    await device.close();
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
  });

  it('ENOSPC: files and directories to the last block; e2fsck clean; deleting everything gives back what mkfs left', async () => {
    const { img, device } = await freshImage('full.img', 16 * 2 ** 20);
    let fs = await rw(device);
    const free0 = { blocks: fs.mount.ext4.sb.freeBlocksCount, inodes: fs.mount.ext4.sb.freeInodesCount };
    const codes: string[] = [];
    const fill = async (make: (i: number) => Promise<unknown>): Promise<number> => {
      for (let i = 0; ; i++) {
        try { await make(i); } catch (error) {
          if (!FsError.is(error)) throw error;
          codes.push(error.code);
          return i;
        }
      }
    };
    for (let i = 0; i < 8; i++) await fs.mkdir(`/d${i}`);
    const big = await fill((i) => fs.writeFile(`/d${i % 8}/big${i}`, Buffer.alloc(1 << 20, i + 1)));
    // The files' blocks are delayed (reserved) until written back; directories may not take
    // reserved space, so write them back first and the margin delalloc kept is left.
    await fs.sync();
    const dirs = await fill((i) => fs.mkdir(`/d${i % 8}/dir${i}`));
    const small = await fill((i) => fs.writeFile(`/s${i}`, 'x'));
    expect(codes).toEqual(['ENOSPC', 'ENOSPC', 'ENOSPC']);
    expect(big).toBeGreaterThan(5);
    const left = fs.mount.ext4.sb.freeBlocksCount;
    const reserve = fs.mount.ext4.sb.rBlocksCount;
    // The last file's writes switched to direct allocation when space ran low (the nonda
    // switch) and took every unreserved block, so directories may find none left.
    expect(dirs).toBeGreaterThanOrEqual(0);
    expect(left).toBeLessThanOrEqual(reserve);
    await fs.unmount();
    expect((await e2fsck(img)).clean).toBe(true);
    fs = await rw(device);
    for (const name of await fs.readdir('/')) if (name !== 'lost+found') await fs.rm(`/${name}`, { recursive: true });
    await fs.unmount();
    fs = await Ext4.mount(device, { readOnly: true });
    expect({ blocks: fs.info.freeBlocksCount, inodes: fs.info.freeInodesCount }).toEqual(free0);
    await fs.unmount();
    await device.close();
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
    console.log(`ENOSPC: ${big} × 1 MiB files, ${dirs} directories, ${small} small files; ${left} blocks left = the reserve ${reserve} (mkfs left ${free0.blocks} free)`);
  });
});

describe('the orphan list across a crash', () => {
  it('an open file unlinked, committed, crash → read-write open frees it; e2fsck -fn clean', async () => {
    const { img, device } = await freshImage('orphan.img', 32 * 2 ** 20);
    let fs = await rw(device);
    await fs.writeFile('/keep', 'kept');
    await fs.sync(); // delayed allocation: /keep's block is allocated at writeback
    const freeBefore = fs.mount.ext4.sb.freeBlocksCount;
    await fs.writeFile('/victim', Buffer.alloc(3 << 20, 9));
    const fh = await fs.open('/victim', 'r');
    await fs.unlink('/victim');
    expect((await fh.readFile() as Buffer).length).toBe(3 << 20);
    expect(fs.mount.ext4.sb.lastOrphan).not.toBe(0);
    await fs.sync();
    fs.mount.journal!.abort(); // crash: the unlink is durable, the inode still allocated
    await device.close();
    const crashed = await FileDevice.open(img);
    fs = await rw(crashed);
    expect(fs.mount.orphansProcessed).toEqual({ freed: 1, truncated: 0 });
    expect(fs.mount.ext4.sb.lastOrphan).toBe(0);
    expect(fs.mount.ext4.sb.freeBlocksCount).toBe(freeBefore);
    expect(await fs.readdir('/')).toEqual(expect.arrayContaining(['keep']));
    await fs.unmount();
    await crashed.close();
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
  });

  it('a truncate cut short by a crash (listed, i_size lowered, blocks still mapped) is finished on open', async () => {
    const { img, device } = await freshImage('orphan-trunc.img', 32 * 2 ** 20);
    let fs = await rw(device);
    await fs.writeFile('/t', Buffer.alloc(2 << 20, 5));
    await fs.sync(); // delayed allocation: the blocks are allocated (and i_disksize set) at writeback
    const freeBefore = fs.mount.ext4.sb.freeBlocksCount;
    const ino = (await fs.stat('/t')).ino;
    await fs.mount.transact(4, async (h) => {
      await orphanAdd(fs.mount, h, ino);
      await fs.mount.writeInode(h, ino, (raw) => { raw.size = 10_000; });
    });
    await fs.sync();
    fs.mount.journal!.abort();
    await device.close();
    const crashed = await FileDevice.open(img);
    fs = await rw(crashed);
    expect(fs.mount.orphansProcessed).toEqual({ freed: 0, truncated: 1 });
    expect((await fs.stat('/t')).size).toBe(10_000);
    expect(fs.mount.ext4.sb.freeBlocksCount).toBe(freeBefore + 512 - 3);
    await fs.unmount();
    await crashed.close();
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
  });
});
