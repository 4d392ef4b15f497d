/**
 * FsxModel against hand-computed cases, one per update rule of fsx (seed-series.md §3.1).
 * Files are tiny (16-byte max) so each expected image is written out in full.
 */
import { describe, it, expect } from 'vitest';
import { FsxModel } from '../../packages/cli/src/fsx/model.js';

const bytes = (...values: number[]): number[] => values;
const image = (m: FsxModel): number[] => Array.from(m.image());
const fill = (n: number, v: number): Uint8Array => new Uint8Array(n).fill(v);

/** A model holding [1..size] so zeroing is visible. */
function modelWith(size: number): FsxModel {
  const m = new FsxModel(16);
  m.write(0, Uint8Array.from({ length: size }, (_, i) => i + 1));
  return m;
}

describe('FsxModel', () => {
  it('write extends the size and zero-fills the gap before the data', () => {
    const m = modelWith(2);
    m.write(5, fill(2, 9));
    expect(m.sizeBytes).toBe(7);
    expect(image(m)).toEqual(bytes(1, 2, 0, 0, 0, 9, 9));
  });

  it('write inside the file keeps the size', () => {
    const m = modelWith(6);
    m.write(1, fill(2, 9));
    expect(image(m)).toEqual(bytes(1, 9, 9, 4, 5, 6));
  });

  it('truncate up zero-fills the growth, truncate down drops the tail for good', () => {
    const m = modelWith(4);
    m.truncate(6);
    expect(image(m)).toEqual(bytes(1, 2, 3, 4, 0, 0));
    m.truncate(2);
    expect(image(m)).toEqual(bytes(1, 2));
    m.truncate(5); // the dropped 3, 4 must not come back
    expect(image(m)).toEqual(bytes(1, 2, 0, 0, 0));
  });

  it('fallocate extends with zeros without keep_size and never changes data', () => {
    const m = modelWith(4);
    m.fallocate(2, 5, false);
    expect(image(m)).toEqual(bytes(1, 2, 3, 4, 0, 0, 0));
  });

  it('fallocate with keep_size changes nothing', () => {
    const m = modelWith(4);
    m.fallocate(2, 10, true);
    expect(image(m)).toEqual(bytes(1, 2, 3, 4));
  });

  it('punch zeroes within the size only and never extends', () => {
    const m = modelWith(6);
    m.punchHole(4, 8);
    expect(image(m)).toEqual(bytes(1, 2, 3, 4, 0, 0));
    m.punchHole(1, 2);
    expect(image(m)).toEqual(bytes(1, 0, 0, 4, 0, 0));
  });

  it('punch at or past EOF is skipped', () => {
    const m = modelWith(4);
    m.punchHole(4, 4);
    m.punchHole(9, 2);
    expect(image(m)).toEqual(bytes(1, 2, 3, 4));
  });

  it('zero_range zeroes and extends without keep_size', () => {
    const m = modelWith(4);
    m.zeroRange(2, 4, false);
    expect(image(m)).toEqual(bytes(1, 2, 0, 0, 0, 0));
  });

  it('zero_range with keep_size zeroes within the size and keeps it', () => {
    const m = modelWith(4);
    m.zeroRange(3, 6, true);
    expect(image(m)).toEqual(bytes(1, 2, 3, 0));
    m.zeroRange(8, 2, true);
    expect(m.sizeBytes).toBe(4);
    m.truncate(10); // nothing zero_range touched past EOF may appear
    expect(image(m)).toEqual(bytes(1, 2, 3, 0, 0, 0, 0, 0, 0, 0));
  });

  it('mapwrite extends first (zero gap) then stores, like a write', () => {
    const m = modelWith(2);
    m.mapWrite(4, fill(3, 7));
    expect(image(m)).toEqual(bytes(1, 2, 0, 0, 7, 7, 7));
    m.mapWrite(0, fill(1, 5));
    expect(image(m)).toEqual(bytes(5, 2, 0, 0, 7, 7, 7));
  });

  it('expected() clamps to the size as pread does', () => {
    const m = modelWith(4);
    expect(Array.from(m.expected(2, 10))).toEqual(bytes(3, 4));
    expect(m.expected(6, 2).length).toBe(0);
  });

  it('refuses ranges past maxFileLen', () => {
    const m = new FsxModel(16);
    expect(() => m.write(10, fill(7, 1))).toThrow(/exceeds maxFileLen/);
  });
});
