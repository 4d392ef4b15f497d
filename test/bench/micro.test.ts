// The engine micro-benchmarks (bench/micro-engine.ts) on a small scale: a few iterations
// per task over the core's sources, a 64 MiB cache and a file of 300 extents. Checks that
// every table has numbers, and that each call's stages, timed alone, add up to within a
// tolerance of the whole call (wide: two shared cores, a few iterations each). ≈ 5 s.
import { describe, expect, it } from 'vitest';
import {
  ENGINE_MICRO_DEFAULTS, formatEngineMicro, loadEngineCore, runEngineMicro, type EngineMicroResult,
} from '../../bench/micro-engine.js';

const MIB = 1024 * 1024;

// The sum of the stages over the whole call: 0.56–0.87 in full runs; the rest is glue and
// awaits no stage sees. A 1 MiB call is mostly its copy, so its bounds are tighter.
const SHARE_MIN_LARGE = 0.5;
const SHARE_MIN_SMALL = 0.25;
const SHARE_MAX = 1.5;

function expectPositive(values: number[], what: string): void {
  for (const value of values) {
    expect(Number.isFinite(value), `${what}: ${value} is a number`).toBe(true);
    expect(value, what).toBeGreaterThan(0);
  }
}

describe('engine micro-benchmarks', () => {
  it('measure every piece, and each call\'s stages add up to about the whole call', async () => {
    const core = await loadEngineCore(new URL('../../packages/core/src/', import.meta.url));
    const result: EngineMicroResult = await runEngineMicro(core, {
      ...ENGINE_MICRO_DEFAULTS,
      taskTimeMs: 10, warmupTimeMs: 5, iterationsMin: 8,
      fragExtents: 300, esRecordCounts: [1000, 10_000],
      cacheBytes: 64 * MIB, deviceBytes: 128 * MIB, freshCycleBytes: 8 * MIB,
      log: () => undefined,
    });
    for (const grid of [result.esTree, result.mapBlocks, result.folio]) {
      expect(grid.rows.length).toBeGreaterThan(3);
      for (const row of grid.rows) {
        expect(row.usPerCall).toHaveLength(grid.columns.length);
        expectPositive(row.usPerCall, `${grid.title}: ${row.label}`);
      }
    }
    expect(result.breakdowns.map((b) => b.title.split(':')[0])).toEqual([
      '1 MiB cached read', '1 MiB overwrite of cached data', '1 MiB fresh delalloc append',
      '4 KiB cached read', '4 KiB overwrite of cached data', '4 KiB fresh delalloc append',
    ]);
    for (const b of result.breakdowns) {
      const stages = [...b.upper, ...b.pathStages];
      // A cached read is the page cache check and the copy below the two upper layers; writes go through the iomap steps.
      expect(stages.length).toBeGreaterThanOrEqual(b.title.includes('cached read') ? 4 : 8);
      expectPositive([b.whole.usPerCall, b.path.usPerCall, ...stages.map((s) => s.usPerCall), ...b.beside.map((s) => s.usPerCall)], b.title);
      expect(b.stageSumUs).toBeCloseTo(stages.reduce((sum, s) => sum + s.usPerCall, 0), 9);
      const share = b.stageSumUs / b.whole.usPerCall;
      expect(share, `${b.title}: stages sum to ${b.stageSumUs} µs of ${b.whole.usPerCall} µs`)
        .toBeGreaterThanOrEqual(b.title.startsWith('1 MiB') ? SHARE_MIN_LARGE : SHARE_MIN_SMALL);
      expect(share, `${b.title}: stages sum to ${b.stageSumUs} µs of ${b.whole.usPerCall} µs`).toBeLessThanOrEqual(SHARE_MAX);
    }
    const text = formatEngineMicro(result);
    expect(text).toContain('= sum of the stages timed alone');
    expect(text).toMatch(/copy: folio\.copyOut 1 MiB \(memory\.copy\)\s+\d+\.\d+\s+\d+\.\d%/);
  });
});
