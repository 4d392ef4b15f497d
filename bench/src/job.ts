/**
 * Jobs, spoken in fio's option names: the option table, fio job files ([global] + one
 * section per job), fio-style command lines (`--name=a --rw=write … --name=b …`), and the
 * seed's suite. A job here is what fio calls a job: one kind of I/O over `size` bytes of
 * one file in `bs` blocks, cloned `numjobs` times.
 *
 * Semantics kept from fio (fio 3.33 HOWTO), so a fio user's job file means the same here:
 * - `[global]` options apply to the jobs after it; a job section overrides them. On the
 *   command line, options before the first `--name` are global.
 * - Jobs run side by side until a job with `stonewall` (or `wait_for_previous`), which
 *   waits for everything before it: consecutive jobs form a *group* that runs concurrently.
 * - `numjobs=N` clones a job N times; each clone has its own file, named by
 *   `filename_format` (default `$jobname.$jobnum.$filenum`), unless `filename=` names one,
 *   which the clones then share.
 * - `rw`: read, write, randread, randwrite, rw|readwrite, randrw (`rwmixread`, default 50).
 *   Random jobs visit every block once in a seeded random order (fio's random map),
 *   unless `norandommap`.
 * - `fsync=N` / `fdatasync=N`: after every N writes; `end_fsync=1`: once when the job
 *   ends. Both are counted in the job's time, as fio counts them.
 * - `overwrite=1`: the file is written in full before the job (untimed) if it is smaller
 *   than `size`. A read job lays its file out the same way if it is too small.
 * - `runtime=T` stops a job after T; with `time_based` it loops over the file until T.
 * - `invalidate` (default 1) drops the file's cached pages before the job.
 * - Sizes use fio's `kb_base=1024` units (units.ts: 1m = 2^20, but 1MiB = 10^6).
 *
 * One extension: `sparse=1` lays a read job's file out by ftruncate alone (never
 * written), for the seed's "read hole" job. Accepted but not acted on here: `ioengine`
 * (psync, sync, pvsync: all synchronous positional I/O), `iodepth=1`, `direct`
 * (ext4ts has no O_DIRECT path: its I/O stays buffered; the kernel peer honours it),
 * `fallocate=none`, `thread`, `group_reporting`, `description` (the report's row label).
 *
 * Cost: parsing only; nothing here touches a device.
 */
import { readFileSync } from 'node:fs';
import {
  JobError, MIB, KIB, parseFioBool, parseFioInt, parseFioSize, parseFioTimeMs, type KbBase,
} from './units.js';

export type RwMode = 'read' | 'write' | 'randread' | 'randwrite' | 'rw' | 'randrw';

export interface JobSpec {
  name: string;
  /** The row label in reports (fio's `description`), default the name. */
  description: string;
  rw: RwMode;
  /** Percent of I/Os that read, for rw/randrw. */
  rwmixread: number;
  bsBytes: number;
  /** Bytes of I/O per clone (and the size of each clone's file). */
  sizeBytes: number;
  /** Sync after every N writes (0: never). */
  fsync: number;
  fdatasync: number;
  endFsync: boolean;
  overwrite: boolean;
  numjobs: number;
  /** Asked for O_DIRECT; ext4ts runs buffered (see the header). */
  direct: boolean;
  /** The file's name (shared by the clones); undefined: one file per clone, named by filenameFormat. */
  filename?: string;
  /** fio's filename_format: $jobname, $jobnum (the clone), $filenum (always 0 here). */
  filenameFormat: string;
  runtimeMs?: number;
  timeBased: boolean;
  /** Drop the file's cached pages before the job. */
  invalidate: boolean;
  /** Read jobs: lay the file out by ftruncate only (an all-hole file). */
  sparse: boolean;
  randomMap: boolean;
  randseed: number;
  ioengine: string;
  /** Starts a new group: waits for every job before it. */
  stonewall: boolean;
}

/** Jobs that run concurrently (fio: between two stonewalls). */
export type JobGroup = JobSpec[];

const RW_ALIASES: Record<string, RwMode> = {
  read: 'read', write: 'write', randread: 'randread', randwrite: 'randwrite', rw: 'rw', readwrite: 'rw', randrw: 'randrw',
};
const IOENGINES = new Set(['psync', 'sync', 'pvsync', 'pvsync2']);
const RANDSEED_DEFAULT = 0x89;
export const NUMJOBS_MAX = 64;

/** Options taken as given (raw text per job), then resolved into a JobSpec. */
const KNOWN_OPTIONS = new Set([
  'name', 'description', 'rw', 'readwrite', 'rwmixread', 'rwmixwrite', 'bs', 'blocksize', 'size', 'filename', 'filename_format', 'fsync',
  'fdatasync', 'end_fsync', 'overwrite', 'numjobs', 'direct', 'buffered', 'runtime', 'time_based', 'invalidate', 'sparse',
  'norandommap', 'randseed', 'ioengine', 'iodepth', 'fallocate', 'thread', 'group_reporting', 'stonewall',
  'wait_for_previous', 'kb_base',
]);
/** Options that may appear without a value (`--time_based`, a bare `stonewall` line). */
export const BOOL_OPTIONS = new Set([
  'end_fsync', 'overwrite', 'direct', 'time_based', 'invalidate', 'sparse', 'norandommap', 'thread', 'group_reporting',
  'stonewall', 'wait_for_previous',
]);

export type RawOptions = Map<string, string>;

export function isFioOption(name: string): boolean {
  return KNOWN_OPTIONS.has(name);
}

/** Check that an option is one we speak; fio options we do not support get a clear no. */
function checkOptionName(name: string, where: string): void {
  if (!KNOWN_OPTIONS.has(name)) throw new JobError(`${where}: fio option '${name}' is not supported by ext4ts bench`);
}

/** Resolve one job's raw options (global merged with its section) into a JobSpec. */
export function resolveJob(name: string, raw: RawOptions): JobSpec {
  const get = (key: string): string | undefined => raw.get(key);
  const kbBaseText = get('kb_base') ?? '1024';
  if (kbBaseText !== '1024' && kbBaseText !== '1000') throw new JobError(`${name}: kb_base must be 1000 or 1024`);
  const kbBase = Number(kbBaseText) as KbBase;
  const size = (key: string, fallback: number): number => {
    const text = get(key);
    return text === undefined ? fallback : parseFioSize(text, `${name}: ${key}`, kbBase);
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const text = get(key);
    return text === undefined ? fallback : parseFioBool(text, `${name}: ${key}`);
  };
  const int = (key: string, fallback: number, minimum: number, maximum: number): number => {
    const text = get(key);
    return text === undefined ? fallback : parseFioInt(text, `${name}: ${key}`, minimum, maximum);
  };

  const rwText = (get('rw') ?? get('readwrite') ?? 'read').trim().toLowerCase();
  const rw = RW_ALIASES[rwText];
  if (rw === undefined) throw new JobError(`${name}: rw=${rwText} is not supported (read, write, randread, randwrite, rw, randrw)`);
  const bsBytes = size(get('bs') !== undefined ? 'bs' : 'blocksize', 4 * KIB);
  if (bsBytes === 0 || bsBytes % 512 !== 0) throw new JobError(`${name}: bs must be a positive multiple of 512 bytes`);
  const sizeBytes = size('size', 0);
  if (sizeBytes < bsBytes) throw new JobError(`${name}: size is required and at least one block (bs=${bsBytes})`);
  const rwmixwrite = get('rwmixwrite');
  const rwmixread = get('rwmixread') !== undefined || rwmixwrite === undefined
    ? int('rwmixread', 50, 0, 100)
    : 100 - parseFioInt(rwmixwrite, `${name}: rwmixwrite`, 0, 100);

  const ioengine = (get('ioengine') ?? 'psync').trim();
  if (!IOENGINES.has(ioengine)) throw new JobError(`${name}: ioengine=${ioengine}: only synchronous engines (psync, sync, pvsync) are supported`);
  if (int('iodepth', 1, 1, 1024) !== 1) throw new JobError(`${name}: iodepth must be 1 (psync is synchronous)`);
  const fallocate = (get('fallocate') ?? 'none').trim();
  if (fallocate !== 'none' && fallocate !== '0') throw new JobError(`${name}: fallocate=${fallocate}: only fallocate=none is supported`);
  // fio's buffered=0 is direct=1.
  const direct = bool('direct', false) || (get('buffered') !== undefined && !bool('buffered', true));
  const runtimeText = get('runtime');
  const runtimeMs = runtimeText === undefined ? undefined : parseFioTimeMs(runtimeText, `${name}: runtime`);
  const timeBased = bool('time_based', false);
  if (timeBased && runtimeMs === undefined) throw new JobError(`${name}: time_based needs runtime=`);
  const filename = get('filename')?.trim();
  if (filename !== undefined && !isPlainName(filename)) throw new JobError(`${name}: filename must be one plain name (no '/' or ':')`);
  const filenameFormat = get('filename_format')?.trim() ?? '$jobname.$jobnum.$filenum';
  if (!isPlainName(filenameFormat)) throw new JobError(`${name}: filename_format must make one plain name`);

  return {
    name,
    description: get('description')?.trim() || name,
    rw,
    rwmixread,
    bsBytes,
    sizeBytes: sizeBytes - (sizeBytes % bsBytes),
    fsync: int('fsync', 0, 0, Number.MAX_SAFE_INTEGER),
    fdatasync: int('fdatasync', 0, 0, Number.MAX_SAFE_INTEGER),
    endFsync: bool('end_fsync', false),
    overwrite: bool('overwrite', false),
    numjobs: int('numjobs', 1, 1, NUMJOBS_MAX),
    direct,
    filename,
    filenameFormat,
    runtimeMs,
    timeBased,
    invalidate: bool('invalidate', true),
    sparse: bool('sparse', false),
    randomMap: !bool('norandommap', false),
    randseed: int('randseed', RANDSEED_DEFAULT, 0, Number.MAX_SAFE_INTEGER),
    ioengine,
    stonewall: bool('stonewall', false) || bool('wait_for_previous', false),
  };
}

export function isReadJob(job: JobSpec): boolean {
  return job.rw === 'read' || job.rw === 'randread';
}

export function isWriteOnlyJob(job: JobSpec): boolean {
  return job.rw === 'write' || job.rw === 'randwrite';
}

export function isRandomJob(job: JobSpec): boolean {
  return job.rw === 'randread' || job.rw === 'randwrite' || job.rw === 'randrw';
}

function isPlainName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes(':') && !name.includes('\0');
}

/** The file a clone works on: filename=, else filename_format (fio's default: jobname.jobnum.filenum). */
export function cloneFileName(job: JobSpec, cloneIndex: number): string {
  if (job.filename !== undefined) return job.filename;
  return job.filenameFormat.replace(/\$jobname/g, job.name).replace(/\$jobnum/g, String(cloneIndex)).replace(/\$filenum/g, '0');
}

/** Split jobs into groups at each stonewall (the first job always starts a group). */
export function groupJobs(jobs: readonly JobSpec[]): JobGroup[] {
  const groups: JobGroup[] = [];
  for (const job of jobs) {
    if (groups.length === 0 || job.stonewall) groups.push([job]);
    else groups[groups.length - 1].push(job);
  }
  return groups;
}

// ---------------------------------------------------------------------------------------
// fio job files

/** Parse a fio job file's text: `[global]`, `[jobname]`, `key=value`, bare `key`, ; and # comments, ${ENV}. */
export function parseJobFile(text: string, env: Record<string, string | undefined> = process.env): JobSpec[] {
  let global: RawOptions = new Map();
  const sections: { name: string; raw: RawOptions }[] = [];
  let current: RawOptions | undefined;
  const lines = text.split(/\r?\n/);
  for (let lineIndex = 0; lineIndex < lines.length; lineIndex++) {
    const line = lines[lineIndex].replace(/\s[;#].*$/, '').trim();
    const where = `job file line ${lineIndex + 1}`;
    if (line === '' || line.startsWith(';') || line.startsWith('#')) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header !== null) {
      const name = header[1].trim();
      if (name === 'global') {
        // A later [global] changes the defaults of the jobs after it only.
        global = new Map(global);
        current = global;
      } else {
        current = new Map(global);
        sections.push({ name, raw: current });
      }
      continue;
    }
    if (current === undefined) throw new JobError(`${where}: option before any [section]`);
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim();
    const value = eq < 0 ? '' : substituteEnv(line.slice(eq + 1).trim(), env, where);
    checkOptionName(key, where);
    if (eq < 0 && !BOOL_OPTIONS.has(key)) throw new JobError(`${where}: option '${key}' needs a value`);
    current.set(key, value);
  }
  if (sections.length === 0) throw new JobError('job file has no job section');
  return sections.map(({ name, raw }) => resolveJob(name, raw));
}

function substituteEnv(value: string, env: Record<string, string | undefined>, where: string): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_match, variable: string) => {
    const replacement = env[variable];
    if (replacement === undefined) throw new JobError(`${where}: environment variable ${variable} is not set`);
    return replacement;
  });
}

export function readJobFile(path: string): JobSpec[] {
  return parseJobFile(readFileSync(path, 'utf8'));
}

// ---------------------------------------------------------------------------------------
// fio command lines

/**
 * fio options from a command line, in order, as [name, value] pairs (value '' for a bare
 * bool): options before the first `name` are global; each `name` starts a job.
 */
export function jobsFromOptions(options: readonly (readonly [string, string])[]): JobSpec[] {
  const global: RawOptions = new Map();
  const jobs: { name: string; raw: RawOptions }[] = [];
  for (const [key, value] of options) {
    checkOptionName(key, 'command line');
    if (key === 'name') {
      jobs.push({ name: value, raw: new Map(global) });
      continue;
    }
    (jobs.length === 0 ? global : jobs[jobs.length - 1].raw).set(key, value);
  }
  // fio with options but no --name runs one job named after nothing in particular.
  if (jobs.length === 0 && global.size > 0) jobs.push({ name: 'job', raw: global });
  return jobs.map(({ name, raw }) => resolveJob(name, raw));
}

// ---------------------------------------------------------------------------------------
// The seed's suite

/** One row of the seed's table: fio psync, 1 thread, 1 MiB blocks (RFC v1 cover letter). */
export interface SeedRow {
  description: string;
  bufferHeadMiBps: number;
  iomapLargeFoliosMiBps: number;
}

/** The seed's measurements (virt machine ramdisk), in the suite's row order. */
export const SEED_ROWS: readonly SeedRow[] = [
  { description: 'write+fsync', bufferHeadMiBps: 652, iomapLargeFoliosMiBps: 1442 },
  { description: 'overwrite+fsync', bufferHeadMiBps: 832, iomapLargeFoliosMiBps: 2065 },
  { description: 'read hole', bufferHeadMiBps: 1769, iomapLargeFoliosMiBps: 3557 },
  { description: 'read data', bufferHeadMiBps: 1465, iomapLargeFoliosMiBps: 2377 },
];

/** The default file size: short enough for the README's main job (the seed used 40 GiB). */
export const QUICK_SIZE_BYTES = 256 * MIB;
/**
 * `--full`: the seed's 40 GiB does not fit this class of machine (24 GiB of memory for the
 * device, the page cache and the kernel peer's tmpfs image), and ext4ts's page cache tops
 * out at 3 GiB (wasm32). The seed suite's page cache holds two files (the data and the
 * hole, cached as zeros), so 1 GiB per file is the largest size at which every read of
 * the suite stays cached on every engine.
 */
export const FULL_SIZE_BYTES = 1024 * MIB;

/**
 * The seed's four jobs, as a fio job file would say them, run in order on one fresh
 * filesystem: a new file written and fsynced at the end, the same file overwritten and
 * fsynced, a never-written sparse file read, the written file read. invalidate=0: cached
 * reads are compared with cached reads on every engine (the kernel keeps its page cache).
 */
export function seedJobFile(sizeText: string): string {
  return `; The seed's table: fio psync, 1 thread, 1 MiB blocks (ext4ts bench's default suite)
[global]
ioengine=psync
bs=1M
size=${sizeText}
numjobs=1
iodepth=1
fallocate=none
invalidate=0
stonewall

[write]
description=write+fsync
rw=write
end_fsync=1
filename=seed.data

[overwrite]
description=overwrite+fsync
rw=write
overwrite=1
end_fsync=1
filename=seed.data

[read-hole]
description=read hole
rw=read
sparse=1
filename=seed.hole

[read-data]
description=read data
rw=read
filename=seed.data
`;
}

/**
 * numjobs scaling: the write+fsync and read-data jobs with numjobs=1 and numjobs=2, each
 * clone on its own file (no filename=), the same size per clone; each read job reads the
 * files its write job wrote (filename_format), so no engine lays a file out mid-suite.
 */
export function scalingJobFile(sizeText: string): string {
  const job = (name: string, description: string, rw: string, numjobs: number, extra: string) =>
    `[${name}]\ndescription=${description}\nrw=${rw}\nnumjobs=${numjobs}\n${extra}`;
  return `[global]
ioengine=psync
bs=1M
size=${sizeText}
invalidate=0
fallocate=none
stonewall

${job('write-j1', 'write+fsync', 'write', 1, 'end_fsync=1\n')}
${job('read-j1', 'read data', 'read', 1, 'filename_format=write-j1.$jobnum.0\n')}
${job('write-j2', 'write+fsync', 'write', 2, 'end_fsync=1\n')}
${job('read-j2', 'read data', 'read', 2, 'filename_format=write-j2.$jobnum.0\n')}`;
}

/**
 * Small blocks: 4 KiB random writes into a new (sparse) file, fsync at the end, then 4 KiB
 * random reads of the data written.
 */
export function smallBlockJobFile(sizeText: string): string {
  return `[global]
ioengine=psync
bs=4k
size=${sizeText}
invalidate=0
fallocate=none
stonewall
filename=small.data

[randwrite-4k]
description=4k randwrite+fsync
rw=randwrite
end_fsync=1

[randread-4k]
description=4k randread
rw=randread
`;
}
