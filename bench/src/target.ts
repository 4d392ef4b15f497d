/**
 * A target: one column of a report — an ext4ts configuration or a peer — that can run the
 * suite's job groups on a fresh file system once per repetition. In-process targets hand
 * the executor a BenchFs; the kernel peer runs fio itself and parses its JSON.
 *
 * Sizing (planDevice): the device holds every distinct file the suite writes (sparse
 * files cost nothing) plus 12.5% and 128 MiB for metadata and the journal, rounded up to
 * 4 MiB. The seed suite at 256 MiB per file: 256 MiB of data → a 416 MiB device.
 */
import { cloneFileName, isWriteOnlyJob, type JobGroup } from './job.js';
import { executeGroup, type BenchFs, type ExecuteOptions, type JobRun } from './executor.js';

export type TargetKind = 'ext4ts' | 'peer';

export interface SuitePlan {
  groups: JobGroup[];
  /** The device (or image, or tmpfs budget) every repetition gets. */
  deviceBytes: number;
  /** Bytes of file data the suite keeps (for page cache sizing). */
  dataBytes: number;
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
  const fileBytes = new Map<string, number>();
  for (const job of groups.flat()) {
    // A sparse read job's file holds no blocks; every other job's file ends up written.
    if (job.sparse && !isWriteOnlyJob(job) && job.rw === 'read') continue;
    for (let clone = 0; clone < job.numjobs; clone++) {
      const name = cloneFileName(job, clone);
      fileBytes.set(name, Math.max(fileBytes.get(name) ?? 0, job.sizeBytes));
    }
  }
  let dataBytes = 0;
  for (const bytes of fileBytes.values()) dataBytes += bytes;
  const raw = dataBytes + dataBytes / 8 + DEVICE_SLACK_BYTES;
  const deviceBytes = Math.ceil(raw / DEVICE_ROUND_BYTES) * DEVICE_ROUND_BYTES;
  return { groups, deviceBytes, dataBytes };
}

/** Run the groups in order on one BenchFs (what every in-process target's runSuite does). */
export async function runGroups(fs: BenchFs, groups: JobGroup[], options: ExecuteOptions): Promise<JobRun[]> {
  const runs: JobRun[] = [];
  for (const group of groups) runs.push(...(await executeGroup(fs, group, options)));
  return runs;
}
