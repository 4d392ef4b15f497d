// A 100,000-entry directory through the public API: ext4ts builds it (linear → htree →
// two index levels), then runs a seeded random sequence of creates, unlinks, renames in
// and out, and lookups of present and absent names against a model. After unmount,
// e2fsck -fn is clean, debugfs lists exactly the model's names and shows the index, and
// where a loop mount works the kernel lists and finds the same names.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import path from 'node:path';
import { readdirSync, statSync } from 'node:fs';
import { Ext4, MemoryDevice, mkfs, FsError, type Ext4Filesystem } from '@ext4ts/core';
import { e2fsck, debugfs, debugfsLs } from '../helpers/e2fs.js';
import { loopMountSupport, withLoopMount } from '../helpers/loop-mount.js';
import { makeRng } from '../helpers/tree.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const ENTRIES = Number(process.env.EXT4TS_BIGDIR_ENTRIES ?? 100_000);
const STEPS = 4000;
const SEED = 100_000;

const loop = await loopMountSupport();
if (!loop.ok) console.warn(`bigdir: skipping kernel checks: ${loop.reason}`);

let temp: TempDir;
let img: string;
const model = new Set<string>();

/** Names of 1..60 bytes, some UTF-8, unique by their counter. */
function nameFor(n: number, rng: () => number): string {
  const pad = 'abcdefghijklmnopqrstuvwxyz'.repeat(3).slice(0, Math.floor(rng() * 48));
  return rng() < 0.05 ? `é${n.toString(36)}ü${pad}` : `${n.toString(36)}-${pad}`;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(FsError.is(error), `expected ${code}, got ${String(error)}`).toBe(true);
  expect((error as FsError).code).toBe(code);
}

async function randomSteps(fs: Ext4Filesystem, rng: () => number, counter: { next: number }): Promise<number> {
  const names = [...model];
  let lookups = 0;
  for (let step = 0; step < STEPS; step++) {
    const roll = rng();
    const pick = () => names[Math.floor(rng() * names.length)];
    if (roll < 0.3) {
      const name = nameFor(counter.next++, rng);
      await fs.writeFile(`/big/${name}`, rng() < 0.1 ? `data ${name}` : '');
      model.add(name); names.push(name);
    } else if (roll < 0.5) {
      const name = pick();
      if (!model.has(name)) continue;
      await fs.unlink(`/big/${name}`);
      model.delete(name);
    } else if (roll < 0.6) {
      // Out and back in under a new name: exercises remove and add in one handle each.
      const name = pick();
      if (!model.has(name)) continue;
      const renamed = nameFor(counter.next++, rng);
      await fs.rename(`/big/${name}`, `/side/${renamed}`);
      await fs.rename(`/side/${renamed}`, `/big/${renamed}`);
      model.delete(name); model.add(renamed); names.push(renamed);
    } else if (roll < 0.8) {
      const name = pick();
      if (model.has(name)) expect((await fs.lstat(`/big/${name}`)).isFile()).toBe(true);
      else await expectCode(fs.lstat(`/big/${name}`), 'ENOENT');
      lookups++;
    } else {
      await expectCode(fs.lstat(`/big/absent-${step}-${Math.floor(rng() * 1e9)}`), 'ENOENT');
      lookups++;
    }
  }
  return lookups;
}

beforeAll(async () => {
  temp = makeTempDir('ext4ts-bigdir-');
  img = path.join(temp.dir, 'big.img');
  const device = MemoryDevice.create({ sizeBytes: 1 << 30 });
  await mkfs(device, { assumeZeroed: true, inodeRatio: 4096 });
  const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0 });
  const rng = makeRng(SEED);
  await fs.mkdir('/big');
  await fs.mkdir('/side');
  const t0 = performance.now();
  const counter = { next: 0 };
  for (; counter.next < ENTRIES; counter.next++) {
    const name = nameFor(counter.next, rng);
    await fs.writeFile(`/big/${name}`, '');
    model.add(name);
  }
  const t1 = performance.now();
  const lookups = await randomSteps(fs, rng, counter);
  const t2 = performance.now();
  const listed = await fs.readdir('/big');
  expect(listed.length).toBe(model.size);
  expect(new Set(listed)).toEqual(model);
  await fs.unmount();
  await device.saveImage(img);
  await device.close();
  console.log(`bigdir: ${ENTRIES} creates in ${(t1 - t0).toFixed(0)} ms; ${STEPS} random steps (${lookups} lookups) in ${(t2 - t1).toFixed(0)} ms`);
}, 600_000);

afterAll(() => temp?.cleanup());

describe(`a ${ENTRIES}-entry directory`, () => {
  it('e2fsck -fn is clean after ext4ts built and churned it', async () => {
    const r = await e2fsck(img);
    expect(r.complaints).toEqual([]);
    expect(r.clean).toBe(true);
  });

  it('debugfs lists exactly the model and shows a two-level hash index', async () => {
    const entries = await debugfsLs(img, '/big');
    // debugfs ls -p also prints a deleted entry that heads its block (inode 0, name kept,
    // as the kernel leaves it); those are not names.
    const all = entries.filter((e) => e.inode !== 0).map((e) => e.name).filter((n) => n !== '.' && n !== '..');
    const names = new Set(all);
    expect(all.length).toBe(model.size);
    expect(names).toEqual(model);
    const htree = await debugfs(img, ['htree /big'], { allowErrors: true });
    expect(htree).toMatch(/Indirect levels: 1/);
    // debugfs reports index problems on lines of their own ("Corrupted …", "… bad …"), not inside name
    // listings; whole words only, so hex such as "checksum: 0x05399bad" is not mistaken for one.
    const problems = htree.split('\n').filter((l) => !/^\s*\d+ 0x/.test(l) && /\b(bad|corrupt\w*|invalid|problem)\b/i.test(l));
    expect(problems).toEqual([]);
  }, 120_000);

  it.skipIf(!loop.ok)('the kernel lists the same names and finds a sample of them', async () => {
    await withLoopMount(img, (mountPoint) => {
      const listed = readdirSync(path.join(mountPoint, 'big'));
      expect(listed.length).toBe(model.size);
      const sample = [...model].filter((_, i) => i % 997 === 0);
      for (const name of sample) expect(statSync(path.join(mountPoint, 'big', name)).isFile()).toBe(true);
    }, { readOnly: true });
  }, 120_000);
});
