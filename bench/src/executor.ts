/**
 * The job executor for in-process engines (ext4ts and the in-process peers): runs one
 * group of jobs (job.ts) against a BenchFs the way fio's psync engine runs them against
 * a kernel file system — one positional read or write call per block, one outstanding
 * call per clone, clones of every job of the group side by side.
 *
 * numjobs: clones run as concurrent async loops in this thread (two callers interleaving
 * on one event loop), or — when the BenchFs offers client threads (ext4ts's client
 * channel) — each on its own worker thread (clone-threads.ts), the same loop (runClone).
 * The report says which.
 *
 * Timing follows fio: a job's time runs from the group's start to the end of its last
 * clone, fsyncs included (end_fsync too); layout (overwrite=1, a read job's missing
 * file) and cache invalidation happen before the clock starts. Per-call latency is kept
 * for up to LATENCY_SAMPLES_MAX calls per job (percentiles of the first calls only past
 * that). Cost of the harness itself: one performance.now() and one array store per call
 * (~0.1 µs), nothing per byte: every call reuses one page-aligned buffer per clone.
 */
import type { TransferListItem } from 'node:worker_threads';
import { allocAligned, seededUnitRandom as seededRandom } from '@ext4ts/core';
import {
  cloneFileName, isRandomJob, isReadJob, type JobGroup, type JobSpec,
} from './job.js';
import { executeGroupInThreads } from './clone-threads.js';

/** One open file, as a psync-style engine sees it. */
export interface BenchFile {
  pwrite(source: Uint8Array, positionBytes: number): Promise<void>;
  /** Bytes read (short only at end of file). */
  pread(target: Uint8Array, positionBytes: number): Promise<number>;
  fsync(): Promise<void>;
  fdatasync(): Promise<void>;
  close(): Promise<void>;
}

/** What a BenchFile needs of an open file: node's fs FileHandle and ext4ts's both have it. */
export interface PositionalHandle {
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  sync(): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

/** A BenchFile over an open handle with pwrite/pread-style calls (a short write is an error). */
export class HandleBenchFile implements BenchFile {
  constructor(private readonly handle: PositionalHandle) {}
  async pwrite(source: Uint8Array, positionBytes: number): Promise<void> {
    const { bytesWritten } = await this.handle.write(source, 0, source.length, positionBytes);
    if (bytesWritten !== source.length) throw new Error(`short write: ${bytesWritten} of ${source.length}`);
  }
  async pread(target: Uint8Array, positionBytes: number): Promise<number> {
    return (await this.handle.read(target, 0, target.length, positionBytes)).bytesRead;
  }
  fsync(): Promise<void> { return this.handle.sync(); }
  fdatasync(): Promise<void> { return this.handle.datasync(); }
  close(): Promise<void> { return this.handle.close(); }
}

/** A file system under test, as the executor drives it. Names are plain, in one directory. */
export interface BenchFs {
  /** The file's size in bytes, or undefined when it does not exist. */
  sizeOf(name: string): Promise<number | undefined>;
  /** Open read-write, creating the file if it is missing (never truncating). */
  open(name: string): Promise<BenchFile>;
  /** Make `name` a file of sizeBytes without writing data (ftruncate, or the engine's nearest). */
  makeSparse(name: string, sizeBytes: number): Promise<void>;
  /** fio invalidate=1: drop cached file data. */
  dropCaches(): Promise<void>;
  /**
   * When present, clones run on worker threads (clone-threads.ts), each reaching the
   * engine through this: a connection per clone, and a close once the group is done.
   */
  clientThreads?: ClientThreads;
  /**
   * When present, the engine's own I/O buffer for a slot (ext4ts: fs.allocBuffer, a
   * buffer inside its shared memory that it copies to and from with memory.copy — the
   * fast path its API offers). The executor fills it with the same pattern bytes.
   */
  ioBuffer?(slot: number, lengthBytes: number): Uint8Array | undefined;
}

/** How worker-thread clones reach an engine (ext4ts: its client channel). */
export interface ClientThreads {
  /** One connection for one worker: what to post it, and what to transfer. */
  connect(): { handle: unknown; transferList: TransferListItem[] };
  /** After the group: end the connections. */
  close(): Promise<void>;
}

export interface LatencySummary { meanUs: number; p50Us: number; p99Us: number; maxUs: number }

/** What one job did in one run (all clones together). */
export interface JobRun {
  job: string;
  description: string;
  readBytes: number;
  writeBytes: number;
  readIos: number;
  writeIos: number;
  syncs: number;
  elapsedMs: number;
  /** (readBytes + writeBytes) / MiB / seconds. */
  mibPerSecond: number;
  /** (readIos + writeIos) / seconds. */
  iops: number;
  /** How elapsedMs was measured: the harness's clock around the job (default), or a peer's own. */
  timing?: 'harness' | 'fio-runtime' | 'latency-sum';
  latency?: LatencySummary;
}

export interface ExecuteOptions {
  /** Called with bytes moved since the last call (for the progress bar). */
  onBytes?: (bytes: number) => void;
}

const LATENCY_SAMPLES_MAX = 1 << 20;
const LAYOUT_CHUNK_BYTES = 1024 * 1024;
const MIB = 1024 * 1024;

/** Block indexes in the order a job visits them: in order, or each once in a seeded random order. */
export function blockOrder(job: JobSpec, cloneIndex: number): Uint32Array {
  const blockCount = job.sizeBytes / job.bsBytes;
  const order = new Uint32Array(blockCount);
  for (let i = 0; i < blockCount; i++) order[i] = i;
  if (!isRandomJob(job)) return order;
  const random = seededRandom(job.randseed + cloneIndex);
  if (!job.randomMap) {
    for (let i = 0; i < blockCount; i++) order[i] = Math.floor(random() * blockCount);
    return order;
  }
  for (let i = blockCount - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const swap = order[i];
    order[i] = order[j];
    order[j] = swap;
  }
  return order;
}

/** Write a clone's file in full before a job that needs data there (fio's layout; create_fsync). */
async function layOut(fs: BenchFs, name: string, sizeBytes: number, pattern: Uint8Array): Promise<void> {
  const file = await fs.open(name);
  try {
    const chunk = pattern.subarray(0, Math.min(pattern.length, LAYOUT_CHUNK_BYTES));
    for (let at = 0; at < sizeBytes; at += chunk.length) {
      await file.pwrite(chunk.subarray(0, Math.min(chunk.length, sizeBytes - at)), at);
    }
    await file.fsync();
  } finally {
    await file.close();
  }
}

/** Make sure each clone's file is there as the job expects it (untimed). */
async function prepareJob(fs: BenchFs, job: JobSpec, pattern: Uint8Array): Promise<void> {
  const needsData = !isWriteOnlyOrFresh(job);
  const names = new Set(Array.from({ length: job.numjobs }, (_, clone) => cloneFileName(job, clone)));
  for (const name of names) {
    const sizeBytes = (await fs.sizeOf(name)) ?? -1;
    if (sizeBytes >= job.sizeBytes) continue;
    if (job.sparse && isReadJob(job)) await fs.makeSparse(name, job.sizeBytes);
    else if (needsData) await layOut(fs, name, job.sizeBytes, pattern);
  }
}

/** Plain write jobs without overwrite=1 just write (into a new file, or over an old one). */
function isWriteOnlyOrFresh(job: JobSpec): boolean {
  return (job.rw === 'write' || job.rw === 'randwrite') && !job.overwrite;
}

/**
 * Page-aligned buffers kept for the life of the process (slot 0: the write pattern, slot
 * i > 0: clone i's read buffer), so runs never pay for fresh memory (first touch is slow
 * here) and never make a new wasm memory per job. The pattern is fio-like pseudo-random
 * bytes, not zeros, so no engine can take a zero shortcut.
 */
const scratch: Uint8Array[] = [];

export function scratchBuffer(slot: number, lengthBytes: number): Uint8Array {
  const existing = scratch[slot];
  if (existing !== undefined && existing.length >= lengthBytes) return existing;
  const buffer = allocAligned(lengthBytes);
  const words = new Uint32Array(buffer.buffer, buffer.byteOffset, Math.floor(lengthBytes / 4));
  const random = seededRandom(slot + 1);
  for (let i = 0; i < words.length; i++) words[i] = (random() * 4294967296) >>> 0;
  scratch[slot] = buffer;
  return buffer;
}

export interface CloneTally { readBytes: number; writeBytes: number; readIos: number; writeIos: number; syncs: number; endMs: number }

/** What one clone needs: its file, its buffers, the shared clock and its job's latency log. */
export interface CloneRun {
  file: BenchFile;
  job: JobSpec;
  cloneIndex: number;
  /** Reads land here (the clone's own). */
  readBuffer: Uint8Array;
  /** Writes carry these bytes (shared by all clones: engines only read it). */
  writeBuffer: Uint8Array;
  latency: { samples: Float64Array; count: number };
}

export async function runClone(run: CloneRun, startMs: number, options: ExecuteOptions): Promise<CloneTally> {
  const { file, job, latency } = run;
  const tally: CloneTally = { readBytes: 0, writeBytes: 0, readIos: 0, writeIos: 0, syncs: 0, endMs: startMs };
  const order = blockOrder(job, run.cloneIndex);
  const mixRandom = seededRandom(job.randseed ^ 0x5bd1e995 ^ run.cloneIndex);
  const readShare = readShareOf(job);
  const deadlineMs = job.runtimeMs === undefined ? Infinity : startMs + job.runtimeMs;
  const readBlock = run.readBuffer.subarray(0, job.bsBytes);
  const writeBlock = run.writeBuffer.subarray(0, job.bsBytes);
  let writesSinceSync = 0;
  let writesSinceDatasync = 0;
  outer: do {
    for (let i = 0; i < order.length; i++) {
      const positionBytes = order[i] * job.bsBytes;
      const reading = readShare === 1 || (readShare > 0 && mixRandom() < readShare);
      const before = performance.now();
      if (before >= deadlineMs) break outer;
      if (reading) {
        const bytesRead = await file.pread(readBlock, positionBytes);
        tally.readBytes += bytesRead;
        tally.readIos++;
        options.onBytes?.(bytesRead);
      } else {
        await file.pwrite(writeBlock, positionBytes);
        tally.writeBytes += writeBlock.length;
        tally.writeIos++;
        options.onBytes?.(writeBlock.length);
        if (job.fsync > 0 && ++writesSinceSync >= job.fsync) { await file.fsync(); tally.syncs++; writesSinceSync = 0; }
        if (job.fdatasync > 0 && ++writesSinceDatasync >= job.fdatasync) { await file.fdatasync(); tally.syncs++; writesSinceDatasync = 0; }
      }
      if (latency.count < latency.samples.length) latency.samples[latency.count++] = (performance.now() - before) * 1000;
    }
  } while (job.timeBased && performance.now() < deadlineMs);
  if (job.endFsync && tally.writeIos > 0) { await file.fsync(); tally.syncs++; }
  tally.endMs = performance.now();
  return tally;
}

/** The share of calls that read: 1 for read jobs, 0 for write jobs, rwmixread for mixes. */
function readShareOf(job: JobSpec): number {
  if (job.rw === 'read' || job.rw === 'randread') return 1;
  if (job.rw === 'write' || job.rw === 'randwrite') return 0;
  return job.rwmixread / 100;
}

export function summariseLatency(samples: Float64Array): LatencySummary | undefined {
  if (samples.length === 0) return undefined;
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  let sum = 0;
  for (const v of sorted) sum += v;
  return { meanUs: sum / sorted.length, p50Us: at(0.5), p99Us: at(0.99), maxUs: sorted[sorted.length - 1] };
}

/** Run one group (its jobs side by side, each job's clones side by side); results in job order. */
export async function executeGroup(fs: BenchFs, group: JobGroup, options: ExecuteOptions = {}): Promise<JobRun[]> {
  const plainPattern = scratchBuffer(0, Math.max(LAYOUT_CHUNK_BYTES, ...group.map((job) => job.bsBytes)));
  const buffer = (slot: number, lengthBytes: number): Uint8Array => {
    const own = fs.ioBuffer?.(slot, lengthBytes);
    if (own === undefined) return scratchBuffer(slot, lengthBytes);
    own.set(scratchBuffer(slot, lengthBytes).subarray(0, lengthBytes));
    return own;
  };
  const pattern = buffer(0, plainPattern.length);
  for (const job of group) await prepareJob(fs, job, pattern);
  if (group.some((job) => job.invalidate)) await fs.dropCaches();
  if (fs.clientThreads !== undefined) return executeGroupInThreads(fs.clientThreads, group, options);

  const latencyByJob = new Map(group.map((job) => [job, {
    samples: new Float64Array(Math.min(LATENCY_SAMPLES_MAX, (job.sizeBytes / job.bsBytes) * job.numjobs * (job.timeBased ? 4 : 1))),
    count: 0,
  }]));
  const runs: CloneRun[] = [];
  try {
    for (const job of group) {
      for (let cloneIndex = 0; cloneIndex < job.numjobs; cloneIndex++) {
        const file = await fs.open(cloneFileName(job, cloneIndex));
        const readBuffer = buffer(1 + runs.length, job.bsBytes);
        runs.push({ file, job, cloneIndex, readBuffer, writeBuffer: pattern, latency: latencyByJob.get(job)! });
      }
    }
    const startMs = performance.now();
    const tallies = await Promise.all(runs.map((run) => runClone(run, startMs, options)));
    return group.map((job) => {
      const mine = tallies.filter((_, index) => runs[index].job === job);
      const latency = latencyByJob.get(job)!;
      return jobRunOf(job, mine, startMs, summariseLatency(latency.samples.subarray(0, latency.count)));
    });
  } finally {
    for (const { file } of runs) await file.close();
  }
}

export function jobRunOf(job: JobSpec, tallies: CloneTally[], startMs: number, latency: LatencySummary | undefined): JobRun {
  const sum = (pick: (t: CloneTally) => number) => tallies.reduce((total, t) => total + pick(t), 0);
  const elapsedMs = Math.max(...tallies.map((t) => t.endMs)) - startMs;
  const readBytes = sum((t) => t.readBytes);
  const writeBytes = sum((t) => t.writeBytes);
  const readIos = sum((t) => t.readIos);
  const writeIos = sum((t) => t.writeIos);
  const seconds = Math.max(elapsedMs, 1e-6) / 1000;
  return {
    job: job.name,
    description: job.description,
    readBytes, writeBytes, readIos, writeIos,
    syncs: sum((t) => t.syncs),
    elapsedMs,
    mibPerSecond: (readBytes + writeBytes) / MIB / seconds,
    iops: (readIos + writeIos) / seconds,
    timing: 'harness',
    latency,
  };
}
