import { describe, it, expect } from 'vitest';
import { parseArgs, parseSize, UsageError } from './args.js';

describe('parseArgs', () => {
  it('parseArgs splits grouped short flags, valued long flags and positionals', () => {
    const p = parseArgs(['-lR', 'img', '--size', '1G', '--label=x', '/a'], new Set(['size', 'label']));
    expect(p.positionals).toEqual(['img', '/a']);
    expect([...p.flags]).toEqual([['l', true], ['R', true], ['size', '1G'], ['label', 'x']]);
  });
  it('parseArgs rejects a valued flag with no value', () => {
    expect(() => parseArgs(['--size'], new Set(['size']))).toThrow(UsageError);
  });
});

describe('parseSize', () => {
  it('parseSize reads binary suffixes', () => {
    expect(parseSize('8M')).toBe(8 * 2 ** 20);
    expect(parseSize('1G')).toBe(2 ** 30);
    expect(parseSize('64GiB')).toBe(64 * 2 ** 30);
    expect(parseSize('4096')).toBe(4096);
  });
  it('parseSize rejects junk and zero', () => {
    expect(() => parseSize('1X')).toThrow(UsageError);
    expect(() => parseSize('0')).toThrow(UsageError);
  });
});
