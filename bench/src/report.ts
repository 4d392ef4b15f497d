/**
 * Results: the JSON document (every run of every cell, medians, the seed comparison and
 * the issue's targets as checks) and the text tables, all rendered from the document so
 * a saved JSON file can be re-rendered later.
 *
 * A cell = one target × one job: its repetitions' runs, and the medians of MiB/s and IOPS
 * over them (min and max kept to show the spread). Ratios are ratios of medians:
 *
 *   seed ratio   = iomap+LF / buffer_head, per job, beside the seed's 2.2x 2.5x 2.0x 1.6x
 *                  (652→1442, 832→2065, 1769→3557, 1465→2377 MiB/s)
 *   vs kernel    = ext4ts iomap+LF / the kernel's ext4 (fio), same jobs, same run
 *   scaling      = aggregate MiB/s at numjobs=2 / at numjobs=1
 *
 * Cost: nothing measurable (a few hundred cells at most).
 */
import { SEED_ROWS, type JobSpec } from './job.js';
import type { JobRun, LatencySummary } from './executor.js';
import type { SuiteOutcome } from './runner.js';
import { formatBytes, formatFioSize, formatRatio } from './units.js';

export interface Spread { median: number; min: number; max: number }

export interface CellSummary {
  job: string;
  description: string;
  repetitions: number;
  mibPerSecond: Spread;
  iops: Spread;
  /** Medians over repetitions of each run's latency figures. */
  latencyUs?: { p50: number; p99: number; mean: number };
}

export interface TargetSummary {
  id: string;
  label: string;
  kind: 'ext4ts' | 'peer';
  notes: string[];
  /** What it ran with (ext4ts: buffered path, large folios, cacheBytes, device). */
  settings?: Record<string, string | number | boolean>;
  skipped?: string;
  failed?: string;
  /** The target cannot fsync: its fsync jobs measure writes only. */
  noFsync?: boolean;
  cells: CellSummary[];
  /** Every run: runs[repetition][jobIndex]. */
  runs: JobRun[][];
}

export interface JobSummary {
  name: string;
  description: string;
  rw: string;
  bs: string;
  sizeBytes: number;
  numjobs: number;
  fsync: number;
  endFsync: boolean;
  overwrite: boolean;
  sparse: boolean;
  direct: boolean;
  invalidate: boolean;
}

export interface SuiteSummary {
  id: string;
  title: string;
  deviceBytes: number;
  jobs: JobSummary[];
  targets: TargetSummary[];
}

export interface SeedComparisonRow {
  description: string;
  bufferHeadMiBps?: number;
  iomapMiBps?: number;
  iomapLargeFoliosMiBps?: number;
  /** iomap+LF / buffer_head (ours). */
  ratio?: number;
  /** iomap without large folios / buffer_head (ours). */
  ratioNoLargeFolios?: number;
  seedBufferHeadMiBps: number;
  seedIomapLargeFoliosMiBps: number;
  seedRatio: number;
}

export interface Check {
  what: string;
  value?: number;
  goal: string;
  met?: boolean;
}

export interface BenchDocument {
  tool: 'ext4ts bench';
  schemaVersion: 1;
  startedAt: string;
  durationMs: number;
  machine: {
    cpus: number; cpuModel: string; memoryBytes: number; platform: string; kernel: string; node: string;
    /** 1-minute load average when the run started and ended: other work on the machine skews every column. */
    loadAverageStart: number; loadAverageEnd: number;
  };
  settings: { device: string; repeat: number; command: string };
  notes: string[];
  suites: SuiteSummary[];
  seedComparison?: SeedComparisonRow[];
  checks: Check[];
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

function latencyOf(runs: readonly JobRun[]): CellSummary['latencyUs'] {
  const present = runs.map((run) => run.latency).filter((latency): latency is LatencySummary => latency !== undefined);
  if (present.length === 0) return undefined;
  return { p50: median(present.map((l) => l.p50Us)), p99: median(present.map((l) => l.p99Us)), mean: median(present.map((l) => l.meanUs)) };
}

export function summariseCells(jobs: readonly JobSpec[], runs: readonly JobRun[][]): CellSummary[] {
  if (runs.length === 0) return [];
  return jobs.map((job, jobIndex) => {
    const cellRuns = runs.map((repetition) => repetition[jobIndex]).filter((run) => run !== undefined);
    return {
      job: job.name,
      description: job.description,
      repetitions: cellRuns.length,
      mibPerSecond: spread(cellRuns.map((run) => run.mibPerSecond)),
      iops: spread(cellRuns.map((run) => run.iops)),
      latencyUs: latencyOf(cellRuns),
    };
  });
}

function jobSummary(job: JobSpec): JobSummary {
  return {
    name: job.name, description: job.description, rw: job.rw, bs: formatFioSize(job.bsBytes), sizeBytes: job.sizeBytes,
    numjobs: job.numjobs, fsync: job.fsync, endFsync: job.endFsync, overwrite: job.overwrite, sparse: job.sparse,
    direct: job.direct, invalidate: job.invalidate,
  };
}

export function summariseSuite(outcome: SuiteOutcome): SuiteSummary {
  return {
    id: outcome.spec.id,
    title: outcome.spec.title,
    deviceBytes: outcome.deviceBytes,
    jobs: outcome.spec.jobs.map(jobSummary),
    targets: outcome.outcomes.map(({ target, skipped, failed, runs }) => ({
      id: target.id,
      label: target.label,
      kind: target.kind,
      notes: [...target.notes],
      settings: skipped === undefined ? target.settings?.() : undefined,
      skipped,
      failed,
      noFsync: (target as { noFsync?: boolean }).noFsync === true ? true : undefined,
      cells: summariseCells(outcome.spec.jobs, runs),
      runs,
    })),
  };
}

export function cellOf(suite: SuiteSummary, targetId: string, description: string): CellSummary | undefined {
  const target = suite.targets.find((t) => t.id === targetId);
  return target?.cells.find((cell) => cell.description === description);
}

function ratioOf(top: CellSummary | undefined, bottom: CellSummary | undefined): number | undefined {
  if (top === undefined || bottom === undefined || !(bottom.mibPerSecond.median > 0)) return undefined;
  return top.mibPerSecond.median / bottom.mibPerSecond.median;
}

/** The seed's table beside ours (needs a suite holding the seed's four jobs). */
export function seedComparison(suite: SuiteSummary): SeedComparisonRow[] {
  return SEED_ROWS.map((seed) => {
    const bh = cellOf(suite, 'ext4ts:buffer_head', seed.description);
    const iomap = cellOf(suite, 'ext4ts:iomap', seed.description);
    const lf = cellOf(suite, 'ext4ts:iomap+lf', seed.description);
    return {
      description: seed.description,
      bufferHeadMiBps: bh?.mibPerSecond.median,
      iomapMiBps: iomap?.mibPerSecond.median,
      iomapLargeFoliosMiBps: lf?.mibPerSecond.median,
      ratio: ratioOf(lf, bh),
      ratioNoLargeFolios: ratioOf(iomap, bh),
      seedBufferHeadMiBps: seed.bufferHeadMiBps,
      seedIomapLargeFoliosMiBps: seed.iomapLargeFoliosMiBps,
      seedRatio: seed.iomapLargeFoliosMiBps / seed.bufferHeadMiBps,
    };
  });
}

/** The targets, checked on the seed suite's cells. */
export function peerChecks(suite: SuiteSummary): Check[] {
  const checks: Check[] = [];
  for (const { description } of SEED_ROWS) {
    const ours = cellOf(suite, 'ext4ts:iomap+lf', description);
    const kernel = ratioOf(ours, cellOf(suite, 'kernel', description));
    checks.push({ what: `${description}: iomap+LF / kernel ext4`, value: kernel, goal: '> 1', met: kernel === undefined ? undefined : kernel > 1 });
    const ext2 = ratioOf(ours, cellOf(suite, 'ext2fs', description));
    checks.push({ what: `${description}: iomap+LF / ext2fs`, value: ext2, goal: '>= 10', met: ext2 === undefined ? undefined : ext2 >= 10 });
  }
  const share = ratioOf(cellOf(suite, 'ext4ts:iomap+lf', 'read data'), cellOf(suite, 'copy', 'read data'));
  checks.push({ what: 'read data: iomap+LF / copy limit', value: share, goal: '>= 0.5', met: share === undefined ? undefined : share >= 0.5 });
  return checks;
}

// ---------------------------------------------------------------------------------------
// Text

/** Lay rows out in columns (first column left-aligned, the rest right-aligned). */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]) => cells
    .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column])))
    .join('  ')
    .trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

/** A cell as fio (and the seed) print it: IOPS=651, BW=652MiB/s. */
export function fioCell(cell: CellSummary | undefined, marker = ''): string {
  if (cell === undefined || cell.repetitions === 0) return '-';
  return `IOPS=${Math.round(cell.iops.median)}, BW=${Math.round(cell.mibPerSecond.median)}MiB/s${marker}`;
}

function bwCell(cell: CellSummary | undefined, marker = ''): string {
  if (cell === undefined || cell.repetitions === 0) return '-';
  return `${Math.round(cell.mibPerSecond.median)}${marker}`;
}

const NO_FSYNC_MARK = '*';

function markFor(target: TargetSummary, job: JobSummary | undefined): string {
  return target.noFsync === true && job !== undefined && (job.fsync > 0 || job.endFsync) ? NO_FSYNC_MARK : '';
}

function liveTargets(suite: SuiteSummary, kind?: 'ext4ts' | 'peer'): TargetSummary[] {
  return suite.targets.filter((t) => t.cells.length > 0 && (kind === undefined || t.kind === kind));
}

function repeatText(suite: SuiteSummary): string {
  const counts = liveTargets(suite).map((t) => t.cells[0]?.repetitions ?? 0);
  const most = Math.max(0, ...counts);
  if (most === 0) return 'no runs';
  return most === 1 ? 'one run' : `median of ${most}`;
}

function jobShape(suite: SuiteSummary): string {
  const first = suite.jobs[0];
  return first === undefined ? '' : `${first.bs} blocks, ${formatBytes(first.sizeBytes)} per file`;
}

export function renderSeedTable(suite: SuiteSummary, device: string): string {
  const rows = seedComparison(suite);
  const header = ['job', 'bs', 'buffer_head', 'iomap (no LF)', 'iomap + LF', 'LF/bh', 'seed', 'noLF/bh'];
  const body = rows.map((row) => {
    const job = suite.jobs.find((j) => j.description === row.description);
    return [
      row.description, job?.bs ?? '',
      fioCell(cellOf(suite, 'ext4ts:buffer_head', row.description)),
      fioCell(cellOf(suite, 'ext4ts:iomap', row.description)),
      fioCell(cellOf(suite, 'ext4ts:iomap+lf', row.description)),
      formatRatio(row.ratio), formatRatio(row.seedRatio), formatRatio(row.ratioNoLargeFolios),
    ];
  });
  const title = `The seed's table on ext4ts (${device}; fio psync, 1 job, ${jobShape(suite)}, ${repeatText(suite)})`;
  return `${title}\n${formatTable(header, body)}\n` +
    'LF/bh = iomap + large folios over buffer_head (medians); seed = the same ratio in the seed (RFC v1: 652→1442, 832→2065, 1769→3557, 1465→2377 MiB/s).';
}

export function renderPeerTable(suite: SuiteSummary): string {
  const ours = suite.targets.find((t) => t.id === 'ext4ts:iomap+lf');
  const peers = liveTargets(suite, 'peer');
  const columns = [...(ours !== undefined ? [ours] : []), ...peers];
  const has = (id: string) => peers.some((p) => p.id === id);
  const header = ['job (MiB/s)', ...columns.map((t) => t.label), ...(has('kernel') ? ['vs kernel'] : []), ...(has('ext2fs') ? ['vs ext2fs'] : []), ...(has('copy') ? ['of copy'] : [])];
  const body = suite.jobs.map((job) => {
    const mine = cellOf(suite, 'ext4ts:iomap+lf', job.description);
    const ratio = (id: string) => formatRatio(ratioOf(mine, cellOf(suite, id, job.description)));
    return [
      job.description,
      ...columns.map((t) => bwCell(t.cells.find((c) => c.description === job.description), markFor(t, job))),
      ...(has('kernel') ? [ratio('kernel')] : []), ...(has('ext2fs') ? [ratio('ext2fs')] : []), ...(has('copy') ? [ratio('copy')] : []),
    ];
  });
  const lines = [`Peers: the same jobs in the same run (${repeatText(suite)})`, formatTable(header, body)];
  if (peers.some((p) => p.noFsync === true)) lines.push(`${NO_FSYNC_MARK} no fsync in that engine: the cell measures the writes only.`);
  return lines.join('\n');
}

/** Rows for numjobs scaling: jobs with the same description at numjobs 1 and 2. */
export function scalingRows(suite: SuiteSummary): { description: string; single: JobSummary; double: JobSummary }[] {
  const rows: { description: string; single: JobSummary; double: JobSummary }[] = [];
  for (const single of suite.jobs.filter((job) => job.numjobs === 1)) {
    const double = suite.jobs.find((job) => job.numjobs === 2 && job.description === single.description);
    if (double !== undefined) rows.push({ description: single.description, single, double });
  }
  return rows;
}

export function renderScalingTable(suite: SuiteSummary): string {
  const header = ['job', 'target', 'numjobs=1', 'numjobs=2 (sum)', 'scaling'];
  const body: string[][] = [];
  for (const row of scalingRows(suite)) {
    for (const target of liveTargets(suite)) {
      const one = target.cells.find((c) => c.job === row.single.name);
      const two = target.cells.find((c) => c.job === row.double.name);
      body.push([row.description, target.label, fioCell(one, markFor(target, row.single)), fioCell(two, markFor(target, row.double)), formatRatio(ratioOf(two, one))]);
    }
  }
  const size = suite.jobs[0] === undefined ? '' : `, ${formatBytes(suite.jobs[0].sizeBytes)} per clone`;
  return `numjobs scaling: separate files, 1 MiB blocks${size} (${repeatText(suite)})\n${formatTable(header, body)}\n` +
    `${clientsText(suite)}; fio clones are processes.\n` +
    'scaling = aggregate MiB/s at numjobs=2 over numjobs=1.';
}

function clientsText(suite: SuiteSummary): string {
  const modes = new Set(liveTargets(suite, 'ext4ts').map((t) => t.settings?.clients));
  if (modes.size === 1 && modes.has('threads')) return 'ext4ts clones: one worker thread each, over the engine\'s client channel';
  if (modes.size === 1 && modes.has('engine')) return 'ext4ts clones: concurrent async callers in the engine\'s thread';
  return 'ext4ts clones: see each column\'s settings in the JSON';
}

/** Any suite as rows of jobs × columns of targets (custom jobs, small blocks). */
export function renderGenericTable(suite: SuiteSummary): string {
  const targets = liveTargets(suite);
  const indexOf = (id: string) => targets.findIndex((t) => t.id === id);
  const ratios: { title: string; top: number; bottom: number }[] = [
    { title: 'LF/bh', top: indexOf('ext4ts:iomap+lf'), bottom: indexOf('ext4ts:buffer_head') },
    { title: 'vs kernel', top: indexOf('ext4ts:iomap+lf'), bottom: indexOf('kernel') },
  ].filter((ratio) => ratio.top >= 0 && ratio.bottom >= 0);
  const header = ['job', 'bs', ...targets.map((t) => t.label), ...ratios.map((r) => r.title)];
  const body = suite.jobs.map((job) => {
    const cells = targets.map((t) => t.cells.find((c) => c.job === job.name));
    return [
      job.description, job.bs,
      ...cells.map((cell, index) => fioCell(cell, markFor(targets[index], job))),
      ...ratios.map((r) => formatRatio(ratioOf(cells[r.top], cells[r.bottom]))),
    ];
  });
  return `${suite.title} (${repeatText(suite)})\n${formatTable(header, body)}`;
}

export function renderSkips(document: BenchDocument): string[] {
  const lines = new Set<string>();
  for (const suite of document.suites) {
    for (const target of suite.targets) {
      if (target.skipped !== undefined) lines.add(`skipped ${target.label}: ${target.skipped}`);
      if (target.failed !== undefined) lines.add(`FAILED ${target.label} (${suite.title}): ${target.failed.split('\n')[0]}`);
    }
  }
  return [...lines];
}

export function renderChecks(checks: readonly Check[]): string {
  const body = checks.filter((check) => check.value !== undefined).map((check) => [
    check.what, formatRatio(check.value), check.goal, check.met === true ? 'met' : 'NOT met',
  ]);
  if (body.length === 0) return '';
  return `The issue's targets\n${formatTable(['check', 'value', 'goal', ''], body)}`;
}

export function renderNotes(document: BenchDocument): string {
  const notes = new Set<string>(document.notes);
  for (const suite of document.suites) for (const target of suite.targets) for (const note of target.notes) notes.add(note);
  return [...notes].map((note) => `- ${note}`).join('\n');
}

/** The whole text report: the seed table first (the README's main job), then the rest. */
export function renderReport(document: BenchDocument): string {
  const parts: string[] = [];
  for (const suite of document.suites) {
    if (suite.id === 'seed') {
      parts.push(renderSeedTable(suite, document.settings.device));
      if (liveTargets(suite, 'peer').length > 0) parts.push(renderPeerTable(suite));
    } else if (suite.id === 'scaling') {
      parts.push(renderScalingTable(suite));
    } else {
      parts.push(renderGenericTable(suite));
    }
  }
  const checks = renderChecks(document.checks);
  if (checks !== '') parts.push(checks);
  const skips = renderSkips(document);
  if (skips.length > 0) parts.push(skips.join('\n'));
  const { cpus, loadAverageStart, loadAverageEnd } = document.machine;
  const busy = Math.max(loadAverageStart, loadAverageEnd) > cpus / 2;
  parts.push(`Notes\n${renderNotes(document)}\n- machine: ${cpus} CPUs, load average ${loadAverageStart.toFixed(1)} at the start and ${loadAverageEnd.toFixed(1)} at the end` +
    (busy ? ' (other work was running: expect noisy numbers)' : ''));
  return `${parts.join('\n\n')}\n`;
}
