/**
 * The op log in fsx's replay line format, one op per line, line k = op number k:
 *
 *   [skip ]<op> 0x<offset> 0x<length> 0x<size> [keep_size] [close_open] [*]
 *
 *   write 0x1a000 0x3f00 0x20000            write 0x3f00 bytes at 0x1a000, file was 0x20000
 *   truncate 0x0 0x8000 0x20000             truncate from 0x20000 down to 0x8000
 *   fallocate 0x0 0x4000 0x8000 keep_size
 *   skip punch_hole 0x0 0x0 0x0             (op number consumed, nothing done)
 *   mapread 0x100 0x80 0x8000 *             '*' marks the op that failed
 *
 * <op> is one of FSX_OP_NAMES; the third number is the size before the op (truncate: the
 * new size is the length column, as fsx logs it). On replay the offset, length, flags and
 * skip are used, the size column is only checked against the model (a mismatch means the
 * log was cut or edited). Lines starting with '#' are comments; ours start the file with
 * "# ext4ts-fsx seed=<n> maxfilelen=<n>", because the write data depends on the seed (the
 * odd-offset bytes) and on the op number (the line number), so an exact replay needs both.
 */
import { FSX_OP_NAMES, type FsxOp, type FsxOpName } from './ops.js';

export interface FsxLogHeader {
  seed?: number;
  maxFileLen?: number;
}

export interface ParsedFsxLog {
  header: FsxLogHeader;
  ops: FsxOp[];
}

const FLAG_KEEP_SIZE = 'keep_size';
const FLAG_CLOSE_OPEN = 'close_open';
const FLAG_FAILED = '*';

const hex = (n: number): string => `0x${n.toString(16)}`;

/** One replay line (no newline). */
export function formatOpLine(op: FsxOp, options: { failed?: boolean } = {}): string {
  const parts = [op.skip ? `skip ${op.name}` : op.name, hex(op.offset), hex(op.length), hex(op.sizeBefore)];
  if (op.keepSize) parts.push(FLAG_KEEP_SIZE);
  if (op.closeOpen) parts.push(FLAG_CLOSE_OPEN);
  if (options.failed === true) parts.push(FLAG_FAILED);
  return parts.join(' ');
}

/** The whole log file; `failedIndex` (0-based) gets the '*' mark. */
export function formatOpLog(ops: readonly FsxOp[], header: FsxLogHeader, failedIndex = -1): string {
  const lines: string[] = [];
  if (header.seed !== undefined || header.maxFileLen !== undefined) {
    lines.push(`# ext4ts-fsx seed=${header.seed ?? ''} maxfilelen=${header.maxFileLen ?? ''}`);
  }
  ops.forEach((op, i) => lines.push(formatOpLine(op, { failed: i === failedIndex })));
  return lines.join('\n') + '\n';
}

/** Parses a replay file; throws with the line number on anything it does not understand. */
export function parseOpLog(text: string): ParsedFsxLog {
  const header: FsxLogHeader = {};
  const ops: FsxOp[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '') return;
    if (line.startsWith('#')) {
      parseHeaderComment(line, header);
      return;
    }
    ops.push(parseOpLine(line, index + 1));
  });
  return { header, ops };
}

function parseHeaderComment(line: string, header: FsxLogHeader): void {
  const seed = /\bseed=(\d+)/.exec(line);
  const max = /\bmaxfilelen=(\d+)/.exec(line);
  if (seed !== null) header.seed = Number(seed[1]);
  if (max !== null) header.maxFileLen = Number(max[1]);
}

function parseOpLine(line: string, lineNumber: number): FsxOp {
  const words = line.split(/\s+/);
  const fail = (why: string): never => {
    throw new Error(`op log line ${lineNumber}: ${why}: '${line}'`);
  };
  const skip = words[0] === 'skip';
  if (skip) words.shift();
  const name = words.shift() ?? '';
  if (!(FSX_OP_NAMES as readonly string[]).includes(name)) fail(`unknown op '${name}'`);
  const numbers = words.splice(0, 3).map((w) => (/^0x[0-9a-f]+$/i.test(w) ? Number.parseInt(w.slice(2), 16) : fail(`'${w}' is not 0x-hex`)));
  if (numbers.length !== 3) fail('expected three 0x-hex numbers');
  const op: FsxOp = {
    name: name as FsxOpName,
    offset: numbers[0], length: numbers[1], sizeBefore: numbers[2],
    keepSize: false, closeOpen: false, skip,
  };
  for (const flag of words) {
    if (flag === FLAG_KEEP_SIZE) op.keepSize = true;
    else if (flag === FLAG_CLOSE_OPEN) op.closeOpen = true;
    else if (flag !== FLAG_FAILED) fail(`unknown flag '${flag}'`);
  }
  return op;
}

/** fsx's human log dump line: "12 write 0x1000 thru 0x1fff (0x1000 bytes) EXTEND". */
export function describeOp(op: FsxOp, opNumber: number): string {
  const prefix = `${opNumber}${op.skip ? ' (skipped)' : ''} ${op.name}`;
  const last = op.offset + op.length - 1;
  const range = `${hex(op.offset)} thru ${hex(last)}\t(${hex(op.length)} bytes)`;
  switch (op.name) {
    case 'write':
    case 'mapwrite': {
      const note = op.offset > op.sizeBefore ? ' HOLE' : op.offset + op.length > op.sizeBefore ? ' EXTEND' : '';
      return `${prefix} ${range}${note}`;
    }
    case 'truncate':
      return `${prefix} ${op.length < op.sizeBefore ? 'DOWN' : 'UP'}\tfrom ${hex(op.sizeBefore)} to ${hex(op.length)}`;
    case 'fallocate':
    case 'zero_range': {
      const note = op.keepSize ? ' keep_size' : op.offset + op.length > op.sizeBefore ? ' EXTENDING' : '';
      return `${prefix} ${range}${note}`;
    }
    case 'fsync':
      return prefix;
    default:
      return `${prefix} ${range}`;
  }
}

/**
 * Checks a parsed log before a replay, so a cut or hand-edited log is refused up front
 * (a usage error) instead of failing mid-run as if the file system were wrong: every
 * range lies inside maxFileLen, every op that moves bytes has a length, a mapread stays
 * inside the file (a mapping cannot read past EOF), and each line's size column is the
 * size the ops before it leave. Returns the first problem (null: the log is fine).
 */
export function checkOpLog(ops: readonly FsxOp[], maxFileLen: number): string | null {
  let sizeBytes = 0;
  for (let index = 0; index < ops.length; index++) {
    const op = ops[index];
    const n = index + 1;
    const end = op.offset + op.length;
    if (op.sizeBefore !== sizeBytes) return `op ${n}: size column ${hex(op.sizeBefore)}, but the ops before it leave ${hex(sizeBytes)}`;
    if (op.skip) continue;
    if (end > maxFileLen) return `op ${n}: ${op.name} ends at ${hex(end)}, past maxfilelen ${hex(maxFileLen)}`;
    const movesBytes = op.name !== 'truncate' && op.name !== 'fsync' && op.name !== 'read';
    if (movesBytes && op.length === 0) return `op ${n}: ${op.name} of length 0`;
    if (op.name === 'mapread' && end > sizeBytes) return `op ${n}: mapread past EOF ${hex(sizeBytes)}`;
    sizeBytes = sizeAfter(op, sizeBytes);
  }
  return null;
}

/** The file size after `op` (the model's size rules, fsx's). */
function sizeAfter(op: FsxOp, sizeBytes: number): number {
  const end = op.offset + op.length;
  switch (op.name) {
    case 'write':
    case 'mapwrite':
      return Math.max(sizeBytes, end);
    case 'truncate':
      return op.length;
    case 'fallocate':
    case 'zero_range':
      return op.keepSize ? sizeBytes : Math.max(sizeBytes, end);
    default:
      return sizeBytes;
  }
}
