/**
 * Peer: the Linux kernel's ext4, measured by fio itself with the same jobs, on an ext4
 * image in tmpfs (/dev/shm) loop-mounted in a private temporary directory — the nearest
 * this machine has to the seed's ramdisk.
 *
 * Each repetition: `mkfs.ext4 -F -q -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,
 * nodiscard` (the seed: "mkfs with lazy init off"; nodiscard keeps the tmpfs pages that
 * setUp touched), `mount -o loop`, one fio run per job group (`--group_reporting`, a
 * `--new_group` per job so each job is one report entry), `umount` in a finally. Sparse
 * read files are made with ftruncate before fio, so fio finds them at full size and does
 * not lay them out. Kernel defaults otherwise (data=ordered, delalloc, 5 s commit).
 *
 * Timing: fio's own numbers (bw, iops from its millisecond runtime, end_fsync included);
 * for jobs shorter than 100 ms without fsyncs, the sum of fio's per-call latencies
 * (parseFioJson says which in each run's `timing`).
 *
 * Caches: nothing is dropped between jobs beyond what a job's fio `invalidate` does (the
 * suite sets invalidate=0), so the kernel keeps its page cache exactly as ext4ts keeps
 * its own: cached reads are compared with cached reads. The loop device adds a second
 * copy (page cache → loop → tmpfs) on writeback and on uncached reads only.
 *
 * Needs: Linux, root, loop devices, mkfs.ext4, fio (fio can be installed with apt-get when
 * the bench is run as root with --install-peers). Missing any: the peer is skipped with
 * the reason. Cost outside the timed jobs: mkfs + mount + fio start-up, ~0.3 s per
 * repetition, and setUp writes the whole image once (tmpfs, ~1 s per GiB).
 */
import { execFile, spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, open, rm, rmdir, stat } from 'node:fs/promises';
import { tmpdir, release } from 'node:os';
import { delimiter, join } from 'node:path';
import { cloneFileName, isReadJob, type JobSpec } from '../src/job.js';
import type { ExecuteOptions, JobRun } from '../src/executor.js';
import type { SuitePlan, Target } from '../src/target.js';

const TMPFS_DIR = '/dev/shm';
const SBIN_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin', '/usr/bin', '/bin'];
const TOUCH_PIECE_BYTES = 8 * 1024 * 1024;
const MIB = 1024 * 1024;
/** Bound on one fio run (a full-size group on a slow machine stays well inside it). */
const FIO_TIMEOUT_MS = 30 * 60 * 1000;
const UMOUNT_TRIES = 5;

export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN_DIRS];
  for (const dir of dirs) {
    try {
      accessSync(join(dir, name), fsConstants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

function isMountPoint(dir: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === dir);
}

function run(tool: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { timeout: timeoutMs, maxBuffer: 64 * MIB }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${tool} ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

/** fio command-line options for one job (sizes in bytes, so kb_base never matters). */
export function fioArgsOf(job: JobSpec): string[] {
  const args = [
    `--name=${job.name}`, '--new_group', `--rw=${job.rw}`, `--bs=${job.bsBytes}`, `--size=${job.sizeBytes}`,
    `--ioengine=${job.ioengine}`, '--iodepth=1', `--numjobs=${job.numjobs}`, '--fallocate=none',
    `--invalidate=${job.invalidate ? 1 : 0}`, `--direct=${job.direct ? 1 : 0}`, `--randseed=${job.randseed}`,
  ];
  if (job.filename !== undefined) args.push(`--filename=${job.filename}`);
  else args.push(`--filename_format=${job.filenameFormat}`);
  if (job.rw === 'rw' || job.rw === 'randrw') args.push(`--rwmixread=${job.rwmixread}`);
  if (job.fsync > 0) args.push(`--fsync=${job.fsync}`);
  if (job.fdatasync > 0) args.push(`--fdatasync=${job.fdatasync}`);
  if (job.endFsync) args.push('--end_fsync=1');
  if (job.overwrite) args.push('--overwrite=1');
  if (!job.randomMap) args.push('--norandommap');
  if (job.runtimeMs !== undefined) args.push(`--runtime=${Math.max(1, Math.round(job.runtimeMs))}ms`);
  if (job.timeBased) args.push('--time_based');
  return args;
}

interface FioDirection {
  io_bytes: number; bw_bytes: number; iops: number; runtime: number; total_ios: number;
  lat_ns?: { mean: number; max: number };
  clat_ns?: { percentile?: Record<string, number> };
}
interface FioJob { jobname: string; read: FioDirection; write: FioDirection; sync?: { total_ios?: number } }

/**
 * Below this runtime fio's whole-millisecond clock is too coarse (a 256 MiB cached read
 * takes ~14 ms: ±7%), so the time is taken from fio's nanosecond latencies instead.
 */
const COARSE_RUNTIME_MS = 100;

/**
 * A job's time: fio's runtime (ms, end_fsync included), or for a short job without
 * end_fsync the sum of its calls' latencies per clone (ns; excludes fio's own per-call
 * overhead, ~1 µs, so it flatters the kernel slightly on small blocks).
 */
function elapsedOf(job: JobSpec, read: FioDirection, write: FioDirection): { elapsedMs: number; fine: boolean } {
  const runtimeMs = Math.max(read.runtime, write.runtime);
  if (runtimeMs >= COARSE_RUNTIME_MS || job.endFsync || job.fsync > 0 || job.fdatasync > 0) return { elapsedMs: runtimeMs, fine: false };
  const busyNs = (read.lat_ns?.mean ?? 0) * read.total_ios + (write.lat_ns?.mean ?? 0) * write.total_ios;
  const elapsedMs = busyNs / 1e6 / job.numjobs;
  return elapsedMs > 0 ? { elapsedMs, fine: true } : { elapsedMs: runtimeMs, fine: false };
}

/** fio's JSON output (anything before the first '{' is fio's chatter) → one JobRun per job. */
export function parseFioJson(text: string, jobs: readonly JobSpec[]): JobRun[] {
  const start = text.indexOf('{');
  if (start < 0) throw new Error(`fio printed no JSON: ${text.slice(0, 200)}`);
  const parsed = JSON.parse(text.slice(start)) as { jobs: FioJob[] };
  if (parsed.jobs.length !== jobs.length) throw new Error(`fio reported ${parsed.jobs.length} jobs, expected ${jobs.length}`);
  return parsed.jobs.map((entry, index) => {
    const job = jobs[index];
    const { read, write } = entry;
    const percentile = (direction: FioDirection, key: string) => (direction.clat_ns?.percentile?.[key] ?? 0) / 1000;
    const main = write.total_ios > read.total_ios ? write : read;
    const { elapsedMs, fine } = elapsedOf(job, read, write);
    const seconds = Math.max(elapsedMs, 1e-6) / 1000;
    return {
      job: job.name,
      description: job.description,
      readBytes: read.io_bytes,
      writeBytes: write.io_bytes,
      readIos: read.total_ios,
      writeIos: write.total_ios,
      syncs: entry.sync?.total_ios ?? 0,
      elapsedMs,
      mibPerSecond: fine ? (read.io_bytes + write.io_bytes) / MIB / seconds : (read.bw_bytes + write.bw_bytes) / MIB,
      iops: fine ? (read.total_ios + write.total_ios) / seconds : read.iops + write.iops,
      timing: fine ? 'latency-sum' : 'fio-runtime',
      latency: main.lat_ns === undefined ? undefined : {
        meanUs: main.lat_ns.mean / 1000, p50Us: percentile(main, '50.000000'), p99Us: percentile(main, '99.000000'), maxUs: main.lat_ns.max / 1000,
      },
    };
  });
}

export interface KernelPeerOptions {
  /** Install fio with apt-get when missing (root only). */
  install?: boolean;
}

export class KernelFioPeer implements Target {
  readonly id = 'kernel';
  readonly label = 'kernel ext4 (fio)';
  readonly kind = 'peer' as const;
  readonly notes: string[] = [];
  private fio = '';
  private imageDir = '';
  private mountDir = '';
  /** Ctrl-C while mounted: lazy-unmount and remove the image before exiting (a finally would not run). */
  private readonly onSignal = (signal: NodeJS.Signals) => {
    const umount = findTool('umount') ?? 'umount';
    // fio got the signal too and is exiting: give it a moment, then unmount lazily.
    let unmounted = false;
    for (let attempt = 0; attempt < 10 && !unmounted; attempt++) {
      unmounted = spawnSync(umount, [this.mountDir], { stdio: 'ignore' }).status === 0;
      if (!unmounted) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
    if (!unmounted) spawnSync(umount, ['-l', this.mountDir], { stdio: 'ignore' });
    rmSync(this.imageDir, { recursive: true, force: true });
    // Once nothing is mounted there, the private directory (and anything a dying fio wrote
    // into it after a lazy unmount) can go.
    if (!isMountPoint(this.mountDir)) rmSync(this.mountDir, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };

  constructor(private readonly options: KernelPeerOptions = {}) {}

  async probe(): Promise<string | undefined> {
    if (process.platform !== 'linux') return 'needs Linux (loop-mounts an ext4 image)';
    if (process.getuid?.() !== 0) return 'needs root (mount -o loop)';
    if (findTool('mkfs.ext4') === undefined) return 'mkfs.ext4 not found (apt-get install -y e2fsprogs)';
    if (findTool('mount') === undefined || findTool('umount') === undefined) return 'mount/umount not found';
    if (!(await stat('/dev/loop-control').then(() => true, () => false))) return 'no loop devices (/dev/loop-control missing)';
    if (!readFileSync('/proc/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === TMPFS_DIR && line.split(' ')[2] === 'tmpfs')) {
      return `${TMPFS_DIR} is not a tmpfs`;
    }
    let fio = findTool('fio');
    if (fio === undefined && this.options.install === true && findTool('apt-get') !== undefined) {
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const installed = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'fio'], { env, stdio: 'ignore' });
      if (installed.status !== 0) {
        spawnSync('apt-get', ['update'], { env, stdio: 'ignore' });
        spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'fio'], { env, stdio: 'ignore' });
      }
      fio = findTool('fio');
    }
    if (fio === undefined) return 'fio not found (apt-get install -y fio, or run as root with --install-peers)';
    this.fio = fio;
    return undefined;
  }

  async setUp(plan: SuitePlan): Promise<void> {
    this.imageDir = await mkdtemp(join(TMPFS_DIR, 'ext4ts-bench-kernel-'));
    this.mountDir = await mkdtemp(join(tmpdir(), 'ext4ts-bench-mnt-'));
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
    // Write the whole image once so tmpfs has its pages before any timed job.
    const handle = await open(this.imagePath(), 'w');
    try {
      const zeros = new Uint8Array(TOUCH_PIECE_BYTES);
      for (let at = 0; at < plan.deviceBytes; at += TOUCH_PIECE_BYTES) {
        await handle.write(zeros, 0, Math.min(TOUCH_PIECE_BYTES, plan.deviceBytes - at), at);
      }
    } finally {
      await handle.close();
    }
    const version = (await run(this.fio, ['--version'])).trim();
    this.notes.length = 0;
    this.notes.push(`kernel: Linux ${release()} ext4 (mkfs.ext4 -b 4096, lazy init off), loop-mounted from a tmpfs image, ${version} psync; page cache kept: cached reads vs cached reads`);
  }

  private imagePath(): string {
    return join(this.imageDir, 'kernel.img');
  }

  async runSuite(plan: SuitePlan, options: ExecuteOptions): Promise<JobRun[]> {
    await run(findTool('mkfs.ext4')!, ['-F', '-q', '-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0,nodiscard', this.imagePath()]);
    await run(findTool('mount')!, ['-o', 'loop', this.imagePath(), this.mountDir]);
    try {
      const runs: JobRun[] = [];
      for (const group of plan.groups) {
        await this.makeSparseFiles(group);
        const args = ['--output-format=json', '--group_reporting', `--directory=${this.mountDir}`, ...group.flatMap(fioArgsOf)];
        const output = await run(this.fio, args, FIO_TIMEOUT_MS);
        const groupRuns = parseFioJson(output, group);
        for (const jobRun of groupRuns) options.onBytes?.(jobRun.readBytes + jobRun.writeBytes);
        runs.push(...groupRuns);
      }
      return runs;
    } finally {
      await this.unmount();
    }
  }

  private async makeSparseFiles(group: readonly JobSpec[]): Promise<void> {
    for (const job of group) {
      if (!job.sparse || !isReadJob(job)) continue;
      for (let clone = 0; clone < job.numjobs; clone++) {
        const handle = await open(join(this.mountDir, cloneFileName(job, clone)), 'a');
        try {
          if ((await handle.stat()).size < job.sizeBytes) await handle.truncate(job.sizeBytes);
        } finally {
          await handle.close();
        }
      }
    }
  }

  private async unmount(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await run(findTool('umount')!, [this.mountDir]);
        return;
      } catch (error) {
        if (attempt >= UMOUNT_TRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  }

  async tearDown(): Promise<void> {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    if (this.imageDir !== '') await rm(this.imageDir, { recursive: true, force: true });
    if (this.mountDir !== '') await rmdir(this.mountDir).catch(() => undefined);
    this.imageDir = '';
    this.mountDir = '';
  }
}
