/**
 * Hashed directory lookup against images whose indexes e2fsck -fyD built: a two-level
 * index (1 KiB blocks and 250-byte names overflow the 123-entry root), and a directory
 * indexed with the unsigned-char hash. Oracles: the host names and `debugfs ls -p`.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as hostFs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../device/index.js';
import { FsError } from '../vfs/errors.js';
import { openSuper, type Ext4Super } from './super.js';
import { readInode } from './inode.js';
import { iterateDir, linearLookup } from './dir.js';
import { htreeLookup } from './htree.js';

const env = { PATH: '/usr/sbin:/sbin:/usr/bin:/bin' };
let work: string;
const devices: FileDevice[] = [];

function tool(name: string, args: string[]): string {
  return execFileSync(name, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A 1 KiB-block image of `names` (as files in the root), indexed by e2fsck -fyD. */
function buildImage(label: string, names: Buffer[], sbFlags?: number): string {
  const tree = join(work, `${label}-tree`);
  const img = join(work, `${label}.img`);
  hostFs.mkdirSync(tree);
  for (const n of names) hostFs.writeFileSync(Buffer.concat([Buffer.from(`${tree}/`), n]), '');
  tool('mkfs.ext4', ['-q', '-F', '-b', '1024', '-d', tree, img, '16M']);
  if (sbFlags !== undefined) tool('debugfs', ['-w', '-R', `ssv flags ${sbFlags}`, img]);
  try { tool('e2fsck', ['-fyD', img]); } catch { /* exit 1 = "modified", expected */ }
  return img;
}

async function open(img: string): Promise<Ext4Super> {
  const device = await FileDevice.open(img, { readOnly: true });
  devices.push(device);
  return openSuper(device, { readOnly: true });
}

/** `debugfs ls -p /` → name → inode number. */
function debugfsNames(img: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of tool('debugfs', ['-R', 'ls -p /', img]).split('\n')) {
    const m = /^\/(\d+)\/\d+\/\d+\/\d+\/(.*)\/\d*\/$/.exec(line);
    // debugfs also prints unused slots (inode 0); they are not entries.
    if (m && Number(m[1]) !== 0) out.set(m[2], Number(m[1]));
  }
  return out;
}

const longNames = Array.from({ length: 1000 }, (_, i) => Buffer.from(`${String(i).padStart(5, '0')}${'x'.repeat(245)}`));
const accentNames = Array.from({ length: 400 }, (_, i) => Buffer.from(`é${'ü'.repeat(i % 7)}-${i}-${'ß'.repeat(40)}`));
let twoLevel: string;
let unsigned: string;

beforeAll(() => {
  work = hostFs.mkdtempSync(join(tmpdir(), 'ext4ts-htree-'));
  twoLevel = buildImage('two-level', longNames);
  unsigned = buildImage('unsigned', accentNames, 2);
});

afterAll(async () => {
  for (const d of devices) await d.close();
  hostFs.rmSync(work, { recursive: true, force: true });
});

describe('htreeLookup', () => {
  it('htreeLookup finds every name of a two-level index at the inode debugfs reports', async () => {
    expect(tool('debugfs', ['-R', 'htree /', twoLevel])).toMatch(/Indirect levels: 1/);
    const ext4 = await open(twoLevel);
    const root = await readInode(ext4, 2);
    const oracle = debugfsNames(twoLevel);
    for (const name of longNames) {
      const found = await htreeLookup(ext4, root, name);
      expect(found?.ino, name.toString()).toBe(oracle.get(name.toString()));
    }
  });

  it('htreeLookup answers undefined for absent names, including near misses', async () => {
    const ext4 = await open(twoLevel);
    const root = await readInode(ext4, 2);
    for (const name of ['missing', `00000${'x'.repeat(244)}y`, `99999${'x'.repeat(245)}`]) {
      expect(await htreeLookup(ext4, root, Buffer.from(name))).toBeUndefined();
    }
  });

  it('iterateDir yields each debugfs name once, skipping index blocks', async () => {
    const ext4 = await open(twoLevel);
    const root = await readInode(ext4, 2);
    const seen = new Map<string, number>();
    for await (const e of iterateDir(ext4, root)) {
      const name = Buffer.from(e.name).toString();
      expect(seen.has(name), name).toBe(false);
      seen.set(name, e.ino);
    }
    expect(seen).toEqual(debugfsNames(twoLevel));
    expect(await linearLookup(ext4, root, longNames[500])).toEqual(await htreeLookup(ext4, root, longNames[500]));
  });

  it('htreeLookup hashes with unsigned chars when s_flags says so, and fails without it', async () => {
    const ext4 = await open(unsigned);
    expect(ext4.hashUnsigned).toBe(true);
    const root = await readInode(ext4, 2);
    const oracle = debugfsNames(unsigned);
    for (const name of accentNames) expect((await htreeLookup(ext4, root, name))?.ino).toBe(oracle.get(name.toString()));
    // Negative control: the signed hash sends most of these names to the wrong leaf.
    const signed: Ext4Super = { ...ext4, hashUnsigned: false };
    let misses = 0;
    for (const name of accentNames) if ((await htreeLookup(signed, root, name)) === undefined) misses++;
    expect(misses).toBeGreaterThan(accentNames.length / 4);
  });

  it('htreeLookup rejects a dx node whose checksum does not match (EBADMSG)', async () => {
    const copy = join(work, 'corrupt.img');
    hostFs.copyFileSync(twoLevel, copy);
    const root = tool('debugfs', ['-R', 'htree /', copy]);
    const nodeLblk = Number(/Entry #1: Hash 0x[0-9a-f]+, block (\d+)/.exec(root)?.[1]);
    const pblk = Number(tool('debugfs', ['-R', `bmap / ${nodeLblk}`, copy]).trim());
    const fd = hostFs.openSync(copy, 'r+');
    // Entry 1's hash in the dx node: fake dirent (8) + count/limit (4) + block (4).
    // Flip the byte's bits (mkfs picks a random hash seed, so any fixed value could be the byte already).
    const at = pblk * 1024 + 8 + 8;
    const byte = Buffer.alloc(1);
    hostFs.readSync(fd, byte, 0, 1, at);
    byte[0] ^= 0xff;
    hostFs.writeSync(fd, byte, 0, 1, at);
    hostFs.closeSync(fd);
    const ext4 = await open(copy);
    const dir = await readInode(ext4, 2);
    const errors = new Set<string>();
    for (const name of longNames.slice(0, 1000)) {
      try { await htreeLookup(ext4, dir, name); } catch (e) { if (FsError.is(e)) errors.add(e.code); else throw e; }
    }
    expect([...errors]).toEqual(['EBADMSG']);
  });
});
