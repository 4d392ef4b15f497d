import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeSuperblock } from '../format/superblock.js';
import { decodeJournalSuperblock } from '../format/jbd2.js';
import { decodeInode } from '../format/inode.js';
import { decodeExtent } from '../format/extent.js';
import { decodeGroupDesc } from '../format/group-desc.js';
import { superblockReport, journalReport } from './info.js';

let dir: string;
let img: Uint8Array;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ext4ts-info-'));
  execFileSync('truncate', ['-s', '256M', join(dir, 'a.img')]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-L', 'label-x', join(dir, 'a.img')]);
  img = new Uint8Array(readFileSync(join(dir, 'a.img')));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function dumpe2fs(): Map<string, string> {
  const out = execFileSync('dumpe2fs', ['-h', join(dir, 'a.img')], { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, TZ: 'UTC' } }).toString();
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

describe('superblockReport', () => {
  it('superblockReport and journalReport give dumpe2fs -h values for every key they print', () => {
    const sb = decodeSuperblock(img.subarray(1024, 2048));
    const gd = decodeGroupDesc(img.subarray(4096, 8192), 0, sb.descSize);
    const slot = img.subarray(gd.inodeTable * 4096 + 7 * sb.inodeSize, gd.inodeTable * 4096 + 8 * sb.inodeSize);
    const journal = decodeInode(slot, sb.inodeSize);
    const first = decodeExtent(journal.block, 0);
    const jsb = decodeJournalSuperblock(img.subarray(first.pblk * 4096, first.pblk * 4096 + 1024));
    const want = dumpe2fs();
    const lines = [...superblockReport(sb), ...journalReport(jsb, 4096)];
    expect(lines.length).toBeGreaterThan(45);
    for (const [key, value] of lines) expect(`${key}: ${value}`).toBe(`${key}: ${want.get(key)}`);
  });
});
