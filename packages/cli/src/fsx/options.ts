/**
 * fsx-style command line for `ext4ts fsx [options] [fname]`: getopt-like short
 * options (clustered "-RW", "-N100" and "-N 100" all work) plus the long options below.
 * parseFsxArgs() is pure; loadFsxRun() reads the --replay-ops file and returns what
 * runFsx() takes. Numbers are decimal or 0x-hex with an optional k/m/g (×1024) suffix.
 */
import { readFileSync } from 'node:fs';
import { checkOpLog, parseOpLog, type ParsedFsxLog } from './log.js';
import { defaultFsxRunOptions, type FsxRunOptions } from './run.js';

export const FSX_USAGE = `usage: ext4ts fsx [options] [fname]
  -N numops    total ops to run (default 10000)
  -S seed      random seed (default 1; 0 = from the clock)
  -l flen      max file length (default 256k)
  -o oplen     max op length (default 64k)
  -O           every op uses oplen (default: random length)
  -r/-w/-t bdy read / write / truncate offset alignment (default 1)
  -R  -W       no mapped reads / writes (they become read / write)
  -F  -K       no fallocate / no keep_size
  -H  -z       no punch hole / no zero range
  -y           fsync after every write
  -X           check the whole file after every op
  -e N         N != 0: pollute the EOF page before size-changing ops
  -c P         close and reopen the file with probability 1/P after an op
  -P dir       write .fsxgood .fsxops .fsxlog there on failure
  -q           quiet
  --check-every K        whole-file check every K ops
  --replay-ops FILE      run exactly the ops in FILE
  --record-ops[=FILE]    write the op log to FILE (default fname.fsxops), pass or fail
  --buffered iomap|buffer_head   ext4ts buffered I/O path (default iomap)
  --no-large-folios      ext4ts: single-page folios only
  --cache-size SIZE      ext4ts page cache size (e.g. 2m; default the engine's)
  --image FILE           run in this ext4 image (default: a fresh in-memory image)
  --remount-every K      with -c: every Kth close/reopen also unmounts and mounts again`;

export type FsxBufferedPath = 'iomap' | 'buffer_head';

export interface FsxCliOptions {
  /** Options for runFsx (only those given on the command line). */
  run: Partial<FsxRunOptions>;
  /** The file name inside the image (fsx's fname). */
  fileName: string;
  replayOpsPath?: string;
  /** True when -S was given (a replay log's own seed is then ignored). */
  seedGiven: boolean;
  quiet: boolean;
  /** ext4ts target settings (ignored by host-file targets). */
  buffered: FsxBufferedPath;
  largeFolios: boolean;
  imagePath?: string;
  /** --cache-size: page cache bytes of the mount. */
  cacheBytes?: number;
  /** --remount-every: every Kth reopen also remounts (0 = never). */
  remountEvery: number;
}

export class FsxUsageError extends Error {
  readonly code = 'FSX_USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'FsxUsageError';
  }
}

/** Short options that take an argument. */
const SHORT_WITH_ARG = new Set(['N', 'S', 'l', 'o', 'r', 'w', 't', 'e', 'c', 'P']);
const SHORT_FLAGS = new Set(['O', 'R', 'W', 'F', 'K', 'H', 'z', 'y', 'X', 'q']);

export function parseFsxArgs(argv: readonly string[]): FsxCliOptions {
  const cli: FsxCliOptions = { run: {}, fileName: 'fsxfile', seedGiven: false, quiet: false, buffered: 'iomap', largeFolios: true, remountEvery: 0 };
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const takeNext = (what: string): string => {
      if (i + 1 >= argv.length) throw new FsxUsageError(`${what} needs an argument`);
      return argv[++i];
    };
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg : arg.slice(0, eq);
      const inline = eq < 0 ? undefined : arg.slice(eq + 1);
      applyLong(cli, name, () => inline ?? takeNext(name), inline);
    } else if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j];
        if (SHORT_WITH_ARG.has(letter)) {
          const value = j + 1 < arg.length ? arg.slice(j + 1) : takeNext(`-${letter}`);
          applyShort(cli, letter, value);
          break;
        }
        if (!SHORT_FLAGS.has(letter)) throw new FsxUsageError(`unknown option -${letter}`);
        applyShort(cli, letter, '');
      }
    } else {
      positional.push(arg);
    }
  }
  if (positional.length > 1) throw new FsxUsageError(`one file name expected, got ${positional.join(' ')}`);
  if (positional.length === 1) cli.fileName = positional[0];
  cli.run.fileName = cli.fileName.replace(/^.*\//, '');
  if (cli.run.recordOpsPath === '') cli.run.recordOpsPath = `${cli.run.fileName}.fsxops`;
  return cli;
}

function applyShort(cli: FsxCliOptions, letter: string, value: string): void {
  const run = cli.run;
  const num = (): number => parseNumber(value, `-${letter}`);
  switch (letter) {
    case 'N': run.numOps = num(); break;
    case 'S': {
      const seed = num();
      run.seed = seed === 0 ? Date.now() % 100_000 : seed;
      cli.seedGiven = true;
      break;
    }
    case 'l': run.maxFileLen = positive(num(), '-l'); break;
    case 'o': run.maxOpLen = positive(num(), '-o'); break;
    case 'O': run.randomOpLen = false; break;
    case 'r': run.readBdy = positive(num(), '-r'); break;
    case 'w': run.writeBdy = positive(num(), '-w'); break;
    case 't': run.truncBdy = positive(num(), '-t'); break;
    case 'R': run.mappedReads = false; break;
    case 'W': run.mappedWrites = false; break;
    case 'F': run.fallocateCalls = false; break;
    case 'K': run.keepSizeCalls = false; break;
    case 'H': run.punchCalls = false; break;
    case 'z': run.zeroCalls = false; break;
    case 'y': run.fsyncAfterWrite = true; break;
    case 'X': run.checkEveryOps = 1; break;
    case 'e': run.polluteEof = num() !== 0; break;
    case 'c': run.closeOpenProb = num(); break;
    case 'P': run.outputDir = value; break;
    case 'q': cli.quiet = true; break;
  }
}

function applyLong(cli: FsxCliOptions, name: string, value: () => string, inline: string | undefined): void {
  switch (name) {
    case '--replay-ops': cli.replayOpsPath = value(); return;
    case '--record-ops': cli.run.recordOpsPath = inline ?? ''; return; // optional argument, as in fsx
    case '--check-every': cli.run.checkEveryOps = parseNumber(value(), name); return;
    case '--image': cli.imagePath = value(); return;
    case '--no-large-folios': cli.largeFolios = false; return;
    case '--cache-size': cli.cacheBytes = positive(parseNumber(value(), name), name); return;
    case '--remount-every': cli.remountEvery = parseNumber(value(), name); return;
    case '--buffered': {
      const path = value();
      if (path !== 'iomap' && path !== 'buffer_head') throw new FsxUsageError(`--buffered takes iomap or buffer_head, not '${path}'`);
      cli.buffered = path;
      return;
    }
    default: throw new FsxUsageError(`unknown option ${name}`);
  }
}

function parseNumber(text: string, what: string): number {
  const m = /^(0x[0-9a-f]+|\d+)([kmg]?)$/i.exec(text.trim());
  if (m === null) throw new FsxUsageError(`${what}: '${text}' is not a number`);
  const shift = { '': 0, k: 10, m: 20, g: 30 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Number(m[1]) * 2 ** shift;
  if (!Number.isSafeInteger(n)) throw new FsxUsageError(`${what}: ${text} is too large`);
  return n;
}

function positive(n: number, what: string): number {
  if (n <= 0) throw new FsxUsageError(`${what} must be positive`);
  return n;
}

/**
 * What runFsx takes for these options: reads the --replay-ops file (its header's seed and
 * max file length are used unless -S / -l were given, since the write data depends on both).
 * An unreadable, unparsable or inconsistent log (checkOpLog) is an FsxUsageError.
 */
export function loadFsxRun(cli: FsxCliOptions): Partial<FsxRunOptions> {
  const run = { ...cli.run };
  if (cli.replayOpsPath === undefined) return run;
  let log: ParsedFsxLog;
  try {
    log = parseOpLog(readFileSync(cli.replayOpsPath, 'utf8'));
  } catch (error) {
    throw new FsxUsageError(`--replay-ops ${cli.replayOpsPath}: ${error instanceof Error ? error.message : String(error)}`);
  }
  run.replayOps = log.ops;
  if (!cli.seedGiven && log.header.seed !== undefined) run.seed = log.header.seed;
  if (run.maxFileLen === undefined && log.header.maxFileLen !== undefined) run.maxFileLen = log.header.maxFileLen;
  if (run.numOps === undefined) run.numOps = log.ops.length;
  const problem = checkOpLog(log.ops, run.maxFileLen ?? defaultFsxRunOptions().maxFileLen);
  if (problem !== null) throw new FsxUsageError(`--replay-ops ${cli.replayOpsPath}: ${problem}`);
  return run;
}
