// The table and ratio math of the bench report, on synthetic results (no engine runs):
// medians, the seed comparison (iomap+LF / buffer_head beside 2.2x 2.5x 2.0x 1.6x), the
// issue's checks, numjobs scaling rows, table layout, fio's JSON as the kernel peer reads it,
// and the SVG's scale. Well under a second.
import { describe, expect, it } from 'vitest';
import { parseJobFile, scalingJobFile, seedJobFile, type JobSpec } from '../../bench/src/job.js';
import type { JobRun } from '../../bench/src/executor.js';
import {
  fioCell, formatTable, median, peerChecks, renderPeerTable, renderReport, renderScalingTable, renderSeedTable, scalingRows,
  seedComparison, summariseCells, type BenchDocument, type SuiteSummary, type TargetSummary,
} from '../../bench/src/report.js';
import { fioArgsOf, parseFioJson } from '../../bench/peers/kernel-fio.js';
import { escapeXml, logBounds, renderSvg } from '../../bench/src/svg.js';
import { formatRatio } from '../../bench/src/units.js';

const MIB = 1 << 20;

function run(job: JobSpec, mibPerSecond: number): JobRun {
  const seconds = job.sizeBytes / MIB / mibPerSecond;
  const ios = job.sizeBytes / job.bsBytes;
  return {
    job: job.name, description: job.description, readBytes: 0, writeBytes: job.sizeBytes, readIos: 0, writeIos: ios, syncs: 1,
    elapsedMs: seconds * 1000, mibPerSecond, iops: ios / seconds,
  };
}

/** A target whose repetitions ran at the given MiB/s per job (rows: repetitions). */
function target(id: string, kind: 'ext4ts' | 'peer', jobs: JobSpec[], rates: number[][], extra: Partial<TargetSummary> = {}): TargetSummary {
  const runs = rates.map((repetition) => repetition.map((rate, index) => run(jobs[index], rate)));
  return { id, label: id, kind, notes: [], cells: summariseCells(jobs, runs), runs, ...extra };
}

function suiteOf(id: string, jobs: JobSpec[], targets: TargetSummary[]): SuiteSummary {
  return {
    id, title: id, deviceBytes: 0, targets,
    jobs: jobs.map((j) => ({
      name: j.name, description: j.description, rw: j.rw, bs: '1M', sizeBytes: j.sizeBytes, numjobs: j.numjobs, fsync: j.fsync,
      endFsync: j.endFsync, overwrite: j.overwrite, sparse: j.sparse, direct: j.direct, invalidate: j.invalidate,
    })),
  };
}

const seedJobs = parseJobFile(seedJobFile('64m'));

/** The seed's own numbers as our three medians: bh, iomap (made up), iomap+LF. */
function seedSuite(): SuiteSummary {
  return suiteOf('seed', seedJobs, [
    target('ext4ts:buffer_head', 'ext4ts', seedJobs, [[600, 800, 1700, 1400], [652, 832, 1769, 1465], [700, 900, 1800, 1500]]),
    target('ext4ts:iomap', 'ext4ts', seedJobs, [[1000, 1000, 2000, 2000]]),
    target('ext4ts:iomap+lf', 'ext4ts', seedJobs, [[1442, 2065, 3557, 2377], [1400, 2000, 3500, 2300], [1500, 2100, 3600, 2400]]),
    target('kernel', 'peer', seedJobs, [[1000, 3000, 1000, 2000]]),
    target('ext2fs', 'peer', seedJobs, [[100, 100, 400, 200]], { noFsync: true }),
    target('copy', 'peer', seedJobs, [[5000, 5000, 50000, 4000]]),
  ]);
}

describe('median and cells', () => {
  it('median takes the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(Number.isNaN(median([]))).toBe(true);
  });

  it('summariseCells keeps median, min and max over repetitions per job', () => {
    const cell = seedSuite().targets[0].cells[0];
    expect(cell.repetitions).toBe(3);
    expect(cell.mibPerSecond).toEqual({ median: 652, min: 600, max: 700 });
    expect(cell.iops.median).toBeCloseTo(652, 6); // 1 MiB blocks: IOPS = MiB/s
  });
});

describe('seedComparison', () => {
  it("gives the seed's ratios when our medians are the seed's numbers", () => {
    const rows = seedComparison(seedSuite());
    expect(rows.map((r) => formatRatio(r.ratio))).toEqual(['2.2x', '2.5x', '2.0x', '1.6x']);
    expect(rows.map((r) => formatRatio(r.seedRatio))).toEqual(['2.2x', '2.5x', '2.0x', '1.6x']);
    expect(rows[0].ratio).toBeCloseTo(1442 / 652, 9);
    expect(rows[0].ratioNoLargeFolios).toBeCloseTo(1000 / 652, 9);
  });

  it('leaves a ratio undefined when a column did not run', () => {
    const suite = seedSuite();
    suite.targets = suite.targets.filter((t) => t.id !== 'ext4ts:buffer_head');
    expect(seedComparison(suite).every((row) => row.ratio === undefined)).toBe(true);
    expect(renderSeedTable(suite, 'memory device')).toContain('  -  ');
  });
});

describe('peerChecks', () => {
  it('checks ahead of the kernel, 10x ext2fs and half the copy limit on medians', () => {
    const checks = peerChecks(seedSuite());
    const byWhat = new Map(checks.map((c) => [c.what, c]));
    expect(byWhat.get('write+fsync: iomap+LF / kernel ext4')).toMatchObject({ met: true });
    expect(byWhat.get('overwrite+fsync: iomap+LF / kernel ext4')).toMatchObject({ met: false });
    expect(byWhat.get('write+fsync: iomap+LF / ext2fs')?.value).toBeCloseTo(14.42, 6);
    expect(byWhat.get('read hole: iomap+LF / ext2fs')).toMatchObject({ met: false });
    expect(byWhat.get('read data: iomap+LF / copy limit')?.value).toBeCloseTo(2377 / 4000, 9);
    expect(byWhat.get('read data: iomap+LF / copy limit')?.met).toBe(true);
  });
});

describe('tables', () => {
  it('formatTable pads the first column left and the others right', () => {
    expect(formatTable(['job', 'MiB/s'], [['a', '1'], ['long', '1000']]).split('\n')).toEqual([
      'job   MiB/s', '----  -----', 'a         1', 'long   1000',
    ]);
  });

  it('fioCell prints IOPS and BW as fio and the seed do', () => {
    expect(fioCell(seedSuite().targets[2].cells[0])).toBe('IOPS=1442, BW=1442MiB/s');
    expect(fioCell(undefined)).toBe('-');
  });

  it('the peer table marks the fsync jobs of an engine without fsync', () => {
    const text = renderPeerTable(seedSuite());
    expect(text).toMatch(/write\+fsync .* 100\*/);
    expect(text).toMatch(/read hole .* 400 /);
    expect(text).toContain('no fsync in that engine');
  });

  it('scaling rows pair numjobs=1 with numjobs=2 by description, scaling = sum at 2 over 1', () => {
    const jobs = parseJobFile(scalingJobFile('16m'));
    const suite = suiteOf('scaling', jobs, [target('ext4ts:iomap+lf', 'ext4ts', jobs, [[500, 8000, 900, 12000]])]);
    expect(scalingRows(suite).map((r) => [r.description, r.single.name, r.double.name])).toEqual([
      ['write+fsync', 'write-j1', 'write-j2'], ['read data', 'read-j1', 'read-j2'],
    ]);
    const text = renderScalingTable(suite);
    expect(text).toMatch(/write\+fsync .* 1\.8x/);
    expect(text).toMatch(/read data .* 1\.5x/);
  });

  it('the whole report renders from the document, skips and failures included', () => {
    const suite = seedSuite();
    suite.targets.push({ id: 'node-fs', label: 'node fs', kind: 'peer', notes: [], skipped: 'not here', cells: [], runs: [] });
    const document: BenchDocument = {
      tool: 'ext4ts bench', schemaVersion: 1, startedAt: '2026-01-01T00:00:00.000Z', durationMs: 1,
      machine: { cpus: 2, cpuModel: 'x', memoryBytes: 1, platform: 'linux', kernel: '6', node: 'v20', loadAverageStart: 3, loadAverageEnd: 0.5 },
      settings: { device: 'memory device', repeat: 3, command: 'ext4ts bench' }, notes: ['a note'], suites: [suite],
      seedComparison: seedComparison(suite), checks: peerChecks(suite),
    };
    const text = renderReport(document);
    expect(text).toContain("The seed's table on ext4ts (memory device");
    expect(text).toContain('median of 3');
    expect(text).toContain('skipped node fs: not here');
    expect(text).toContain("The issue's targets");
    expect(text).toContain('load average 3.0 at the start and 0.5 at the end (other work was running');
    const svg = renderSvg(document);
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('not shown — node fs: not here');
  });
});

describe('kernel peer: fio arguments and JSON', () => {
  it('passes the job to fio in bytes, with the file naming and fsyncs the job says', () => {
    const args = fioArgsOf(seedJobs[1]);
    expect(args).toEqual(expect.arrayContaining([
      '--name=overwrite', '--new_group', '--rw=write', '--bs=1048576', `--size=${64 * MIB}`, '--ioengine=psync', '--numjobs=1',
      '--invalidate=0', '--filename=seed.data', '--end_fsync=1', '--overwrite=1', '--fallocate=none',
    ]));
    const [cloned] = parseJobFile('[w]\nsize=1m\nnumjobs=2\nrw=write\n');
    expect(fioArgsOf(cloned)).toContain('--filename_format=$jobname.$jobnum.$filenum');
  });

  it("reads fio's own bandwidth, and for a short unsynced job the sum of its latencies", () => {
    const direction = (ioBytes: number, runtime: number, ios: number, latMeanNs: number) => ({
      io_bytes: ioBytes, bw_bytes: runtime > 0 ? ioBytes / (runtime / 1000) : 0, iops: runtime > 0 ? ios / (runtime / 1000) : 0,
      runtime, total_ios: ios, lat_ns: { mean: latMeanNs, max: latMeanNs }, clat_ns: { percentile: { '50.000000': latMeanNs, '99.000000': latMeanNs } },
    });
    const none = direction(0, 0, 0, 0);
    const text = `fio: some chatter\n${JSON.stringify({ jobs: [
      { jobname: 'write', read: none, write: direction(64 * MIB, 500, 64, 7_000_000) },
      { jobname: 'read-data', read: direction(64 * MIB, 4, 64, 50_000), write: none },
    ] })}`;
    const [write, read] = parseFioJson(text, [seedJobs[0], seedJobs[3]]);
    expect(write.mibPerSecond).toBeCloseTo(128, 6); // 64 MiB in 500 ms, end_fsync included
    expect(write.timing).toBe('fio-runtime');
    expect(read.timing).toBe('latency-sum'); // 4 ms is too coarse: 64 calls x 50 us = 3.2 ms
    expect(read.elapsedMs).toBeCloseTo(3.2, 9);
    expect(read.mibPerSecond).toBeCloseTo(64 / 0.0032, 6);
    expect(read.latency?.p50Us).toBe(50);
    expect(() => parseFioJson(text, [seedJobs[0]])).toThrow(/2 jobs, expected 1/);
  });
});

describe('svg helpers', () => {
  it('logBounds spans whole decades around the data', () => {
    expect(logBounds([35, 12000])).toEqual({ low: 10, high: 100000 });
    expect(logBounds([])).toEqual({ low: 1, high: 10 });
  });

  it('escapeXml escapes markup characters', () => {
    expect(escapeXml('a<b & "c">')).toBe('a&lt;b &amp; &quot;c&quot;&gt;');
  });
});
