// Typed wrappers over the real e2fsprogs tools (mkfs.ext4, e2fsck, debugfs, dumpe2fs).
// They are the oracles of the interop suites: every call runs the real program (no shell,
// stdin closed, a timeout) and parses only what the tests need.
//
// Ranges follow the house rule: half-open [start, end) in blocks. debugfs's own `fallocate`
// takes an inclusive end block; debugfsFallocate converts.
import { accessSync, constants, writeFileSync } from 'node:fs';
import path from 'node:path';
import { run } from './run.js';
import { makeTempDir } from './tmp.js';

export const BLOCK_SIZE_BYTES = 4096;

// ---------------------------------------------------------------------------------
// Locating the tools

// The tools live in /sbin or /usr/sbin, which a non-root PATH often lacks.
const SBIN_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin'];
const E2FSPROGS_TOOLS = ['mkfs.ext4', 'e2fsck', 'debugfs', 'dumpe2fs'] as const;
type ToolName = (typeof E2FSPROGS_TOOLS)[number];
const toolPathCache = new Map<string, string | null>();

function findTool(name: string): string | null {
  if (toolPathCache.has(name)) return toolPathCache.get(name) ?? null;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...SBIN_DIRS];
  let found: string | null = null;
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      found = candidate;
      break;
    } catch {
      // not here; keep looking
    }
  }
  toolPathCache.set(name, found);
  return found;
}

function tool(name: ToolName): string {
  const found = findTool(name);
  if (found === null) throw missingToolsError([name]);
  return found;
}

function missingToolsError(names: readonly string[]): Error {
  return new Error(
    `e2fsprogs tool(s) not found: ${names.join(', ')}. The interop tests need the real tools ` +
      `(Debian/Ubuntu: apt-get install -y e2fsprogs); they are never skipped silently.`,
  );
}

let e2fsprogsVersionCache: string | undefined;

/**
 * Throws a clear error if any e2fsprogs tool is missing; returns the version (e.g. "1.47.0").
 * Call it at the top of a suite that uses these wrappers, so a missing tool fails loudly.
 */
export async function requireE2fsprogs(): Promise<string> {
  if (e2fsprogsVersionCache !== undefined) return e2fsprogsVersionCache;
  const missing = E2FSPROGS_TOOLS.filter((name) => findTool(name) === null);
  if (missing.length > 0) throw missingToolsError(missing);
  // `e2fsck -V` prints "e2fsck 1.47.0 (5-Feb-2023)" on stderr and exits 0.
  const result = await run(tool('e2fsck'), ['-V'], { allowFailure: true, timeoutMs: 10_000 });
  const match = /e2fsck (\d+\.\d+(?:\.\d+)?)/.exec(result.stderr + result.stdout);
  if (!match) throw new Error(`cannot parse e2fsck -V output: ${result.stderr}${result.stdout}`);
  e2fsprogsVersionCache = match[1];
  return e2fsprogsVersionCache;
}

// ---------------------------------------------------------------------------------
// mkfs.ext4 -d

export interface Mke2fsFromDirOptions {
  /** Image size; a multiple of 4096. The file is created (or overwritten) by mke2fs. */
  sizeBytes: number;
  /** Extra arguments placed before `-d` (e.g. ['-N', '40000'], ['-O', '^has_journal']). */
  extraArgs?: readonly string[];
  timeoutMs?: number;
}

/** Runs `mkfs.ext4 -q -F -b 4096 [extraArgs] -d dir img <size>k`. */
export async function mke2fsFromDir(img: string, dir: string, options: Mke2fsFromDirOptions): Promise<void> {
  const { sizeBytes } = options;
  if (!Number.isInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % BLOCK_SIZE_BYTES !== 0) {
    throw new Error(`mke2fsFromDir: sizeBytes must be a positive multiple of 4096, got ${sizeBytes}`);
  }
  const args = ['-q', '-F', '-b', String(BLOCK_SIZE_BYTES), ...(options.extraArgs ?? []), '-d', dir, img];
  args.push(`${sizeBytes / 1024}k`);
  await run(tool('mkfs.ext4'), args, { timeoutMs: options.timeoutMs ?? 300_000 });
}

// ---------------------------------------------------------------------------------
// e2fsck

export interface E2fsckResult {
  exitCode: number;
  /** stdout + stderr. */
  output: string;
  /** Exit code 0 and no complaint line. */
  clean: boolean;
  /** The output lines that matched a complaint pattern (for test failure messages). */
  complaints: string[];
}

/**
 * Lines that mean e2fsck found something wrong. Exit code 0 alone is not enough: with -n
 * some problems are reported without changing the exit status, and we want the message.
 * - `? no` / `? yes` at a line end: every fix e2fsck offers is a question ("Fix? no",
 *   "Clear? no", "Optimize? no", "Salvage? no", "Relocate? no", "Abort? no" ...); under -n
 *   it answers "no", under -y "yes". Any question is a finding.
 * - "has zero dtime", "checksum does not match", "differences:", "count wrong",
 *   "Unattached", "Unconnected", "Illegal", "invalid", "corrupt", "bad ": the problem
 *   descriptions themselves, in case a question lands on another line.
 * - "WAS MODIFIED", "recovering journal", "needs_recovery": the image was not a quiet,
 *   finished filesystem.
 * - "WARNING" / "Warning": e2fsck prints these for conditions it does not count as errors
 *   (e.g. "WARNING: Filesystem still has errors"); an image ext4ts leaves must not have them.
 */
export const E2FSCK_COMPLAINT_PATTERNS: readonly RegExp[] = [
  /\?\s+(no|yes)\s*$/,
  /has zero dtime/i,
  /checksum does not match/i,
  /differences:/i,
  /count wrong/i,
  /\bunattached\b/i,
  /\bunconnected\b/i,
  /\billegal\b/i,
  /\binvalid\b/i,
  /\bcorrupt/i,
  /\bbad\s/i,
  /WAS MODIFIED/,
  /recovering journal/i,
  /needs_recovery/i,
  /\bwarning\b/i,
  /\bsalvage\b/i,
  /\brelocate\b/i,
];

/** Runs `e2fsck <flags> img` (default -fn: force a full check, change nothing). */
export async function e2fsck(img: string, flags: readonly string[] = ['-fn']): Promise<E2fsckResult> {
  const result = await run(tool('e2fsck'), [...flags, img], { allowFailure: true, timeoutMs: 300_000 });
  const output = result.stdout + result.stderr;
  const complaints = output
    .split('\n')
    .filter((line) => E2FSCK_COMPLAINT_PATTERNS.some((pattern) => pattern.test(line)));
  return { exitCode: result.exitCode, output, clean: result.exitCode === 0 && complaints.length === 0, complaints };
}

// ---------------------------------------------------------------------------------
// dumpe2fs

export interface Dumpe2fsHeader {
  /** Every "Key: value" line of `dumpe2fs -h` (superblock, then journal superblock). */
  fields: Record<string, string>;
  /** "Filesystem features", split. */
  features: Set<string>;
  /** "Journal features" (empty when none, e.g. a fresh mke2fs journal). */
  journalFeatures: Set<string>;
}

function splitFeatures(value: string | undefined): Set<string> {
  if (value === undefined || value === '(none)') return new Set();
  return new Set(value.split(/\s+/).filter(Boolean));
}

/** Parses `dumpe2fs -h img`. Repeated keys keep their first value (the superblock's). */
export async function dumpe2fsHeader(img: string): Promise<Dumpe2fsHeader> {
  const { stdout } = await run(tool('dumpe2fs'), ['-h', img], { timeoutMs: 60_000 });
  const fields: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const match = /^([A-Za-z][^:]*?):\s+(.*)$/.exec(line);
    if (match && !(match[1] in fields)) fields[match[1]] = match[2].trim();
  }
  return {
    fields,
    features: splitFeatures(fields['Filesystem features']),
    journalFeatures: splitFeatures(fields['Journal features']),
  };
}

/** Raw `dumpe2fs img` text: header plus one paragraph per group (flags, csums, free ranges). */
export async function dumpe2fsGroups(img: string): Promise<string> {
  const { stdout } = await run(tool('dumpe2fs'), [img], { timeoutMs: 120_000 });
  return stdout;
}

// ---------------------------------------------------------------------------------
// debugfs

export interface DebugfsOptions {
  /** Open the image read-write (-w). Default read-only. */
  write?: boolean;
  /** Do not throw when debugfs prints error lines on stderr. */
  allowErrors?: boolean;
  timeoutMs?: number;
}

// debugfs always prints its banner on stderr; every other stderr line is an error report
// (e.g. "/x: File not found by ext2_lookup") while its exit code stays 0.
const DEBUGFS_BANNER = /^debugfs \d+\.\d+/;

function debugfsErrors(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.trim() !== '' && !DEBUGFS_BANNER.test(line));
}

/**
 * Runs debugfs commands on img and returns stdout. One command goes through -R, several
 * through -f <command file> (one process, one open of the image). Throws when debugfs
 * reports errors, unless allowErrors. With several commands stdout echoes each command as
 * a "debugfs: <command>" line before its output; see debugfsBatch to split them.
 */
export async function debugfs(img: string, commands: readonly string[], options: DebugfsOptions = {}): Promise<string> {
  for (const command of commands) {
    if (command.includes('\n')) throw new Error(`debugfs command contains a newline: ${JSON.stringify(command)}`);
  }
  const args = options.write ? ['-w'] : [];
  const timeoutMs = options.timeoutMs ?? 120_000;
  let result;
  if (commands.length === 1) {
    result = await run(tool('debugfs'), [...args, '-R', commands[0], img], { timeoutMs });
  } else {
    const temp = makeTempDir('ext4ts-debugfs-');
    try {
      const file = path.join(temp.dir, 'commands');
      writeFileSync(file, commands.join('\n') + '\n');
      result = await run(tool('debugfs'), [...args, '-f', file, img], { timeoutMs });
    } finally {
      temp.cleanup();
    }
  }
  const errors = debugfsErrors(result.stderr);
  if (errors.length > 0 && !options.allowErrors) {
    throw new Error(`debugfs ${img}: ${errors.slice(0, 10).join('\n')}`);
  }
  return result.stdout;
}

/** Runs several commands in one debugfs process and returns each command's own stdout. */
export async function debugfsBatch(img: string, commands: readonly string[], options: DebugfsOptions = {}): Promise<string[]> {
  if (commands.length === 1) return [await debugfs(img, commands, options)];
  const stdout = await debugfs(img, commands, options);
  const outputs: string[] = [];
  let index = -1;
  let current: string[] = [];
  for (const line of stdout.split('\n')) {
    // The echo of command `index + 1` starts its section.
    if (index + 1 < commands.length && line === `debugfs: ${commands[index + 1]}`) {
      if (index >= 0) outputs.push(current.join('\n'));
      index += 1;
      current = [];
      continue;
    }
    current.push(line);
  }
  if (index >= 0) outputs.push(current.join('\n'));
  if (outputs.length !== commands.length) {
    throw new Error(`debugfsBatch: expected ${commands.length} outputs, parsed ${outputs.length}`);
  }
  return outputs;
}

/**
 * Gives `inodePath` unwritten (uninit) extents over blocks [startBlock, endBlock) with
 * debugfs `fallocate <file> start_blk end_blk` (debugfs's end is inclusive). Blocks already
 * mapped stay as they are; i_size does not change, so a range past EOF stays past EOF.
 */
export async function debugfsFallocate(img: string, inodePath: string, startBlock: number, endBlock: number): Promise<void> {
  if (!(Number.isInteger(startBlock) && Number.isInteger(endBlock) && startBlock >= 0 && endBlock > startBlock)) {
    throw new Error(`debugfsFallocate: bad range [${startBlock}, ${endBlock})`);
  }
  await debugfs(img, [`fallocate ${quoteDebugfsPath(inodePath)} ${startBlock} ${endBlock - 1}`], { write: true });
}

/**
 * debugfs splits its command line on blanks and honours double quotes, so a path with
 * spaces must be quoted. Paths containing a double quote cannot be expressed; use `<ino>`.
 */
export function quoteDebugfsPath(p: string): string {
  if (p.includes('"')) throw new Error(`debugfs cannot address a path with a double quote: ${p}`);
  return /[\s]/.test(p) ? `"${p}"` : p;
}

// ---------------------------------------------------------------------------------
// debugfs stat

export interface DebugfsTime {
  /** Seconds since the epoch, decoded as the kernel does: (s32)lo + (extra & 3) << 32. */
  seconds: bigint;
  /** extra >> 2; 0 when the inode has no extra time field. */
  nanoseconds: number;
  /** seconds * 1e9 + nanoseconds, comparable with lstat's bigint *timeNs. */
  ns: bigint;
  /** The raw 32-bit words as printed ("0x6b049caa:00000000"). */
  raw: string;
}

export interface DebugfsExtent {
  /** First logical block. */
  logicalStart: number;
  blockCount: number;
  physicalStart: number;
  unwritten: boolean;
}

export interface DebugfsStat {
  inode: number;
  /** "regular", "directory", "symlink", "FIFO", "socket", "character special", "block special". */
  type: string;
  /** Permission and set-id/sticky bits (e.g. 0o7755), without the file type. */
  mode: number;
  flags: number;
  generation: number;
  uid: number;
  gid: number;
  project: number;
  size: bigint;
  fileAcl: number;
  links: number;
  /** i_blocks in 512-byte units, as debugfs prints "Blockcount". */
  blockcount: bigint;
  times: { ctime?: DebugfsTime; atime?: DebugfsTime; mtime?: DebugfsTime; crtime?: DebugfsTime; dtime?: DebugfsTime };
  extraIsize?: number;
  checksum?: number;
  /** Leaf extents in file order; present only for inodes with EXTENTS_FL. */
  extents?: DebugfsExtent[];
  /** Extent tree blocks "(ETBn):block": the index/leaf blocks at each level. */
  extentTreeBlocks?: { level: number; block: number }[];
  /** Target of a fast symlink (stored in i_block). */
  fastLinkTarget?: string;
  /** The full text, for anything not parsed. */
  text: string;
}

function num(text: string, pattern: RegExp, what: string): string {
  const match = pattern.exec(text);
  if (!match) throw new Error(`debugfsStat: no ${what} in:\n${text}`);
  return match[1];
}

export function parseDebugfsTime(line: string): DebugfsTime | undefined {
  const match = /0x([0-9a-f]{8})(?::([0-9a-f]{8}))?/i.exec(line);
  if (!match) return undefined;
  const lo = BigInt.asIntN(32, BigInt(`0x${match[1]}`));
  const extra = match[2] === undefined ? 0 : Number.parseInt(match[2], 16);
  const seconds = lo + (BigInt(extra & 3) << 32n);
  const nanoseconds = extra >>> 2;
  return { seconds, nanoseconds, ns: seconds * 1_000_000_000n + BigInt(nanoseconds), raw: match[0].slice(2) };
}

// "(0):1291", "(1-2[u]):1309-1310", "(ETB0):1296"
const EXTENT_ITEM = /\((ETB(\d+)|(\d+)(?:-(\d+))?(\[u\])?)\):(\d+)(?:-(\d+))?/g;

function parseExtents(text: string): Pick<DebugfsStat, 'extents' | 'extentTreeBlocks'> {
  const start = text.indexOf('\nEXTENTS:');
  if (start < 0) return {};
  const body = text.slice(start + '\nEXTENTS:'.length);
  const extents: DebugfsExtent[] = [];
  const extentTreeBlocks: { level: number; block: number }[] = [];
  for (const m of body.matchAll(EXTENT_ITEM)) {
    if (m[2] !== undefined) {
      extentTreeBlocks.push({ level: Number(m[2]), block: Number(m[6]) });
      continue;
    }
    const logicalStart = Number(m[3]);
    const logicalLast = m[4] === undefined ? logicalStart : Number(m[4]);
    extents.push({
      logicalStart,
      blockCount: logicalLast - logicalStart + 1,
      physicalStart: Number(m[6]),
      unwritten: m[5] !== undefined,
    });
  }
  return { extents, extentTreeBlocks };
}

function parseTimes(text: string): DebugfsStat['times'] {
  const times: DebugfsStat['times'] = {};
  for (const name of ['ctime', 'atime', 'mtime', 'crtime', 'dtime'] as const) {
    const line = new RegExp(`^\\s*${name}:\\s*(0x\\S+)`, 'm').exec(text);
    if (line) times[name] = parseDebugfsTime(line[1]);
  }
  return times;
}

/** Parses `debugfs -R "stat <path>" img` (path may also be "<ino>"). */
export async function debugfsStat(img: string, inodePath: string): Promise<DebugfsStat> {
  const target = /^<\d+>$/.test(inodePath) ? inodePath : quoteDebugfsPath(inodePath);
  const text = await debugfs(img, [`stat ${target}`]);
  return parseDebugfsStat(text);
}

export function parseDebugfsStat(text: string): DebugfsStat {
  const fastLink = /^Fast link dest: "(.*)"$/m.exec(text);
  const extraIsize = /Size of extra inode fields: (\d+)/.exec(text);
  const checksum = /Inode checksum: 0x([0-9a-f]+)/i.exec(text);
  return {
    inode: Number(num(text, /Inode: (\d+)/, 'Inode')),
    type: num(text, /Type: (.+?)\s+Mode:/, 'Type'),
    mode: Number.parseInt(num(text, /Mode:\s+(\d+)/, 'Mode'), 8),
    flags: Number.parseInt(num(text, /Flags: 0x([0-9a-f]+)/i, 'Flags'), 16),
    generation: Number(num(text, /Generation: (\d+)/, 'Generation')),
    // debugfs prints ids with %d: 4294967294 shows as -2.
    uid: Number(num(text, /User:\s+(-?\d+)/, 'User')) >>> 0,
    gid: Number(num(text, /Group:\s+(-?\d+)/, 'Group')) >>> 0,
    project: Number(/Project:\s+(\d+)/.exec(text)?.[1] ?? 0),
    size: BigInt(num(text, /^User:.*?Size: (\d+)\s*$/m, 'Size')),
    fileAcl: Number(num(text, /File ACL: (\d+)/, 'File ACL')),
    links: Number(num(text, /Links: (\d+)/, 'Links')),
    blockcount: BigInt(num(text, /Blockcount: (\d+)/, 'Blockcount')),
    times: parseTimes(text),
    extraIsize: extraIsize ? Number(extraIsize[1]) : undefined,
    checksum: checksum ? Number.parseInt(checksum[1], 16) : undefined,
    fastLinkTarget: fastLink ? fastLink[1] : undefined,
    ...parseExtents(text),
    text,
  };
}

// ---------------------------------------------------------------------------------
// debugfs ls

export interface DebugfsDirEntry {
  inode: number;
  /** Full i_mode (type and permission bits), e.g. 0o100644. */
  mode: number;
  uid: number;
  gid: number;
  name: string;
  /** Empty for directories in debugfs's output; then undefined. */
  size?: bigint;
}

/**
 * Lists a directory with `ls -p` ("/ino/mode/uid/gid/name/size/" per entry): unlike the
 * default format it is one entry per line and unambiguous for names with spaces.
 * Includes "." and "..".
 */
export async function debugfsLs(img: string, dirPath: string): Promise<DebugfsDirEntry[]> {
  const stdout = await debugfs(img, [`ls -p ${quoteDebugfsPath(dirPath)}`]);
  return parseDebugfsLs(stdout);
}

export function parseDebugfsLs(stdout: string): DebugfsDirEntry[] {
  const entries: DebugfsDirEntry[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('/')) continue;
    // The name cannot contain '/', so the five separators are unambiguous.
    const match = /^\/(\d+)\/([0-7]+)\/(-?\d+)\/(-?\d+)\/(.*)\/(\d*)\/$/.exec(line);
    if (!match) throw new Error(`debugfsLs: cannot parse line ${JSON.stringify(line)}`);
    entries.push({
      inode: Number(match[1]),
      mode: Number.parseInt(match[2], 8),
      uid: Number(match[3]) >>> 0, // printed with %d, like stat
      gid: Number(match[4]) >>> 0,
      name: match[5],
      size: match[6] === '' ? undefined : BigInt(match[6]),
    });
  }
  return entries;
}
