/**
 * The runner: suites × targets × repetitions. A suite is a list of jobs (job.ts) and the
 * targets that run it. Each target in turn is set up, runs every repetition (each on a
 * fresh file system) and is torn down before the next one starts: target-major, so only
 * one target's memory is held at a time (at --full a memory device, its page cache or a
 * tmpfs image is ~2.5 GiB each; seven at once would not fit this 24 GiB machine). A slow
 * drift of the machine therefore shows between columns more than between repetitions;
 * Before its timed repetitions a target may run `warmup` untimed ones (fio's ramp_time:
 * JIT-compiled code reaches its steady state), whose results are thrown away.
 * the min/max spread in the JSON shows how large it was. Medians are over repetitions.
 *
 * Targets that cannot run here are skipped with their probe's reason; a target that
 * fails is recorded with its error and the run goes on (the CLI exits non-zero if an
 * ext4ts target failed). tearDown runs in a finally.
 */
import { groupJobs, type JobSpec } from './job.js';
import type { JobRun } from './executor.js';
import { planDevice, type SuitePlan, type Target } from './target.js';
import { silentProgress, type ProgressSink } from './progress.js';

export interface SuiteSpec {
  id: string;
  title: string;
  jobs: JobSpec[];
  targets: Target[];
}

export interface TargetOutcome {
  target: Target;
  /** Why it did not run (probe), or why it stopped (error). */
  skipped?: string;
  failed?: string;
  /** runs[repetition][jobIndex]. */
  runs: JobRun[][];
}

export interface SuiteOutcome {
  spec: SuiteSpec;
  deviceBytes: number;
  outcomes: TargetOutcome[];
}

export interface RunnerOptions {
  repeat: number;
  /** Untimed repetitions before the timed ones, per target (default 0). */
  warmup?: number;
  /** Builds the progress sink once the total planned bytes are known. */
  progress?: (totalBytes: number) => ProgressSink;
  /** Lines worth telling as they happen (skips, failures). */
  log?: (line: string) => void;
  /** Called before each target is set up (warm-memory.ts: so no column runs on cold memory). */
  beforeTarget?: (plan: SuitePlan) => void;
}

function plannedBytes(jobs: readonly JobSpec[]): number {
  return jobs.reduce((total, job) => total + job.sizeBytes * job.numjobs, 0);
}

/** Probe each target once per id (a second kernel peer must not retry an install). */
async function probeAll(suites: readonly SuiteSpec[], log: (line: string) => void): Promise<Map<Target, string | undefined>> {
  const reasons = new Map<Target, string | undefined>();
  const failedById = new Map<string, string>();
  for (const target of suites.flatMap((suite) => suite.targets)) {
    const known = failedById.get(target.id);
    if (known !== undefined) { reasons.set(target, known); continue; }
    const reason = await target.probe().catch((error: unknown) => `probe failed: ${(error as Error).message}`);
    reasons.set(target, reason);
    if (reason !== undefined) {
      failedById.set(target.id, reason);
      log(`skipping ${target.label}: ${reason}`);
    }
  }
  return reasons;
}

/**
 * A full GC between repetitions when node runs with --expose-gc (the start and bench
 * scripts do): the last repetition's engine memory (ext4ts maps a new wasm page cache per
 * mount) goes back before the next one maps its own, and no collection of it lands in a
 * timed job. Without the flag this does nothing.
 */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export async function runSuites(suites: readonly SuiteSpec[], options: RunnerOptions): Promise<SuiteOutcome[]> {
  const log = options.log ?? (() => {});
  const reasons = await probeAll(suites, log);
  let totalBytes = 0;
  for (const suite of suites) {
    const runnable = suite.targets.filter((target) => reasons.get(target) === undefined).length;
    totalBytes += plannedBytes(suite.jobs) * runnable * (options.repeat + (options.warmup ?? 0));
  }
  const progress = options.progress?.(totalBytes) ?? silentProgress;
  const results: SuiteOutcome[] = [];
  try {
    for (const suite of suites) results.push(await runSuite(suite, reasons, options, progress, log));
  } finally {
    progress.clear();
  }
  return results;
}

async function runSuite(
  suite: SuiteSpec, reasons: Map<Target, string | undefined>, options: RunnerOptions, progress: ProgressSink,
  log: (line: string) => void,
): Promise<SuiteOutcome> {
  const plan = planDevice(groupJobs(suite.jobs));
  const outcomes: TargetOutcome[] = suite.targets.map((target) => ({ target, skipped: reasons.get(target), runs: [] }));
  for (const outcome of outcomes) {
    if (outcome.skipped !== undefined) continue;
    const { target } = outcome;
    try {
      progress.stage(`${suite.title}: ${target.label}: setting up`);
      options.beforeTarget?.(plan);
      await target.setUp(plan);
      for (let warmup = 1; warmup <= (options.warmup ?? 0); warmup++) {
        collectGarbage();
        progress.stage(`${suite.title}: ${target.label}  warm-up ${warmup}/${options.warmup}`);
        await target.runSuite(plan, { onBytes: (bytes) => progress.advance(bytes) }); // thrown away
      }
      for (let repetition = 1; repetition <= options.repeat; repetition++) {
        collectGarbage();
        progress.stage(`${suite.title}: ${target.label}  rep ${repetition}/${options.repeat}`);
        outcome.runs.push(await target.runSuite(plan, { onBytes: (bytes) => progress.advance(bytes) }));
      }
    } catch (error) {
      const when = outcome.runs.length < options.repeat ? `repetition ${outcome.runs.length + 1}` : 'tearDown';
      outcome.failed = `${when}: ${(error as Error)?.stack ?? String(error)}`;
      progress.clear();
      log(`${target.label} failed (${suite.title}) ${when}: ${(error as Error)?.message ?? String(error)}`);
    } finally {
      await target.tearDown().catch((error: unknown) => log(`${target.label}: tearDown: ${(error as Error).message}`));
      collectGarbage();
    }
  }
  return { spec: suite, deviceBytes: plan.deviceBytes, outcomes };
}
