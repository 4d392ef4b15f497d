/**
 * The ext4ts command end to end, run as a user would run it (the built CLI in a child
 * process): mkfs makes an e2fsck-clean image; cp -r copies a whole fixture tree out and the
 * copy matches the source tree the image was built from; cat/ls/stat/info print what the
 * image holds; bad usage and missing paths give exit codes 2 and 1 with clear messages.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { e2fsck, dumpe2fsHeader } from '../helpers/e2fs.js';
import { buildFixtureImage, type FixtureImage } from '../helpers/fixture-image.js';
import { readHostTree, expectedAfterMke2fs, diffTrees } from '../helpers/tree.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

interface CliResult { code: number; stdout: string; stderr: string }

function cli(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 256 << 20, encoding: 'buffer' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 99;
      resolve({ code, stdout: stdout.toString('latin1'), stderr: stderr.toString() });
    });
  });
}

let fixture: FixtureImage;
let temp: TempDir;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'pnpm run build' first`);
  fixture = await buildFixtureImage({ seed: 7, scale: 'small' });
  temp = makeTempDir('ext4ts-cli-');
});
afterAll(() => temp?.cleanup());

describe('ext4ts mkfs', () => {
  it('ext4ts mkfs makes an e2fsck-clean image with the Debian feature set', async () => {
    const img = path.join(temp.dir, 'made.img');
    const r = await cli(['mkfs', img, '--size', '256M', '--label', 'cli-test']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const fsck = await e2fsck(img);
    expect(fsck.complaints).toEqual([]);
    expect(fsck.clean).toBe(true);
    const header = await dumpe2fsHeader(img);
    expect(header.fields['Filesystem volume name']).toBe('cli-test');
    expect(header.fields['Block count']).toBe(String(65536));
    expect([...header.features].sort()).toEqual(['64bit', 'dir_index', 'dir_nlink', 'ext_attr', 'extent', 'extra_isize', 'filetype', 'flex_bg', 'has_journal', 'huge_file', 'large_file', 'metadata_csum', 'resize_inode', 'sparse_super']);
  });

  it('ext4ts mkfs without --size is a usage error (exit 2)', async () => {
    const r = await cli(['mkfs', path.join(temp.dir, 'nosize.img')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--size/);
  });
});

describe('ext4ts cp, cat, ls, stat, info on a fixture image', () => {
  it('ext4ts cp -r copies the whole tree out: contents, modes, owners, links, symlinks and mtimes match the source', async () => {
    const out = path.join(temp.dir, 'copy');
    const r = await cli(['cp', '-r', fixture.imagePath, '/', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const copied = readHostTree(out);
    const expected = expectedAfterMke2fs(fixture.hostTree);
    // cp restores mode, owner-independent fields and mtime; atime is restored too but reading moves it, ctime is new.
    const diffs = diffTrees(expected, copied, { fields: ['type', 'size', 'nlink', 'linkGroup', 'target', 'sha256', 'mtimeNs'], ignore: ['lost+found'] });
    expect(diffs).toEqual([]);
    // Symlink modes are not settable on Linux; every other entry keeps its 12 permission bits.
    const modeDiffs = diffTrees(expected, copied, { fields: ['mode'], ignore: ['lost+found'], differencesMax: 1e6 });
    expect(modeDiffs.filter((d) => expected.get(d.slice(0, d.indexOf(': ')))?.type !== 'symlink')).toEqual([]);
    // Everything in the source, plus the lost+found mkfs adds.
    expect(copied.size).toBe(expected.size + 1);
    expect(copied.get('lost+found')?.type).toBe('dir');
  });

  it('ext4ts cat prints a multi-MiB file byte for byte', async () => {
    const rel = fixture.manifest.groups.multiMiB[0];
    const r = await new Promise<Buffer>((resolve, reject) => {
      execFile(process.execPath, [CLI, 'cat', fixture.imagePath, `/${rel}`], { maxBuffer: 64 << 20, encoding: 'buffer' }, (e, stdout) => (e ? reject(e) : resolve(stdout)));
    });
    expect(r.equals(readFileSync(path.join(fixture.treeRoot, rel)))).toBe(true);
  });

  it('ext4ts ls -l lists the big directory with every name', async () => {
    const r = await cli(['ls', fixture.imagePath, `/${fixture.manifest.bigDir.path}`]);
    expect(r.code).toBe(0);
    const names = r.stdout.trimEnd().split('\n');
    expect(names.length).toBe(fixture.manifest.bigDir.entryCount);
    const long = await cli(['ls', '-l', fixture.imagePath, '/']);
    expect(long.stdout).toMatch(/^drwx------ +2 +0 +0 +\d+ .* lost\+found$/m);
  });

  it('ext4ts stat prints size, links and mode of a file', async () => {
    const rel = fixture.manifest.groups.size4097[0];
    const host = fixture.hostTree.get(rel)!;
    const r = await cli(['stat', fixture.imagePath, `/${rel}`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Size: ${host.size}`);
    expect(r.stdout).toContain(`Links: ${host.nlink}`);
    expect(r.stdout).toContain(`Access: (${host.mode.toString(8).padStart(4, '0')}/`);
  });

  it('ext4ts info prints the dumpe2fs -h fields of the image', async () => {
    const r = await cli(['info', fixture.imagePath]);
    const header = await dumpe2fsHeader(fixture.imagePath);
    for (const key of ['Filesystem UUID', 'Inode count', 'Block count', 'Free blocks', 'Free inodes', 'Journal features', 'Total journal blocks']) {
      expect(r.stdout).toMatch(new RegExp(`^${key}: +${header.fields[key].replace(/[()]/g, '\\$&')}$`, 'm'));
    }
  });

  it('ext4ts cat of a missing path exits 1 with ENOENT and the path', async () => {
    const r = await cli(['cat', fixture.imagePath, '/no/such/file']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ENOENT.*\/no\/such\/file/);
  });

  it('ext4ts with an unknown command exits 2 and prints usage', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/usage: ext4ts/);
  });
});
