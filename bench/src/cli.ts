/**
 * `ext4ts bench`: the fio-style runner's command line (the `ext4ts` CLI loads this file;
 * `node bench/dist/src/cli.js …` runs it directly).
 *
 *   ext4ts bench                          the default run: the seed's table on buffer_head,
 *                                         iomap and iomap + large folios, the peers beside
 *                                         it, numjobs 1 vs 2, 4 KiB random I/O (~1 minute)
 *   ext4ts bench --full                   the same at 1 GiB per file, 5 repetitions
 *   ext4ts bench --rw=randwrite --bs=4k --size=64m --fsync=1 [--numjobs=2] …
 *   ext4ts bench JOBFILE.fio …            fio job files ([global] + job sections)
 *
 * fio's option names (job.ts lists them) plus ext4ts's own: --buffered iomap|buffer_head,
 * --no-large-folios, --device memory|FILE, --repeat N, --warmup N, --peers LIST, --install-peers,
 * --cache-bytes SIZE, --writeback-threads N, --clients engine|threads, --sections LIST, --json FILE, --svg FILE, --results-dir DIR,
 * --no-save, --no-progress, --output-format normal|json, --output FILE.
 *
 * Output: the tables on stdout (or the JSON document with --output-format=json, as fio
 * does), a progress bar on stderr when it is a terminal, and two files: the JSON document
 * and an SVG chart (default bench/results/ext4ts-bench-<time>.{json,svg}, also copied to
 * latest.{json,svg}). Exit: 0, 1 when an ext4ts configuration failed (one that this build
 * does not offer is skipped with the reason instead), 2 on bad usage.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BOOL_OPTIONS, FULL_SIZE_BYTES, QUICK_SIZE_BYTES, isFioOption, jobsFromOptions, parseJobFile, readJobFile,
  scalingJobFile, seedJobFile, smallBlockJobFile, type JobSpec,
} from './job.js';
import { EXT4TS_CONFIGS, Ext4tsTarget, type BufferedPath, type ClientMode, type DeviceChoice, type Ext4tsConfig } from './ext4ts-target.js';
import { runSuites, type SuiteOutcome, type SuiteSpec } from './runner.js';
import { peerChecks, renderReport, seedComparison, summariseSuite, type BenchDocument } from './report.js';
import { renderSvg } from './svg.js';
import { terminalProgress } from './progress.js';
import type { SuitePlan, Target } from './target.js';
import { warmMemory } from './warm-memory.js';
import { JobError, MIB, formatBytes, parseFioSize } from './units.js';
import { CopyLimitPeer } from '../peers/copy-limit.js';
import { Ext2fsPeer } from '../peers/ext2fs.js';
import { KernelFioPeer } from '../peers/kernel-fio.js';
import { NodeFsPeer } from '../peers/node-fs.js';

export const PEER_IDS = ['kernel', 'ext2fs', 'node-fs', 'copy'] as const;
export type PeerId = (typeof PEER_IDS)[number];
export const SECTION_IDS = ['seed', 'scaling', 'small'] as const;
export type SectionId = (typeof SECTION_IDS)[number];

export interface BenchArgs {
  jobFiles: string[];
  /** fio options from the command line, in order. */
  fioOptions: [string, string][];
  buffered?: BufferedPath;
  largeFolios?: boolean;
  device: DeviceChoice;
  repeat?: number;
  /** Untimed repetitions per column before the timed ones. */
  warmup?: number;
  full: boolean;
  peers?: PeerId[];
  installPeers: boolean;
  outputFormat: 'normal' | 'json';
  output?: string;
  jsonPath?: string;
  svgPath?: string;
  resultsDir?: string;
  save: boolean;
  progress: boolean;
  /** Touch each target's memory first (warm-memory.ts). */
  warmMemory: boolean;
  cacheBytes?: number;
  writebackThreads?: number;
  /** Where ext4ts runs clones; default: worker threads for jobs with numjobs > 1 and the scaling section. */
  clients?: ClientMode;
  sections: SectionId[];
  help: boolean;
}

const VALUED = new Set([
  'device', 'repeat', 'warmup', 'peers', 'output-format', 'output', 'json', 'svg', 'results-dir', 'cache-bytes', 'writeback-threads', 'clients',
  'sections',
]);
const FLAGS = new Set(['no-large-folios', 'large-folios', 'full', 'install-peers', 'no-save', 'no-progress', 'no-warm-memory', 'help']);

function listOf<T extends string>(text: string, allowed: readonly T[], what: string): T[] {
  if (text === 'all') return [...allowed];
  if (text === 'none' || text === '') return [];
  const items = text.split(',').map((item) => item.trim());
  for (const item of items) if (!(allowed as readonly string[]).includes(item)) throw new JobError(`--${what}: '${item}' is not one of ${allowed.join(', ')}`);
  return items as T[];
}

function positiveInt(text: string, what: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1 || value > 1000) throw new JobError(`--${what} takes a whole number from 1 to 1000, got '${text}'`);
  return value;
}

/** Split argv into ext4ts's own options, fio options (in order) and job files. */
export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  const args: BenchArgs = {
    jobFiles: [], fioOptions: [], device: { kind: 'memory' }, full: false, installPeers: false, outputFormat: 'normal',
    save: true, progress: true, warmMemory: true, sections: [...SECTION_IDS], help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (token === '-h') { args.help = true; continue; }
    if (token === '--') continue; // `pnpm run bench -- …` may pass it through
    if (!token.startsWith('--')) { args.jobFiles.push(token); continue; }
    const eq = token.indexOf('=');
    const key = eq < 0 ? token.slice(2) : token.slice(2, eq);
    const takeValue = (): string => {
      if (eq >= 0) return token.slice(eq + 1);
      if (i + 1 >= argv.length) throw new JobError(`--${key} needs a value`);
      return argv[++i];
    };
    if (key === 'buffered') {
      const value = takeValue();
      // fio's own buffered=0|1 (0 = O_DIRECT) versus ext4ts's path choice.
      if (value === 'iomap' || value === 'buffer_head') args.buffered = value;
      else args.fioOptions.push(['buffered', value]);
    } else if (FLAGS.has(key)) {
      if (eq >= 0) throw new JobError(`--${key} takes no value`);
      applyFlag(args, key);
    } else if (VALUED.has(key)) {
      applyValued(args, key, takeValue());
    } else if (isFioOption(key)) {
      args.fioOptions.push([key, eq >= 0 ? token.slice(eq + 1) : BOOL_OPTIONS.has(key) ? '' : takeValue()]);
    } else {
      throw new JobError(`unknown option --${key} (fio options: see job.ts; ext4ts bench -h)`);
    }
  }
  return args;
}

function applyFlag(args: BenchArgs, key: string): void {
  if (key === 'no-large-folios') args.largeFolios = false;
  else if (key === 'large-folios') args.largeFolios = true;
  else if (key === 'full') args.full = true;
  else if (key === 'install-peers') args.installPeers = true;
  else if (key === 'no-save') args.save = false;
  else if (key === 'no-progress') args.progress = false;
  else if (key === 'no-warm-memory') args.warmMemory = false;
  else if (key === 'help') args.help = true;
}

function applyValued(args: BenchArgs, key: string, value: string): void {
  if (key === 'device') args.device = value === 'memory' ? { kind: 'memory' } : { kind: 'file', path: resolve(value) };
  else if (key === 'repeat') args.repeat = positiveInt(value, key);
  else if (key === 'warmup') args.warmup = value === '0' ? 0 : positiveInt(value, key);
  else if (key === 'peers') args.peers = listOf(value, PEER_IDS, key);
  else if (key === 'sections') args.sections = listOf(value, SECTION_IDS, key);
  else if (key === 'output-format') {
    if (value === 'json' || value === 'json+') args.outputFormat = 'json';
    else if (value === 'normal') args.outputFormat = 'normal';
    else throw new JobError(`--output-format=${value}: normal or json`);
  } else if (key === 'output') args.output = resolve(value);
  else if (key === 'json') args.jsonPath = resolve(value);
  else if (key === 'svg') args.svgPath = resolve(value);
  else if (key === 'results-dir') args.resultsDir = resolve(value);
  else if (key === 'cache-bytes') args.cacheBytes = parseFioSize(value, '--cache-bytes');
  else if (key === 'clients') {
    if (value !== 'engine' && value !== 'threads') throw new JobError(`--clients=${value}: engine or threads`);
    args.clients = value;
  } else if (key === 'writeback-threads') args.writebackThreads = value === '0' ? 0 : positiveInt(value, key);
}

export const BENCH_USAGE = `usage: ext4ts bench [options] [JOBFILE...]
  (no job)                  the seed's four jobs (fio psync, 1 thread, 1 MiB blocks: write+fsync,
                            overwrite+fsync, read hole, read data) on buffer_head, iomap and
                            iomap + large folios, the peers beside them, numjobs 1 vs 2, 4 KiB random
  --full                    the same at ${formatBytes(FULL_SIZE_BYTES)} per file, 5 repetitions (default ${formatBytes(QUICK_SIZE_BYTES)}, 3)
  --size=SIZE               the default run at another size per file
fio options (fio's names and units: 4k, 1m, 1MiB = 10^6 as in fio):
  --name=N --rw=read|write|randread|randwrite|rw|randrw --rwmixread=P --bs=B --size=S
  --fsync=N --fdatasync=N --end_fsync=1 --overwrite=1 --numjobs=N --filename=F --runtime=T
  --time_based --invalidate=0|1 --randseed=N --norandommap --direct=1 (runs buffered on ext4ts)
  --ioengine=psync|sync|pvsync --iodepth=1 --fallocate=none --stonewall --description=D
  --sparse=1 (ext4ts: a read job's file is made by ftruncate, never written: hole reads)
ext4ts options:
  --buffered iomap|buffer_head   one path (default: all three configurations)
  --no-large-folios              iomap with order-0 folios
  --device memory|FILE           the in-memory device (default) or a new image file (removed after)
  --repeat N                     repetitions (medians are printed)
  --warmup N                     untimed repetitions per column first (default 1 for the default
                                 run, 0 for your jobs): ext4ts's JavaScript is JIT-compiled
                                 during its first few hundred calls
  --peers LIST                   kernel,ext2fs,node-fs,copy | all | none (default: all for the
                                 default run, none for your jobs); each is skipped with a reason
                                 when it cannot run here
  --install-peers                as root: apt-get install fio when it is missing
  --sections LIST                seed,scaling,small (default all) for the default run
  --cache-bytes SIZE             the page cache (default: the data the jobs keep + 64 MiB)
  --writeback-threads N          writeback workers (default: the engine's; 0 = inline)
  --clients engine|threads       ext4ts clones (numjobs) as async callers in the engine's thread,
                                 or one worker thread each over the client channel (default:
                                 threads for numjobs > 1 and the scaling section)
  --output-format normal|json    json: print the JSON document instead of the tables
  --output FILE                  write what would be printed to FILE
  --json FILE, --svg FILE        where the results go (default bench/results/, also latest.*)
  --results-dir DIR              where the default pair goes (default bench/results/)
  --no-save                      no default files (--json/--svg still write theirs)
  --no-progress                  no progress bar
  --no-warm-memory               do not touch each target's memory first (on VMs, cold memory
                                 costs ~0.5 GiB/s at first touch, charged to whoever meets it)`;

/** Where results go by default: the bench package's results/ (git-ignored). */
function defaultResultsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 4; depth++) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === '@ext4ts/bench') {
      return join(dir, 'results');
    }
    dir = dirname(dir);
  }
  return resolve('ext4ts-bench-results');
}

function peerTargets(ids: readonly PeerId[], args: BenchArgs): Target[] {
  return ids.map((id) => {
    if (id === 'kernel') return new KernelFioPeer({ install: args.installPeers });
    if (id === 'ext2fs') return new Ext2fsPeer();
    if (id === 'node-fs') return new NodeFsPeer();
    return new CopyLimitPeer();
  });
}

/** The ext4ts configurations to run: one if --buffered/--no-large-folios chose it, else all three. */
export function chosenConfigs(args: Pick<BenchArgs, 'buffered' | 'largeFolios'>): Ext4tsConfig[] {
  if (args.buffered === undefined && args.largeFolios === undefined) return [...EXT4TS_CONFIGS];
  const buffered = args.buffered ?? 'iomap';
  // The buffer_head path is order-0 by design (one buffer head per 4 KiB folio).
  return [{ buffered, largeFolios: buffered === 'iomap' ? args.largeFolios ?? true : false }];
}

function ext4tsTargets(configs: readonly Ext4tsConfig[], args: BenchArgs, clients: ClientMode = 'engine'): Target[] {
  return configs.map((config) => new Ext4tsTarget({
    config, device: args.device, cacheBytes: args.cacheBytes, writebackThreads: args.writebackThreads, clients: args.clients ?? clients,
  }));
}

const CLIENTS_NOTE = {
  threads: 'numjobs on ext4ts: each clone on its own worker thread, connected through the engine\'s client channel (metadata on the engine thread, data copies on the clone\'s)',
  engine: 'numjobs on ext4ts: clones are concurrent async callers in the engine\'s own thread (--clients engine)',
} as const;

/** fio's ramp_time, as repetitions: the same jobs, run and thrown away, on every column alike. */
const WARMUP_NOTE = (warmup: number): string => `each column first runs ${warmup} untimed warm-up repetition${warmup > 1 ? 's' : ''} (as fio's ramp_time): ext4ts's JavaScript is JIT-compiled during its first few hundred calls (the read path alone tiers up ~35 functions; its first pass over a 256 MiB file ran at about half the speed of the later ones); --warmup 0 turns it off`;

export interface RunPlan { suites: SuiteSpec[]; repeat: number; warmup: number; notes: string[] }

/** The suites of a run: the user's jobs, or the default sections. */
export function planSuites(args: BenchArgs): RunPlan {
  if (args.device.kind === 'file' && existsSync(args.device.path) && statSync(args.device.path).size > 0) {
    throw new JobError(`--device ${args.device.path} exists: the bench makes new filesystems on its device and removes it after; give a new path`);
  }
  const userJobs: JobSpec[] = args.jobFiles.flatMap((path) => readJobFile(path));
  const definesJob = args.fioOptions.some(([key]) => key === 'name' || key === 'rw' || key === 'readwrite');
  if (definesJob) userJobs.push(...jobsFromOptions(args.fioOptions));
  return userJobs.length > 0 ? planUserJobs(userJobs, args) : planDefaultRun(args);
}

function planUserJobs(jobs: JobSpec[], args: BenchArgs): RunPlan {
  const cloned = jobs.some((job) => job.numjobs > 1);
  const clients: ClientMode = args.clients ?? (cloned ? 'threads' : 'engine');
  const targets = [...ext4tsTargets(chosenConfigs(args), args, clients), ...peerTargets(args.peers ?? [], args)];
  const notes: string[] = [];
  if (jobs.some((job) => job.direct)) notes.push('direct=1: ext4ts has no O_DIRECT path, so its I/O stayed buffered (the kernel peer ran O_DIRECT)');
  if (cloned || clients === 'threads') notes.push(CLIENTS_NOTE[clients]);
  const warmup = args.warmup ?? 0;
  if (warmup > 0) notes.push(WARMUP_NOTE(warmup));
  return { suites: [{ id: 'jobs', title: 'Your jobs', jobs, targets }], repeat: args.repeat ?? 1, warmup, notes };
}

/** Whole MiB, at least one, as a size option's text. */
function mibText(bytes: number): string {
  return String(Math.max(MIB, Math.floor(bytes / MIB) * MIB));
}

function planDefaultRun(args: BenchArgs): RunPlan {
  const stray = args.fioOptions.filter(([key]) => key !== 'size');
  if (stray.length > 0) throw new JobError(`--${stray[0][0]} needs a job: give --rw= (or --name=) to define one; the default run takes only --size`);
  const sizeOption = args.fioOptions.find(([key]) => key === 'size');
  const sizeBytes = sizeOption !== undefined ? parseFioSize(sizeOption[1], '--size') : args.full ? FULL_SIZE_BYTES : QUICK_SIZE_BYTES;
  const configs = chosenConfigs(args);
  const peers = args.peers ?? [...PEER_IDS];
  const suites: SuiteSpec[] = [];
  if (args.sections.includes('seed')) {
    suites.push({ id: 'seed', title: 'The seed\'s jobs', jobs: parseJobFile(seedJobFile(mibText(sizeBytes))), targets: [...ext4tsTargets(configs, args), ...peerTargets(peers, args)] });
  }
  if (args.sections.includes('scaling')) {
    // One ext4ts column (iomap + LF unless another path was chosen): the scaling question is
    // about the engine's callers, and the legacy path's slow writes would double the run.
    const scalingConfigs = configs.length > 1 ? configs.filter((c) => c.buffered === 'iomap' && c.largeFolios) : configs;
    const scalingPeers = peers.filter((id) => id === 'kernel' || id === 'node-fs');
    suites.push({ id: 'scaling', title: 'numjobs scaling', jobs: parseJobFile(scalingJobFile(mibText(sizeBytes / 2))), targets: [...ext4tsTargets(scalingConfigs, args, 'threads'), ...peerTargets(scalingPeers, args)] });
  }
  if (args.sections.includes('small')) {
    // Both paths (buffer_head and iomap + LF) beside the peers.
    const smallConfigs = configs.filter((c) => c.buffered === 'buffer_head' || c.largeFolios);
    const smallText = mibText(Math.max(4 * MIB, sizeBytes / 4));
    suites.push({ id: 'small', title: `Small blocks: 4 KiB random, ${formatBytes(Number(smallText))} file`, jobs: parseJobFile(smallBlockJobFile(smallText)), targets: [...ext4tsTargets(smallConfigs, args), ...peerTargets(peers, args)] });
  }
  const notes = [
    'every repetition runs on a freshly made file system; jobs run in order (stonewall), fsyncs counted in each job\'s time as fio counts them',
    'invalidate=0 everywhere: nothing is dropped between jobs, so reads of written data are cached reads on every engine',
  ];
  if (args.sections.includes('scaling')) notes.push(CLIENTS_NOTE[args.clients ?? 'threads']);
  if (args.warmMemory) notes.push('before each column the runner touches (in a child process) the memory that column will take, so none runs on cold VM memory (~0.5 GiB/s first touch); --no-warm-memory turns it off');
  const warmup = args.warmup ?? 1;
  if (warmup > 0) notes.push(WARMUP_NOTE(warmup));
  return { suites, repeat: args.repeat ?? (args.full ? 5 : 3), warmup, notes };
}

/** What one target may take fresh: its device or image, a page cache of the files, the data again. */
function warmBytesFor(plan: SuitePlan): number {
  return plan.deviceBytes + plan.dataBytes + plan.cachedBytes + 256 * MIB;
}

function deviceText(device: DeviceChoice): string {
  return device.kind === 'memory' ? 'memory device' : `image file ${device.path}`;
}

export interface DocumentContext {
  startedAt: Date;
  durationMs: number;
  args: BenchArgs;
  repeat: number;
  notes: string[];
  argv: readonly string[];
  loadAverageStart: number;
}

export function buildDocument(outcomes: SuiteOutcome[], context: DocumentContext): BenchDocument {
  const suites = outcomes.map(summariseSuite);
  const seed = suites.find((suite) => suite.id === 'seed');
  return {
    tool: 'ext4ts bench',
    schemaVersion: 1,
    startedAt: context.startedAt.toISOString(),
    durationMs: Math.round(context.durationMs),
    machine: {
      cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', memoryBytes: totalmem(), platform: platform(), kernel: release(),
      node: process.version, loadAverageStart: context.loadAverageStart, loadAverageEnd: loadavg()[0],
    },
    settings: { device: deviceText(context.args.device), repeat: context.repeat, command: ['ext4ts', 'bench', ...context.argv].join(' ') },
    notes: context.notes,
    suites,
    seedComparison: seed === undefined ? undefined : seedComparison(seed),
    checks: seed === undefined ? [] : peerChecks(seed),
  };
}

export interface BenchIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const processIo: BenchIo = {
  stdout: (text) => { process.stdout.write(text); },
  stderr: (text) => { process.stderr.write(text); },
};

/** Run `ext4ts bench ARGV`; resolves to the exit code. */
export async function benchMain(argv: readonly string[], io: BenchIo = processIo): Promise<number> {
  let args: BenchArgs;
  let plan: ReturnType<typeof planSuites>;
  try {
    args = parseBenchArgs(argv);
    if (args.help) { io.stdout(`${BENCH_USAGE}\n`); return 0; }
    plan = planSuites(args);
  } catch (error) {
    if (!(error instanceof JobError)) throw error;
    io.stderr(`ext4ts bench: ${error.message}\n${BENCH_USAGE}\n`);
    return 2;
  }
  const startedAt = new Date();
  const startedMs = performance.now();
  const loadAverageStart = loadavg()[0];
  const outcomes = await runSuites(plan.suites, {
    repeat: plan.repeat,
    warmup: plan.warmup,
    progress: args.progress && args.outputFormat === 'normal' ? (total) => terminalProgress(total) : undefined,
    log: (line) => io.stderr(`ext4ts bench: ${line}\n`),
    beforeTarget: args.warmMemory ? (suitePlan) => { warmMemory(warmBytesFor(suitePlan)); } : undefined,
  });
  const document = buildDocument(outcomes, { startedAt, durationMs: performance.now() - startedMs, args, repeat: plan.repeat, notes: plan.notes, argv, loadAverageStart });
  const text = args.outputFormat === 'json' ? `${JSON.stringify(document, null, 2)}\n` : renderReport(document);
  const saved = await saveResults(document, args);
  const footer = saved.length > 0 && args.outputFormat === 'normal' ? `\nresults: ${saved.join(', ')}\n` : '';
  if (args.output !== undefined) await writeFile(args.output, text + footer);
  else io.stdout(text + footer);
  // A configuration this build does not offer is a skip (printed with its reason); one that broke is a failure.
  const ext4tsFailed = outcomes.some((suite) => suite.outcomes.some((o) => o.target.kind === 'ext4ts' && o.failed !== undefined));
  return ext4tsFailed ? 1 : 0;
}

/** Write the JSON and SVG files: the ones named by --json/--svg, and the default pair unless --no-save. */
async function saveResults(document: BenchDocument, args: BenchArgs): Promise<string[]> {
  const dir = args.resultsDir ?? defaultResultsDir();
  const stamp = document.startedAt.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
  const jsonPath = args.jsonPath ?? (args.save ? join(dir, `ext4ts-bench-${stamp}.json`) : undefined);
  const svgPath = args.svgPath ?? (args.save ? join(dir, `ext4ts-bench-${stamp}.svg`) : undefined);
  const written: string[] = [];
  if (jsonPath !== undefined) {
    await mkdir(dirname(jsonPath), { recursive: true });
    await writeFile(jsonPath, `${JSON.stringify(document, null, 2)}\n`);
    written.push(jsonPath);
  }
  if (svgPath !== undefined) {
    await mkdir(dirname(svgPath), { recursive: true });
    await writeFile(svgPath, renderSvg(document));
    written.push(svgPath);
  }
  if (args.save && args.jsonPath === undefined && args.svgPath === undefined) {
    await copyFile(jsonPath!, join(dir, 'latest.json'));
    await copyFile(svgPath!, join(dir, 'latest.svg'));
  }
  return written;
}

// Run directly: node bench/dist/src/cli.js …
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  benchMain(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
