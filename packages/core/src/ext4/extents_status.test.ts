/**
 * The ES tree against a brute-force model: one status and one pblk per logical block of
 * a small window, changed by seeded random sequences of insert / cacheExtent / remove /
 * insertDelayed / reclaim and compared after every step (every block looked up, the
 * exact record list, delayed counts, seq). Then unit tests named after the seed's
 * mechanisms (seed-series.md §1.1–§1.3). A failing random step names its seed and step.
 */
import { describe, it, expect } from 'vitest';
import { seededRandom, randomBelow } from '../wasm/testing.js';
import {
  ES_LBLK_LIMIT, ES_PBLK_LIMIT, ES_STATUS_ALL, EsShrinker, EsStatus, ExtentStatusTree, newEsLookup, type EsRecord,
} from './extents_status.js';

const { WRITTEN, UNWRITTEN, DELAYED, HOLE } = EsStatus;
const NONE = 0;

/** Per-block truth over [base, base + size): status (0 = not cached) and pblk (mapped only). */
class Model {
  readonly status: Uint8Array;
  readonly pblk: Float64Array;
  constructor(readonly base: number, readonly size: number) {
    this.status = new Uint8Array(size);
    this.pblk = new Float64Array(size);
  }
  countIn(lblk: number, len: number, status: number): number {
    let count = 0;
    for (let b = lblk; b < lblk + len; b++) if (this.status[b - this.base] === status) count++;
    return count;
  }
  set(lblk: number, len: number, pblk: number, status: number, onlyUncached = false): number {
    let changed = 0;
    for (let b = lblk; b < lblk + len; b++) {
      const i = b - this.base;
      if (onlyUncached && this.status[i] !== NONE) continue;
      const mapped = status === WRITTEN || status === UNWRITTEN;
      const nextPblk = mapped ? pblk + (b - lblk) : 0;
      if (this.status[i] !== status || this.pblk[i] !== nextPblk) changed++;
      this.status[i] = status;
      this.pblk[i] = nextPblk;
    }
    return changed;
  }
  /** Maximal runs of one kind (mapped: physically contiguous): the records a merged tree must hold. */
  records(): EsRecord[] {
    const out: EsRecord[] = [];
    for (let i = 0; i < this.size; i++) {
      const status = this.status[i];
      if (status === NONE) continue;
      const last = out[out.length - 1];
      const mapped = status === WRITTEN || status === UNWRITTEN;
      if (last !== undefined && last.lblk + last.len === this.base + i && last.status === status
        && (!mapped || last.pblk + last.len === this.pblk[i])) {
        last.len++;
      } else {
        out.push({ lblk: this.base + i, len: 1, pblk: this.pblk[i], status: status as EsStatus });
      }
    }
    return out;
  }
  delayedBlocks(): number {
    return this.countIn(this.base, this.size, DELAYED);
  }
}

function fail(message: string): never {
  throw new Error(message);
}

/** Compare the tree with the model completely. */
function compare(tree: ExtentStatusTree, model: Model): void {
  tree.checkInvariants();
  const expected = model.records();
  const actual = [...tree.iterate()];
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    fail(`records differ:\n  tree  ${JSON.stringify(actual)}\n  model ${JSON.stringify(expected)}`);
  }
  if (tree.recordCount !== expected.length) fail(`recordCount ${tree.recordCount} ≠ ${expected.length}`);
  if (tree.delayedBlockCount !== model.delayedBlocks()) fail(`delayedBlockCount ${tree.delayedBlockCount} ≠ ${model.delayedBlocks()}`);
  // Every block, in order (exercises the last-found cache) and then every 7th backwards.
  const out = newEsLookup();
  const check = (b: number, nextKnown: number) => {
    const i = b - model.base;
    tree.lookup(b, out);
    if (out.seq !== tree.seq) fail(`lookup(${b}) seq ${out.seq} ≠ ${tree.seq}`);
    if (model.status[i] === NONE) {
      if (out.found) fail(`lookup(${b}) found ${out.status}, model has nothing`);
      if (out.nextLblk !== nextKnown) fail(`lookup(${b}) nextLblk ${out.nextLblk} ≠ ${nextKnown}`);
      if (out.len !== nextKnown - b) fail(`lookup(${b}) miss len ${out.len}`);
      return;
    }
    if (!out.found) fail(`lookup(${b}) missed, model has ${model.status[i]}`);
    if (out.status !== model.status[i]) fail(`lookup(${b}) status ${out.status} ≠ ${model.status[i]}`);
    if (out.lblk > b || out.lblk + out.len <= b) fail(`lookup(${b}) record [${out.lblk}, +${out.len}) misses it`);
    const pblk = out.status === WRITTEN || out.status === UNWRITTEN ? out.pblk + (b - out.lblk) : 0;
    if (pblk !== model.pblk[i]) fail(`lookup(${b}) pblk ${pblk} ≠ ${model.pblk[i]}`);
  };
  // nextKnown[b]: the first block > b's own record/gap that starts a record (model view).
  const starts = expected.map((r) => r.lblk);
  let k = 0;
  for (let b = model.base; b < model.base + model.size; b++) {
    while (k < starts.length && starts[k] <= b) k++;
    check(b, k < starts.length ? starts[k] : ES_LBLK_LIMIT);
  }
  for (let b = model.base + model.size - 1; b >= model.base; b -= 7) {
    const next = starts.find((s) => s > b);
    check(b, next ?? ES_LBLK_LIMIT);
  }
}

/** findFirst against the model: the maximal run holding the first block of a wanted kind. */
function checkFindFirst(tree: ExtentStatusTree, model: Model, lblk: number, endLblk: number, mask: number): void {
  const expected = model.records().find((r) => (r.status & mask) !== 0 && r.lblk < endLblk && r.lblk + r.len > lblk);
  const actual = tree.findFirst(lblk, endLblk, mask);
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    fail(`findFirst(${lblk}, ${endLblk}, ${mask}) = ${JSON.stringify(actual)}, model ${JSON.stringify(expected)}`);
  }
}

interface RandomRun { seed: number; base: number; size: number; steps: number }

function runRandom({ seed, base, size, steps }: RandomRun): { maxRecords: number; maxChunks: number } {
  const random = seededRandom(seed);
  const below = (n: number) => randomBelow(random, n);
  const tree = new ExtentStatusTree();
  const model = new Model(base, size);
  // Physical offsets: mapped blocks are lblk + one of these, so neighbouring inserts are
  // often contiguous (and merge) and sometimes not; one sits at the 2^48 ceiling.
  const physicalOffsets = [1000, 50_000, 50_003, ES_PBLK_LIMIT - base - 2 * size];
  let maxRecords = 0, maxChunks = 0;
  const log: string[] = [];
  for (let step = 0; step < steps; step++) {
    // Mostly short ranges (they fragment the tree past one chunk), now and then a long one
    // (it removes or covers many records at once, across chunks).
    const len = below(40) !== 0 ? 1 + below(6) : 1 + below(size);
    const lblk = base + below(size - len + 1);
    const seqBefore = tree.seq;
    const op = below(100);
    let description = '';
    try {
      if (op < 30) {
        const status = [WRITTEN, UNWRITTEN, HOLE, DELAYED][below(4)];
        const mapped = status === WRITTEN || status === UNWRITTEN;
        const pblk = mapped ? lblk + physicalOffsets[below(physicalOffsets.length)] : 0;
        description = `insert(${lblk}, ${len}, ${pblk}, ${status})`;
        const expectedReplaced = model.countIn(lblk, len, DELAYED);
        model.set(lblk, len, pblk, status);
        const replaced = tree.insert(lblk, len, pblk, status);
        if (replaced !== expectedReplaced) fail(`returned ${replaced}, model ${expectedReplaced}`);
        if (tree.seq <= seqBefore) fail('insert did not bump seq');
      } else if (op < 55) {
        const status = [WRITTEN, UNWRITTEN, HOLE][below(3)];
        const pblk = status === HOLE ? 0 : lblk + physicalOffsets[below(physicalOffsets.length)];
        description = `cacheExtent(${lblk}, ${len}, ${pblk}, ${status})`;
        const expectedCached = model.countIn(lblk, len, NONE);
        model.set(lblk, len, pblk, status, true);
        const cached = tree.cacheExtent(lblk, len, pblk, status);
        if (cached !== expectedCached) fail(`returned ${cached}, model ${expectedCached}`);
        if (tree.seq !== seqBefore) fail('cacheExtent changed seq');
      } else if (op < 72) {
        description = `remove(${lblk}, ${len})`;
        const expectedRemoved = model.countIn(lblk, len, DELAYED);
        const changed = model.set(lblk, len, 0, NONE);
        const removed = tree.remove(lblk, len);
        if (removed !== expectedRemoved) fail(`returned ${removed}, model ${expectedRemoved}`);
        if (changed > 0 ? tree.seq <= seqBefore : tree.seq !== seqBefore) fail(`seq ${seqBefore} → ${tree.seq}, ${changed} changed`);
      } else if (op < 92) {
        description = `insertDelayed(${lblk}, ${len})`;
        const expectedNew = len - model.countIn(lblk, len, DELAYED);
        model.set(lblk, len, 0, DELAYED);
        const reserved = tree.insertDelayed(lblk, len);
        if (reserved !== expectedNew) fail(`returned ${reserved}, model ${expectedNew}`);
        if (expectedNew > 0 ? tree.seq <= seqBefore : tree.seq !== seqBefore) fail(`seq ${seqBefore} → ${tree.seq}`);
      } else if (op < 96) {
        const maxToDrop = below(4) === 0 ? 1_000_000 : below(12);
        description = `reclaim(${maxToDrop})`;
        reclaimStep(tree, model, maxToDrop);
        if (tree.seq !== seqBefore) fail('reclaim changed seq');
      } else {
        // Random lookups out of order (the last-found cache must not answer stale).
        description = 'lookups + findFirst';
        for (let q = 0; q < 4; q++) {
          const start = base + below(size);
          const end = Math.min(base + size, start + 1 + below(size));
          checkFindFirst(tree, model, start, end, 1 + below(ES_STATUS_ALL));
        }
        const start = base + below(size);
        const next = tree.nextDelayed(start);
        const expected = model.records().find((r) => r.status === DELAYED && r.lblk + r.len > start);
        if (JSON.stringify(next) !== JSON.stringify(expected)) fail(`nextDelayed(${start}) = ${JSON.stringify(next)}`);
      }
      log.push(description);
      compare(tree, model);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`seed ${seed} (base ${base}) step ${step}: ${description}: ${message}\n  last ops: ${log.slice(-8).join('; ')}`);
    }
    maxRecords = Math.max(maxRecords, tree.recordCount);
    maxChunks = Math.max(maxChunks, tree.chunkCount);
  }
  return { maxRecords, maxChunks };
}

/** reclaim drops whole non-delayed records, exactly min(max, reclaimable); the model forgets them. */
function reclaimStep(tree: ExtentStatusTree, model: Model, maxToDrop: number): void {
  const before = [...tree.iterate()];
  const reclaimable = before.filter((r) => r.status !== DELAYED).length;
  const dropped = tree.reclaim(maxToDrop);
  if (dropped !== Math.min(maxToDrop, reclaimable)) fail(`reclaim dropped ${dropped} of ${reclaimable} (max ${maxToDrop})`);
  const after = new Set([...tree.iterate()].map((r) => JSON.stringify(r)));
  let gone = 0;
  for (const record of before) {
    if (after.has(JSON.stringify(record))) continue;
    if (record.status === DELAYED) fail(`reclaim dropped delayed [${record.lblk}, +${record.len})`);
    model.set(record.lblk, record.len, 0, NONE);
    gone++;
  }
  if (gone !== dropped || after.size !== before.length - dropped) fail('reclaim changed records it did not drop');
}

describe('ExtentStatusTree against a per-block model', () => {
  const runs: RandomRun[] = [
    { seed: 1, base: 0, size: 300, steps: 2500 },
    { seed: 0x5eed, base: 7_000, size: 600, steps: 2500 },
    { seed: 20231123, base: ES_LBLK_LIMIT - 400, size: 400, steps: 2500 },
    { seed: 99, base: 123_456, size: 1500, steps: 1500 },
  ];
  for (const run of runs) {
    it(`random insert/cacheExtent/remove/insertDelayed/reclaim agree with the model (seed ${run.seed}, base ${run.base})`, () => {
      const { maxRecords, maxChunks } = runRandom(run);
      // The runs must reach sizes that split chunks, or the chunk code went untested.
      expect(maxRecords).toBeGreaterThan(64);
      expect(maxChunks).toBeGreaterThan(1);
    });
  }
});

describe('ExtentStatusTree mechanisms (seed-series §1.1–§1.3)', () => {
  it('hole after punch: punching caches one HOLE record, releases the delayed blocks it covered, and merges with holes beside it', () => {
    const tree = new ExtentStatusTree();
    tree.insert(0, 100, 5000, WRITTEN);
    expect(tree.insertDelayed(100, 50)).toBe(50);
    // Punch [50, 120): the caller caches a hole there; 20 delayed blocks are released.
    expect(tree.insert(50, 70, 0, HOLE)).toBe(20);
    expect(tree.delayedBlockCount).toBe(30);
    expect(tree.lookup(60)).toMatchObject({ found: true, lblk: 50, len: 70, status: HOLE, pblk: 0 });
    expect(tree.lookup(49)).toMatchObject({ found: true, lblk: 0, len: 50, status: WRITTEN, pblk: 5000 });
    expect(tree.lookup(120)).toMatchObject({ found: true, lblk: 120, len: 30, status: DELAYED, nextLblk: ES_LBLK_LIMIT });
    // A second punch right after the first: holes stay one record.
    expect(tree.insert(120, 10, 0, HOLE)).toBe(10);
    expect([...tree.iterate()]).toEqual([
      { lblk: 0, len: 50, pblk: 5000, status: WRITTEN },
      { lblk: 50, len: 80, pblk: 0, status: HOLE },
      { lblk: 130, len: 20, pblk: 0, status: DELAYED },
    ]);
    tree.checkInvariants();
  });

  it('delayed-only mapping: a delayed range is looked up as DELAYED alone, and caching on-disk state around it leaves it intact', () => {
    const tree = new ExtentStatusTree();
    tree.insert(0, 40, 9000, UNWRITTEN);
    // Exclusive kinds: a buffered write over unwritten blocks makes them DELAYED only.
    expect(tree.insertDelayed(10, 10)).toBe(10);
    expect(tree.lookup(15)).toMatchObject({ found: true, lblk: 10, len: 10, status: DELAYED, pblk: 0 });
    expect(tree.lookup(25)).toMatchObject({ found: true, lblk: 20, len: 20, status: UNWRITTEN, pblk: 9020 });
    const seq = tree.seq;
    // The on-disk tree says hole over [40, 200) and unwritten over [0, 40): caching fills gaps only.
    expect(tree.cacheExtent(0, 40, 9000, UNWRITTEN)).toBe(0);
    expect(tree.cacheExtent(30, 170, 0, HOLE)).toBe(160);
    expect(tree.seq).toBe(seq);
    expect(tree.lookup(15)).toMatchObject({ status: DELAYED, lblk: 10, len: 10 });
    expect(tree.delayedBlockCount).toBe(10);
    expect(tree.lookup(100)).toMatchObject({ found: true, lblk: 40, len: 160, status: HOLE });
  });

  it('hole length cut at the next delayed range: a hole reported by the on-disk tree is cached only up to the delayed range', () => {
    const tree = new ExtentStatusTree();
    tree.insertDelayed(300, 10);
    // map_blocks(100): ES miss; its nextLblk already bounds the hole by the ES tree.
    const miss = tree.lookup(100);
    expect(miss).toMatchObject({ found: false, lblk: 100, len: 200, nextLblk: 300 });
    // The on-disk tree says: hole [0, 1000). Clip it at the first delayed range after 100.
    const diskHoleEnd = 1000;
    const delayed = tree.findFirst(100, diskHoleEnd, DELAYED);
    expect(delayed).toEqual({ lblk: 300, len: 10, pblk: 0, status: DELAYED });
    const holeEnd = Math.min(diskHoleEnd, delayed!.lblk);
    tree.cacheExtent(100, holeEnd - 100, 0, HOLE);
    expect(tree.lookup(150)).toMatchObject({ found: true, lblk: 100, len: 200, status: HOLE, nextLblk: 300 });
    // A query inside the delayed range gets the delayed length, not a hole.
    expect(tree.findFirst(305, diskHoleEnd, DELAYED)).toEqual({ lblk: 300, len: 10, pblk: 0, status: DELAYED });
    expect(tree.nextDelayed(310)).toBeUndefined();
    expect(tree.nextDelayed(0)?.lblk).toBe(300);
    // Caching the rest of the disk hole beyond the delayed range does not swallow it.
    expect(tree.cacheExtent(100, 900, 0, HOLE)).toBe(690);
    expect([...tree.iterate()].map((r) => [r.lblk, r.len, r.status])).toEqual([[100, 200, HOLE], [300, 10, DELAYED], [310, 690, HOLE]]);
  });

  it('multi-block delayed insert reports newly reserved blocks, and insert reports the delayed blocks it consumes', () => {
    const tree = new ExtentStatusTree();
    expect(tree.insertDelayed(0, 16)).toBe(16);
    expect(tree.insertDelayed(8, 16)).toBe(8);
    const seq = tree.seq;
    expect(tree.insertDelayed(0, 24)).toBe(0);
    expect(tree.seq).toBe(seq);
    expect(tree.recordCount).toBe(1);
    // Writeback allocates [4, 6) as unwritten: two reserved blocks are consumed.
    expect(tree.insert(4, 2, 777, UNWRITTEN)).toBe(2);
    expect(tree.delayedBlockCount).toBe(22);
    // Writing over it again reserves exactly those two again.
    expect(tree.insertDelayed(0, 24)).toBe(2);
    expect(tree.delayedBlockCount).toBe(24);
    expect([...tree.iterate()]).toEqual([{ lblk: 0, len: 24, pblk: 0, status: DELAYED }]);
  });

  it('reclaim never drops delayed ranges, however much is asked', () => {
    const tree = new ExtentStatusTree();
    for (let i = 0; i < 500; i++) {
      if (i % 3 === 0) tree.insertDelayed(i * 4, 2);
      else tree.cacheExtent(i * 4, 2, 10_000 + i * 8, i % 3 === 1 ? WRITTEN : UNWRITTEN);
    }
    const delayed = [...tree.iterate()].filter((r) => r.status === DELAYED);
    expect(tree.reclaimableCount).toBe(333);
    expect(tree.reclaim(10_000)).toBe(333);
    expect([...tree.iterate()]).toEqual(delayed);
    expect(tree.delayedBlockCount).toBe(167 * 2);
    expect(tree.reclaim(10)).toBe(0);
    tree.checkInvariants();
  });

  it('reclaim spares records looked up since the last sweep (second chance)', () => {
    const tree = new ExtentStatusTree();
    for (let i = 0; i < 10; i++) tree.cacheExtent(i * 10, 5, 0, HOLE);
    tree.lookup(32);
    tree.lookup(71);
    expect(tree.reclaim(8)).toBe(8);
    expect([...tree.iterate()].map((r) => r.lblk)).toEqual([30, 70]);
    // Their REFERENCED bits were cleared by that sweep: the next one drops them.
    expect(tree.reclaim(1)).toBe(1);
    expect(tree.recordCount).toBe(1);
  });

  it('insert splits a written extent and keeps the right pblk on both sides', () => {
    const tree = new ExtentStatusTree();
    tree.insert(100, 10, 5000, WRITTEN);
    expect(tree.remove(103, 3)).toBe(0);
    expect([...tree.iterate()]).toEqual([
      { lblk: 100, len: 3, pblk: 5000, status: WRITTEN },
      { lblk: 106, len: 4, pblk: 5006, status: WRITTEN },
    ]);
    // Put the middle back at its old place: the three merge into one again.
    tree.insert(103, 3, 5003, WRITTEN);
    expect([...tree.iterate()]).toEqual([{ lblk: 100, len: 10, pblk: 5000, status: WRITTEN }]);
    // Elsewhere physically: no merge.
    tree.insert(103, 3, 9003, WRITTEN);
    expect(tree.recordCount).toBe(3);
    expect(tree.lookup(104)).toMatchObject({ lblk: 103, len: 3, pblk: 9003, nextLblk: 106 });
  });

  it('written and unwritten merge only when physically contiguous; holes and delayed on logical adjacency', () => {
    const tree = new ExtentStatusTree();
    tree.cacheExtent(0, 4, 100, WRITTEN);
    tree.cacheExtent(4, 4, 104, WRITTEN);
    tree.cacheExtent(8, 4, 200, WRITTEN);
    tree.cacheExtent(12, 4, 204, UNWRITTEN);
    tree.cacheExtent(16, 4, 0, HOLE);
    tree.cacheExtent(20, 4, 0, HOLE);
    tree.insertDelayed(24, 4);
    tree.insertDelayed(28, 4);
    expect([...tree.iterate()].map((r) => [r.lblk, r.len])).toEqual([[0, 8], [8, 4], [12, 4], [16, 8], [24, 8]]);
  });

  it('seq: insert always bumps it; cacheExtent, reclaim and no-op removes do not; lookups report it', () => {
    const tree = new ExtentStatusTree();
    expect(tree.seq).toBe(0);
    tree.cacheExtent(0, 10, 0, HOLE);
    expect(tree.seq).toBe(0);
    tree.insert(0, 10, 0, HOLE);
    expect(tree.seq).toBe(1);
    expect(tree.remove(50, 10)).toBe(0);
    expect(tree.seq).toBe(1);
    tree.remove(5, 1);
    expect(tree.seq).toBe(2);
    tree.reclaim(100);
    expect(tree.seq).toBe(2);
    expect(tree.lookup(3).seq).toBe(2);
  });

  it('address-space limits: a record may span all 2^32 blocks, and pblks reach 2^48', () => {
    const tree = new ExtentStatusTree();
    tree.cacheExtent(0, ES_LBLK_LIMIT, 0, HOLE);
    expect(tree.lookup(ES_LBLK_LIMIT - 1)).toMatchObject({ found: true, lblk: 0, len: ES_LBLK_LIMIT, nextLblk: ES_LBLK_LIMIT });
    tree.insert(ES_LBLK_LIMIT - 2, 2, ES_PBLK_LIMIT - 2, WRITTEN);
    expect(tree.lookup(ES_LBLK_LIMIT - 1)).toMatchObject({ lblk: ES_LBLK_LIMIT - 2, len: 2, pblk: ES_PBLK_LIMIT - 2 });
    expect(tree.remove(0, ES_LBLK_LIMIT)).toBe(0);
    expect(tree.recordCount).toBe(0);
    expect(tree.lookup(7)).toMatchObject({ found: false, len: ES_LBLK_LIMIT - 7, nextLblk: ES_LBLK_LIMIT });
    expect(() => tree.insert(ES_LBLK_LIMIT - 1, 2, 0, HOLE)).toThrow(/address space/);
    expect(() => tree.insert(0, 2, ES_PBLK_LIMIT - 1, WRITTEN)).toThrow(/2\^48/);
    expect(() => tree.insert(0, 2, 5, HOLE)).toThrow(/pblk 0/);
  });

  it('chunks split as records grow and merge back as they go (10,000 records)', () => {
    const tree = new ExtentStatusTree();
    for (let i = 0; i < 10_000; i++) tree.cacheExtent(i * 2, 1, 0, HOLE);
    expect(tree.recordCount).toBe(10_000);
    expect(tree.chunkCount).toBeGreaterThanOrEqual(10_000 / 64);
    expect(tree.chunkCount).toBeLessThanOrEqual(10_000 / 16);
    tree.checkInvariants();
    // Filling every gap merges all of them into one record.
    for (let i = 0; i < 10_000; i++) tree.cacheExtent(i * 2 + 1, 1, 0, HOLE);
    expect(tree.recordCount).toBe(1);
    expect(tree.chunkCount).toBe(1);
    tree.checkInvariants();
  });
});

describe('EsShrinker', () => {
  it('keeps many trees under the record budget, reclaiming from the least recently used trees first', () => {
    const shrinker = new EsShrinker({ recordBudget: 100, reclaimToFraction: 0.5 });
    const trees = [0, 1, 2].map(() => new ExtentStatusTree({ shrinker }));
    for (const tree of trees) for (let i = 0; i < 30; i++) tree.cacheExtent(i * 2, 1, 0, HOLE);
    expect(shrinker.recordCount).toBe(90);
    trees[0].lookup(0); // tree 1 is now the least recently used, then 2
    for (let i = 0; i < 11; i++) trees[0].cacheExtent(1000 + i * 2, 1, 0, HOLE);
    // 101 > 100: reclaim down to 50 — 51 records, all 30 of tree 1 first, then 21 of tree 2.
    expect(shrinker.recordCount).toBe(50);
    expect(trees[1].recordCount).toBe(0);
    expect(trees[2].recordCount).toBe(9);
    expect(trees[0].recordCount).toBe(41);
    expect(shrinker.reclaimedTotal).toBe(51);
    // An inode with delayed blocks cannot be evicted (its reservation would leak).
    trees[2].insertDelayed(500, 1);
    expect(() => trees[2].dispose()).toThrow(/delayed/);
    expect(trees[2].remove(500, 1)).toBe(1);
    trees[2].dispose();
    expect(shrinker.treeCount).toBe(2);
    expect(shrinker.recordCount).toBe(41);
  });

  it('never drops delayed records, and stops when only delayed records are left', () => {
    const shrinker = new EsShrinker({ recordBudget: 50 });
    const random = seededRandom(7);
    const trees = Array.from({ length: 5 }, () => new ExtentStatusTree({ shrinker }));
    let delayedBlocks = 0;
    for (let step = 0; step < 3000; step++) {
      const tree = trees[randomBelow(random, trees.length)];
      const lblk = randomBelow(random, 400) * 2;
      if (randomBelow(random, 4) === 0) delayedBlocks += tree.insertDelayed(lblk, 1);
      else tree.cacheExtent(lblk, 1, lblk + 1000, WRITTEN);
      const total = trees.reduce((sum, t) => sum + t.recordCount, 0);
      expect(shrinker.recordCount).toBe(total);
      expect(shrinker.recordCount <= shrinker.recordBudget || shrinker.reclaimableCount === 0, `seed 7 step ${step}`).toBe(true);
    }
    expect(trees.reduce((sum, t) => sum + t.delayedBlockCount, 0)).toBe(delayedBlocks);
    for (const tree of trees) tree.checkInvariants();
  });
});
