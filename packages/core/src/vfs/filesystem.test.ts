/**
 * The public read API against a small image made by the real mkfs.ext4 -d from a tree
 * built here: every answer is checked against the host tree the image was made from
 * (bytes, names, link targets, stat fields mke2fs preserves) or against debugfs.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as hostFs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { Ext4, type Ext4Filesystem } from './filesystem.js';
import { FsError } from './errors.js';

const SBIN = '/usr/sbin:/sbin:/usr/bin:/bin';
let work: string;
let img: string;
let tree: string;
let fs: Ext4Filesystem;
let device: FileDevice;

function sha(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function buildTree(root: string): void {
  hostFs.mkdirSync(join(root, 'dir/sub/deeper'), { recursive: true });
  hostFs.writeFileSync(join(root, 'hello.txt'), 'hello, ext4\n');
  hostFs.writeFileSync(join(root, 'dir/sub/deeper/leaf.txt'), 'leaf');
  // 1 MiB + 123 bytes of varied content: several blocks, a partial last block.
  const big = Buffer.alloc(1024 * 1024 + 123);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 12)) & 0xff;
  hostFs.writeFileSync(join(root, 'big.bin'), big);
  // Sparse: data at 0, a hole, data at 5 MiB + 7.
  const fd = hostFs.openSync(join(root, 'sparse.bin'), 'w');
  hostFs.writeSync(fd, Buffer.from('head'), 0, 4, 0);
  hostFs.writeSync(fd, Buffer.from('tail'), 0, 4, 5 * 1024 * 1024 + 7);
  hostFs.closeSync(fd);
  hostFs.writeFileSync(join(root, 'empty'), '');
  hostFs.symlinkSync('hello.txt', join(root, 'fast-link'));
  hostFs.symlinkSync(`dir/sub/${'../'.repeat(0)}deeper/leaf.txt`.padEnd(20, '/'), join(root, 'padded-link'));
  hostFs.symlinkSync(`/dir/${'./'.repeat(40)}sub/deeper/leaf.txt`, join(root, 'slow-link'));
  hostFs.symlinkSync('dir/sub', join(root, 'dir-link'));
  hostFs.symlinkSync('loop-b', join(root, 'loop-a'));
  hostFs.symlinkSync('loop-a', join(root, 'loop-b'));
  hostFs.symlinkSync('nowhere', join(root, 'dangling'));
  hostFs.linkSync(join(root, 'hello.txt'), join(root, 'dir/hard-link.txt'));
  hostFs.writeFileSync(Buffer.concat([Buffer.from(`${root}/`), Buffer.from([0x6e, 0xff, 0x6e])]), 'not utf-8');
  hostFs.writeFileSync(join(root, 'caf\u00e9'), 'accent');
  hostFs.chmodSync(join(root, 'hello.txt'), 0o640);
  hostFs.chownSync(join(root, 'big.bin'), 1234, 5678);
  hostFs.utimesSync(join(root, 'big.bin'), new Date('2001-02-03T04:05:06Z'), new Date('2011-12-13T14:15:16Z'));
}

beforeAll(async () => {
  work = hostFs.mkdtempSync(join(tmpdir(), 'ext4ts-vfs-'));
  tree = join(work, 'tree');
  img = join(work, 'img');
  hostFs.mkdirSync(tree);
  buildTree(tree);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, img, '16M'], { env: { PATH: SBIN } });
  device = await FileDevice.open(img, { readOnly: true });
  fs = await Ext4.mount(device, { readOnly: true });
});

afterAll(async () => {
  await fs?.unmount();
  await device?.close();
  hostFs.rmSync(work, { recursive: true, force: true });
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<FsError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(FsError.is(error), `expected ${code}, got ${String(error)}`).toBe(true);
  expect((error as FsError).code).toBe(code);
  return error as FsError;
}

describe('Ext4Filesystem.readdir', () => {
  it('readdir lists exactly the host names of every directory', async () => {
    for (const dir of ['', 'dir', 'dir/sub', 'dir/sub/deeper']) {
      const host = hostFs.readdirSync(join(tree, dir), { encoding: 'buffer' }).map((b) => b.toString('latin1')).sort();
      const ours = (await fs.readdir(`/${dir}`, { encoding: 'buffer' })).map((b) => b.toString('latin1')).filter((n) => n !== 'lost+found').sort();
      expect(ours).toEqual(host);
    }
  });

  it('readdir withFileTypes reports the host types', async () => {
    const entries = await fs.readdir('/', { withFileTypes: true, encoding: 'buffer' });
    expect(entries.length).toBe(hostFs.readdirSync(tree).length + 1);
    for (const e of entries) {
      if (e.name.toString() === 'lost+found') { expect(e.isDirectory()).toBe(true); continue; }
      const host = hostFs.lstatSync(Buffer.concat([Buffer.from(`${tree}/`), e.name]));
      expect([e.isFile(), e.isDirectory(), e.isSymbolicLink()]).toEqual([host.isFile(), host.isDirectory(), host.isSymbolicLink()]);
      expect(e.parentPath).toBe('/');
    }
  });

  it('readdir with encoding buffer returns raw bytes of a non-UTF-8 name, and a Buffer path reaches it', async () => {
    const raw = Buffer.from([0x6e, 0xff, 0x6e]);
    const names = await fs.readdir('/', 'buffer');
    expect(names.some((n) => n.equals(raw))).toBe(true);
    expect((await fs.readFile(raw)).toString()).toBe('not utf-8');
    expect(await fs.readFile('/caf\u00e9', 'utf8')).toBe('accent');
  });

  it('readdir of a file is ENOTDIR and of a missing path ENOENT, with the path', async () => {
    const e = await expectCode(fs.readdir('/hello.txt'), 'ENOTDIR');
    expect(e.path).toBe('/hello.txt');
    expect(e.syscall).toBe('scandir');
    await expectCode(fs.readdir('/nope'), 'ENOENT');
  });
});

describe('Ext4Filesystem.readFile', () => {
  it('readFile returns the host bytes of every regular file', async () => {
    for (const name of ['hello.txt', 'big.bin', 'sparse.bin', 'empty', 'dir/sub/deeper/leaf.txt', 'dir/hard-link.txt']) {
      const ours = await fs.readFile(`/${name}`);
      expect(sha(ours), name).toBe(sha(hostFs.readFileSync(join(tree, name))));
    }
  });

  it('readFile follows symlinks, fast and slow, relative and absolute', async () => {
    expect(await fs.readFile('/fast-link', 'utf8')).toBe('hello, ext4\n');
    expect(await fs.readFile('/slow-link', 'utf8')).toBe('leaf');
    expect(await fs.readFile('/dir-link/deeper/leaf.txt', 'utf8')).toBe('leaf');
  });

  it('readFile of a directory is EISDIR', async () => {
    await expectCode(fs.readFile('/dir'), 'EISDIR');
  });
});

describe('Ext4Filesystem.stat', () => {
  it('lstat matches the host for mode, uid, gid, size, nlink, mtime and atime (whole seconds)', async () => {
    for (const name of ['hello.txt', 'big.bin', 'sparse.bin', 'dir', 'fast-link', 'slow-link', 'dir/hard-link.txt']) {
      const host = hostFs.lstatSync(join(tree, name), { bigint: true });
      const ours = await fs.lstat(`/${name}`, { bigint: true });
      expect(ours.mode, name).toBe(host.isSymbolicLink() ? (host.mode & ~0o7777n) | 0o777n : host.mode);
      expect([ours.uid, ours.gid, ours.nlink], name).toEqual([host.uid, host.gid, host.nlink]);
      if (!host.isDirectory()) expect(ours.size, name).toBe(host.size);
      // mke2fs -d stores whole seconds.
      expect(ours.mtimeNs, name).toBe((host.mtimeNs / 1_000_000_000n) * 1_000_000_000n);
    }
  });

  it('stat numbers agree with bigint stats and Dates', async () => {
    const s = await fs.stat('/big.bin');
    const b = await fs.stat('/big.bin', { bigint: true });
    expect(s.mtimeMs).toBe(Date.parse('2011-12-13T14:15:16Z'));
    expect(s.mtime.toISOString()).toBe('2011-12-13T14:15:16.000Z');
    expect(b.mtimeNs).toBe(BigInt(Date.parse('2011-12-13T14:15:16Z')) * 1_000_000n);
    expect([s.uid, s.gid, s.size, s.blksize]).toEqual([1234, 5678, 1024 * 1024 + 123, 4096]);
    expect(BigInt(s.blocks)).toBe(b.blocks);
    expect(s.isFile()).toBe(true);
    expect(typeof b.ino).toBe('bigint');
  });

  it('stat blocks of a sparse file count only allocated blocks', async () => {
    const s = await fs.stat('/sparse.bin');
    expect(s.size).toBe(5 * 1024 * 1024 + 11);
    expect(s.blocks).toBe(16); // two 4 KiB data blocks
  });

  it('stat follows the last symlink and lstat does not; hard links share an inode', async () => {
    expect((await fs.stat('/fast-link')).isFile()).toBe(true);
    expect((await fs.lstat('/fast-link')).isSymbolicLink()).toBe(true);
    expect((await fs.stat('/dir/hard-link.txt')).ino).toBe((await fs.stat('/hello.txt')).ino);
    expect((await fs.stat('/hello.txt')).nlink).toBe(2);
  });
});

describe('Ext4Filesystem path errors', () => {
  it('a symlink loop is ELOOP, a dangling one ENOENT, lstat of either works', async () => {
    await expectCode(fs.stat('/loop-a'), 'ELOOP');
    await expectCode(fs.readFile('/dangling'), 'ENOENT');
    expect((await fs.lstat('/loop-a')).isSymbolicLink()).toBe(true);
  });

  it('a file in the middle is ENOTDIR; a trailing slash on a file is ENOTDIR', async () => {
    await expectCode(fs.stat('/hello.txt/x'), 'ENOTDIR');
    await expectCode(fs.stat('/hello.txt/'), 'ENOTDIR');
    expect((await fs.stat('/dir-link/')).isDirectory()).toBe(true);
  });

  it('a 256-byte component is ENAMETOOLONG; 255 bytes is only ENOENT', async () => {
    await expectCode(fs.stat(`/${'a'.repeat(256)}`), 'ENAMETOOLONG');
    await expectCode(fs.stat(`/${'a'.repeat(255)}`), 'ENOENT');
  });

  it('".." climbs, stops at the root, and realpath resolves symlinks', async () => {
    expect(await fs.readFile('/dir/sub/../../hello.txt', 'utf8')).toBe('hello, ext4\n');
    expect(await fs.readFile('/../../hello.txt', 'utf8')).toBe('hello, ext4\n');
    expect(await fs.realpath('/dir-link/deeper/../deeper/leaf.txt')).toBe('/dir/sub/deeper/leaf.txt');
    expect(await fs.realpath('/')).toBe('/');
    expect(await fs.readlink('/slow-link')).toBe(hostFs.readlinkSync(join(tree, 'slow-link')));
    expect(await fs.readlink('/padded-link')).toBe(hostFs.readlinkSync(join(tree, 'padded-link')));
    await expectCode(fs.readlink('/hello.txt'), 'EINVAL');
  });

  it('access and exists report presence; W_OK is EROFS', async () => {
    await fs.access('/hello.txt');
    expect(await fs.exists('/dir/sub')).toBe(true);
    expect(await fs.exists('/dir/none')).toBe(false);
    await expectCode(fs.access('/hello.txt', 2), 'EROFS');
  });
});

describe('FileHandle', () => {
  it('read at positions returns host bytes, zeros in holes, and 0 bytes past EOF', async () => {
    const host = hostFs.readFileSync(join(tree, 'sparse.bin'));
    const fh = await fs.open('/sparse.bin');
    for (const [pos, len] of [[0, 10], [2, 5000], [4096 - 3, 9000], [5 * 1024 * 1024 + 1, 20], [5 * 1024 * 1024 + 9, 100]]) {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      const want = host.subarray(pos, pos + len);
      expect(bytesRead).toBe(want.length);
      expect(buf.subarray(0, bytesRead).equals(want)).toBe(true);
    }
    expect((await fh.read(Buffer.alloc(10), 0, 10, host.length + 5)).bytesRead).toBe(0);
    await fh.close();
  });

  it('read without a position advances; options form and no-argument form work', async () => {
    const host = hostFs.readFileSync(join(tree, 'big.bin'));
    const fh = await fs.open('/big.bin', 'r');
    const a = await fh.read(Buffer.alloc(1000), 0, 1000, null);
    const b = await fh.read({ buffer: Buffer.alloc(5000), offset: 100, length: 4000 });
    expect(a.buffer.equals(host.subarray(0, 1000))).toBe(true);
    expect(b.buffer.subarray(100, 4100).equals(host.subarray(1000, 5000))).toBe(true);
    const c = await fh.read();
    expect(c.bytesRead).toBe(16384);
    expect(c.buffer.equals(host.subarray(5000, 5000 + 16384))).toBe(true);
    const rest = await fh.readFile();
    expect((rest as Buffer).equals(host.subarray(5000 + 16384))).toBe(true);
    expect((await fh.stat()).size).toBe(host.length);
    await fh.close();
    await expectCode(fh.read(Buffer.alloc(1), 0, 1, 0), 'EBADF');
    await expectCode(fh.stat(), 'EBADF');
  });

  it('open for writing is EROFS on a read-only mount', async () => {
    await expectCode(fs.open('/hello.txt', 'w'), 'EROFS');
  });
});

describe('Ext4.mount', () => {
  it('mount reports geometry and features; unmount closes handles and refuses later calls', async () => {
    const other = await Ext4.mount(device);
    expect(other.info.blockSizeBytes).toBe(4096);
    expect(other.info.features).toContain('metadata_csum');
    const fh = await other.open('/hello.txt');
    await other.unmount();
    await expectCode(fh.read(Buffer.alloc(1), 0, 1, 0), 'EBADF');
    await expectCode(other.stat('/'), 'EIO');
    await expectCode(Ext4.mount(device, { readOnly: false }), 'EROFS');
  });
});

describe('Ext4.mount and the WASM core', () => {
  it('Ext4.mount routes metadata crc32c through the WASM kernel when it is built', async () => {
    const { crc32cBackend } = await import('../wasm/process-core.js');
    const { crc32c, crc32cTs } = await import('../format/crc32c.js');
    expect(crc32cBackend()).toEqual({ backend: 'wasm' });
    const data = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
    expect(crc32c(0x1234, data)).toBe(crc32cTs(0x1234, data));
  });
});
