// Crash images of ext4ts itself: seeded workloads (ext4-workload.ts) recorded on a
// RecordingDevice, and for every crash state the harness builds (each flush point plus
// seeded random points with unflushed-write subsets and torn writes):
//   (a) ext4ts recovery: a read-write mount replays the journal and finishes the orphan
//       list; after unmount `e2fsck -fn` is clean and a read-only mount holds everything
//       acknowledged (checkAcknowledged);
//   (b) the same crash image replayed by `e2fsck -fy` instead: exit 0 or 1, no repair
//       beyond replay and orphan processing, then `e2fsck -fn` clean, and the tree holds
//       everything acknowledged too;
//   (c) where a loop mount works, a sample: the kernel mounts the crash image (replaying),
//       the mounted tree holds everything acknowledged, and after umount `e2fsck -fn` is clean.
//
// Cost per state (~50 ms on 2 cores): 2 writes of the 16 MiB image to tmpfs (reused
// files), 3 e2fsck runs (~10 ms each, spawned through spawn-server.ts because forking the
// big test worker costs ~16 ms a time), 3 mounts and tree reads. The e2fsck work runs in
// a pool of 2 jobs beside the in-process part (materialise, recover, verify), which stays
// serial as CrashImages needs. Default: 4 seeds x 900 ops (each run wraps the 1024-block
// journal) x 300 states = 1,200 states in ~60 s.
//
// EXT4TS_CRASH_LONG=1: 10 seeds x 2,000 ops x 1,200 states (12,000). A failure prints its
// seed and spec; EXT4TS_CRASH_REPLAY='<seed> <spec line>' (with the printed
// EXT4TS_CRASH_STEPS) checks that one state only; EXT4TS_CRASH_SEEDS=1,2 and
// EXT4TS_CRASH_IMAGES=50 narrow a run while debugging.
//
// Torn superblocks (found in long mode): a crash that tears the non-FUA checkpoint write of
// block 0 between its 512-byte sectors leaves a primary superblock whose checksum fails.
// The journal still holds the committed copy, so ext4ts's read-write open accepts such a
// superblock when it has RECOVER set, replays, and re-checks strictly (ext4/mount.ts). The
// oracles cannot: e2fsck -fy exits 8 and the kernel refuses the mount when there is no
// backup superblock (this 16 MiB image has one group). For those states (b) and (c) are
// skipped and counted; (a) and the e2fsck -fn of ext4ts's result still run. E.g.
// EXT4TS_CRASH_STEPS=2000 EXT4TS_CRASH_REPLAY='2 v1 kind=random seed=179448194 point=4460 applied=f torn=1:b2c4,2:dc0a'.
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { copyFile, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ext4, MemoryDevice, type BlockDevice, type SyncBlockDevice } from '@ext4ts/core';
import type { RecordedMark } from '../../packages/core/src/device/recording-device.js';
import { E2FSCK_COMPLAINT_PATTERNS, requireE2fsprogs, type E2fsckResult } from '../helpers/e2fs.js';
import { SpawnServer } from './spawn-server.js';
import { readImageTree } from '../helpers/image-tree.js';
import { loopMountSupport, withLoopMount } from '../helpers/loop-mount.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { readHostTree } from '../helpers/tree.js';
import { formatCrashSpec, type CrashImage } from './crash-images.js';
import { decodeSuperblock, superblockChecksum, SUPERBLOCK_OFFSET_BYTES, SUPERBLOCK_SIZE_BYTES } from '../../packages/core/src/format/superblock.js';
import { describeFailures, runCrashCampaign, type CampaignReport } from './harness.js';
import { checkAcknowledged, ext4Workload, makeCrashBase, mountReadWrite, type SeenTree, type WorkloadStats } from './ext4-workload.js';

const LONG = process.env.EXT4TS_CRASH_LONG === '1';
const SEEDS = process.env.EXT4TS_CRASH_SEEDS?.split(',').map(Number) ?? (LONG ? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] : [1, 2, 3, 4]);
/** States per seed: ~all flush points plus random ones up to this. */
const IMAGES_PER_SEED = Number(process.env.EXT4TS_CRASH_IMAGES ?? (LONG ? 1200 : 300));
const STEPS_PER_SEED = Number(process.env.EXT4TS_CRASH_STEPS ?? (LONG ? 2000 : 900));
/** Kernel mounts over the whole run (spread evenly over the states). */
const KERNEL_SAMPLE = LONG ? 60 : 10;
/** e2fsck jobs in flight beside the in-process work. */
const POOL_SIZE = 2;
const REPLAY = process.env.EXT4TS_CRASH_REPLAY;

/**
 * Lines of `e2fsck -fy` output that replaying a crash image may legitimately print: the
 * journal replay itself and the orphan list the engine left (e2fsck finishes it as the
 * kernel would). Any other question answered "yes" is a repair, i.e. a failure.
 */
const E2FSCK_REPLAY_LINES: readonly RegExp[] = [
  /recovering journal/i,
  /clearing orphaned inode/i,
  /truncating orphaned inode/i,
  /WAS MODIFIED/,
];

interface JobFailure { seed: number; specLine: string; message: string }

/** A bounded pool of async jobs; add() waits while it is full. Failures are collected. */
class JobPool {
  private readonly running = new Set<Promise<void>>();
  readonly failures: JobFailure[] = [];
  constructor(private readonly size: number) {}

  async add(seed: number, specLine: string, job: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.size) await Promise.race(this.running);
    const promise: Promise<void> = job()
      .catch((error: unknown) => { this.failures.push({ seed, specLine, message: (error as Error).message }); })
      .finally(() => { this.running.delete(promise); });
    this.running.add(promise);
  }

  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.race(this.running);
  }
}

/**
 * Image files reused across states: a state is written whole and synchronously over a file
 * whose tmpfs pages already exist (~3 ms for 16 MiB), where MemoryDevice.saveImage makes a
 * fresh file each time (~25 ms). A slot goes back to the free list when its job is done.
 */
class ImageSlots {
  private readonly free: string[] = [];
  private count = 0;
  private scratch = new Uint8Array(0);
  constructor(private readonly dir: () => string) {}

  take(): string { return this.free.pop() ?? path.join(this.dir(), `state-${this.count++}.img`); }
  give(file: string): void { this.free.push(file); }

  /** Write the device's whole contents to `file` (made if missing). */
  save(device: SyncBlockDevice, file: string): void {
    if (this.scratch.length !== device.sizeBytes) this.scratch = new Uint8Array(device.sizeBytes);
    device.readSync(0, this.scratch);
    const fd = openSync(file, constants.O_WRONLY | constants.O_CREAT); // no O_TRUNC: keep the pages
    try {
      for (let done = 0; done < this.scratch.length;) done += writeSync(fd, this.scratch, done, this.scratch.length - done, done);
    } finally {
      closeSync(fd);
    }
  }
}

let tmp: TempDir;
let spawner: SpawnServer;
const slots = new ImageSlots(() => tmp.dir);
/** Where the serial part of the checks spends its time (ms), for the summary line. */
const phaseMs: Record<string, number> = {};
/** Summed time of the pool's jobs by kind (ms; they overlap each other and the serial part). */
const jobMs: Record<string, number> = {};
/** States checked over all seeds so far: picks the kernel's sample evenly. */
let statesSoFar = 0;
beforeAll(async () => { await requireE2fsprogs(); tmp = makeTempDir('ext4ts-crash-'); spawner = new SpawnServer(); });
afterAll(() => { spawner?.close(); tmp?.cleanup(); });

/** helpers/e2fs.ts's e2fsck (same complaint patterns), spawned by the lean helper process. */
async function e2fsck(img: string, flags: readonly string[]): Promise<E2fsckResult> {
  const result = await spawner.run('e2fsck', [...flags, img]);
  const output = result.stdout + result.stderr;
  const complaints = output.split('\n').filter((line) => E2FSCK_COMPLAINT_PATTERNS.some((pattern) => pattern.test(line)));
  return { exitCode: result.exitCode, output, clean: result.exitCode === 0 && complaints.length === 0, complaints };
}

function imageTreeOf(fs: Awaited<ReturnType<typeof Ext4.mount>>): Promise<SeenTree> {
  return readImageTree(fs).then(({ tree }) => ({ entries: tree, readFile: (p: string) => fs.readFile(`/${p}`) as Promise<Buffer> }));
}

async function verifyWithExt4ts(device: BlockDevice, acknowledged: readonly RecordedMark[], who: string): Promise<void> {
  const fs = await Ext4.mount(device, { readOnly: true });
  try {
    const problems = await checkAcknowledged(await imageTreeOf(fs), acknowledged);
    if (problems.length > 0) throw new Error(`${who}: acknowledged state lost:\n  ${problems.slice(0, 8).join('\n  ')}`);
  } finally {
    await fs.unmount();
  }
}

/** Adds the time `work` took to jobMs[name] (summary line). */
async function timed<T>(name: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try { return await work(); } finally { jobMs[name] = (jobMs[name] ?? 0) + performance.now() - started; }
}

async function expectClean(img: string, who: string): Promise<void> {
  const result = await timed('e2fsck -fn', () => e2fsck(img, ['-fn']));
  if (!result.clean) throw new Error(`${who}: e2fsck -fn not clean (exit ${result.exitCode}):\n  ${result.complaints.slice(0, 10).join('\n  ')}`);
}

/** (b): e2fsck -fy replays the crash image; only replay lines allowed; then clean and complete. */
async function e2fsckReplay(img: string, acknowledged: readonly RecordedMark[]): Promise<void> {
  const fixed = await timed('e2fsck -fy', () => e2fsck(img, ['-fy']));
  const repairs = fixed.complaints.filter((line) => !E2FSCK_REPLAY_LINES.some((pattern) => pattern.test(line)));
  if (fixed.exitCode > 1 || repairs.length > 0) {
    throw new Error(`e2fsck -fy replay: exit ${fixed.exitCode}, repairs:\n  ${repairs.slice(0, 10).join('\n  ')}`);
  }
  await expectClean(img, 'after e2fsck -fy replay');
  await timed('verify e2fsck replay', async () => {
    // Whole into memory: one read, where a FileDevice makes hundreds of small ones.
    const device = await MemoryDevice.loadImage(img);
    try {
      await verifyWithExt4ts(device, acknowledged, 'after e2fsck -fy replay');
    } finally {
      device.closeSync();
    }
  });
}

/** (c): the kernel replays the crash image on a read-write loop mount. */
async function kernelReplay(img: string, acknowledged: readonly RecordedMark[]): Promise<void> {
  await withLoopMount(img, async (mountPoint) => {
    const entries = readHostTree(mountPoint);
    const problems = await checkAcknowledged({ entries, readFile: (p) => readFile(path.join(mountPoint, p)) }, acknowledged);
    if (problems.length > 0) throw new Error(`kernel replay: acknowledged state lost:\n  ${problems.slice(0, 8).join('\n  ')}`);
  });
  await expectClean(img, 'after kernel replay');
}

interface SeedRun { report: CampaignReport; stats: WorkloadStats; kernelChecked: number }

async function runSeed(seed: number, pool: JobPool, options: { images: number; kernelEvery: number; kernel: boolean; replay?: string }): Promise<SeedRun> {
  let stats: WorkloadStats | undefined;
  let stateIndex = 0;
  let kernelChecked = 0;
  const report = await runCrashCampaign({
    name: `ext4ts crash seed ${seed}`,
    seed,
    images: options.images,
    replay: options.replay,
    makeBase: makeCrashBase,
    workload: async (device, mark) => { stats = await ext4Workload(device, mark, { seed, steps: STEPS_PER_SEED }); },
    check: async (device, acknowledged, image: CrashImage) => {
      const index = stateIndex++;
      const specLine = formatCrashSpec(image.spec);
      const [pre, post] = [slots.take(), slots.take()];
      let t = performance.now();
      const lap = (phase: string): void => { const now = performance.now(); phaseMs[phase] = (phaseMs[phase] ?? 0) + now - t; t = now; };
      slots.save(device, pre);
      lap('save');
      const sbTorn = primarySuperblockTorn(device);
      if (sbTorn) tornSuperblockStates++;
      const kernel = !sbTorn && options.kernel && statesSoFar++ % options.kernelEvery === Math.floor(options.kernelEvery / 2);
      // A private copy: the kernel must not share a file e2fsck is checking.
      const kern = path.join(tmp.dir, `kernel-${seed}-${index}.img`);
      if (kernel) await copyFile(pre, kern);
      // (a) ext4ts recovery, in memory.
      const fs = await mountReadWrite(device);
      await fs.unmount();
      lap('recover');
      slots.save(device, post);
      lap('save');
      await verifyWithExt4ts(device, acknowledged, 'ext4ts recovery');
      lap('verify');
      await pool.add(seed, specLine, async () => {
        try {
          await expectClean(post, 'after ext4ts recovery');
          if (!sbTorn) await e2fsckReplay(pre, acknowledged);
        } finally {
          slots.give(post);
          slots.give(pre);
        }
      });
      lap('pool wait');
      if (kernel) {
        kernelChecked++;
        await pool.add(seed, specLine, async () => {
          try { await timed('kernel', () => kernelReplay(kern, acknowledged)); } finally { await rm(kern, { force: true }); }
        });
      }
    },
  });
  if (stats === undefined) throw new Error('workload did not run');
  return { report, stats, kernelChecked };
}

/** States whose primary superblock checksum fails (torn), which only ext4ts can recover. */
let tornSuperblockStates = 0;

function primarySuperblockTorn(device: SyncBlockDevice): boolean {
  const bytes = new Uint8Array(SUPERBLOCK_SIZE_BYTES);
  device.readSync(SUPERBLOCK_OFFSET_BYTES, bytes);
  const sb = decodeSuperblock(bytes);
  return superblockChecksum(sb.raw) !== sb.checksum;
}

function reproducer(seed: number, specLine: string): string {
  return `EXT4TS_CRASH_STEPS=${STEPS_PER_SEED} EXT4TS_CRASH_REPLAY='${seed} ${specLine}' npx vitest run test/crash/ext4-crash.test.ts`;
}

describe('ext4ts crash images', () => {
  it(`recover by ext4ts, e2fsck and the kernel with every acknowledged op (${REPLAY ? 'replay' : `${SEEDS.length} seeds x ${IMAGES_PER_SEED} states`})`, async () => {
    const loop = await loopMountSupport();
    if (!loop.ok) console.warn(`crash images: kernel replay skipped: ${loop.reason}`);
    const pool = new JobPool(POOL_SIZE);
    const started = performance.now();
    const runs: SeedRun[] = [];
    const replaySeed = REPLAY === undefined ? undefined : Number(REPLAY.trim().split(/\s+/)[0]);
    const seeds = replaySeed === undefined ? SEEDS : [replaySeed];
    const kernelEvery = Math.max(1, Math.floor((seeds.length * IMAGES_PER_SEED) / KERNEL_SAMPLE));
    for (const seed of seeds) {
      const replay = REPLAY === undefined ? undefined : REPLAY.trim().replace(/^\S+\s+/, '');
      const run = await runSeed(seed, pool, { images: IMAGES_PER_SEED, kernelEvery: replay ? 1 : kernelEvery, kernel: loop.ok, replay });
      runs.push(run);
      const { report, stats } = run;
      console.log(
        `seed ${seed}: ${stats.steps} ops (${stats.acks} acks; ${Object.entries(stats.byOp).map(([k, v]) => `${k} ${v}`).join(', ')}), ` +
        `journal ${stats.journal?.commits} commits / ${stats.journal?.blocksLogged} blocks logged / ${stats.journal?.checkpoints} checkpoints, ` +
        `${report.writeCount} writes, ${report.flushCount} flushes; ${report.statesChecked} states ` +
        `(${report.flushStates} flush + ${report.randomStates} random, ${run.kernelChecked} kernel) in ${report.checkMs.toFixed(0)} ms, ` +
        `${report.failures.length} failures`,
      );
    }
    await pool.drain();
    const totalMs = performance.now() - started;
    const states = runs.reduce((sum, run) => sum + run.report.statesChecked, 0);
    const kernelStates = runs.reduce((sum, run) => sum + run.kernelChecked, 0);
    console.log(`crash images: ${states} states checked (${kernelStates} by the kernel too; ${tornSuperblockStates} with a torn primary superblock, recovered by ext4ts only) in ${(totalMs / 1000).toFixed(1)} s; ` +
      `serial part: ${Object.entries(phaseMs).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}; ` +
      `pool jobs: ${Object.entries(jobMs).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}`);
    const messages = [
      ...runs.flatMap((run) => run.report.failures.map((f) => `${describeFailures({ ...run.report, failures: [f] })}\n  or: ${reproducer(run.report.seed, f.specLine)}`)),
      ...pool.failures.map((f) => `seed ${f.seed} ${f.specLine}: ${f.message}\n  reproduce: ${reproducer(f.seed, f.specLine)}`),
    ];
    expect(messages, messages.join('\n\n')).toEqual([]);
    if (REPLAY === undefined) expect(states).toBeGreaterThanOrEqual(1000);
  }, LONG ? 3_600_000 : 600_000);
});
