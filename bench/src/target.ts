/**
 * A target: one column of a report — an ext4ts configuration or a peer — that can run the
 * suite's job groups on a fresh file system once per repetition. In-process targets hand
 * the executor a BenchFs; the kernel peer runs fio itself and parses its JSON.
 *
 * Sizing (planDevice): the device holds every distinct file the suite writes (sparse
 * files cost nothing) plus 12.5% and 128 MiB for metadata and the journal, rounded up to
 * 4 MiB. The seed suite at 256 MiB per file: 256 MiB of data → a 416 MiB device; its
 * page cache must hold 512 MiB (the data file and the hole file, read as zeros).
 */
import { cloneFileName, type JobGroup } from './job.js';
import { executeGroup, type BenchFs, type ExecuteOptions, type JobRun } from './executor.js';

export type TargetKind = 'ext4ts' | 'peer';

export interface SuitePlan {
  groups: JobGroup[];
  /** The device (or image, or tmpfs budget) every repetition gets. */
  deviceBytes: number;
  /** Bytes of file data the suite writes (what the device must hold). */
  dataBytes: number;
  /** Bytes of every file the suite touches, sparse ones included: what a page cache holds
   * once every file has been read (holes are cached as zero-filled pages too). */
  cachedBytes: number;
}

export interface Target {
  /** Stable id for JSON and flags: ext4ts:buffer_head, ext4ts:iomap, ext4ts:iomap+lf, kernel, ext2fs, node-fs, copy. */
  readonly id: string;
  /** Column header. */
  readonly label: string;
  readonly kind: TargetKind;
  /** Facts a reader needs beside this target's numbers (printed under the tables, kept in JSON). */
  readonly notes: string[];
  /** The settings it ran with, for the JSON document (after setUp). */
  settings?(): Record<string, string | number | boolean>;
  /** Why this target cannot run here (undefined: it can). */
  probe(): Promise<string | undefined>;
  /** Once, before the first repetition: allocate and pre-touch what every repetition reuses. */
  setUp(plan: SuitePlan): Promise<void>;
  /** One repetition: a fresh file system, the groups in order; one JobRun per job, in order. */
  runSuite(plan: SuitePlan, options: ExecuteOptions): Promise<JobRun[]>;
  /** Once, at the end (also after a failure). */
  tearDown(): Promise<void>;
}

const MIB = 1024 * 1024;
const DEVICE_SLACK_BYTES = 128 * MIB;
const DEVICE_ROUND_BYTES = 4 * MIB;

/** Device size for a suite: its distinct written files, plus room for metadata. */
export function planDevice(groups: JobGroup[]): SuitePlan {
  const writtenBytes = new Map<string, number>();
  const touchedBytes = new Map<string, number>();
  for (const job of groups.flat()) {
    // A sparse read job's file holds no blocks; every other job's file ends up written.
    const written = !(job.sparse && (job.rw === 'read' || job.rw === 'randread'));
    for (let clone = 0; clone < job.numjobs; clone++) {
      const name = cloneFileName(job, clone);
      touchedBytes.set(name, Math.max(touchedBytes.get(name) ?? 0, job.sizeBytes));
      if (written) writtenBytes.set(name, Math.max(writtenBytes.get(name) ?? 0, job.sizeBytes));
    }
  }
  const sum = (sizes: Map<string, number>) => [...sizes.values()].reduce((total, bytes) => total + bytes, 0);
  const dataBytes = sum(writtenBytes);
  const raw = dataBytes + dataBytes / 8 + DEVICE_SLACK_BYTES;
  const deviceBytes = Math.ceil(raw / DEVICE_ROUND_BYTES) * DEVICE_ROUND_BYTES;
  return { groups, deviceBytes, dataBytes, cachedBytes: sum(touchedBytes) };
}

/** Run the groups in order on one BenchFs (what every in-process target's runSuite does). */
export async function runGroups(fs: BenchFs, groups: JobGroup[], options: ExecuteOptions): Promise<JobRun[]> {
  const runs: JobRun[] = [];
  for (const group of groups) runs.push(...(await executeGroup(fs, group, options)));
  return runs;
}
