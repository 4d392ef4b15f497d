// The two small images the corruption suite damages, built once per test file (~1 s):
//
//   A  4 KiB blocks, extents, 64bit, metadata_csum (mkfs.ext4 defaults), 16 MiB:
//      nested dirs, small files, a file of 12 extents (a depth-1 extent tree), a sparse file
//      with a debugfs-fallocated unwritten range, fast and slow symlinks, an empty file, and
//      /hashed: 400 names indexed by e2fsck -fyD (a one-level htree).
//   B  1 KiB blocks (first data block 1), no extents, no 64bit (32-byte descriptors), 4 MiB in
//      4 groups of 1024 blocks:
//      /big: 1,000 names of 250 bytes, which e2fsck -fyD indexes with a dx_node level
//      (indirect_levels 1) and whose blocks need single and double indirect blocks; /ind: a
//      300 KiB block-mapped file (direct, IND, DIND); a slow symlink; a small file.
//
// Every input is fixed (contents from a seeded generator, UUID, hash seed, file times), so
// the images, and therefore every corruption case and fuzz seed, are the same on each run
// up to the few timestamps mke2fs takes from the clock.
//
// Each image also comes with a map of where its metadata lives (read with debugfs and the
// engine on the pristine image), so cases can name "the extent leaf block of /frag" instead
// of a block number.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync, readdirSync, lstatSync } from 'node:fs';
import path from 'node:path';
import { Ext4, MemoryDevice, format } from '@ext4ts/core';
import { readInode } from '../../packages/core/src/ext4/inode.js';
import { mapBlock } from '../../packages/core/src/ext4/extents.js';
import { makeRng } from '../helpers/tree.js';
import { debugfsBatch, parseDebugfsStat, quoteDebugfsPath, requireE2fsprogs } from '../helpers/e2fs.js';
import { makeTempDir } from '../helpers/tmp.js';

const TOOL_ENV = { ...process.env, PATH: `/usr/sbin:/sbin:${process.env.PATH ?? '/usr/bin:/bin'}`, E2FSPROGS_FAKE_TIME: '1700000000', LC_ALL: 'C' };
const FIXED_TIME_S = 1_700_000_000;

export interface ImageMap {
  /** Path → inode number, for every path the tree holds. */
  ino: Map<string, number>;
  /** Extent tree blocks (ETB) of an extent-mapped inode, by path. */
  extentTreeBlocks: Map<string, number[]>;
  /** Physical blocks of a directory, in logical order (debugfs `blocks`). */
  dirBlocks: Map<string, number[]>;
  /** Indirect pointer blocks (IND/DIND/TIND) of a block-mapped inode, by path. */
  indirectBlocks: Map<string, { kind: string; block: number }[]>;
  /** Data blocks of a symlink or file, by path (debugfs `blocks`). */
  dataBlocks: Map<string, number[]>;
}

export interface CorruptionImage {
  name: 'A' | 'B';
  bytes: Uint8Array;
  blockSizeBytes: number;
  blocksCount: number;
  inodeSizeBytes: number;
  inodesPerGroup: number;
  descSizeBytes: number;
  groupCount: number;
  /** Inode table start of every group. */
  inodeTables: number[];
  blockBitmaps: number[];
  inodeBitmaps: number[];
  /** Group descriptor table: first block and block count. */
  gdtBlock: number;
  gdtBlocks: number;
  fsSeed: number;
  metadataCsum: boolean;
  map: ImageMap;
  /** The journal superblock's block (read at every mount), if the image has a journal. */
  journalSuperblock: number | undefined;
  /** Every file, dir and symlink path (relative, with leading '/'), and the expected file bytes. */
  files: Map<string, Buffer>;
  dirs: string[];
  symlinks: Map<string, string>;
}

function tool(name: string, args: string[], allowFailure = false): string {
  try {
    return execFileSync(name, args, { env: TOOL_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (error) {
    if (allowFailure) return '';
    throw error;
  }
}

function bytesOf(rng: () => number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(rng() * 256);
  return out;
}

function buildTreeA(root: string): void {
  const rng = makeRng(101);
  mkdirSync(path.join(root, 'dir/sub/deep/er'), { recursive: true });
  for (let i = 0; i < 5; i++) writeFileSync(path.join(root, `dir/f${i}.txt`), Buffer.alloc(1000 * (i + 1), 65 + i));
  writeFileSync(path.join(root, 'dir/sub/deep/er/leaf.bin'), bytesOf(rng, 20000));
  mkdirSync(path.join(root, 'hashed'));
  for (let i = 0; i < 400; i++) writeFileSync(path.join(root, `hashed/entry-${String(i).padStart(4, '0')}-${'n'.repeat(20)}`), `${i}`);
  // 12 one-block extents separated by holes: more than the root's 4 slots, so depth 1.
  const frag = Buffer.alloc(23 * 4096);
  for (let i = 0; i < 12; i++) frag.fill(i + 1, i * 2 * 4096, (i * 2 + 1) * 4096);
  writeFileSync(path.join(root, 'frag'), frag);
  symlinkSync('dir/f1.txt', path.join(root, 'fast'));
  symlinkSync(`${'./'.repeat(40)}dir/f2.txt`, path.join(root, 'slow'));
  writeFileSync(path.join(root, 'empty'), '');
  const sparse = Buffer.alloc(50 * 4096 + 3);
  sparse.write('end', 50 * 4096);
  writeFileSync(path.join(root, 'sparse'), sparse);
}

function buildTreeB(root: string): void {
  const rng = makeRng(202);
  mkdirSync(path.join(root, 'big'));
  for (let i = 0; i < 1000; i++) writeFileSync(path.join(root, `big/${String(i).padStart(5, '0')}${'x'.repeat(245)}`), '');
  writeFileSync(path.join(root, 'ind'), bytesOf(rng, 300 * 1024));
  writeFileSync(path.join(root, 'small'), 'hello');
  symlinkSync('y'.repeat(100), path.join(root, 'slowlink'));
}

/** Walk the host tree: relative paths of files (with bytes), dirs and symlinks; fixes times. */
function hostTree(root: string): Pick<CorruptionImage, 'files' | 'dirs' | 'symlinks'> {
  const files = new Map<string, Buffer>();
  const dirs: string[] = ['/'];
  const symlinks = new Map<string, string>();
  const visit = (rel: string): void => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      const relPath = `${rel}/${name}`;
      const full = path.join(root, relPath);
      const st = lstatSync(full);
      if (st.isSymbolicLink()) {
        symlinks.set(relPath, execFileSync('readlink', [full], { encoding: 'utf8' }).trimEnd());
        continue;
      }
      utimesSync(full, FIXED_TIME_S, FIXED_TIME_S);
      if (st.isDirectory()) { dirs.push(relPath); visit(relPath); } else files.set(relPath, readFileSync(full));
    }
  };
  visit('');
  utimesSync(root, FIXED_TIME_S, FIXED_TIME_S);
  return { files, dirs, symlinks };
}

function parseIndirect(text: string): { kind: string; block: number }[] {
  return [...text.matchAll(/\((T?D?IND)\):(\d+)/g)].map((m) => ({ kind: m[1], block: Number(m[2]) }));
}


async function mapImage(img: string, tree: Pick<CorruptionImage, 'files' | 'dirs' | 'symlinks'>): Promise<ImageMap> {
  const map: ImageMap = { ino: new Map(), extentTreeBlocks: new Map(), dirBlocks: new Map(), indirectBlocks: new Map(), dataBlocks: new Map() };
  // The names inside the big indexed dirs are empty files: nothing to map there.
  const all = [...tree.dirs, ...tree.files.keys(), ...tree.symlinks.keys()].filter((p) => !/^\/(big|hashed)\//.test(p));
  const commands = all.flatMap((p) => [`stat ${quoteDebugfsPath(p)}`, `blocks ${quoteDebugfsPath(p)}`]);
  const outputs = await debugfsBatch(img, commands);
  all.forEach((p, i) => {
    const st = parseDebugfsStat(outputs[2 * i]);
    map.ino.set(p, st.inode);
    if (st.extentTreeBlocks !== undefined && st.extentTreeBlocks.length > 0) map.extentTreeBlocks.set(p, st.extentTreeBlocks.map((e) => e.block));
    const ind = parseIndirect(st.text);
    if (ind.length > 0) map.indirectBlocks.set(p, ind);
    const blocks = outputs[2 * i + 1].trim().split(/\s+/).filter(Boolean).map(Number);
    if (st.fastLinkTarget !== undefined) return;
    // debugfs `blocks` lists extent tree blocks too; dirs are mapped by the engine (finish).
    if (!tree.dirs.includes(p)) map.dataBlocks.set(p, blocks);
  });
  return map;
}

async function finish(name: 'A' | 'B', img: string, tree: Pick<CorruptionImage, 'files' | 'dirs' | 'symlinks'>): Promise<CorruptionImage> {
  const device = await MemoryDevice.loadImage(img);
  const bytes = new Uint8Array(device.sizeBytes);
  device.readSync(0, bytes);
  const fs = await Ext4.mount(device, { readOnly: true });
  const x = fs.internals;
  const descPerBlock = x.blockSizeBytes / x.descSizeBytes;
  const image: CorruptionImage = {
    name, bytes,
    blockSizeBytes: x.blockSizeBytes,
    blocksCount: x.blocksCount,
    inodeSizeBytes: x.inodeSizeBytes,
    inodesPerGroup: x.inodesPerGroup,
    descSizeBytes: x.descSizeBytes,
    groupCount: x.groupCount,
    inodeTables: x.groups.map((g) => g.inodeTable),
    blockBitmaps: x.groups.map((g) => g.blockBitmap),
    inodeBitmaps: x.groups.map((g) => g.inodeBitmap),
    gdtBlock: x.sb.firstDataBlock + 1,
    gdtBlocks: Math.ceil(x.groupCount / descPerBlock),
    fsSeed: x.fsSeed,
    metadataCsum: x.metadataCsum,
    map: await mapImage(img, tree),
    journalSuperblock: x.sb.journalInum === 0 ? undefined : (await mapBlock(x, await readInode(x, x.sb.journalInum), 0)).pblk,
    ...tree,
  };
  for (const dir of tree.dirs) {
    const inode = await readInode(x, image.map.ino.get(dir) ?? 0);
    const blocks: number[] = [];
    for (let lblk = 0; lblk * x.blockSizeBytes < inode.size; lblk++) blocks.push((await mapBlock(x, inode, lblk)).pblk);
    image.map.dirBlocks.set(dir, blocks);
  }
  await fs.unmount();
  await device.close();
  return image;
}

async function buildImages(): Promise<{ A: CorruptionImage; B: CorruptionImage }> {
  await requireE2fsprogs();
  const temp = makeTempDir('ext4ts-corruption-');
  try {
    const rootA = path.join(temp.dir, 'a');
    const rootB = path.join(temp.dir, 'b');
    mkdirSync(rootA);
    mkdirSync(rootB);
    buildTreeA(rootA);
    buildTreeB(rootB);
    const treeA = hostTree(rootA);
    const treeB = hostTree(rootB);
    const imgA = path.join(temp.dir, 'A.img');
    const imgB = path.join(temp.dir, 'B.img');
    const fixed = ['-U', '0c4b0ec3-5df4-4d9b-ad8d-5d8110b0582a', '-E', 'hash_seed=72ec60fd-9dea-45ca-955c-529660aea996'];
    tool('mkfs.ext4', ['-q', '-F', '-b', '4096', ...fixed, '-d', rootA, imgA, '16M']);
    tool('mkfs.ext4', ['-q', '-F', '-b', '1024', '-g', '1024', '-N', '2048', '-O', '^extent,^64bit', ...fixed, '-d', rootB, imgB, '4M']);
    // -D indexes every directory; exit status 1 ("modified") is the expected result.
    tool('e2fsck', ['-fyD', imgA], true);
    tool('e2fsck', ['-fyD', imgB], true);
    tool('debugfs', ['-w', '-R', 'fallocate /sparse 5 8', imgA]);
    for (const img of [imgA, imgB]) {
      const check = execFileSyncStatus('e2fsck', ['-fn', img]);
      if (check !== 0) throw new Error(`corruption image ${img} is not e2fsck-clean (exit ${check})`);
    }
    return { A: await finish('A', imgA, treeA), B: await finish('B', imgB, treeB) };
  } finally {
    temp.cleanup();
  }
}

function execFileSyncStatus(name: string, args: string[]): number {
  try {
    execFileSync(name, args, { env: TOOL_ENV, stdio: 'ignore' });
    return 0;
  } catch (error) {
    return (error as { status?: number }).status ?? -1;
  }
}

let memo: Promise<{ A: CorruptionImage; B: CorruptionImage }> | undefined;

/** Both images, built once per test file. */
export function corruptionImages(): Promise<{ A: CorruptionImage; B: CorruptionImage }> {
  memo ??= buildImages();
  return memo;
}

export { format };
