// The ext4ts commands that change an image, run as a user runs them (the built CLI):
// cp of a generated host tree into an image and back out equals the source (modes,
// times, symlinks, hard links), e2fsck clean; mkdir -p, rm -r, mv, ln -s, chmod, touch.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Ext4, FileDevice } from '@ext4ts/core';
import { e2fsck, requireE2fsprogs } from '../helpers/e2fs.js';
import { readImageTree } from '../helpers/image-tree.js';
import { diffTrees, generateTree, readHostTree } from '../helpers/tree.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 99, stdout, stderr });
    });
  });
}

let temp: TempDir;
beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build with 'npx tsc -b packages/core packages/cli' first`);
  await requireE2fsprogs();
  temp = makeTempDir('ext4ts-cli-write-');
});
afterAll(() => temp?.cleanup());

async function ok(args: string[]): Promise<string> {
  const r = await cli(args);
  expect(r.stderr, args.join(' ')).toBe('');
  expect(r.code, args.join(' ')).toBe(0);
  return r.stdout;
}

describe('ext4ts cp into an image', () => {
  it('cp -r SOURCE IMAGE:/dst then cp -r back out equals the source tree; e2fsck clean', async () => {
    const source = path.join(temp.dir, 'src');
    mkdirSync(source);
    await generateTree(source, { seed: 3, scale: 'small' });
    const img = path.join(temp.dir, 'cp.img');
    await ok(['mkfs', img, '--size', '128M']);
    await ok(['cp', '-r', source, `${img}:/dst`]);
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
    const back = path.join(temp.dir, 'back');
    await ok(['cp', '-r', img, '/dst', back]);
    const expected = readHostTree(source);
    // In the image the mtimes are exact to the nanosecond (atimes: the copy's own reads move the source's).
    const device = await FileDevice.open(img, { readOnly: true });
    const fs = await Ext4.mount(device);
    const inImage = new Map([...(await readImageTree(fs)).tree].filter(([p]) => p.startsWith('dst/')).map(([p, e]) => [p.slice(4), { ...e, linkGroup: e.linkGroup.slice(4) }]));
    await fs.unmount();
    await device.close();
    expect(diffTrees(expected, inImage, { fields: ['type', 'mode', 'uid', 'gid', 'size', 'nlink', 'linkGroup', 'mtimeNs', 'target', 'sha256'] })).toEqual([]);
    // Copied back out (cp out keeps no owners), node's utimes goes through a double: times agree to the microsecond.
    const actual = readHostTree(back);
    expect(diffTrees(expected, actual, { fields: ['type', 'mode', 'size', 'nlink', 'linkGroup', 'target', 'sha256'] })).toEqual([]);
    for (const [p, e] of expected) {
      const delta = (actual.get(p)?.mtimeNs ?? 0n) - e.mtimeNs;
      expect(delta >= -1000n && delta <= 1000n, `${p} mtime off by ${delta} ns`).toBe(true);
    }
    expect(expected.size).toBeGreaterThan(20);
  });
});

describe('ext4ts mkdir / rm / mv / ln / chmod / touch', () => {
  it('each command changes the image as asked and leaves it e2fsck-clean', async () => {
    const img = path.join(temp.dir, 'ops.img');
    await ok(['mkfs', img, '--size', '32M']);
    await ok(['mkdir', '-p', img, '/a/b/c']);
    expect(await ok(['ls', img, '/a/b'])).toBe('c\n');
    expect((await cli(['mkdir', img, '/a'])).code).toBe(1);
    await ok(['mkdir', '-p', img, '/a/b/c']);
    await ok(['touch', '-d', '1000000000', img, '/a/b/c/f']);
    expect(await ok(['stat', img, '/a/b/c/f'])).toMatch(/2001-09-09/);
    await ok(['ln', '-s', img, '../b/c/f', '/a/sym']);
    await ok(['ln', img, '/a/b/c/f', '/a/hard']);
    expect(await ok(['ls', '-l', img, '/a'])).toMatch(/sym -> \.\.\/b\/c\/f/);
    await ok(['chmod', img, '600', '/a/hard']);
    expect(await ok(['ls', '-l', img, '/a/b/c'])).toMatch(/^-rw------- +2 /m);
    await ok(['mv', img, '/a/b', '/moved']);
    expect(await ok(['ls', img, '/'])).toBe('a\nlost+found\nmoved\n');
    await ok(['mv', img, '/a/hard', '/moved']);
    expect(await ok(['ls', img, '/moved'])).toBe('c\nhard\n');
    const r = await cli(['rm', img, '/moved']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/EISDIR/);
    await ok(['rm', '-r', img, '/moved', '/a']);
    expect(await ok(['ls', img, '/'])).toBe('lost+found\n');
    const fsck = await e2fsck(img);
    expect(fsck.clean, fsck.output).toBe(true);
  });
});
