// The fsx crash campaign (fsx-crash.test.ts) against engines broken on purpose, each in the
// one rule its path keeps to avoid stale data after a crash — the campaign must catch both:
//
//   iomap        writeback allocates delayed blocks as WRITTEN extents instead of unwritten
//                (mapBlocksCreateLocked without UNWRIT_EXT when called with DELALLOC_RESERVE):
//                a commit may then map blocks whose data has not landed;
//   buffer_head  data=ordered dropped (JournalHandle.orderData does nothing): a commit no
//                longer waits for the data writes of the blocks it allocated.
//
// Each runs the same workload as the campaign (seeded clock, writes in flight) and checks
// states the same way (ext4ts recovery, checkFsxFile), without e2fsck; it must find states
// that show junk of freed blocks or another offset's data. If a mutation stops biting (an
// engine function renamed, a hook moved), the test fails: fix the mutation, not the check.
// Both are deterministic, so their seeds are fixed (2 x 300 ops x 200 states each); the
// count of failing states moves with the engine (13 and 9 of 400 when written, 15 and 25 a
// few engine commits later), only "some" is asserted.
//
// The written-extent mutation can also show live, before any crash: writeback maps a
// delayed extent whole, so blocks a write has reserved but not yet copied get allocated
// too, and the write's read-modify-write of its partial last block then reads them — as
// zeros from an unwritten extent, as the base image's junk from a mutated written one. A
// run that fails that way (fsx BAD DATA: old bytes where zeros were due) counts as caught.
//
// Cost: ~2 s per mutation (recording 0.3-1 s, 400 states at ~3 ms without e2fsck).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FsxFailure } from '../../packages/cli/src/fsx/run.js';
import { Handle } from '../../packages/core/src/jbd2/transaction.js';
import { runCrashCampaign } from './harness.js';
import {
  FSX_CRASH_CONFIGS, checkFsxFile, fsxConfigUnavailable, fsxCrashWorkload, makeFsxCrashBase, mountForRecovery, readBackFsxFiles, type FsxCrashRun,
} from './fsx-crash.js';

/** Which rule is broken right now (read at every call, so the module mock is inert otherwise). */
const mutation = { writtenAtWriteback: false };

vi.mock('../../packages/core/src/ext4/map_blocks.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../packages/core/src/ext4/map_blocks.js')>();
  const { MapFlags } = original;
  return {
    ...original,
    mapBlocksCreateLocked: (...args: Parameters<typeof original.mapBlocksCreateLocked>) => {
      const [state, lblk, len, flags] = args;
      const writeback = (flags & MapFlags.DELALLOC_RESERVE) !== 0;
      return original.mapBlocksCreateLocked(state, lblk, len, mutation.writtenAtWriteback && writeback ? flags & ~MapFlags.UNWRIT_EXT : flags);
    },
  };
});

const orderDataOriginal = Handle.prototype.orderData;
afterEach(() => {
  mutation.writtenAtWriteback = false;
  Handle.prototype.orderData = orderDataOriginal;
});

/** Runs the campaign's workload and check on `seeds`; returns the failures' messages. */
async function campaign(configName: string, seeds: readonly number[]): Promise<{ states: number; failures: string[] }> {
  const config = FSX_CRASH_CONFIGS.find((c) => c.name === configName)!;
  let states = 0;
  const failures: string[] = [];
  for (const seed of seeds) {
    let run: FsxCrashRun | undefined;
    let report: Awaited<ReturnType<typeof runCrashCampaign>>;
    try {
      report = await runCrashCampaign({
        name: `fsx mutation ${config.name}`, seed, images: 200, maxFailures: 200,
        makeBase: makeFsxCrashBase,
        workload: async (device, mark) => {
          vi.useFakeTimers({ toFake: ['Date', 'performance', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'], now: new Date('2024-06-01T00:00:00Z') });
          try {
            run = await fsxCrashWorkload(device, mark, {
              config, seed, numOps: 300, maxFileLen: 1024 * 1024, maxOpLen: 256 * 1024, cacheBytes: 1024 * 1024,
              clock: { advance: (ms) => vi.advanceTimersByTime(ms), stepMs: 5000, afterProbability: 0.2, duringProbability: 0.1 },
              latency: { delayedProbability: 0.5, turnsMax: 4 },
            });
          } finally {
            vi.useRealTimers();
          }
        },
        check: async (device, acknowledged, image) => {
          const fs = await mountForRecovery(device);
          await fs.unmount();
          const { file } = await readBackFsxFiles(device);
          const problems = checkFsxFile(file, acknowledged, { sectorMix: image.spec.torn.length > 0, run });
          if (problems.length > 0) throw new Error(problems.slice(0, 2).join('\n'));
        },
      });
    } catch (error) {
      // Caught live: the run read old bytes of a reallocated block where zeros were due.
      const zerosDue = error instanceof FsxFailure && error.badBytes.length > 0 && error.badBytes.every((bad) => bad.expected === 0);
      if (!zerosDue) throw error;
      const got = Buffer.from(error.badBytes.map((bad) => bad.got)).toString('latin1').replace(/[^ -~]/g, '.');
      failures.push(`seed ${seed} live: ${error.message.split('\n')[0]}: STALE bytes where zeros were due ("${got}")`);
      continue;
    }
    states += report.statesChecked;
    failures.push(...report.failures.map((f) => `seed ${seed} ${f.specLine}: ${f.message}`));
  }
  return { states, failures };
}

const stale = (message: string): boolean => /STALE junk|STALE data of this file|STALE bytes where zeros were due/.test(message);

describe('fsx crash campaign against broken engines', () => {
  it('catches iomap writeback that allocates written instead of unwritten extents', async () => {
    mutation.writtenAtWriteback = true;
    const { states, failures } = await campaign('iomap', [1, 2]);
    console.log(`iomap, written at writeback: ${failures.length} of ${states} states failing; first: ${failures[0]}`);
    expect(failures.filter(stale).length).toBeGreaterThan(0);
  }, 120_000);

  it('catches buffer_head commits that do not wait for ordered data', async (context) => {
    const unavailable = await fsxConfigUnavailable(FSX_CRASH_CONFIGS.find((c) => c.name === 'buffer_head')!);
    if (unavailable !== null) context.skip(`buffer_head does not mount: ${unavailable}`);
    Handle.prototype.orderData = function orderDataDropped(): void {};
    const { states, failures } = await campaign('buffer_head', [1, 3]);
    console.log(`buffer_head, orderData dropped: ${failures.length} of ${states} states failing; first: ${failures[0]}`);
    expect(failures.filter(stale).length).toBeGreaterThan(0);
  }, 120_000);
});
