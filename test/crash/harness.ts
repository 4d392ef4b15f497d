// The crash campaign driver: record a workload on a RecordingDevice over a MemoryDevice,
// build crash states from the log (every flush point + seeded random points, see
// crash-images.ts for exactly what may persist), run the checker on each, and report
// every failure with a one-line reproducer.
//
//   makeBase() ──copy──> pristine base ──> CrashImages (working copy, undo per state)
//        │
//        └─> RecordingDevice ──workload(device, mark)──> log
//
// Replay: pass `replay: '<spec line>'` (with the same seed, so the workload records the
// same log) to check that one state only.
import { MemoryDevice, type SyncBlockDevice } from '@ext4ts/core';
import { RecordingDevice, type RecordedMark } from '../../packages/core/src/device/recording-device.js';
import {
  CrashImages,
  copyToMemoryDevice,
  flushCrashSpecs,
  formatCrashSpec,
  parseCrashSpec,
  randomCrashSpec,
  stateSeed,
  type CrashImage,
  type CrashSpec,
} from './crash-images.js';

export interface WorkloadContext {
  /** The campaign seed: a seeded workload must be deterministic in it. */
  seed: number;
}

export interface CampaignOptions {
  /** Names the campaign in reports and reproducers. */
  name?: string;
  /** The device before the workload (it is copied; the workload then runs on it). */
  makeBase(): MemoryDevice | Promise<MemoryDevice>;
  /** Runs on the recording device; `mark` logs an acknowledged operation. */
  workload(device: RecordingDevice, mark: (label: string, data?: unknown) => void, context: WorkloadContext): void | Promise<void>;
  /**
   * Throws (or rejects) when the crash state is wrong. `device` holds the crash state and
   * may be written (recovery); `acknowledged` are the markers logged before the crash.
   */
  check(device: SyncBlockDevice, acknowledged: readonly RecordedMark[], image: CrashImage): void | Promise<void>;
  /** How many states to check: every flush point, then random points up to this total. */
  images: number;
  seed: number;
  /** Probability that a random state tears a write; default 0.3. */
  tornProbability?: number;
  /** Bound on the recorded log; default RecordingDevice's. */
  maxLogBytes?: number;
  /** Stop after this many failures; default 5. */
  maxFailures?: number;
  /** Check only this state (a formatCrashSpec line or a spec). */
  replay?: string | CrashSpec;
}

export interface CampaignFailure {
  spec: CrashSpec;
  /** formatCrashSpec(spec): feed it back as `replay`. */
  specLine: string;
  /** Position of the state in checking order (0-based). */
  stateNumber: number;
  message: string;
  error: unknown;
  /** What to paste to reproduce this one state. */
  reproducer: string;
}

export interface CampaignReport {
  name: string;
  seed: number;
  eventCount: number;
  writeCount: number;
  flushCount: number;
  markCount: number;
  logBytes: number;
  flushStates: number;
  randomStates: number;
  statesChecked: number;
  failures: CampaignFailure[];
  /** Wall time of building and checking states (recording excluded). */
  checkMs: number;
  statesPerSecond: number;
}

/** The specs a campaign checks, in point order so the crash-image cursor only moves forward. */
export function campaignSpecs(images: CrashImages, options: Pick<CampaignOptions, 'images' | 'seed' | 'tornProbability'>): CrashSpec[] {
  const flushSpecs = flushCrashSpecs(images.log);
  const randomCount = Math.max(0, options.images - flushSpecs.length);
  const randomSpecs: CrashSpec[] = [];
  for (let index = 0; index < randomCount; index++) {
    randomSpecs.push(randomCrashSpec(images.log, stateSeed(options.seed, index), { tornProbability: options.tornProbability }));
  }
  return [...flushSpecs, ...randomSpecs].sort((a, b) => a.point - b.point);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

export async function runCrashCampaign(options: CampaignOptions): Promise<CampaignReport> {
  const name = options.name ?? 'crash campaign';
  const base = await options.makeBase();
  const pristine = copyToMemoryDevice(base, base.sectorSizeBytes);
  const recording = new RecordingDevice(base, { maxLogBytes: options.maxLogBytes });
  await options.workload(recording, (label, data) => recording.mark(label, data), { seed: options.seed });
  if (recording.overflowed) throw new Error(`${name}: the recorded log overflowed its bound; the run cannot be checked`);
  const images = new CrashImages(pristine, recording.log());
  const replay = typeof options.replay === 'string' ? parseCrashSpec(options.replay) : options.replay;
  const specs = replay === undefined ? campaignSpecs(images, options) : [replay];
  const maxFailures = options.maxFailures ?? 5;
  const failures: CampaignFailure[] = [];
  const started = performance.now();
  let statesChecked = 0;
  for (const spec of specs) {
    const image = images.materialize(spec);
    try {
      await options.check(image.device, image.acknowledged, image);
    } catch (error) {
      const specLine = formatCrashSpec(spec);
      failures.push({
        spec,
        specLine,
        stateNumber: statesChecked,
        message: messageOf(error),
        error,
        reproducer: `runCrashCampaign({ name: '${name}', seed: ${options.seed}, replay: '${specLine}', ... })`,
      });
    } finally {
      image.release();
    }
    statesChecked++;
    if (failures.length >= maxFailures) break;
  }
  const checkMs = performance.now() - started;
  pristine.closeSync();
  const log = images.log;
  return {
    name,
    seed: options.seed,
    eventCount: log.events.length,
    writeCount: log.writes.length,
    flushCount: log.flushSeqs.length,
    markCount: log.marks.length,
    logBytes: recording.logSizeBytes,
    flushStates: specs.filter((spec) => spec.kind === 'flush').length,
    randomStates: specs.filter((spec) => spec.kind === 'random').length,
    statesChecked,
    failures,
    checkMs,
    statesPerSecond: statesChecked / (checkMs / 1000),
  };
}

/** A report's failures as text, one reproducer per failure. */
export function describeFailures(report: CampaignReport): string {
  return report.failures
    .map((failure) => `${report.name} state #${failure.stateNumber}: ${failure.message}\n  reproduce: ${failure.reproducer}`)
    .join('\n');
}
