// The crash harness proven on the toy WAL (toy-wal.ts): the correct protocol survives
// every state of several seeded runs; each broken variant is caught, and its reproducer
// replays to the same failure.
//
// CRASH_LONG=1 runs more seeds and states (a few minutes' worth instead of a few seconds).
import { describe, expect, it } from 'vitest';
import { runCrashCampaign, describeFailures, type CampaignOptions, type CampaignReport } from './harness.js';
import { toyBase, toyCheck, toyPlan, toyWorkload, type ToyVariant } from './toy-wal.js';

const LONG = process.env.CRASH_LONG === '1';
const SEEDS = LONG ? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] : [1, 2, 3];
const IMAGES_PER_SEED = LONG ? 5000 : 400;
const TX_COUNT = LONG ? 300 : 100;
/** A broken variant must be caught within this many states (of a 100-transaction run). */
const BROKEN_IMAGES = 300;
const BROKEN_TX_COUNT = 100;

function toyCampaign(variant: ToyVariant, seed: number, images: number, txCount = TX_COUNT): CampaignOptions {
  const plan = toyPlan(seed, txCount);
  return {
    name: `toy WAL (${variant})`,
    makeBase: toyBase,
    workload: (device, mark) => toyWorkload(device, mark, plan, variant),
    check: toyCheck(plan, variant),
    images,
    seed,
  };
}

function summary(report: CampaignReport): string {
  return `${report.name} seed ${report.seed}: ${report.eventCount} events (${report.writeCount} writes, ${report.flushCount} flushes, ` +
    `${report.markCount} marks), ${report.statesChecked} states (${report.flushStates} flush + ${report.randomStates} random) ` +
    `in ${report.checkMs.toFixed(0)} ms = ${report.statesPerSecond.toFixed(0)} states/s, ${report.failures.length} failures`;
}

describe('crash campaign on the toy WAL', () => {
  it(`the correct protocol passes ${SEEDS.length * IMAGES_PER_SEED} crash states over ${SEEDS.length} seeded runs`, async () => {
    let total = 0;
    for (const seed of SEEDS) {
      const report = await runCrashCampaign(toyCampaign('correct', seed, IMAGES_PER_SEED));
      console.log(summary(report));
      expect(report.failures, describeFailures(report)).toEqual([]);
      expect(report.flushStates).toBeGreaterThan(50);
      total += report.statesChecked;
    }
    expect(total).toBeGreaterThanOrEqual(1000);
  });

  for (const [variant, symptom] of [
    ['ack-before-flush', /acknowledged transaction \d+ lost/],
    ['unchecked-record', /home \d+ after recovery/],
  ] as const) {
    it(`catches the broken '${variant}' variant within ${BROKEN_IMAGES} states, and the reproducer replays`, async () => {
      const options = toyCampaign(variant, 1, BROKEN_IMAGES, BROKEN_TX_COUNT);
      const report = await runCrashCampaign({ ...options, maxFailures: 3 });
      console.log(summary(report));
      expect(report.failures.length).toBeGreaterThan(0);
      const failure = report.failures[0];
      expect(failure.message).toMatch(symptom);
      expect(failure.reproducer).toContain(failure.specLine);
      const replayed = await runCrashCampaign({ ...options, replay: failure.specLine });
      expect(replayed.statesChecked).toBe(1);
      expect(replayed.failures.map((item) => item.message)).toEqual([failure.message]);
    });
  }

  it('fails loudly when the recorded log overflows its bound', async () => {
    const options = toyCampaign('correct', 1, 10, BROKEN_TX_COUNT);
    await expect(runCrashCampaign({ ...options, maxLogBytes: 64 * 1024 })).rejects.toThrow(/over its bound/);
  });
});
