// The shared interop fixture: a generated tree (tree.ts) put into an ext4 image by the real
// `mkfs.ext4 -d`, its directories indexed by `e2fsck -fyD`, and a few files given unwritten
// extents by debugfs `fallocate`. Built once per (seed, scale, generator source, e2fsprogs
// version) and cached on disk, so every test file of a run (and later runs) shares it.
//
// RULES FOR TESTS
// - Never modify fixture.imagePath or anything under fixture.treeRoot. A test that writes
//   copies the image first: `const copy = copyFixtureImage(fixture)` ... `copy.cleanup()`.
//   (Loading a cached fixture checks the image's mtime and size and refuses a changed one.)
// - Never loop-mount fixture.imagePath itself, even read-only: another vitest worker may be
//   running e2fsck on it, which then reports "is mounted". Mount a copyFixtureImage copy.
// - Compare against fixture.hostTree (the snapshot taken just before mke2fs ran), not a
//   fresh readHostTree(treeRoot): mke2fs's reads have since moved host file atimes.
//   expectedAfterMke2fs(fixture.hostTree) is what the image should show (tree.ts explains).
// - Files listed in fixture.unwritten read as zeros over their unwritten ranges, so their
//   contents (and sha256) still equal the host file's; only the extent maps differ.
//
// Cost (this machine, /dev/shm): small ~2 s; full ~30 s, almost all of it mke2fs inserting
// 20,000 names into a linear directory. Cache: EXT4TS_FIXTURE_CACHE, else
// <tmp>/ext4ts-fixture-cache (safe to delete at any time between runs).
import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BLOCK_SIZE_BYTES, debugfsFallocate, e2fsck, mke2fsFromDir, requireE2fsprogs } from './e2fs.js';
import { makeTempDir, tempBase, type TempDir } from './tmp.js';
import { generateTree, readHostTree, TREE_GENERATOR_VERSION, type HostEntry, type HostTree, type TreeManifest, type TreeScale } from './tree.js';

/** Bump when the fixture's build steps change (the cache key also hashes this file). */
export const FIXTURE_VERSION = 1;

export interface UnwrittenRange {
  path: string;
  /** Blocks [startBlock, endBlock) were fallocated (unwritten) by debugfs. */
  startBlock: number;
  endBlock: number;
  /** True when the whole range lies at or past EOF (i_size is unchanged by fallocate). */
  pastEof: boolean;
  what: string;
}

export interface FixtureImage {
  imagePath: string;
  treeRoot: string;
  manifest: TreeManifest;
  /** readHostTree(treeRoot) taken just before mke2fs ran: the oracle for the image. */
  hostTree: HostTree;
  unwritten: UnwrittenRange[];
  sizeBytes: number;
  inodeCount: number;
  e2fsprogsVersion: string;
  /** The cache key (also the cache directory's name suffix). */
  key: string;
}

export interface BuildFixtureOptions {
  seed: number;
  scale: TreeScale;
}

// Every planned range lies in a hole of its file (tree.ts addSparse), so fallocate creates
// exactly these unwritten extents.
const UNWRITTEN_PLAN: readonly Omit<UnwrittenRange, 'pastEof'>[] = [
  { path: 'sparse/unwritten-mid', startBlock: 5, endBlock: 9, what: 'middle of the hole [2, 14)' },
  { path: 'sparse/unwritten-eof', startBlock: 4, endBlock: 8, what: 'past EOF (size 10000: blocks [0, 3))' },
  { path: 'sparse/fragmented', startBlock: 1, endBlock: 2, what: 'one hole block between written blocks, depth-1 tree' },
  { path: 'sparse/hole-end', startBlock: 100, endBlock: 110, what: 'inside the trailing hole, before EOF' },
];

const CACHE_ENV = 'EXT4TS_FIXTURE_CACHE';
const LOCK_WAIT_MS_MAX = 15 * 60_000;
const LOCK_POLL_MS = 500;
const MiB = 1024 * 1024;

const memo = new Map<string, Promise<FixtureImage>>();

/** Builds (or loads from the cache) the fixture image for (seed, scale). */
export async function buildFixtureImage(options: BuildFixtureOptions): Promise<FixtureImage> {
  const version = await requireE2fsprogs();
  const key = fixtureKey(options, version);
  let pending = memo.get(key);
  if (!pending) {
    pending = loadOrBuild(options, version, key);
    memo.set(key, pending);
  }
  return pending;
}

/** A private, writable copy of the fixture image; cleanup() deletes it. */
export function copyFixtureImage(fixture: FixtureImage): TempDir & { imagePath: string } {
  const temp = makeTempDir('ext4ts-fixture-copy-');
  const imagePath = path.join(temp.dir, 'image.ext4');
  copyFileSync(fixture.imagePath, imagePath);
  return { ...temp, imagePath };
}

export function fixtureCacheRoot(): string {
  return process.env[CACHE_ENV] ?? path.join(tempBase({ freeBytesMin: 4 * 1024 * MiB }), 'ext4ts-fixture-cache');
}

function fixtureKey(options: BuildFixtureOptions, e2fsprogsVersion: string): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ FIXTURE_VERSION, TREE_GENERATOR_VERSION, ...options, e2fsprogsVersion }));
  // Hash the generator's own source, so editing it can never serve a stale image.
  for (const file of ['./tree.ts', './fixture-image.ts', './e2fs.ts']) {
    const source = fileURLToPath(new URL(file, import.meta.url));
    if (existsSync(source)) hash.update(readFileSync(source));
  }
  return hash.digest('hex').slice(0, 16);
}

// ---------------------------------------------------------------------------------
// Cache: final dir <root>/<scale>-<seed>-<key>/{image.ext4, tree/, fixture.json}

async function loadOrBuild(options: BuildFixtureOptions, version: string, key: string): Promise<FixtureImage> {
  const cacheRoot = fixtureCacheRoot();
  mkdirSync(cacheRoot, { recursive: true });
  const finalDir = path.join(cacheRoot, `${options.scale}-${options.seed}-${key}`);
  const deadline = Date.now() + LOCK_WAIT_MS_MAX;
  for (;;) {
    if (existsSync(path.join(finalDir, 'fixture.json'))) return loadFixture(finalDir);
    if (tryLock(`${finalDir}.lock`)) {
      try {
        if (existsSync(path.join(finalDir, 'fixture.json'))) return loadFixture(finalDir);
        pruneStale(cacheRoot, options, key);
        await buildInto(finalDir, options, version, key);
        return loadFixture(finalDir);
      } finally {
        unlinkSync(`${finalDir}.lock`);
      }
    }
    // Another vitest worker (another process) is building it: wait for its rename.
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${finalDir}.lock`);
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
}

/**
 * Removes fixtures of the same (scale, seed) built by older generator code, and work dirs
 * left by builders that died, so the cache (often in RAM, /dev/shm) does not grow per edit.
 */
function pruneStale(cacheRoot: string, options: BuildFixtureOptions, key: string): void {
  const prefix = `${options.scale}-${options.seed}-`;
  for (const name of readdirSync(cacheRoot)) {
    if (!name.startsWith(prefix) || name.startsWith(prefix + key) || name.endsWith('.lock')) continue;
    const builder = /\.tmp-(\d+)-/.exec(name);
    if (builder && processAlive(Number(builder[1]))) continue;
    if (!builder && existsSync(path.join(cacheRoot, `${name}.lock`))) continue;
    rmSync(path.join(cacheRoot, name), { recursive: true, force: true });
  }
}

/** Takes the lock file (O_EXCL), or breaks it when the process holding it is gone. */
function tryLock(lockPath: string): boolean {
  try {
    const fd = openSync(lockPath, 'wx');
    writeSync(fd, String(process.pid));
    closeSync(fd);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const holder = Number(readFileSafe(lockPath));
  if (Number.isInteger(holder) && holder > 0 && !processAlive(holder)) rmSync(lockPath, { force: true });
  return false;
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface FixtureRecord {
  manifest: TreeManifest;
  hostTree: [string, Record<string, unknown>][];
  unwritten: UnwrittenRange[];
  sizeBytes: number;
  inodeCount: number;
  e2fsprogsVersion: string;
  key: string;
  imageMtimeMs: number;
  imageSizeBytes: number;
}

const BIGINT_FIELDS = ['mtimeNs', 'atimeNs', 'ctimeNs'] as const;

function loadFixture(dir: string): FixtureImage {
  const record = JSON.parse(readFileSync(path.join(dir, 'fixture.json'), 'utf8')) as FixtureRecord;
  const imagePath = path.join(dir, 'image.ext4');
  const s = statSync(imagePath);
  if (s.mtimeMs !== record.imageMtimeMs || s.size !== record.imageSizeBytes) {
    throw new Error(`cached fixture image ${imagePath} was modified (tests must copyFixtureImage first); delete ${dir}`);
  }
  const hostTree: HostTree = new Map();
  for (const [rel, raw] of record.hostTree) {
    const entry = { ...raw } as unknown as HostEntry;
    for (const field of BIGINT_FIELDS) entry[field] = BigInt(raw[field] as string);
    hostTree.set(rel, entry);
  }
  const { manifest, unwritten, sizeBytes, inodeCount, e2fsprogsVersion, key } = record;
  return { imagePath, treeRoot: path.join(dir, 'tree'), manifest, hostTree, unwritten, sizeBytes, inodeCount, e2fsprogsVersion, key };
}

// ---------------------------------------------------------------------------------
// Building

async function buildInto(finalDir: string, options: BuildFixtureOptions, version: string, key: string): Promise<void> {
  const workDir = `${finalDir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(workDir);
  try {
    const treeRoot = path.join(workDir, 'tree');
    mkdirSync(treeRoot);
    const manifest = await generateTree(treeRoot, options);
    // Snapshot before mke2fs reads the files (see "the atime trap" in tree.ts).
    const hostTree = readHostTree(treeRoot);
    const imagePath = path.join(workDir, 'image.ext4');
    const { sizeBytes, inodeCount } = imageGeometry(manifest);
    await mke2fsFromDir(imagePath, treeRoot, { sizeBytes, extraArgs: ['-N', String(inodeCount)] });
    await indexDirectories(imagePath);
    const unwritten = await addUnwrittenExtents(imagePath, manifest);
    const check = await e2fsck(imagePath);
    if (!check.clean) throw new Error(`fixture image is not e2fsck clean:\n${check.output}`);
    const s = statSync(imagePath);
    const record: FixtureRecord = {
      manifest, hostTree: [...hostTree].map(([rel, e]) => [rel, serializeEntry(e)]), unwritten, sizeBytes, inodeCount,
      e2fsprogsVersion: version, key, imageMtimeMs: s.mtimeMs, imageSizeBytes: s.size,
    };
    writeFileSync(path.join(workDir, 'fixture.json'), JSON.stringify(record));
    // Atomic publish: readers look for <finalDir>/fixture.json, which appears with the rename.
    renameSync(workDir, finalDir);
  } catch (error) {
    rmSync(workDir, { recursive: true, force: true });
    throw error;
  }
}

function serializeEntry(entry: HostEntry): Record<string, unknown> {
  const out: Record<string, unknown> = { ...entry };
  for (const field of BIGINT_FIELDS) out[field] = entry[field].toString();
  return out;
}

/**
 * Size with headroom: data blocks (each range may straddle one extra block), slow symlink
 * blocks, worst-case directory blocks (every name 255 bytes), inode tables, 30% slack and
 * 64 MiB for the journal and fixed metadata.
 */
function imageGeometry(manifest: TreeManifest): { sizeBytes: number; inodeCount: number } {
  let blocks = 0;
  for (const e of manifest.entries) {
    for (const [, lengthBytes] of [...(e.dataRanges ?? []), ...(e.zeroRanges ?? [])]) {
      blocks += Math.ceil(lengthBytes / BLOCK_SIZE_BYTES) + 1;
    }
    if (e.kind === 'symlink') blocks += 1;
  }
  for (const u of UNWRITTEN_PLAN) blocks += u.endBlock - u.startBlock;
  const inodes = manifest.entries.filter((e) => e.kind !== 'hardlink').length + 16;
  const inodeCount = Math.max(4096, Math.ceil(inodes * 1.25));
  const dirBytes = manifest.entries.length * (8 + 256);
  const rawBytes = blocks * BLOCK_SIZE_BYTES + dirBytes + inodeCount * 256;
  const sizeBytes = Math.ceil((rawBytes * 1.3 + 64 * MiB) / (4 * MiB)) * 4 * MiB;
  return { sizeBytes, inodeCount };
}

/** mke2fs -d writes linear directories; `e2fsck -fyD` builds htree indexes for big ones. */
async function indexDirectories(imagePath: string): Promise<void> {
  const result = await e2fsck(imagePath, ['-fyD']);
  // 0 = nothing to fix, 1 = "errors corrected" (here: directories optimized).
  if (result.exitCode !== 0 && result.exitCode !== 1) {
    throw new Error(`e2fsck -fyD failed (exit ${result.exitCode}):\n${result.output}`);
  }
}

async function addUnwrittenExtents(imagePath: string, manifest: TreeManifest): Promise<UnwrittenRange[]> {
  const sizes = new Map(manifest.entries.map((e) => [e.path, e.sizeBytes ?? 0]));
  const done: UnwrittenRange[] = [];
  for (const plan of UNWRITTEN_PLAN) {
    const sizeBytes = sizes.get(plan.path);
    if (sizeBytes === undefined) throw new Error(`UNWRITTEN_PLAN: ${plan.path} is not in the tree`);
    await debugfsFallocate(imagePath, `/${plan.path}`, plan.startBlock, plan.endBlock);
    const eofBlock = Math.ceil(sizeBytes / BLOCK_SIZE_BYTES);
    done.push({ ...plan, pastEof: plan.startBlock >= eofBlock });
  }
  return done;
}
