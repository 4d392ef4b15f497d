/**
 * fsx's operations: the seeded generator (op choice, then offset/length trimming exactly
 * in fsx's order of rules), the write data pattern, and the op record shared by the log.
 *
 * Op choice, per fsx: draw rv, offset, length (random in [0, maxOpLen] or fixed with -O);
 * op = rv % opCount over the enum below (or a weighted pick when the caller gives weights:
 * a non-fsx extension so a slow target can run few fallocate-family ops). Then:
 *
 *   read, mapread          offset %= size; len trimmed to size; offset aligned down (-r)
 *   write, mapwrite        offset %= maxFileLen; len trimmed to maxFileLen; aligned (-w)
 *   truncate               new size = offset % maxFileLen, aligned down (-t)
 *   fallocate, zero_range  offset %= maxFileLen; len trimmed to maxFileLen; keep_size random (-K off)
 *   punch_hole             offset %= size; len trimmed to size (so never past EOF)
 *   fsync                  no range
 *
 * A mapread with -R becomes a read, a mapwrite with -W a write; a disabled fallocate, punch
 * or zero op, or any zero-length op, is logged as "skip" and still counts as an op number,
 * as in fsx. The PRNG is xoshiro128** (not glibc random()), so seeds do not reproduce
 * fstests' own fsx runs; they reproduce ours.
 *
 * Write data: byte at file offset o written by op n is (n + (o odd ? original[o] : 0)) mod
 * 256, where `original` is a seeded random image of maxFileLen bytes. A bad even-offset
 * byte therefore names the op (mod 256) that wrote it; see suspectOpMod256().
 */
import assert from 'node:assert/strict';

/** fsx's enum order (fsync last; collapse/insert/clone/dedupe/copy/exchange are not modelled). */
export const FSX_OP_NAMES = [
  'read', 'write', 'mapread', 'mapwrite',
  'truncate', 'fallocate', 'punch_hole', 'zero_range',
  'fsync',
] as const;
export type FsxOpName = (typeof FSX_OP_NAMES)[number];

/** One operation, as generated, executed and logged. */
export interface FsxOp {
  name: FsxOpName;
  /** Byte offset (0 for truncate and fsync). */
  offset: number;
  /** Byte length; for truncate the new size; 0 for fsync. */
  length: number;
  /** The expected file size before the op (log column 3; informational on replay). */
  sizeBefore: number;
  /** fallocate/zero_range: FALLOC_FL_KEEP_SIZE. Punch is always keep-size and leaves this false. */
  keepSize: boolean;
  /** Close and reopen the file after the op (-c). */
  closeOpen: boolean;
  /** Not executed (disabled op or zero length); still consumes an op number. */
  skip: boolean;
}

export interface FsxGeneratorOptions {
  seed: number;
  maxFileLen: number;
  maxOpLen: number;
  /** false = every op uses maxOpLen (-O). */
  randomOpLen: boolean;
  readBdy: number;
  writeBdy: number;
  truncBdy: number;
  mappedReads: boolean;
  mappedWrites: boolean;
  fallocateCalls: boolean;
  keepSizeCalls: boolean;
  punchCalls: boolean;
  zeroCalls: boolean;
  fsyncCalls: boolean;
  /** 0 = never; P = close/reopen after an op with probability 1/P (-c P). */
  closeOpenProb: number;
  /** Relative op weights (default: uniform, fsx's rv % opCount). An absent name weighs 1. */
  opWeights?: Partial<Record<FsxOpName, number>>;
}

/** xoshiro128** seeded through splitmix32: small, fast, and the same on every platform. */
export class FsxRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next(); this.s1 = next(); this.s2 = next(); this.s3 = next();
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0; this.s3 ^= this.s1; this.s1 ^= this.s2; this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Like glibc random(): a uniform integer in [0, 2^31). */
  random(): number {
    return this.nextU32() >>> 1;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** The seeded "original" image whose bytes are mixed into odd offsets of written data. */
export function makeOriginalBuffer(seed: number, maxFileLen: number): Uint8Array {
  const rng = new FsxRandom((seed ^ 0x5eed0f5a) >>> 0);
  // Whole 32-bit words, little-endian, so a longer buffer from the same seed has this one as its prefix.
  const words = new Uint32Array(Math.ceil(maxFileLen / 4));
  for (let i = 0; i < words.length; i++) words[i] = rng.nextU32();
  const bytes = new Uint8Array(words.buffer, 0, maxFileLen);
  if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error('fsx: big-endian hosts are not supported');
  return bytes;
}

/** The data op number `opNumber` writes at [offset, offset + length). */
export function makeWriteData(opNumber: number, offset: number, length: number, original: Uint8Array): Uint8Array {
  assert.ok(offset + length <= original.length, 'write data past the original buffer');
  const data = new Uint8Array(length);
  const base = opNumber & 0xff;
  for (let i = 0; i < length; i++) {
    const o = offset + i;
    data[i] = (o & 1) === 0 ? base : (base + original[o]) & 0xff;
  }
  return data;
}

/** Undoes the data pattern: the op number (mod 256) that would have written `byte` at `offset`. */
export function suspectOpMod256(byte: number, offset: number, original: Uint8Array): number {
  return (offset & 1) === 0 ? byte : (byte - original[offset] + 256) & 0xff;
}

/** The seeded op stream; next() needs the current expected size because reads and punch trim to it. */
export class FsxOpGenerator {
  private readonly rng: FsxRandom;
  private readonly options: FsxGeneratorOptions;
  private readonly weightsCumulative: number[] | null;

  constructor(options: FsxGeneratorOptions) {
    assert.ok(options.maxFileLen > 0 && options.maxOpLen > 0, 'maxFileLen and maxOpLen must be positive');
    assert.ok(options.readBdy > 0 && options.writeBdy > 0 && options.truncBdy > 0, 'alignments must be positive');
    this.options = options;
    this.rng = new FsxRandom(options.seed);
    this.weightsCumulative = options.opWeights === undefined ? null : cumulativeWeights(options.opWeights, options.fsyncCalls);
  }

  next(sizeBytes: number): FsxOp {
    const o = this.options;
    const rv = this.rng.random();
    let offset = this.rng.random();
    let length = o.randomOpLen ? this.rng.random() % (o.maxOpLen + 1) : o.maxOpLen;
    const keepSize = o.keepSizeCalls && this.rng.random() % 2 === 1;
    const closeOpen = o.closeOpenProb > 0 && this.rng.random() % o.closeOpenProb === 0;
    const name = this.pickOp(rv);
    const op: FsxOp = { name, offset: 0, length: 0, sizeBefore: sizeBytes, keepSize: false, closeOpen, skip: false };
    switch (name) {
      case 'read':
      case 'mapread':
        [offset, length] = trimOffLen(offset, length, sizeBytes);
        offset -= offset % o.readBdy;
        op.name = name === 'mapread' && !o.mappedReads ? 'read' : name;
        return finish(op, offset, length, length === 0);
      case 'write':
      case 'mapwrite':
        [offset, length] = trimOffLen(offset, length, o.maxFileLen);
        offset -= offset % o.writeBdy;
        op.name = name === 'mapwrite' && !o.mappedWrites ? 'write' : name;
        return finish(op, offset, length, length === 0);
      case 'truncate': {
        const newSize = offset % o.maxFileLen;
        return finish(op, 0, newSize - (newSize % o.truncBdy), false);
      }
      case 'fallocate':
      case 'zero_range':
        [offset, length] = trimOffLen(offset, length, o.maxFileLen);
        op.keepSize = keepSize;
        return finish(op, offset, length, length === 0 || !(name === 'fallocate' ? o.fallocateCalls : o.zeroCalls));
      case 'punch_hole':
        [offset, length] = trimOffLen(offset, length, sizeBytes);
        return finish(op, offset, length, length === 0 || offset >= sizeBytes || !o.punchCalls);
      case 'fsync':
        return finish(op, 0, 0, false);
    }
  }

  private pickOp(rv: number): FsxOpName {
    const count = this.options.fsyncCalls ? FSX_OP_NAMES.length : FSX_OP_NAMES.length - 1;
    if (this.weightsCumulative === null) return FSX_OP_NAMES[rv % count];
    const total = this.weightsCumulative[this.weightsCumulative.length - 1];
    const point = (rv / 2 ** 31) * total;
    const index = this.weightsCumulative.findIndex((c) => point < c);
    return FSX_OP_NAMES[index < 0 ? count - 1 : index];
  }
}

function finish(op: FsxOp, offset: number, length: number, skip: boolean): FsxOp {
  op.offset = offset;
  op.length = length;
  op.skip = skip;
  return op;
}

/** fsx's TRIM_OFF_LEN: offset %= limit (0 when limit is 0), then len trimmed so offset + len <= limit. */
function trimOffLen(offset: number, length: number, limit: number): [number, number] {
  const off = limit > 0 ? offset % limit : 0;
  return [off, Math.min(length, limit - off)];
}

function cumulativeWeights(weights: Partial<Record<FsxOpName, number>>, fsyncCalls: boolean): number[] {
  const names = fsyncCalls ? FSX_OP_NAMES : FSX_OP_NAMES.slice(0, -1);
  let sum = 0;
  const out = names.map((n) => {
    const w = weights[n] ?? 1;
    assert.ok(w >= 0 && Number.isFinite(w), `bad weight for ${n}`);
    sum += w;
    return sum;
  });
  assert.ok(sum > 0, 'op weights sum to zero');
  return out;
}
