// A seeded, deterministic source tree on the host filesystem (generateTree) and a reader
// of any tree into comparable records (readHostTree), for interop tests: the tree is fed
// to `mkfs.ext4 -d`, and what ext4ts (or the kernel) shows of the image is compared with it.
//
// WHAT `mke2fs -d` (e2fsprogs 1.47.0) PRESERVES — found by experiment on this machine
// (debugfs stat of every kind of entry, and a read-only kernel loop mount):
// - Regular files, directories, symlinks and hard links are copied; file contents exactly.
// - Mode: all 12 permission bits (setuid/setgid/sticky, 0000) for files and dirs.
//   Symlinks are always 0777. uid/gid: full 32 bits (70000, 4000000000 survive).
// - Times: atime, mtime and ctime are copied from lstat as SECONDS ONLY: the extra time
//   fields are written as 0, so nanoseconds are lost (read back as .000000000) and the
//   epoch bits are 0. Consequence: the 32-bit seconds are read as signed, so times before
//   1970 (down to 1901-12-13) survive to the second, but times after 2038-01-19 WRAP
//   (2050-06-01 reads back as 1914-04-25). See mke2fsStoredTimeNs().
//   crtime is the time mke2fs ran. The ctime copied is the host's ctime (the time the tree
//   was generated), not the mkfs time.
// - The image's root directory does NOT take the source root's mode, owner or times: it is
//   0755 root:root with mkfs-time times; lost+found is added. readHostTree omits the root.
// - Hard links: preserved (one inode, correct link count).
// - Holes: preserved, and more: mke2fs skips every all-zero 4 KiB block, so a non-sparse
//   file with a zero block becomes sparse in the image (st_blocks differs from the host;
//   contents are identical). An all-zero file has no extents at all.
// - Symlinks: < 60 bytes are fast (target in i_block, no EXTENTS_FL); exactly 60 and longer
//   are slow (one extent-mapped block). Targets up to 4095 bytes are copied.
// - Large directories are NOT indexed: mke2fs writes linear directories (no INDEX_FL, no
//   dx_root) however many entries they have. buildFixtureImage runs `e2fsck -fyD` to build
//   the htree indexes. Directory sizes differ from the host's (tmpfs reports its own).
//
// THE ATIME TRAP. Reading a file, a directory (readdir) or a symlink (readlink) may update
// its host atime ("relatime": when atime <= mtime, atime <= ctime, or atime is a day old).
// mke2fs lstat()s each entry before reading it, so the image holds the pre-read atime, but
// afterwards the host tree no longer matches the image. Therefore:
// - readHostTree lstat()s every entry before reading it and hashes files with O_NOATIME.
// - generateTree gives directories and symlinks atimes that relatime never updates (after
//   ctime and mtime, in the future: 2037), so readdir/readlink leave them alone.
// - buildFixtureImage snapshots readHostTree BEFORE mke2fs runs and returns that snapshot;
//   tests compare against the snapshot, never a fresh read of treeRoot (mke2fs's reads have
//   moved regular files' atimes since). Regular files keep any atime (pre-1970, post-2038).
//
// Nanoseconds: Node's utimes keeps microseconds only, so most entries have times with
// microsecond fractions; EXACT_NS_COUNT files get exact nanosecond times via `touch -d @s.n`.
import { createCipheriv, createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  linkSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  symlinkSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { seededRandom } from '../../packages/core/src/wasm/testing.js';
import { run } from './run.js';

/** Bump when the generated tree changes shape (the fixture cache also hashes this file). */
export const TREE_GENERATOR_VERSION = 1;

export type TreeScale = 'small' | 'full';

export interface GenerateTreeOptions {
  seed: number;
  scale: TreeScale;
}

export type EntryKind = 'dir' | 'file' | 'symlink';

/** A requested time; the host may round it (see readHostTree for what it actually holds). */
export interface TimeSpec {
  seconds: number;
  nanoseconds: number;
}

/** One name the generator created (hard links have one spec per name). */
export interface EntrySpec {
  path: string;
  kind: EntryKind | 'hardlink';
  /** Permission bits (0o7777 mask); symlinks and hard links carry their target's. */
  mode: number;
  uid: number;
  gid: number;
  atime?: TimeSpec;
  mtime?: TimeSpec;
  /** Regular files: size and the byte ranges holding data; the rest is a hole (zeros). */
  sizeBytes?: number;
  dataRanges?: [offsetBytes: number, lengthBytes: number][];
  /** Ranges written as explicit zeros (allocated on the host, not holes). */
  zeroRanges?: [offsetBytes: number, lengthBytes: number][];
  /** Symlinks: target. Hard links: the path (relative to root) of the first name. */
  target?: string;
}

export interface TreeManifest {
  seed: number;
  scale: TreeScale;
  generatorVersion: number;
  entries: EntrySpec[];
  /** Paths by what they exercise, for tests that want one of a kind. */
  groups: {
    empty: string[];
    tiny: string[];
    size4095: string[];
    size4096: string[];
    size4097: string[];
    multiMiB: string[];
    sparse: { path: string; what: string }[];
    /** Non-sparse files with an all-zero 4 KiB block (mke2fs turns it into a hole). */
    zeroBlock: string[];
    fastSymlinks: string[];
    slowSymlinks: string[];
    danglingSymlinks: string[];
    /** Each inner array: the names of one inode, first name first. */
    hardLinkGroups: string[][];
    specialModes: string[];
    bigUidGid: string[];
    pre1970: string[];
    post2038: string[];
    exactNs: string[];
    utf8Names: string[];
  };
  bigDir: { path: string; entryCount: number };
  deepDir: { path: string; depth: number };
  /** Sum of file sizes (apparent) and of data bytes actually written. */
  totalSizeBytes: number;
  dataBytes: number;
}

// ---------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32 (the project's one seeded PRNG, wasm/testing.ts) scaled to [0, 1). */
export function makeRng(seed: number): () => number {
  const next = seededRandom(seed);
  return () => next() / 4294967296;
}

type Rng = () => number;
const randInt = (rng: Rng, min: number, max: number): number => min + Math.floor(rng() * (max - min + 1));
const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)];

/**
 * File contents: an AES-128-CTR keystream keyed by (seed, path), so bytes are deterministic,
 * incompressible, never contain an all-zero block by accident, and cost ~1 GB/s to make.
 */
export function contentBytes(seed: number, relPath: string, offsetBytes: number, lengthBytes: number): Buffer {
  const key = createHash('sha256').update(`ext4ts-tree:${seed}:${relPath}`).digest();
  const blockIndex = Math.floor(offsetBytes / 16);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(blockIndex), 8);
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), iv);
  const skip = offsetBytes - blockIndex * 16;
  const stream = cipher.update(Buffer.alloc(skip + lengthBytes));
  return stream.subarray(skip);
}

// ---------------------------------------------------------------------------------
// Times

const SECONDS_2000 = 946_684_800;
const SECONDS_2030 = 1_893_456_000;
const SECONDS_2037 = 2_114_380_800;
const SECONDS_2038_MAX = 2_147_483_647;
const SECONDS_1901_MIN = -2_147_483_648;
const SECONDS_2200 = 7_258_118_400;
// Node's utimes keeps microseconds; a fraction of k/2^14 s is exact in a double, so the
// value we ask for is the value libuv hands the kernel (truncated to microseconds).
const FRACTION_STEPS = 16384;

function fractionTime(rng: Rng, seconds: number): TimeSpec {
  const steps = randInt(rng, 0, FRACTION_STEPS - 1);
  return { seconds, nanoseconds: Math.floor((steps * 1e9) / FRACTION_STEPS) };
}

type TimeClass = 'normal' | 'pre1970' | 'post2038' | 'epoch' | 'max32';

function timeOfClass(rng: Rng, timeClass: TimeClass): TimeSpec {
  switch (timeClass) {
    case 'pre1970':
      return fractionTime(rng, randInt(rng, SECONDS_1901_MIN, -1));
    case 'post2038':
      return fractionTime(rng, randInt(rng, SECONDS_2038_MAX + 1, SECONDS_2200));
    case 'epoch':
      return { seconds: 0, nanoseconds: 0 };
    case 'max32':
      return { seconds: SECONDS_2038_MAX, nanoseconds: 0 };
    default:
      return fractionTime(rng, randInt(rng, SECONDS_2000, SECONDS_2030));
  }
}

function randomTimeClass(rng: Rng): TimeClass {
  const r = rng();
  if (r < 0.1) return 'pre1970';
  if (r < 0.2) return 'post2038';
  if (r < 0.22) return 'epoch';
  if (r < 0.24) return 'max32';
  return 'normal';
}

/** Directory and symlink times: atime in 2037 (after ctime and mtime, so relatime keeps it). */
function stableTimes(rng: Rng): { atime: TimeSpec; mtime: TimeSpec } {
  const mtimeClass = rng() < 0.15 ? 'pre1970' : 'normal';
  return {
    atime: fractionTime(rng, randInt(rng, SECONDS_2037, SECONDS_2037 + 300 * 86400)),
    mtime: timeOfClass(rng, mtimeClass),
  };
}

// ---------------------------------------------------------------------------------
// Building the spec list (pure: no I/O)

const SPECIAL_MODES = [0o000, 0o400, 0o4755, 0o2755, 0o1777, 0o6755, 0o7777, 0o4000, 0o2711, 0o1644, 0o777, 0o600];
const BIG_IDS = [65535, 65536, 70000, 1_000_000, 2_147_483_648, 4_000_000_000, 4_294_967_294];
const UTF8_NAMES = ['héllo', 'naïve-café', '日本語のファイル', 'Ελληνικά', 'emoji-😀🎉', 'ключ', 'עברית', 'ü'];

const SCALES = {
  small: { fileGroups: 2, filesPerGroup: 80, bigDirEntries: 2000, deepDepth: 32, multiMiB: [1_048_576 + 1, 1_572_864] },
  full: {
    fileGroups: 30,
    filesPerGroup: 100,
    bigDirEntries: 20000,
    deepDepth: 40,
    multiMiB: [1_048_576, 2_097_152 + 123, 4_194_304 - 1, 6_291_456],
  },
} as const;

class SpecBuilder {
  readonly entries: EntrySpec[] = [];
  readonly groups: TreeManifest['groups'] = {
    empty: [], tiny: [], size4095: [], size4096: [], size4097: [], multiMiB: [], sparse: [], zeroBlock: [],
    fastSymlinks: [], slowSymlinks: [], danglingSymlinks: [], hardLinkGroups: [], specialModes: [],
    bigUidGid: [], pre1970: [], post2038: [], exactNs: [], utf8Names: [],
  };
  constructor(readonly rng: Rng) {}

  dir(p: string, options: { mode?: number; uid?: number; gid?: number } = {}): void {
    this.entries.push({ path: p, kind: 'dir', mode: options.mode ?? 0o755, uid: options.uid ?? 0, gid: options.gid ?? 0,
      ...stableTimes(this.rng) });
  }

  file(p: string, sizeBytes: number, dataRanges: [number, number][] = [[0, sizeBytes]]): EntrySpec {
    const rng = this.rng;
    const atime = timeOfClass(rng, randomTimeClass(rng));
    const mtime = timeOfClass(rng, randomTimeClass(rng));
    const spec: EntrySpec = { path: p, kind: 'file', mode: 0o644, uid: 0, gid: 0, atime, mtime, sizeBytes,
      dataRanges: dataRanges.filter(([, length]) => length > 0) };
    this.entries.push(spec);
    this.noteTimes(p, atime, mtime);
    return spec;
  }

  symlink(p: string, target: string): void {
    this.entries.push({ path: p, kind: 'symlink', mode: 0o777, uid: 0, gid: 0, target, ...stableTimes(this.rng) });
    const length = Buffer.byteLength(target);
    (length < 60 ? this.groups.fastSymlinks : this.groups.slowSymlinks).push(p);
  }

  hardlink(p: string, first: EntrySpec): void {
    this.entries.push({ path: p, kind: 'hardlink', mode: first.mode, uid: first.uid, gid: first.gid, target: first.path });
  }

  private noteTimes(p: string, atime: TimeSpec, mtime: TimeSpec): void {
    if (atime.seconds < 0 || mtime.seconds < 0) this.groups.pre1970.push(p);
    if (atime.seconds > SECONDS_2038_MAX || mtime.seconds > SECONDS_2038_MAX) this.groups.post2038.push(p);
  }
}

function ordinaryFileSize(rng: Rng, scale: TreeScale): number {
  const r = rng();
  if (r < 0.15) return 0;
  if (r < 0.55) return randInt(rng, 1, 100);
  if (r < 0.65) return 4096;
  if (r < 0.7) return 4095;
  if (r < 0.75) return 4097;
  if (r < 0.98) return randInt(rng, 101, 65536);
  return scale === 'full' ? randInt(rng, 65537, 1_048_576) : randInt(rng, 65537, 200_000);
}

function noteSize(b: SpecBuilder, p: string, sizeBytes: number): void {
  if (sizeBytes === 0) b.groups.empty.push(p);
  else if (sizeBytes <= 100) b.groups.tiny.push(p);
  else if (sizeBytes === 4095) b.groups.size4095.push(p);
  else if (sizeBytes === 4096) b.groups.size4096.push(p);
  else if (sizeBytes === 4097) b.groups.size4097.push(p);
}

function addOrdinaryFiles(b: SpecBuilder, scale: TreeScale): EntrySpec[] {
  const { fileGroups, filesPerGroup } = SCALES[scale];
  const files: EntrySpec[] = [];
  b.dir('files');
  for (let g = 0; g < fileGroups; g++) {
    const dir = `files/g${String(g).padStart(2, '0')}`;
    b.dir(dir);
    for (let i = 0; i < filesPerGroup; i++) {
      const p = `${dir}/f${i}`;
      const sizeBytes = ordinaryFileSize(b.rng, scale);
      const spec = b.file(p, sizeBytes);
      noteSize(b, p, sizeBytes);
      decorateOwnership(b, spec);
      files.push(spec);
    }
  }
  return files;
}

/** Some files get special modes and large ids (chown runs before chmod: it clears set-id bits). */
function decorateOwnership(b: SpecBuilder, spec: EntrySpec): void {
  const r = b.rng();
  if (r < 0.1) {
    spec.mode = pick(b.rng, SPECIAL_MODES);
    b.groups.specialModes.push(spec.path);
  } else if (r < 0.3) {
    spec.mode = pick(b.rng, [0o600, 0o640, 0o664, 0o666, 0o700, 0o755]);
  }
  if (b.rng() < 0.15) {
    spec.uid = pick(b.rng, BIG_IDS);
    spec.gid = pick(b.rng, [0, 100, ...BIG_IDS]);
    b.groups.bigUidGid.push(spec.path);
  }
}

function addMultiMiB(b: SpecBuilder, scale: TreeScale): void {
  b.dir('big');
  SCALES[scale].multiMiB.forEach((sizeBytes, i) => {
    const p = `big/m${i}`;
    b.file(p, sizeBytes);
    b.groups.multiMiB.push(p);
  });
}

const KiB = 1024;
const MiB = 1024 * 1024;

function addSparse(b: SpecBuilder, scale: TreeScale): void {
  b.dir('sparse');
  const sparse = (name: string, what: string, sizeBytes: number, ranges: [number, number][]): void => {
    b.file(`sparse/${name}`, sizeBytes, ranges);
    b.groups.sparse.push({ path: `sparse/${name}`, what });
  };
  sparse('hole-start', 'hole at the start, data at the end', 1 * MiB, [[MiB - 8 * KiB - 100, 8 * KiB + 100]]);
  sparse('hole-middle', 'data, hole, data', 1 * MiB, [[0, 64 * KiB], [960 * KiB, 64 * KiB]]);
  sparse('hole-end', 'data then a hole to EOF (truncate)', 2 * MiB, [[0, 10000]]);
  sparse('hole-only', 'all hole (truncate only)', 5 * MiB, []);
  sparse('unaligned', 'tiny writes at unaligned offsets', 1 * MiB, [[12345, 3], [500_001, 5000], [MiB - 1, 1]]);
  const islands: [number, number][] = [];
  for (let block = 0; block < 48; block += 2) islands.push([block * 4096, 4096]);
  sparse('fragmented', '24 one-block islands: more than 4 extents, extent tree depth 1', 50 * 4096, islands);
  // Targets of buildFixtureImage's debugfs fallocate (see UNWRITTEN_PLAN in fixture-image.ts).
  sparse('unwritten-mid', 'hole in blocks [2, 14) for unwritten extents', 16 * 4096, [[0, 8192], [14 * 4096, 8192]]);
  sparse('unwritten-eof', '10000 bytes; unwritten extents past EOF', 10000, [[0, 10000]]);
  const hugeHoleBytes = scale === 'full' ? 64 * MiB : 8 * MiB;
  sparse('huge-hole', 'large hole with one block of data in the middle', hugeHoleBytes, [[hugeHoleBytes / 2, 4096]]);
  // A non-sparse file whose middle block is zeros: written as data, but mke2fs skips it.
  const zeroBlock = b.file('sparse/zero-block', 3 * 4096, [[0, 4096], [2 * 4096, 4096]]);
  zeroBlock.zeroRanges = [[4096, 4096]];
  b.groups.zeroBlock.push(zeroBlock.path);
}

/**
 * Names of the big directory: 8 UTF-8 names, 18 one-byte names, 255-byte ASCII and UTF-8
 * names, one with a space, then unique names mostly short (80% up to 16 bytes, 15% up to
 * 64, 5% up to 255). Short names on purpose: mke2fs -d inserts into a linear directory,
 * scanning every block per entry (quadratic), so the directory's block count is the cost
 * of the build (20,000 entries of ~128-byte names took 70 s; mostly short names ~5x less).
 */
function bigDirNameLength(rng: Rng): number {
  const r = rng();
  if (r < 0.8) return randInt(rng, 2, 16);
  return r < 0.95 ? randInt(rng, 17, 64) : randInt(rng, 65, 255);
}

function bigDirName(rng: Rng, index: number): string {
  if (index < UTF8_NAMES.length) return UTF8_NAMES[index];
  if (index < 26) return String.fromCharCode(97 + index - UTF8_NAMES.length); // 'a'..'r'
  if (index === 30) return '日'.repeat(85); // 255 bytes of UTF-8
  if (index === 31) return 'with space';
  const prefix = `e${index.toString(36)}_`;
  const lengthBytes = index < 30 ? 255 : bigDirNameLength(rng);
  return prefix + 'x'.repeat(Math.max(0, lengthBytes - prefix.length));
}

function addBigDir(b: SpecBuilder, scale: TreeScale): { path: string; entryCount: number } {
  const entryCount = SCALES[scale].bigDirEntries;
  b.dir('bigdir');
  const used = new Set<string>();
  for (let i = 0; i < entryCount; i++) {
    const name = bigDirName(b.rng, i);
    if (used.has(name)) throw new Error(`bigDirName: duplicate ${name}`);
    used.add(name);
    // Mostly empty files (cheap inodes); every 97th holds a few bytes.
    b.file(`bigdir/${name}`, i % 97 === 0 ? randInt(b.rng, 1, 50) : 0);
    if (i < 8 || i === 30) b.groups.utf8Names.push(`bigdir/${name}`);
  }
  return { path: 'bigdir', entryCount };
}

function addDeep(b: SpecBuilder, scale: TreeScale): { path: string; depth: number } {
  const depth = SCALES[scale].deepDepth;
  let p = 'deep';
  b.dir(p);
  for (let level = 0; level < depth; level++) {
    p += `/d${String(level).padStart(2, '0')}`;
    b.dir(p);
  }
  b.file(`${p}/leaf`, 777);
  return { path: p, depth: depth + 1 };
}

function addSymlinks(b: SpecBuilder): void {
  b.dir('links');
  const length = (n: number): string => 't'.repeat(n);
  for (const n of [1, 2, 30, 58, 59, 60, 61, 100, 1000, 4000, 4095]) b.symlink(`links/len${n}`, length(n));
  b.symlink('links/to-file', '../files/g00/f0');
  b.symlink('links/to-dir', '../deep');
  b.symlink('links/absolute', '/etc/hostname');
  b.symlink('links/utf8', '../bigdir/日本語のファイル');
  b.symlink('links/slow-path', `../${'s'.repeat(70)}/${'q'.repeat(20)}`);
  for (const [name, target] of [['dangling', 'does/not/exist'], ['dangling-slow', `missing/${'m'.repeat(80)}`]]) {
    b.symlink(`links/${name}`, target);
    b.groups.danglingSymlinks.push(`links/${name}`);
  }
}

function addHardLinks(b: SpecBuilder, files: EntrySpec[]): void {
  b.dir('hard');
  b.dir('hard/a');
  b.dir('hard/b');
  const linkDirs = ['hard/a', 'hard/b', 'files/g00', 'links'];
  const count = Math.min(12, files.length);
  for (let i = 0; i < count; i++) {
    const first = files[Math.floor((i * files.length) / count)];
    const names = [first.path];
    const extra = randInt(b.rng, 1, 4); // 2-5 names in all
    for (let k = 0; k < extra; k++) {
      const name = `${linkDirs[(i + k) % linkDirs.length]}/h${i}-${k}`;
      b.hardlink(name, first);
      names.push(name);
    }
    b.groups.hardLinkGroups.push(names);
  }
}

function addModeDirs(b: SpecBuilder): void {
  b.dir('modes');
  const dirModes = [0o000, 0o1777, 0o2775, 0o700, 0o555, 0o7755];
  dirModes.forEach((mode, i) => {
    const p = `modes/d${mode.toString(8).padStart(4, '0')}`;
    b.dir(p, { mode, uid: i % 2 === 0 ? 0 : 70000, gid: i % 3 === 0 ? 0 : 4_000_000_000 });
    b.groups.specialModes.push(p);
    b.file(`${p}/inside`, 10);
  });
}

/** Picks EXACT_NS_COUNT files (and one dir, one symlink) for exact nanosecond times. */
const EXACT_NS_COUNT = 8;

function addExactNs(b: SpecBuilder, files: EntrySpec[]): void {
  for (let i = 0; i < EXACT_NS_COUNT && i < files.length; i++) {
    const spec = files[(i * 7919) % files.length];
    if (b.groups.exactNs.includes(spec.path)) continue;
    const nsA = randInt(b.rng, 1, 999_999_999);
    const nsM = randInt(b.rng, 1, 999_999_999);
    spec.atime = { seconds: spec.atime?.seconds ?? 0, nanoseconds: nsA };
    spec.mtime = { seconds: spec.mtime?.seconds ?? 0, nanoseconds: nsM };
    b.groups.exactNs.push(spec.path);
  }
}

export function buildSpecs(options: GenerateTreeOptions): TreeManifest {
  const b = new SpecBuilder(makeRng(options.seed));
  const files = addOrdinaryFiles(b, options.scale);
  addMultiMiB(b, options.scale);
  addSparse(b, options.scale);
  const bigDir = addBigDir(b, options.scale);
  const deepDir = addDeep(b, options.scale);
  addSymlinks(b);
  addHardLinks(b, files);
  addModeDirs(b);
  addExactNs(b, files.filter((f) => (f.atime?.seconds ?? 0) >= 0 && (f.mtime?.seconds ?? 0) >= 0));
  const fileSpecs = b.entries.filter((e) => e.kind === 'file');
  return {
    seed: options.seed,
    scale: options.scale,
    generatorVersion: TREE_GENERATOR_VERSION,
    entries: b.entries,
    groups: b.groups,
    bigDir,
    deepDir,
    totalSizeBytes: fileSpecs.reduce((sum, e) => sum + (e.sizeBytes ?? 0), 0),
    dataBytes: fileSpecs.reduce((sum, e) => sum + (e.dataRanges ?? []).reduce((s, [, n]) => s + n, 0), 0),
  };
}

// ---------------------------------------------------------------------------------
// Materializing the specs

function writeFileSpec(root: string, seed: number, spec: EntrySpec): void {
  const fd = openSync(path.join(root, spec.path), 'wx', 0o600);
  try {
    for (const [offsetBytes, lengthBytes] of spec.dataRanges ?? []) {
      const data = contentBytes(seed, spec.path, offsetBytes, lengthBytes);
      writeSync(fd, data, 0, data.length, offsetBytes);
    }
    for (const [offsetBytes, lengthBytes] of spec.zeroRanges ?? []) {
      writeSync(fd, Buffer.alloc(lengthBytes), 0, lengthBytes, offsetBytes);
    }
  } finally {
    closeSync(fd);
  }
  // truncate sets the size past the last data range, leaving a hole at the end.
  truncateSync(path.join(root, spec.path), spec.sizeBytes ?? 0);
}

function createEntries(root: string, manifest: TreeManifest): void {
  for (const spec of manifest.entries) {
    const full = path.join(root, spec.path);
    if (spec.kind === 'dir') mkdirSync(full);
    else if (spec.kind === 'file') writeFileSpec(root, manifest.seed, spec);
    else if (spec.kind === 'symlink') symlinkSync(spec.target ?? '', full);
    else linkSync(path.join(root, spec.target ?? ''), full);
  }
}

function timeArg(t: TimeSpec): string {
  // A string, not a number: Node replaces negative numeric times with "now".
  return String(t.seconds + t.nanoseconds / 1e9);
}

function applyAttributes(root: string, manifest: TreeManifest): void {
  for (const spec of manifest.entries) {
    if (spec.kind === 'hardlink') continue;
    const full = path.join(root, spec.path);
    lchownSync(full, spec.uid, spec.gid); // before chmod: chown clears setuid/setgid
    if (spec.kind !== 'symlink') chmodSync(full, spec.mode);
    if (spec.atime && spec.mtime) lutimesSync(full, timeArg(spec.atime), timeArg(spec.mtime));
  }
}

async function applyExactNs(root: string, manifest: TreeManifest): Promise<void> {
  const bySpec = new Map(manifest.entries.map((e) => [e.path, e]));
  for (const p of manifest.groups.exactNs) {
    const spec = bySpec.get(p);
    if (!spec?.atime || !spec.mtime) continue;
    const full = path.join(root, p);
    const ns = (t: TimeSpec): string => `@${t.seconds}.${String(t.nanoseconds).padStart(9, '0')}`;
    await run('touch', ['-h', '-a', '-d', ns(spec.atime), full], { timeoutMs: 10_000 });
    await run('touch', ['-h', '-m', '-d', ns(spec.mtime), full], { timeoutMs: 10_000 });
  }
}

/**
 * Creates the tree under root (which must exist and be empty). Needs root privileges for
 * chown; ~1 s small, a few seconds full. Deterministic for a seed except ctimes.
 */
export async function generateTree(root: string, options: GenerateTreeOptions): Promise<TreeManifest> {
  if (readdirSync(root).length !== 0) throw new Error(`generateTree: ${root} is not empty`);
  const manifest = buildSpecs(options);
  createEntries(root, manifest);
  applyAttributes(root, manifest);
  await applyExactNs(root, manifest);
  return manifest;
}

// ---------------------------------------------------------------------------------
// Reading a tree

export type HostEntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

export interface HostEntry {
  type: HostEntryType;
  /** Permission bits only (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** st_size (directory sizes are filesystem-specific; diffTrees ignores them). */
  size: number;
  /** st_blocks, 512-byte units. */
  blocks: number;
  nlink: number;
  /** Same value for all names of one inode: the smallest of its relative paths in this tree. */
  linkGroup: string;
  mtimeNs: bigint;
  atimeNs: bigint;
  ctimeNs: bigint;
  target?: string;
  sha256?: string;
}

export type HostTree = Map<string, HostEntry>;

export function entryType(stats: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean }): HostEntryType {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isSocket()) return 'socket';
  return stats.isCharacterDevice() ? 'chardev' : 'blockdev';
}

const HASH_CHUNK_BYTES = 1024 * 1024;

function openNoAtime(full: string): number {
  try {
    return openSync(full, constants.O_RDONLY | constants.O_NOATIME);
  } catch (error) {
    // O_NOATIME needs ownership or CAP_FOWNER; without it the atime may move.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
    return openSync(full, constants.O_RDONLY);
  }
}

/** sha256 of a file's bytes, read with O_NOATIME so the host atime does not move. */
export function sha256File(full: string): string {
  const hash = createHash('sha256');
  const fd = openNoAtime(full);
  try {
    const buffer = Buffer.alloc(HASH_CHUNK_BYTES);
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * Reads every entry under root (root itself excluded) into a map keyed by relative path
 * ('/'-separated). Each entry is lstat()ed before it is read (readdir, readlink, hash), so a
 * single call sees the atimes as they were; files are hashed once per inode.
 */
export function readHostTree(root: string): HostTree {
  const tree: HostTree = new Map();
  const inodeKey = new Map<string, string>(); // path -> dev:ino
  const hashes = new Map<string, string>(); // dev:ino -> sha256
  const walk = (relDir: string): void => {
    const names = readdirSync(path.join(root, relDir)).sort();
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const full = path.join(root, rel);
      const s = lstatSync(full, { bigint: true });
      const type = entryType(s);
      const key = `${s.dev}:${s.ino}`;
      inodeKey.set(rel, key);
      const entry: HostEntry = {
        type, mode: Number(s.mode & 0o7777n), uid: Number(s.uid), gid: Number(s.gid), size: Number(s.size),
        blocks: Number(s.blocks), nlink: Number(s.nlink), linkGroup: rel,
        mtimeNs: s.mtimeNs, atimeNs: s.atimeNs, ctimeNs: s.ctimeNs,
      };
      if (type === 'symlink') entry.target = readlinkSync(full, 'utf8');
      if (type === 'file') {
        if (!hashes.has(key)) hashes.set(key, sha256File(full));
        entry.sha256 = hashes.get(key);
      }
      tree.set(rel, entry);
      if (type === 'dir') walk(rel);
    }
  };
  walk('');
  assignLinkGroups(tree, inodeKey);
  return tree;
}

function assignLinkGroups(tree: HostTree, inodeKey: Map<string, string>): void {
  const smallest = new Map<string, string>();
  for (const [rel, key] of inodeKey) {
    const current = smallest.get(key);
    if (current === undefined || rel < current) smallest.set(key, rel);
  }
  for (const [rel, entry] of tree) entry.linkGroup = smallest.get(inodeKey.get(rel) ?? '') ?? rel;
}

// ---------------------------------------------------------------------------------
// What the image should show, and comparing trees

/**
 * The time mke2fs 1.47.0 stores for a host time: whole seconds (floor), nanoseconds
 * dropped, seconds truncated to 32 bits and read back as signed (no epoch bits).
 */
export function mke2fsStoredTimeNs(hostNs: bigint): bigint {
  const second = 1_000_000_000n;
  let seconds = hostNs / second;
  if (hostNs % second < 0n) seconds -= 1n; // floor, like st_atime for pre-1970 times
  return BigInt.asIntN(32, seconds) * second;
}

/** The tree a kernel mount (or ext4ts) of a `mke2fs -d` image of `host` should show. */
export function expectedAfterMke2fs(host: HostTree): HostTree {
  const expected: HostTree = new Map();
  for (const [rel, entry] of host) {
    expected.set(rel, {
      ...entry,
      mode: entry.type === 'symlink' ? 0o777 : entry.mode,
      atimeNs: mke2fsStoredTimeNs(entry.atimeNs),
      mtimeNs: mke2fsStoredTimeNs(entry.mtimeNs),
      ctimeNs: mke2fsStoredTimeNs(entry.ctimeNs),
    });
  }
  return expected;
}

export type HostEntryField = keyof HostEntry;

/** Fields diffTrees compares unless told otherwise: everything but st_blocks. */
export const DIFF_FIELDS_DEFAULT: readonly HostEntryField[] = [
  'type', 'mode', 'uid', 'gid', 'size', 'nlink', 'linkGroup', 'mtimeNs', 'atimeNs', 'ctimeNs', 'target', 'sha256',
];

export interface DiffTreesOptions {
  fields?: readonly HostEntryField[];
  /** Relative paths (and everything under them) to leave out, e.g. ['lost+found']. */
  ignore?: readonly string[];
  /** Stop after this many differences (default 50). */
  differencesMax?: number;
}

/** Differences between two trees as readable lines; [] when they match. Dir sizes are skipped. */
export function diffTrees(expected: HostTree, actual: HostTree, options: DiffTreesOptions = {}): string[] {
  const fields = options.fields ?? DIFF_FIELDS_DEFAULT;
  const ignore = options.ignore ?? [];
  const differencesMax = options.differencesMax ?? 50;
  const ignored = (rel: string): boolean => ignore.some((i) => rel === i || rel.startsWith(`${i}/`));
  const out: string[] = [];
  const paths = [...new Set([...expected.keys(), ...actual.keys()])].filter((p) => !ignored(p)).sort();
  for (const rel of paths) {
    if (out.length >= differencesMax) break;
    const e = expected.get(rel);
    const a = actual.get(rel);
    if (!e || !a) {
      out.push(`${rel}: ${e ? 'missing from actual' : 'unexpected in actual'}`);
      continue;
    }
    for (const field of fields) {
      if (field === 'size' && e.type === 'dir') continue;
      if (e[field] !== a[field]) out.push(`${rel}: ${field} expected ${String(e[field])} got ${String(a[field])}`);
    }
  }
  return out;
}
