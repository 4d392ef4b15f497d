/**
 * runFsx end to end. Against the host file system (NodeFsxTarget): a 20,000-op run with
 * every op the host offers passes; the same seed gives the same op log; replaying a
 * recorded log rebuilds the identical file; broken targets (truncate-up leaves stale data,
 * write drops its last byte, punch does nothing, a write also lands in the wrong place) are
 * caught with the right op named. Against the in-memory page cache (MemoryFsxTarget): -e
 * EOF-page pollution passes on a correct target and catches one that forgets to zero it.
 *
 * fallocate(1) costs a process spawn (~2 ms) and fsync a disk flush (~1.3 ms on /tmp), so
 * runs weigh fallocate, punch and zero at 1/10 and fsync at 1/4 of the other ops (about
 * 1,000 spawns and 800 fsyncs in 20,000 ops).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';
import { NodeFsxTarget } from './node-target.js';
import { MemoryFsxTarget } from './memory-target.js';
import { FsxFailure, runFsx, type FsxRunOptions } from '../../packages/cli/src/fsx/run.js';
import { parseOpLog } from '../../packages/cli/src/fsx/log.js';
import { loadFsxRun, parseFsxArgs } from '../../packages/cli/src/fsx/options.js';
import type { FsxTarget } from '../../packages/cli/src/fsx/target.js';

const FEW_SPAWNS = { opWeights: { fallocate: 0.1, punch_hole: 0.1, zero_range: 0.1, fsync: 0.25 } } satisfies Partial<FsxRunOptions>;

let temp: TempDir;
let hostCaps: { fallocate: boolean; punch: boolean; zero: boolean };

beforeAll(async () => {
  temp = makeTempDir('ext4ts-fsx-test-');
  const probe = await NodeFsxTarget.create();
  hostCaps = { ...probe.capabilities };
  await probe.close();
});
afterAll(() => temp?.cleanup());

/** Runs fsx on a fresh host file and returns the result plus the final file bytes. */
async function runOnHost(options: Partial<FsxRunOptions>, wrap: (t: NodeFsxTarget) => FsxTarget = (t) => t) {
  const inner = await NodeFsxTarget.create();
  const target = wrap(inner);
  try {
    const result = await runFsx(target, options);
    const bytes = await inner.read(0, await inner.size());
    return { result, bytes };
  } finally {
    await inner.close();
  }
}

/** Runs fsx expecting a failure; returns it. */
async function expectFailure(options: Partial<FsxRunOptions>, wrap: (t: NodeFsxTarget) => FsxTarget): Promise<FsxFailure> {
  const error = await runOnHost(options, wrap).then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(FsxFailure);
  return error as FsxFailure;
}

/** Forwards everything to the host target; tests override one method to break it. */
class WrappedTarget implements FsxTarget {
  constructor(readonly inner: NodeFsxTarget) {}
  get capabilities() { return this.inner.capabilities; }
  size() { return this.inner.size(); }
  read(pos: number, len: number) { return this.inner.read(pos, len); }
  write(pos: number, data: Uint8Array) { return this.inner.write(pos, data); }
  truncate(size: number) { return this.inner.truncate(size); }
  fallocate(pos: number, len: number, o: { keepSize: boolean }) { return this.inner.fallocate(pos, len, o); }
  punchHole(pos: number, len: number) { return this.inner.punchHole(pos, len); }
  zeroRange(pos: number, len: number, o: { keepSize: boolean }) { return this.inner.zeroRange(pos, len, o); }
  mapRead(pos: number, len: number) { return this.inner.mapRead(pos, len); }
  mapWrite(pos: number, data: Uint8Array) { return this.inner.mapWrite(pos, data); }
  fsync() { return this.inner.fsync(); }
  close() { return this.inner.close(); }
  reopen() { return this.inner.reopen(); }
}

describe('runFsx on the host file system', () => {
  it('passes 20,000 ops with every op the host offers (close/reopen, whole-file checks every 1,000)', async () => {
    const { result } = await runOnHost({ seed: 191110531, numOps: 20_000, checkEveryOps: 1000, closeOpenProb: 100, ...FEW_SPAWNS });
    expect(result.opsRun).toBe(20_000);
    for (const name of ['read', 'write', 'mapread', 'mapwrite', 'truncate'] as const) expect(result.opCounts[name]).toBeGreaterThan(1000);
    expect(result.opCounts.fsync).toBeGreaterThan(300);
    if (hostCaps.fallocate) expect(result.opCounts.fallocate).toBeGreaterThan(100);
    if (hostCaps.punch) expect(result.opCounts.punch_hole).toBeGreaterThan(100);
    if (hostCaps.zero) expect(result.opCounts.zero_range).toBeGreaterThan(100);
    expect(result.ops.some((op) => op.closeOpen)).toBe(true);
  });

  it('gives the same op log for the same seed, and a replayed log rebuilds the identical file', async () => {
    const recordOpsPath = path.join(temp.dir, 'same-seed.fsxops');
    const options = { seed: 4242, numOps: 1500, maxFileLen: 64 * 1024, maxOpLen: 16 * 1024, ...FEW_SPAWNS };
    const first = await runOnHost({ ...options, recordOpsPath });
    const second = await runOnHost(options);
    expect(second.result.ops).toEqual(first.result.ops);
    expect(second.bytes).toEqual(first.bytes);

    // Replay through the CLI parser, the way `ext4ts fsx --replay-ops` will: seed and
    // max length come from the log header.
    const run = loadFsxRun(parseFsxArgs(['--replay-ops', recordOpsPath]));
    expect(run.seed).toBe(4242);
    const replayed = await runOnHost(run);
    expect(replayed.result.ops).toEqual(first.result.ops);
    expect(replayed.bytes.length).toBeGreaterThan(0);
    expect(Buffer.from(replayed.bytes).equals(Buffer.from(first.bytes))).toBe(true);
  });

  it('a replay log cut in the middle is refused at the first line out of step', async () => {
    const recordOpsPath = path.join(temp.dir, 'cut.fsxops');
    await runOnHost({ seed: 77, numOps: 300, ...FEW_SPAWNS, recordOpsPath });
    const lines = readFileSync(recordOpsPath, 'utf8').split('\n');
    const sizeChange = lines.findIndex((l, i) => i > 1 && /^(write|truncate|mapwrite)/.test(l));
    const { ops, header } = parseOpLog([lines[0], ...lines.slice(sizeChange + 1)].join('\n'));
    const error = await runOnHost({ seed: header.seed, replayOps: ops }).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(FsxFailure);
    expect((error as FsxFailure).kind).toBe('replay');
  });

  it('catches truncate-up that exposes stale bytes, naming the truncate (-X)', async () => {
    const failure = await expectFailure({ seed: 5, numOps: 3000, checkEveryOps: 1, ...FEW_SPAWNS }, (inner) => {
      const t = new WrappedTarget(inner);
      let stale: Uint8Array = new Uint8Array(0);
      let staleAt = 0;
      t.truncate = async (size) => {
        const old = await inner.size();
        if (size < old) {
          stale = await inner.read(size, old - size); // remember what was cut off...
          staleAt = size;
        }
        await inner.truncate(size);
        if (size > old && stale.some((b) => b !== 0)) {
          // ...and leave it visible when the file grows back over it (no zeroing).
          const from = Math.max(old, staleAt);
          const end = Math.min(size, staleAt + stale.length);
          if (end > from) await inner.write(from, stale.subarray(from - staleAt, end - staleAt));
        }
      };
      return t;
    });
    expect(failure.op?.name).toBe('truncate');
    expect(failure.op!.length).toBeGreaterThan(failure.op!.sizeBefore); // truncate UP
    expect(failure.kind).toBe('file');
    expect(failure.message).toMatch(/truncate UP/);
    expect(failure.badBytes[0].expected).toBe(0);
    expect(failure.badBytes[0].offset).toBeGreaterThanOrEqual(failure.op!.sizeBefore);
  });

  it('catches a write that drops its last byte, naming the write (-X)', async () => {
    const failure = await expectFailure({ seed: 6, numOps: 2000, checkEveryOps: 1, ...FEW_SPAWNS }, (inner) => {
      const t = new WrappedTarget(inner);
      t.write = (pos, data) => inner.write(pos, data.subarray(0, data.length - 1));
      return t;
    });
    expect(failure.op?.name).toBe('write');
    const op = failure.op!;
    if (failure.kind === 'size') {
      expect(op.offset + op.length).toBeGreaterThan(op.sizeBefore);
    } else {
      expect(failure.kind).toBe('file');
      expect(failure.badBytes[0].offset).toBe(op.offset + op.length - 1);
    }
  });

  it.skipIf(process.platform !== 'linux')('catches a punch that does nothing, naming the punch and the op whose data is still there', async () => {
    if (!hostCaps.punch) return; // no punch on this host: nothing to break
    const failure = await expectFailure({ seed: 8, numOps: 3000, checkEveryOps: 1, opWeights: { fallocate: 0.1, zero_range: 0.1 } }, (inner) => {
      const t = new WrappedTarget(inner);
      t.punchHole = async () => {};
      return t;
    });
    expect(failure.op?.name).toBe('punch_hole');
    const op = failure.op!;
    const bad = failure.badBytes[0];
    expect(bad.expected).toBe(0);
    expect(bad.offset).toBeGreaterThanOrEqual(op.offset);
    expect(bad.offset).toBeLessThan(op.offset + op.length);
    // The surviving byte is some earlier write's pattern: the suspect must be a write in the log over that offset.
    const suspect = failure.suspectOpMod256!;
    const writers = failure.ops
      .map((o, i) => ({ o, n: i + 1 }))
      .filter(({ o, n }) => !o.skip && (o.name === 'write' || o.name === 'mapwrite') && (n & 0xff) === suspect && o.offset <= bad.offset && bad.offset < o.offset + o.length);
    expect(writers.length).toBeGreaterThan(0);
    expect(failure.message).toMatch(new RegExp(`op ${suspect} \\(mod 256\\) may have written the bad data`));
  });

  it('names a misdirected write by its data, long after it happened, and writes .fsxgood/.fsxops', async () => {
    const outputDir = path.join(temp.dir, 'misdirect');
    const MISDIRECT_BYTES = 8192;
    // Every 20th write also lands a copy 8 KiB later (a wrong block number) when that fits in the file.
    const copies: { call: number; pos: number; end: number }[] = [];
    let writeCalls = 0;
    const failure = await expectFailure({ seed: 12, numOps: 4000, outputDir, ...FEW_SPAWNS }, (inner) => {
      const t = new WrappedTarget(inner);
      t.write = async (pos, data) => {
        writeCalls++;
        await inner.write(pos, data);
        const pos2 = pos + MISDIRECT_BYTES;
        if (writeCalls % 20 === 0 && pos2 + data.length <= (await inner.size())) {
          copies.push({ call: writeCalls, pos: pos2, end: pos2 + data.length });
          await inner.write(pos2, data);
        }
      };
      return t;
    });
    expect(failure.kind).toMatch(/^(read|file)$/);
    const ops = parseOpLog(readFileSync(path.join(outputDir, 'fsxfile.fsxops'), 'utf8')).ops;
    expect(ops).toEqual(failure.ops);
    const writeNumbers = ops.map((o, i) => (o.name === 'write' && !o.skip ? i + 1 : 0)).filter((n) => n > 0);
    // A bad byte's last writer is the latest misdirected copy over it (any later legal op would have fixed it).
    const bad = failure.badBytes[0];
    const copy = copies.filter((c) => c.pos <= bad.offset && bad.offset < c.end).pop();
    expect(copy).toBeDefined();
    const culprit = writeNumbers[copy!.call - 1];
    expect(failure.opNumber).toBeGreaterThan(culprit);
    expect(failure.suspectOpMod256).toBe(culprit & 0xff);
    expect(failure.message).toMatch(new RegExp(`op ${culprit & 0xff} \\(mod 256\\) may have written the bad data; writes with that number: .*\\b${culprit}\\b`));
    expect(failure.files).toHaveLength(3);
    const good = readFileSync(path.join(outputDir, 'fsxfile.fsxgood'));
    expect(good.length).toBeGreaterThan(0); // the expected image at the failing op
    expect(good.length).toBeLessThanOrEqual(256 * 1024);
    expect(readFileSync(path.join(outputDir, 'fsxfile.fsxops'), 'utf8')).toMatch(/ \*\n$/);
  });
});

describe('runFsx EOF-page pollution (-e) on the in-memory page cache', () => {
  it('passes when the size change zeroes the polluted EOF page, with mapped-op EOF checks on', async () => {
    const result = await runFsx(new MemoryFsxTarget(256 * 1024), { seed: 363, numOps: 20_000, polluteEof: true, checkEveryOps: 500 });
    expect(result.notes).toEqual([]);
    const plain = await runFsx(new MemoryFsxTarget(256 * 1024), { seed: 364, numOps: 5000, checkEveryOps: 1 });
    expect(plain.opsRun).toBe(5000);
  });

  it('catches a target that leaves post-EOF garbage visible when the size grows, naming the growing op', async () => {
    const target = new MemoryFsxTarget(256 * 1024, { noZeroOnExtend: true });
    const error = await runFsx(target, { seed: 363, numOps: 20_000, polluteEof: true }).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(FsxFailure);
    const failure = error as FsxFailure;
    expect(failure.kind).toBe('eof-pollution');
    const op = failure.op!;
    expect(['truncate', 'write', 'mapwrite', 'fallocate', 'zero_range']).toContain(op.name);
    // The garbage sits in the old EOF page, past the old size.
    expect(failure.badBytes[0].offset).toBeGreaterThanOrEqual(op.sizeBefore);
    expect(failure.badBytes[0].offset).toBeLessThan(Math.ceil(op.sizeBefore / 4096) * 4096);
    expect(failure.badBytes[0].expected).toBe(0);
  });

  it('notes that -e was skipped on a target without EOF-page access', async () => {
    const { result } = await runOnHost({ seed: 1, numOps: 50, polluteEof: true, ...FEW_SPAWNS });
    expect(result.notes.join()).toMatch(/-e: target has no EOF-page access/);
  });
});
