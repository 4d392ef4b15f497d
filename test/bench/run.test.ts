// A tiny run of `ext4ts bench` on the memory device, through benchMain as the CLI calls
// it: the seed suite at 4 MiB per file on the default iomap path, beside the copy limit,
// and a user job (randrw, numjobs=2) from fio options. Checks the exit code, the text
// tables, the JSON document (parsed back) and the SVG file. A few seconds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchMain, type BenchIo } from '../../bench/src/cli.js';
import { cloneWorkerUrl } from '../../bench/src/clone-threads.js';
import type { BenchDocument } from '../../bench/src/report.js';

let dir = '';
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'ext4ts-bench-test-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

function capture(): BenchIo & { out: string; err: string } {
  const io = { out: '', err: '', stdout: (text: string) => { io.out += text; }, stderr: (text: string) => { io.err += text; } };
  return io;
}

describe('ext4ts bench on the memory device', () => {
  it('runs the seed suite and writes a JSON document and an SVG chart', async () => {
    const io = capture();
    const json = join(dir, 'seed.json');
    const svg = join(dir, 'seed.svg');
    const code = await benchMain([
      '--sections', 'seed', '--size=4m', '--repeat', '2', '--buffered', 'iomap', '--peers', 'copy', '--no-progress',
      '--json', json, '--svg', svg,
    ], io);
    expect(io.err).toBe('');
    expect(code).toBe(0);
    expect(io.out).toContain("The seed's table on ext4ts (memory device; fio psync, 1 job, 1M blocks, 4 MiB per file, median of 2)");
    expect(io.out).toMatch(/read data\s+1M\s+-\s+-\s+IOPS=\d+, BW=\d+MiB\/s/);
    expect(io.out).toContain('Peers: the same jobs in the same run');
    expect(io.out).toContain(`results: ${json}, ${svg}`);

    const document = JSON.parse(await readFile(json, 'utf8')) as BenchDocument;
    expect(document.tool).toBe('ext4ts bench');
    expect(document.schemaVersion).toBe(1);
    const [suite] = document.suites;
    expect(suite.id).toBe('seed');
    expect(suite.targets.map((t) => t.id)).toEqual(['ext4ts:iomap+lf', 'copy']);
    const ours = suite.targets[0];
    expect(ours.settings).toMatchObject({ buffered: 'iomap', largeFolios: true, device: 'memory' });
    expect(ours.runs).toHaveLength(2);
    for (const cell of ours.cells) {
      expect(cell.repetitions).toBe(2);
      expect(cell.mibPerSecond.median).toBeGreaterThan(0);
      expect(cell.iops.median).toBeCloseTo(cell.mibPerSecond.median, 6); // 1 MiB blocks
    }
    // Every run moved exactly the job's bytes, and the fsync jobs fsynced once (end_fsync).
    const [write, overwrite, hole, data] = ours.runs[0];
    expect([write.writeBytes, overwrite.writeBytes, hole.readBytes, data.readBytes]).toEqual([4 << 20, 4 << 20, 4 << 20, 4 << 20]);
    expect([write.syncs, overwrite.syncs, hole.syncs]).toEqual([1, 1, 0]);
    expect(document.seedComparison?.map((row) => row.seedRatio.toFixed(1))).toEqual(['2.2', '2.5', '2.0', '1.6']);
    expect(document.checks.find((c) => c.what === 'read data: iomap+LF / copy limit')?.value).toBeGreaterThan(0);

    const chart = await readFile(svg, 'utf8');
    expect(chart.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(chart.trimEnd().endsWith('</svg>')).toBe(true);
    expect(chart.match(/<rect [^>]*fill="#1f4fbf"><title>/g)).toHaveLength(4); // one bar per job for iomap + LF
    expect(chart).toContain('write+fsync');
  });

  it('runs fio-style options as a job, numjobs clones as async callers (--clients engine), and prints JSON with --output-format=json', async () => {
    const io = capture();
    const code = await benchMain([
      '--name=mix', '--rw=randrw', '--rwmixread=70', '--bs=4k', '--size=256k', '--numjobs=2', '--fsync=16',
      '--buffered=iomap', '--no-save', '--output-format=json', '--no-warm-memory', '--clients=engine',
    ], io);
    expect(code).toBe(0);
    const document = JSON.parse(io.out) as BenchDocument;
    const [run] = document.suites[0].targets[0].runs[0];
    expect(run.readIos + run.writeIos).toBe(2 * 64); // two clones, 64 blocks each
    expect(run.readIos).toBeGreaterThan(run.writeIos); // 70% reads
    // fsync after every 16 writes of each clone: floor(w0/16) + floor(w1/16).
    expect(run.syncs).toBeLessThanOrEqual(Math.floor(run.writeIos / 16));
    expect(run.syncs).toBeGreaterThanOrEqual(Math.floor(run.writeIos / 16) - 1);
    expect(document.suites[0].targets[0].settings?.clients).toBe('engine');
    expect(document.notes.join(' ')).toContain('concurrent async callers in the engine');
  });

  // Worker threads run the compiled clone worker (bench/dist), which the test script builds first.
  const workerBuilt = existsSync(cloneWorkerUrl());
  it.skipIf(!workerBuilt)('runs numjobs clones on worker threads over the client channel (needs the build: pnpm run build)', async () => {
    const io = capture();
    const code = await benchMain([
      '--name=w', '--rw=write', '--bs=64k', '--size=1m', '--numjobs=2', '--end_fsync=1',
      '--name=r', '--stonewall', '--rw=read', '--bs=64k', '--size=1m', '--numjobs=2', '--filename_format=w.$jobnum.0',
      '--buffered=iomap', '--clients', 'threads', '--no-save', '--no-warm-memory', '--output-format=json',
    ], io);
    expect(io.err).toBe('');
    expect(code).toBe(0);
    const document = JSON.parse(io.out) as BenchDocument;
    const [target] = document.suites[0].targets;
    expect(target.settings?.clients).toBe('threads');
    const [write, read] = target.runs[0];
    expect([write.writeBytes, write.writeIos, write.syncs]).toEqual([2 << 20, 32, 2]);
    expect([read.readBytes, read.readIos]).toEqual([2 << 20, 32]);
    expect(document.notes.join(' ')).toContain('each clone on its own worker thread');
  });

  it('reads a fio job file and reports bad options as usage errors (exit 2)', async () => {
    const jobFile = join(dir, 'two.fio');
    await writeFile(jobFile, '[global]\nbs=64k\nsize=512k\n\n[w]\nrw=write\nend_fsync=1\n\n[r]\nstonewall\nrw=read\nfilename=w.0.0\n');
    const io = capture();
    expect(await benchMain([jobFile, '--buffered=iomap', '--no-save', '--no-warm-memory'], io)).toBe(0);
    expect(io.out).toMatch(/Your jobs \(one run\)\n/);
    expect(io.out).toMatch(/\nw\s+64k\s+IOPS=\d+/);
    expect(io.out).toMatch(/\nr\s+64k\s+IOPS=\d+/);

    const bad = capture();
    expect(await benchMain(['--rw=write', '--bs=4k', '--size=1m', '--iodepth=8'], bad)).toBe(2);
    expect(bad.err).toContain('iodepth must be 1');
  });
});
