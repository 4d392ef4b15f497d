/**
 * runFsx: fsx's main loop over an FsxTarget. For each op number n = 1..N:
 *
 *   op = generator.next(model size)        (or the next replayed line)
 *   -e: if op may change the size, store garbage past EOF through the mapping first
 *   apply op to the target, then to the model; reads compare what came back
 *   -y: fsync after writes;  -c: close/reopen when the op says so
 *   size() must equal the model size                  (every op, as fsx's check_size)
 *   -e: bytes the size change exposed must read as the model says (zero, or new data)
 *   every K ops (-X: K = 1) and at the end: the whole file equals the model image
 *
 * Any mismatch or target error throws FsxFailure naming the op, the first bad bytes and the
 * op (mod 256) whose data pattern matches the bad byte; with an output dir it also writes
 * <name>.fsxgood (the expected image), <name>.fsxops (replay log, failing op marked '*')
 * and <name>.fsxlog (human dump).
 *
 * Cost per op: the target call plus an O(len) model update and, for reads, an O(len)
 * compare; a whole-file check reads and compares up to maxFileLen bytes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FsxModel } from './model.js';
import {
  FSX_OP_NAMES, FsxOpGenerator, FsxRandom, makeOriginalBuffer, makeWriteData, suspectOpMod256,
  type FsxGeneratorOptions, type FsxOp, type FsxOpName,
} from './ops.js';
import { describeOp, formatOpLog } from './log.js';
import type { FsxTarget } from './target.js';

export interface FsxRunOptions extends FsxGeneratorOptions {
  /** -N: ops to run (a replay stops at the end of its log even if this is larger). */
  numOps: number;
  /** -y: fsync after every write and mapwrite. */
  fsyncAfterWrite: boolean;
  /** Whole-file check every K ops (0: only at the end); -X sets 1. */
  checkEveryOps: number;
  /** -e: pollute the EOF page before size-changing ops (only where target.capabilities.eofPage). */
  polluteEof: boolean;
  /** --replay-ops: run exactly these ops instead of generating them. */
  replayOps?: readonly FsxOp[];
  /** --record-ops: write the replay log here at the end, pass or fail. */
  recordOpsPath?: string;
  /** Where .fsxgood/.fsxops/.fsxlog go on failure (nothing written when absent). */
  outputDir?: string;
  /** Base name for those files (fsx uses the test file's name). */
  fileName: string;
  /** How many of the last ops a failure lists. */
  recentOpsCount: number;
  /** Call onProgress after every Kth op (0: never). */
  progressEveryOps: number;
  /** Progress report (the CLI prints a line); the op is done and its size checked. */
  onProgress?: (opNumber: number, sizeBytes: number) => void;
}

export function defaultFsxRunOptions(): FsxRunOptions {
  return {
    seed: 1, numOps: 10_000, maxFileLen: 256 * 1024, maxOpLen: 64 * 1024, randomOpLen: true,
    readBdy: 1, writeBdy: 1, truncBdy: 1,
    mappedReads: true, mappedWrites: true, fallocateCalls: true, keepSizeCalls: true,
    punchCalls: true, zeroCalls: true, fsyncCalls: true, closeOpenProb: 0,
    fsyncAfterWrite: false, checkEveryOps: 0, polluteEof: false,
    fileName: 'fsxfile', recentOpsCount: 20, progressEveryOps: 0,
  };
}

export type FsxFailureKind = 'read' | 'size' | 'file' | 'eof-pollution' | 'eof-page' | 'target-error' | 'replay';

export interface FsxBadByte {
  offset: number;
  expected: number;
  got: number;
}

export interface FsxFailureDetails {
  kind: FsxFailureKind;
  /** The op being run or checked when the mismatch showed (1-based; the end check uses the last op's number). */
  opNumber: number;
  op: FsxOp | null;
  /** Up to 16 bad bytes from the first one. */
  badBytes: readonly FsxBadByte[];
  /** Op number mod 256 whose data pattern matches the bad data (null: not a data mismatch, or the bad data is zero). */
  suspectOpMod256: number | null;
  /** describeOp() lines of the last recentOpsCount ops. */
  recentOps: readonly string[];
  /** Every op run, the failing one last (the .fsxops content). */
  ops: readonly FsxOp[];
  /** .fsxgood/.fsxops/.fsxlog paths, when an output dir was given. */
  files: readonly string[];
}

/** A failed check: a bug in the target (or the exerciser). `code` is stable for callers. */
export class FsxFailure extends Error implements FsxFailureDetails {
  readonly code = 'FSX_FAILURE';
  readonly kind: FsxFailureKind;
  readonly opNumber: number;
  readonly op: FsxOp | null;
  readonly badBytes: readonly FsxBadByte[];
  readonly suspectOpMod256: number | null;
  readonly recentOps: readonly string[];
  readonly ops: readonly FsxOp[];
  readonly files: readonly string[];

  constructor(message: string, details: FsxFailureDetails, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FsxFailure';
    this.kind = details.kind;
    this.opNumber = details.opNumber;
    this.op = details.op;
    this.badBytes = details.badBytes;
    this.suspectOpMod256 = details.suspectOpMod256;
    this.recentOps = details.recentOps;
    this.ops = details.ops;
    this.files = details.files;
  }
}

export interface FsxResult {
  seed: number;
  opsRun: number;
  opCounts: Record<FsxOpName, number>;
  skipped: number;
  finalSizeBytes: number;
  ops: FsxOp[];
  /** Why some requested checks did not run (e.g. -e on a target without EOF-page access). */
  notes: string[];
}

const BAD_BYTES_REPORTED_MAX = 16;
/** Bytes offered to pollutePastEof: the largest EOF-page tail we expect (64 KiB pages on arm64/ppc64). */
const POLLUTE_BYTES_MAX = 65536;

interface RunState {
  target: FsxTarget;
  options: FsxRunOptions;
  model: FsxModel;
  original: Uint8Array;
  ops: FsxOp[];
  opNumber: number;
  garbage: Uint8Array;
}

export async function runFsx(target: FsxTarget, optionsGiven: Partial<FsxRunOptions>): Promise<FsxResult> {
  const options = resolveOptions(target, optionsGiven);
  const notes: string[] = [];
  if (options.polluteEof && !target.capabilities.eofPage) notes.push('-e: target has no EOF-page access; pollution skipped');
  const state: RunState = {
    target, options,
    model: new FsxModel(options.maxFileLen),
    original: makeOriginalBuffer(options.seed, options.maxFileLen),
    ops: [], opNumber: 0,
    garbage: makeGarbage(options.seed),
  };
  if ((await target.size()) !== 0) await target.truncate(0); // fsx opens with O_TRUNC
  let failedIndex = -1;
  try {
    await runOps(state);
    state.opNumber = state.ops.length;
    await checkWholeFile(state);
  } catch (error) {
    failedIndex = state.opNumber - 1;
    throw await asFailure(state, error);
  } finally {
    if (options.recordOpsPath !== undefined) writeFileSync(options.recordOpsPath, opLogText(state, failedIndex));
  }
  const opCounts = Object.fromEntries(FSX_OP_NAMES.map((n) => [n, 0])) as Record<FsxOpName, number>;
  for (const op of state.ops) if (!op.skip) opCounts[op.name]++;
  return {
    seed: options.seed, opsRun: state.ops.length, opCounts,
    skipped: state.ops.filter((op) => op.skip).length,
    finalSizeBytes: state.model.sizeBytes, ops: state.ops, notes,
  };
}

function resolveOptions(target: FsxTarget, given: Partial<FsxRunOptions>): FsxRunOptions {
  const o = { ...defaultFsxRunOptions(), ...given };
  const caps = target.capabilities;
  // fsx probes fallocate modes at start and turns off what the file system refuses.
  o.fallocateCalls &&= caps.fallocate;
  o.punchCalls &&= caps.punch;
  o.zeroCalls &&= caps.zero;
  if (o.closeOpenProb > 0 && target.reopen === undefined) throw new Error('-c: this target cannot close and reopen');
  if (!Number.isSafeInteger(o.numOps) || o.numOps < 0) throw new Error(`bad op count ${o.numOps}`);
  if (o.maxOpLen > o.maxFileLen) o.maxOpLen = o.maxFileLen;
  return o;
}

async function runOps(state: RunState): Promise<void> {
  const { options, model } = state;
  const generator = options.replayOps === undefined ? new FsxOpGenerator(options) : null;
  const total = options.replayOps === undefined ? options.numOps : Math.min(options.numOps, options.replayOps.length);
  for (let n = 1; n <= total; n++) {
    state.opNumber = n;
    const op = generator !== null ? generator.next(model.sizeBytes) : replayedOp(state, options.replayOps![n - 1]);
    state.ops.push(op);
    await step(state, op, n);
    if (options.checkEveryOps > 0 && n % options.checkEveryOps === 0) await checkWholeFile(state);
    if (options.progressEveryOps > 0 && n % options.progressEveryOps === 0) options.onProgress?.(n, model.sizeBytes);
  }
}

function replayedOp(state: RunState, logged: FsxOp): FsxOp {
  const op = { ...logged, sizeBefore: state.model.sizeBytes };
  if (logged.sizeBefore !== op.sizeBefore) {
    throw failure(state, 'replay', `replay log out of step: line says size 0x${logged.sizeBefore.toString(16)}, model has 0x${op.sizeBefore.toString(16)}`);
  }
  const caps = state.target.capabilities;
  const unsupported = !op.skip && ((op.name === 'fallocate' && !caps.fallocate) || (op.name === 'punch_hole' && !caps.punch) || (op.name === 'zero_range' && !caps.zero));
  if (unsupported) throw failure(state, 'replay', `replay needs ${op.name}, which this target cannot do`);
  if (op.closeOpen && state.target.reopen === undefined) throw failure(state, 'replay', 'replay needs close_open, which this target cannot do');
  return op;
}

async function step(state: RunState, op: FsxOp, n: number): Promise<void> {
  const { target, options, model } = state;
  const sizeBefore = model.sizeBytes;
  let polluted = 0;
  if (!op.skip) {
    if (options.polluteEof && target.capabilities.eofPage && maySizeChange(op)) polluted = await polluteEof(state);
    await applyOp(state, op, n);
    if (options.fsyncAfterWrite && (op.name === 'write' || op.name === 'mapwrite')) await target.fsync();
  }
  if (op.closeOpen) await target.reopen!();
  const sizeGot = await target.size();
  if (sizeGot !== model.sizeBytes) {
    throw failure(state, 'size', `size error: expected 0x${model.sizeBytes.toString(16)}, stat says 0x${sizeGot.toString(16)}`);
  }
  if (polluted > 0 && model.sizeBytes > sizeBefore) {
    // The size grew over bytes that held garbage a moment ago: they must read as the model says.
    const end = Math.min(model.sizeBytes, sizeBefore + polluted);
    const got = await target.read(sizeBefore, end - sizeBefore);
    checkBytes(state, 'eof-pollution', sizeBefore, model.expected(sizeBefore, end - sizeBefore), got);
  }
}

function maySizeChange(op: FsxOp): boolean {
  switch (op.name) {
    case 'truncate': return true;
    case 'write': case 'mapwrite': return op.offset + op.length > op.sizeBefore;
    case 'fallocate': case 'zero_range': return !op.keepSize && op.offset + op.length > op.sizeBefore;
    default: return false;
  }
}

/** Stores garbage past EOF; it is never zero, so a missed zeroing always shows. */
async function polluteEof(state: RunState): Promise<number> {
  return state.target.pollutePastEof!(state.garbage);
}

/** Seeded bytes in [1, 255], made once per run (making 64 KiB per op would cost more than the op). */
function makeGarbage(seed: number): Uint8Array {
  const rng = new FsxRandom((seed ^ 0x6a5b0e0f) >>> 0);
  const garbage = new Uint8Array(POLLUTE_BYTES_MAX);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (rng.nextU32() % 255) + 1;
  return garbage;
}

async function applyOp(state: RunState, op: FsxOp, n: number): Promise<void> {
  const { target, model } = state;
  const { offset, length } = op;
  switch (op.name) {
    case 'read':
    case 'mapread': {
      const got = op.name === 'read' ? await target.read(offset, length) : await target.mapRead(offset, length);
      checkBytes(state, 'read', offset, model.expected(offset, length), got);
      if (op.name === 'mapread') await checkEofPage(state);
      return;
    }
    case 'write':
    case 'mapwrite': {
      const data = makeWriteData(n, offset, length, state.original);
      if (op.name === 'write') {
        await target.write(offset, data);
        model.write(offset, data);
      } else {
        await target.mapWrite(offset, data);
        model.mapWrite(offset, data);
        await checkEofPage(state);
      }
      return;
    }
    case 'truncate':
      await target.truncate(length);
      model.truncate(length);
      return;
    case 'fallocate':
      await target.fallocate(offset, length, { keepSize: op.keepSize });
      model.fallocate(offset, length, op.keepSize);
      return;
    case 'punch_hole':
      await target.punchHole(offset, length);
      model.punchHole(offset, length);
      return;
    case 'zero_range':
      await target.zeroRange(offset, length, { keepSize: op.keepSize });
      model.zeroRange(offset, length, op.keepSize);
      return;
    case 'fsync':
      await target.fsync();
      return;
  }
}

/**
 * fsx's check_eofpage: after a mapped op, the mapping past EOF in the EOF page must be
 * zero (POSIX). Skipped under -e, where garbage legitimately sits there until a size change.
 */
async function checkEofPage(state: RunState): Promise<void> {
  const { target, options } = state;
  if (!target.capabilities.eofPage || options.polluteEof) return;
  const tail = await target.readPastEof!();
  const bad = tail.findIndex((b) => b !== 0);
  if (bad < 0) return;
  const offset = state.model.sizeBytes + bad;
  throw failure(state, 'eof-page', `EOF page not zero past EOF: byte 0x${tail[bad].toString(16)} at 0x${offset.toString(16)}`,
    [{ offset, expected: 0, got: tail[bad] }]);
}

async function checkWholeFile(state: RunState): Promise<void> {
  const expected = state.model.image();
  const got = await state.target.read(0, expected.length + 1);
  checkBytes(state, 'file', 0, expected, got);
}

function checkBytes(state: RunState, kind: FsxFailureKind, offset: number, expected: Uint8Array, got: Uint8Array): void {
  if (expected.length === got.length && Buffer.from(expected.buffer, expected.byteOffset, expected.length).equals(got)) return;
  const length = Math.min(expected.length, got.length);
  let first = -1;
  for (let i = 0; i < length; i++) {
    if (expected[i] !== got[i]) { first = i; break; }
  }
  if (first < 0 && expected.length === got.length) return;
  if (first < 0) {
    throw failure(state, kind, `short read: expected 0x${expected.length.toString(16)} bytes at 0x${offset.toString(16)}, got 0x${got.length.toString(16)}`);
  }
  const bad: FsxBadByte[] = [];
  for (let i = first; i < length && bad.length < BAD_BYTES_REPORTED_MAX; i++) {
    if (expected[i] !== got[i]) bad.push({ offset: offset + i, expected: expected[i], got: got[i] });
  }
  // As fsx: even offsets carry the bare op number, so read the suspect from the even byte at
  // or just after the first bad one; decode the odd byte only when no even byte follows.
  const even = (offset + first) % 2 === 0 ? first : first + 1;
  const suspectByte = even < length ? { offset: offset + even, got: got[even] } : { offset: offset + first, got: got[first] };
  throw failure(state, kind, `${kind === 'file' ? 'whole-file check' : kind} BAD DATA at offset 0x${(offset + first).toString(16)}`, bad, suspectByte);
}

interface SuspectByte {
  offset: number;
  got: number;
}

function failure(state: RunState, kind: FsxFailureKind, headline: string, bad: FsxBadByte[] = [], suspectByte?: SuspectByte, cause?: unknown): FsxFailure {
  const n = state.opNumber;
  const op = state.ops[n - 1] ?? null;
  const lines = [`fsx: op ${n}${op === null ? '' : ` (${describeOp(op, n)})`}: ${headline}`];
  let suspect: number | null = null;
  if (bad.length > 0) {
    lines.push('OFFSET\tGOOD\tBAD', ...bad.map((b) => `0x${b.offset.toString(16)}\t0x${hex2(b.expected)}\t0x${hex2(b.got)}`));
  }
  if (suspectByte !== undefined) {
    suspect = suspectByte.got === 0 ? null : suspectOpMod256(suspectByte.got, suspectByte.offset, state.original);
    lines.push(suspect === null
      ? 'the bad data is zero: a lost write or a wrong zeroing (hole, punch, truncate)'
      : `op ${suspect} (mod 256) may have written the bad data${writersOf(state, suspect, bad[0].offset)}`);
  }
  const recent = recentOps(state);
  lines.push(`last ${recent.length} ops:`, ...recent, `seed ${state.options.seed}`);
  const details = { kind, opNumber: n, op, badBytes: bad, suspectOpMod256: suspect, recentOps: recent, ops: state.ops, files: [] };
  return new FsxFailure(lines.join('\n'), details, { cause });
}

/**
 * The writes in the log whose number matches mod 256: the likely culprits, latest last;
 * '@' marks those whose range covers `offset` (a write that did not is a misdirected one).
 */
function writersOf(state: RunState, mod256: number, offset: number): string {
  const hits: string[] = [];
  state.ops.forEach((op, i) => {
    const n = i + 1;
    if (op.skip || (op.name !== 'write' && op.name !== 'mapwrite') || (n & 0xff) !== mod256) return;
    hits.push(op.offset <= offset && offset < op.offset + op.length ? `${n}@` : String(n));
  });
  return hits.length === 0 ? '; no write in the log has that number' : `; writes with that number: ${hits.slice(-6).join(', ')}`;
}

function recentOps(state: RunState): string[] {
  const from = Math.max(0, state.ops.length - state.options.recentOpsCount);
  return state.ops.slice(from).map((op, i) => describeOp(op, from + i + 1));
}

async function asFailure(state: RunState, error: unknown): Promise<FsxFailure> {
  let result: FsxFailure;
  if (error instanceof FsxFailure) {
    result = error;
  } else {
    const message = error instanceof Error ? error.message : String(error);
    result = failure(state, 'target-error', `target error: ${message}`, [], undefined, error);
  }
  const files = writeFailureFiles(state);
  if (files.length === 0) return result;
  return new FsxFailure(`${result.message}\nwrote ${files.join(', ')}`, { ...result, files }, { cause: result.cause });
}

function writeFailureFiles(state: RunState): string[] {
  const dir = state.options.outputDir;
  if (dir === undefined) return [];
  mkdirSync(dir, { recursive: true });
  const base = path.join(dir, state.options.fileName);
  const files = [`${base}.fsxgood`, `${base}.fsxops`, `${base}.fsxlog`];
  writeFileSync(files[0], state.model.image());
  writeFileSync(files[1], opLogText(state, state.opNumber - 1));
  writeFileSync(files[2], state.ops.map((op, i) => describeOp(op, i + 1)).join('\n') + '\n');
  return files;
}

function opLogText(state: RunState, failedIndex: number): string {
  return formatOpLog(state.ops, { seed: state.options.seed, maxFileLen: state.options.maxFileLen }, failedIndex);
}

const hex2 = (b: number): string => b.toString(16).padStart(2, '0');
