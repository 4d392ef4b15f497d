/**
 * `ext4ts fsx` as a user runs it (the built CLI in a child process): a run passes with
 * exit 0 and fsx's summary; a recorded log replays through --replay-ops; a run inside an
 * image file made by `ext4ts mkfs` leaves it e2fsck clean; bad options and bad op logs are
 * usage errors (exit 2, with the fsx usage); an engine error (ENOSPC in a too-small image)
 * is a failure (exit 1) that writes a replayable .fsxops and prints the replay command.
 *
 * Cost: each case is one node process of 1–3 s (a few thousand ops).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { e2fsck, requireE2fsprogs } from '../helpers/e2fs.js';
import { makeTempDir, type TempDir } from '../helpers/tmp.js';

const CLI = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

interface CliResult { code: number; stdout: string; stderr: string }

function cli(args: string[], cwd?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 99;
      resolve({ code, stdout, stderr });
    });
  });
}

let temp: TempDir;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'pnpm run build' first`);
  await requireE2fsprogs();
  temp = makeTempDir('ext4ts-fsx-cli-');
});
afterAll(() => temp?.cleanup());

/** The "ops: read N write N ..." summary line. */
function opsLine(stdout: string): string | undefined {
  return stdout.split('\n').find((line) => line.startsWith('ops: '));
}

describe('ext4ts fsx', () => {
  it('ext4ts fsx -N 2000 -S 7 passes on a fresh in-memory image and prints the summary (exit 0)', async () => {
    const r = await cli(['fsx', '-N', '2000', '-S', '7']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Seed set to 7');
    expect(r.stdout).toMatch(/^ext4ts fsx: iomap, large folios/m);
    expect(r.stdout).toContain('All 2000 operations completed A-OK!');
    expect(opsLine(r.stdout)).toMatch(/^ops: read \d+ write \d+ mapread \d+ mapwrite \d+ truncate \d+ fallocate \d+ punch_hole \d+ zero_range \d+ fsync \d+;/);
    expect(r.stdout).toMatch(/^engine: \d+ mappings, \d+ fsyncs/m);
  });

  it('--record-ops writes a log that --replay-ops runs again to the same op counts, on the buffer_head path too', async () => {
    const log = path.join(temp.dir, 'rec.fsxops');
    const first = await cli(['fsx', '-q', '-N', '3000', '-S', '21', '-l', '512k', `--record-ops=${log}`]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(readFileSync(log, 'utf8')).toMatch(/^# ext4ts-fsx seed=21 maxfilelen=524288\n/);
    for (const engine of [[], ['--buffered', 'buffer_head']]) {
      const again = await cli(['fsx', '-q', '--replay-ops', log, ...engine]);
      expect(again.code, again.stdout + again.stderr).toBe(0);
      expect(again.stdout).toContain('replaying 3000 ops');
      expect(opsLine(again.stdout)).toBe(opsLine(first.stdout));
    }
  });

  it('--image runs inside an image made by ext4ts mkfs, with remounts, and leaves it e2fsck clean', async () => {
    const img = path.join(temp.dir, 'given.img');
    expect((await cli(['mkfs', img, '--size', '32M'])).code).toBe(0);
    const r = await cli(['fsx', '-q', '-N', '3000', '-S', '5', '-c', '100', '--remount-every', '2', '--cache-size', '1m', '--image', img, 'fsxdata']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`${img}, file /fsxdata`);
    expect(r.stdout).toMatch(/\d+ reopens, [1-9]\d* remounts/);
    const fsck = await e2fsck(img);
    expect(fsck.complaints, fsck.output).toEqual([]);
    expect(fsck.clean).toBe(true);
    const size = /final size 0x([0-9a-f]+)/.exec(r.stdout);
    const stat = await cli(['stat', img, '/fsxdata']);
    expect(stat.stdout).toContain(`Size: ${Number.parseInt(size![1], 16)}`);
  });

  it('-h prints the fsx usage (exit 0)', async () => {
    const r = await cli(['fsx', '-h']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('usage: ext4ts fsx [options] [fname]');
    expect(r.stdout).toContain('--buffered iomap|buffer_head');
  });

  it('an unknown option, a bad number or a bad --buffered value is a usage error (exit 2, with the usage)', async () => {
    for (const [args, why] of [[['-Q'], 'unknown option -Q'], [['-N', 'lots'], "'lots' is not a number"], [['--buffered', 'ext2'], 'iomap or buffer_head']] as const) {
      const r = await cli(['fsx', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(why);
      expect(r.stderr).toContain('usage: ext4ts fsx');
      expect(r.stdout).toBe('');
    }
  });

  it('a bad op log is a usage error (exit 2): unparsable, out of step with its size column, past maxfilelen, or missing', async () => {
    const logs = {
      garbled: '# ext4ts-fsx seed=1 maxfilelen=262144\nwrite 0x0 zz 0x0\n',
      outOfStep: '# ext4ts-fsx seed=1 maxfilelen=262144\nwrite 0x0 0x100 0x0\nread 0x0 0x10 0x200\n',
      tooLong: '# ext4ts-fsx seed=1 maxfilelen=262144\nwrite 0x3ff00 0x200 0x0\n',
    };
    const reasons = { garbled: "'zz' is not 0x-hex", outOfStep: 'op 2: size column 0x200', tooLong: 'past maxfilelen' };
    for (const [name, text] of Object.entries(logs)) {
      const file = path.join(temp.dir, `${name}.fsxops`);
      writeFileSync(file, text);
      const r = await cli(['fsx', '--replay-ops', file]);
      expect(r.code, name).toBe(2);
      expect(r.stderr).toContain(reasons[name as keyof typeof reasons]);
      expect(r.stderr).toContain('usage: ext4ts fsx');
    }
    const missing = await cli(['fsx', '--replay-ops', path.join(temp.dir, 'no-such.fsxops')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ENOENT');
  });

  it('an engine error (ENOSPC in an 8 MiB image) fails with exit 1, the last ops, and a .fsxops that replays to the same failure', async () => {
    const img = path.join(temp.dir, 'small.img');
    expect((await cli(['mkfs', img, '--size', '8M'])).code).toBe(0);
    const r = await cli(['fsx', '-q', '-N', '3000', '-S', '2', '-l', '16m', '-o', '1m', '--image', img], temp.dir);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^fsx: op (\d+) .*target error: ENOSPC/m);
    expect(r.stdout).toMatch(/^last 20 ops:/m);
    expect(r.stdout).toContain(`replay: ext4ts fsx --replay-ops fsxfile.fsxops --image ${img}`);
    const failedOp = /^fsx: op (\d+)/m.exec(r.stdout)![1];
    const ops = readFileSync(path.join(temp.dir, 'fsxfile.fsxops'), 'utf8').trim().split('\n');
    expect(ops[ops.length - 1]).toMatch(/ \*$/); // the failing op is marked
    expect(ops.length - 1).toBe(Number(failedOp)); // header line + one line per op
    // The replay stops at the same op, on a fresh image of the same size.
    const fresh = path.join(temp.dir, 'small2.img');
    expect((await cli(['mkfs', fresh, '--size', '8M'])).code).toBe(0);
    const again = await cli(['fsx', '-q', '--replay-ops', 'fsxfile.fsxops', '--image', fresh, '-P', 'again'], temp.dir);
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(new RegExp(`^fsx: op ${failedOp} .*ENOSPC`, 'm'));
  });
});
