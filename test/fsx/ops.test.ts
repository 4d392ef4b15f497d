/**
 * The op generator, the data pattern, the replay log format and the argv parser: same
 * seed, same ops; every generated op obeys fsx's trimming rules; log lines round-trip;
 * fsx option letters land in the right fields.
 */
import { describe, it, expect } from 'vitest';
import { FsxModel } from '../../packages/cli/src/fsx/model.js';
import { FsxOpGenerator, makeOriginalBuffer, makeWriteData, suspectOpMod256, type FsxOp } from '../../packages/cli/src/fsx/ops.js';
import { formatOpLine, formatOpLog, parseOpLog } from '../../packages/cli/src/fsx/log.js';
import { defaultFsxRunOptions } from '../../packages/cli/src/fsx/run.js';
import { FsxUsageError, parseFsxArgs } from '../../packages/cli/src/fsx/options.js';

/** Drives the generator against a model (so trimming sees real sizes) and returns the ops. */
function generate(overrides: Partial<ReturnType<typeof defaultFsxRunOptions>>, count: number): FsxOp[] {
  const options = { ...defaultFsxRunOptions(), ...overrides };
  const generator = new FsxOpGenerator(options);
  const model = new FsxModel(options.maxFileLen);
  const ops: FsxOp[] = [];
  for (let n = 1; n <= count; n++) {
    const op = generator.next(model.sizeBytes);
    ops.push(op);
    if (op.skip) continue;
    if (op.name === 'write' || op.name === 'mapwrite') model.write(op.offset, new Uint8Array(op.length));
    if (op.name === 'truncate') model.truncate(op.length);
    if (op.name === 'fallocate') model.fallocate(op.offset, op.length, op.keepSize);
    if (op.name === 'zero_range') model.zeroRange(op.offset, op.length, op.keepSize);
  }
  return ops;
}

describe('FsxOpGenerator', () => {
  it('gives the same ops for the same seed and different ops for another', () => {
    const a = generate({ seed: 42 }, 2000);
    expect(generate({ seed: 42 }, 2000)).toEqual(a);
    expect(generate({ seed: 43 }, 2000)).not.toEqual(a);
  });

  it('keeps every op inside fsx limits: reads and punch within the size, the rest within maxFileLen', () => {
    const maxFileLen = 100_000;
    const ops = generate({ seed: 5, maxFileLen, maxOpLen: 30_000 }, 5000);
    for (const op of ops.filter((o) => !o.skip)) {
      expect(op.length).toBeLessThanOrEqual(op.name === 'truncate' ? maxFileLen : 30_000);
      if (op.name === 'read' || op.name === 'mapread' || op.name === 'punch_hole') {
        expect(op.offset + op.length).toBeLessThanOrEqual(op.sizeBefore);
      } else {
        expect(op.offset + op.length).toBeLessThanOrEqual(maxFileLen);
      }
      expect(op.length > 0 || op.name === 'truncate' || op.name === 'fsync').toBe(true);
    }
    const names = new Set(ops.map((o) => o.name));
    expect(names.size).toBe(9);
  });

  it('turns mapread/mapwrite into read/write under -R -W and skips disabled fallocate modes', () => {
    const ops = generate({ seed: 9, mappedReads: false, mappedWrites: false, fallocateCalls: false, punchCalls: false, zeroCalls: false }, 3000);
    expect(ops.some((o) => o.name === 'mapread' || o.name === 'mapwrite')).toBe(false);
    for (const op of ops.filter((o) => ['fallocate', 'punch_hole', 'zero_range'].includes(o.name))) expect(op.skip).toBe(true);
  });

  it('aligns offsets with -r/-w/-t and never sets keep_size under -K', () => {
    const ops = generate({ seed: 11, readBdy: 512, writeBdy: 4096, truncBdy: 1024, keepSizeCalls: false }, 3000);
    for (const op of ops.filter((o) => !o.skip)) {
      if (op.name === 'read' || op.name === 'mapread') expect(op.offset % 512).toBe(0);
      if (op.name === 'write' || op.name === 'mapwrite') expect(op.offset % 4096).toBe(0);
      if (op.name === 'truncate') expect(op.length % 1024).toBe(0);
      expect(op.keepSize).toBe(false);
    }
  });

  it('uses maxOpLen for every trimmed op under -O', () => {
    const ops = generate({ seed: 3, randomOpLen: false, maxOpLen: 1000 }, 500);
    const writes = ops.filter((o) => o.name === 'write' && o.offset + 1000 <= 256 * 1024);
    expect(writes.length).toBeGreaterThan(0);
    for (const op of writes) expect(op.length).toBe(1000);
  });

  it('weights shift the op mix (a zero weight never picks the op)', () => {
    const ops = generate({ seed: 1, opWeights: { fallocate: 0, punch_hole: 0, zero_range: 0 } }, 3000);
    expect(ops.some((o) => ['fallocate', 'punch_hole', 'zero_range'].includes(o.name))).toBe(false);
  });
});

describe('write data pattern', () => {
  it('is the op number mod 256 on even offsets and names the op back on odd ones', () => {
    const original = makeOriginalBuffer(7, 64);
    const data = makeWriteData(300, 10, 6, original);
    expect(data[0]).toBe(300 & 0xff);
    expect(data[1]).toBe(((300 & 0xff) + original[11]) & 0xff);
    for (let i = 0; i < 6; i++) expect(suspectOpMod256(data[i], 10 + i, original)).toBe(300 & 0xff);
  });

  it('derives the original buffer from the seed only (a longer buffer has it as prefix)', () => {
    const a = makeOriginalBuffer(7, 1001);
    expect(makeOriginalBuffer(7, 4096).subarray(0, 1001)).toEqual(a);
    expect(makeOriginalBuffer(8, 1001)).not.toEqual(a);
  });
});

describe('op log', () => {
  it('formats fsx replay lines and parses them back', () => {
    const op: FsxOp = { name: 'fallocate', offset: 0x1000, length: 0x200, sizeBefore: 0x800, keepSize: true, closeOpen: false, skip: false };
    expect(formatOpLine(op)).toBe('fallocate 0x1000 0x200 0x800 keep_size');
    expect(formatOpLine({ ...op, name: 'punch_hole', keepSize: false, skip: true }, { failed: true })).toBe('skip punch_hole 0x1000 0x200 0x800 *');
    const ops = generate({ seed: 21, closeOpenProb: 5 }, 1000);
    const text = formatOpLog(ops, { seed: 21, maxFileLen: 256 * 1024 }, 17);
    const parsed = parseOpLog(text);
    expect(parsed.header).toEqual({ seed: 21, maxFileLen: 256 * 1024 });
    expect(parsed.ops).toEqual(ops);
    expect(text.split('\n')[18]).toMatch(/ \*$/);
  });

  it('rejects unknown ops and flags with the line number', () => {
    expect(() => parseOpLog('write 0x0 0x10 0x0\nfrobnicate 0x0 0x1 0x2\n')).toThrow(/line 2: unknown op/);
    expect(() => parseOpLog('read 0x0 0x10 0x0 sideways\n')).toThrow(/line 1: unknown flag/);
    expect(() => parseOpLog('read 12 0x10 0x0\n')).toThrow(/not 0x-hex/);
  });
});

describe('parseFsxArgs', () => {
  it('maps fsx letters, clustered flags and long options', () => {
    const cli = parseFsxArgs(['-N100000', '-S', '191110531', '-l', '256k', '-o', '0x10000', '-RW', '-FKHz', '-yX', '-e', '1',
      '-c', '7', '-O', '-r', '512', '-P', '/tmp/out', '--replay-ops', 'a.ops', '--record-ops', '--buffered', 'buffer_head',
      '--no-large-folios', '--image', 'x.img', 'testfile']);
    expect(cli.run).toMatchObject({
      numOps: 100_000, seed: 191110531, maxFileLen: 262144, maxOpLen: 65536, mappedReads: false, mappedWrites: false,
      fallocateCalls: false, keepSizeCalls: false, punchCalls: false, zeroCalls: false, fsyncAfterWrite: true,
      checkEveryOps: 1, polluteEof: true, closeOpenProb: 7, randomOpLen: false, readBdy: 512, outputDir: '/tmp/out',
      recordOpsPath: 'testfile.fsxops', fileName: 'testfile',
    });
    expect(cli).toMatchObject({ replayOpsPath: 'a.ops', buffered: 'buffer_head', largeFolios: false, imagePath: 'x.img', seedGiven: true });
  });

  it('refuses unknown letters, bad numbers and a bad --buffered value', () => {
    expect(() => parseFsxArgs(['-Q'])).toThrow(FsxUsageError);
    expect(() => parseFsxArgs(['-N', 'lots'])).toThrow(/not a number/);
    expect(() => parseFsxArgs(['--buffered', 'dax'])).toThrow(/iomap or buffer_head/);
    expect(() => parseFsxArgs(['-l'])).toThrow(/needs an argument/);
  });
});
