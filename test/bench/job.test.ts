// The job model against fio's semantics (fio 3.33 HOWTO, and fio itself where noted):
// units, job files, command lines, groups, clone file names, and the options we refuse.
// Pure parsing: no device, well under a second.
import { describe, expect, it } from 'vitest';
import {
  cloneFileName, groupJobs, jobsFromOptions, parseJobFile, resolveJob, scalingJobFile, seedJobFile, smallBlockJobFile,
} from '../../bench/src/job.js';
import { JobError, formatFioSize, parseFioBool, parseFioSize, parseFioTimeMs } from '../../bench/src/units.js';
import { parseBenchArgs, planSuites, chosenConfigs } from '../../bench/src/cli.js';
import { blockOrder } from '../../bench/src/executor.js';

describe('parseFioSize', () => {
  it('reads plain prefixes as powers of 2 and IEC-looking ones as powers of 10 (kb_base=1024, as fio 3.33 does)', () => {
    expect(parseFioSize('4k', 'bs')).toBe(4096);
    expect(parseFioSize('4K', 'bs')).toBe(4096);
    expect(parseFioSize('4kb', 'bs')).toBe(4096);
    expect(parseFioSize('1m', 'size')).toBe(1048576);
    expect(parseFioSize('40G', 'size')).toBe(40 * 2 ** 30);
    // Checked with fio: --size=1MiB --bs=1000 moves 1,000,000 bytes.
    expect(parseFioSize('1MiB', 'size')).toBe(1_000_000);
    expect(parseFioSize('4KiB', 'bs')).toBe(4000);
    expect(parseFioSize('4096', 'bs')).toBe(4096);
    expect(parseFioSize('0x1000', 'bs')).toBe(4096);
  });

  it('flips the two readings with kb_base=1000', () => {
    expect(parseFioSize('1MiB', 'size', 1000)).toBe(1048576);
    expect(parseFioSize('1m', 'size', 1000)).toBe(1_000_000);
  });

  it('refuses what is not a size', () => {
    expect(() => parseFioSize('50%', 'size')).toThrow(JobError);
    expect(() => parseFioSize('1x', 'size')).toThrow(/size/);
    expect(() => parseFioSize('', 'size')).toThrow(JobError);
  });
});

describe('fio times and bools', () => {
  it('parseFioTimeMs reads seconds by default and the us/ms/s/m/h suffixes', () => {
    expect(parseFioTimeMs('30', 'runtime')).toBe(30_000);
    expect(parseFioTimeMs('500ms', 'runtime')).toBe(500);
    expect(parseFioTimeMs('2m', 'runtime')).toBe(120_000);
    expect(parseFioTimeMs('1h', 'runtime')).toBe(3_600_000);
    expect(() => parseFioTimeMs('soon', 'runtime')).toThrow(JobError);
  });

  it('parseFioBool takes 1/0 and a bare option as true', () => {
    expect(parseFioBool('1', 'x')).toBe(true);
    expect(parseFioBool('', 'x')).toBe(true);
    expect(parseFioBool('0', 'x')).toBe(false);
    expect(() => parseFioBool('2', 'x')).toThrow(JobError);
  });

  it('formatFioSize prints block sizes as fio does', () => {
    expect(formatFioSize(1048576)).toBe('1M');
    expect(formatFioSize(4096)).toBe('4k');
    expect(formatFioSize(1000)).toBe('1000');
  });
});

describe('resolveJob defaults and options', () => {
  const raw = (entries: Record<string, string>) => new Map(Object.entries(entries));

  it('takes fio defaults: rw=read, bs=4k, numjobs=1, invalidate=1, psync, no fsync', () => {
    const job = resolveJob('j', raw({ size: '1m' }));
    expect(job).toMatchObject({
      rw: 'read', bsBytes: 4096, numjobs: 1, invalidate: true, ioengine: 'psync', fsync: 0, endFsync: false, overwrite: false,
      rwmixread: 50, randomMap: true, direct: false, sparse: false, description: 'j',
    });
  });

  it('rounds size down to whole blocks and needs at least one block', () => {
    expect(resolveJob('j', raw({ size: '10000', bs: '4k' })).sizeBytes).toBe(8192);
    expect(() => resolveJob('j', raw({ size: '1k', bs: '4k' }))).toThrow(/size/);
    expect(() => resolveJob('j', raw({ bs: '4k' }))).toThrow(/size is required/);
  });

  it('reads rwmixwrite as the complement of rwmixread, and readwrite as rw', () => {
    const job = resolveJob('j', raw({ size: '1m', readwrite: 'randrw', rwmixwrite: '30' }));
    expect(job.rw).toBe('randrw');
    expect(job.rwmixread).toBe(70);
    expect(resolveJob('j', raw({ size: '1m', rw: 'readwrite' })).rw).toBe('rw');
  });

  it('treats fio buffered=0 as direct=1', () => {
    expect(resolveJob('j', raw({ size: '1m', buffered: '0' })).direct).toBe(true);
    expect(resolveJob('j', raw({ size: '1m', direct: '1' })).direct).toBe(true);
  });

  it('refuses what ext4ts bench cannot do instead of ignoring it', () => {
    expect(() => resolveJob('j', raw({ size: '1m', rw: 'trim' }))).toThrow(/rw=trim/);
    expect(() => resolveJob('j', raw({ size: '1m', ioengine: 'libaio' }))).toThrow(/synchronous/);
    expect(() => resolveJob('j', raw({ size: '1m', iodepth: '32' }))).toThrow(/iodepth/);
    expect(() => resolveJob('j', raw({ size: '1m', fallocate: 'native' }))).toThrow(/fallocate/);
    expect(() => resolveJob('j', raw({ size: '1m', time_based: '1' }))).toThrow(/runtime/);
    expect(() => resolveJob('j', raw({ size: '1m', filename: 'a/b' }))).toThrow(/plain name/);
  });
});

describe('parseJobFile', () => {
  it('applies [global] to the jobs after it, lets a section override it, and a later [global] change only later jobs', () => {
    const jobs = parseJobFile(`
; comment
# another
[global]
bs=1M
size=8m
ioengine=psync

[first]
rw=write
end_fsync=1

[second]
rw=read
bs=64k

[global]
size=4m

[third]
rw=randread
`);
    expect(jobs.map((j) => [j.name, j.rw, j.bsBytes, j.sizeBytes, j.endFsync])).toEqual([
      ['first', 'write', 1 << 20, 8 << 20, true],
      ['second', 'read', 64 << 10, 8 << 20, false],
      ['third', 'randread', 1 << 20, 4 << 20, false],
    ]);
  });

  it('takes bare bool options and ${ENV} substitutions', () => {
    const [job] = parseJobFile('[j]\nsize=${SIZE}\nrw=randwrite\nnorandommap\ntime_based\nruntime=2s\nstonewall\n', { SIZE: '2m' });
    expect(job).toMatchObject({ sizeBytes: 2 << 20, randomMap: false, timeBased: true, runtimeMs: 2000, stonewall: true });
    expect(() => parseJobFile('[j]\nsize=${NOPE}\n', {})).toThrow(/NOPE/);
  });

  it('names the line of an unknown option, a bare valued option, and an option outside a section', () => {
    expect(() => parseJobFile('[j]\nsize=1m\nzonemode=zbd\n')).toThrow(/line 3.*zonemode/);
    expect(() => parseJobFile('[j]\nsize\n')).toThrow(/line 2.*needs a value/);
    expect(() => parseJobFile('size=1m\n[j]\n')).toThrow(/line 1/);
    expect(() => parseJobFile('[global]\nsize=1m\n')).toThrow(/no job section/);
  });

  it('groups jobs between stonewalls: jobs without one run beside the job before them', () => {
    const jobs = parseJobFile('[global]\nsize=1m\n[a]\n[b]\n[c]\nstonewall\n[d]\n');
    expect(groupJobs(jobs).map((group) => group.map((j) => j.name))).toEqual([['a', 'b'], ['c', 'd']]);
  });
});

describe('clone file names', () => {
  it('gives each clone its own file named by filename_format ($jobname.$jobnum.$filenum by default)', () => {
    const [job] = jobsFromOptions([['name', 'w'], ['rw', 'write'], ['size', '1m'], ['numjobs', '2']]);
    expect([cloneFileName(job, 0), cloneFileName(job, 1)]).toEqual(['w.0.0', 'w.1.0']);
    const [formatted] = jobsFromOptions([['name', 'r'], ['size', '1m'], ['filename_format', 'data.$jobnum']]);
    expect(cloneFileName(formatted, 1)).toBe('data.1');
  });

  it('lets clones share filename= when it is given', () => {
    const [job] = jobsFromOptions([['name', 'w'], ['size', '1m'], ['numjobs', '2'], ['filename', 'shared']]);
    expect([cloneFileName(job, 0), cloneFileName(job, 1)]).toEqual(['shared', 'shared']);
  });
});

describe('jobsFromOptions (fio command lines)', () => {
  it('makes options before the first --name global, and each --name a job', () => {
    const jobs = jobsFromOptions([['bs', '1m'], ['size', '4m'], ['name', 'a'], ['rw', 'write'], ['name', 'b'], ['bs', '4k']]);
    expect(jobs.map((j) => [j.name, j.rw, j.bsBytes, j.sizeBytes])).toEqual([
      ['a', 'write', 1 << 20, 4 << 20],
      ['b', 'read', 4096, 4 << 20],
    ]);
  });

  it('runs options without any --name as one job', () => {
    expect(jobsFromOptions([['rw', 'write'], ['size', '1m']]).map((j) => j.name)).toEqual(['job']);
  });
});

describe('blockOrder', () => {
  it('visits every block once, in order for sequential jobs and shuffled (seeded) for random ones', () => {
    const [seq] = jobsFromOptions([['rw', 'write'], ['bs', '4k'], ['size', '64k']]);
    expect([...blockOrder(seq, 0)]).toEqual([...Array(16).keys()]);
    const [rand] = jobsFromOptions([['rw', 'randwrite'], ['bs', '4k'], ['size', '64k']]);
    const order = [...blockOrder(rand, 0)];
    expect([...order].sort((a, b) => a - b)).toEqual([...Array(16).keys()]);
    expect(order).not.toEqual([...Array(16).keys()]);
    expect([...blockOrder(rand, 0)]).toEqual(order);
    expect([...blockOrder(rand, 1)]).not.toEqual(order);
  });
});

describe('the built-in suites', () => {
  it("seed suite: the seed's four jobs in order, 1M psync, end_fsync on the writes, a sparse hole file, cached reads", () => {
    const jobs = parseJobFile(seedJobFile('256m'));
    expect(jobs.map((j) => j.description)).toEqual(['write+fsync', 'overwrite+fsync', 'read hole', 'read data']);
    expect(jobs.every((j) => j.bsBytes === 1 << 20 && j.sizeBytes === 256 << 20 && j.numjobs === 1 && !j.invalidate && j.stonewall)).toBe(true);
    expect(jobs.map((j) => [j.rw, j.endFsync, j.overwrite, j.sparse, j.filename])).toEqual([
      ['write', true, false, false, 'seed.data'],
      ['write', true, true, false, 'seed.data'],
      ['read', false, false, true, 'seed.hole'],
      ['read', false, false, false, 'seed.data'],
    ]);
  });

  it('scaling suite: numjobs 1 and 2 on separate files, reads of the files the writes made', () => {
    const jobs = parseJobFile(scalingJobFile('64m'));
    expect(jobs.map((j) => [j.description, j.numjobs])).toEqual([['write+fsync', 1], ['read data', 1], ['write+fsync', 2], ['read data', 2]]);
    expect(cloneFileName(jobs[3], 1)).toBe(cloneFileName(jobs[2], 1));
    expect(cloneFileName(jobs[2], 0)).not.toBe(cloneFileName(jobs[2], 1));
  });

  it('small-block suite: 4 KiB random write+fsync then random read of the same file', () => {
    const jobs = parseJobFile(smallBlockJobFile('16m'));
    expect(jobs.map((j) => [j.rw, j.bsBytes, j.endFsync, j.filename])).toEqual([['randwrite', 4096, true, 'small.data'], ['randread', 4096, false, 'small.data']]);
  });
});

describe('parseBenchArgs', () => {
  it("splits ext4ts's own options, fio options (both --k=v and --k v) and job files", () => {
    const args = parseBenchArgs(['--buffered', 'buffer_head', '--rw=write', '--bs', '1m', '--time_based', '--runtime=1', '--repeat', '2', 'jobs.fio', '--no-large-folios']);
    expect(args.buffered).toBe('buffer_head');
    expect(args.largeFolios).toBe(false);
    expect(args.repeat).toBe(2);
    expect(args.jobFiles).toEqual(['jobs.fio']);
    expect(args.fioOptions).toEqual([['rw', 'write'], ['bs', '1m'], ['time_based', ''], ['runtime', '1']]);
  });

  it("keeps fio's own buffered=0|1 apart from the path choice", () => {
    expect(parseBenchArgs(['--buffered=0']).fioOptions).toEqual([['buffered', '0']]);
    expect(parseBenchArgs(['--buffered=iomap']).buffered).toBe('iomap');
  });

  it('refuses unknown options and fio options without a job on the default run', () => {
    expect(() => parseBenchArgs(['--frobnicate'])).toThrow(/unknown option/);
    expect(() => planSuites(parseBenchArgs(['--bs=4k']))).toThrow(/needs a job/);
    expect(() => parseBenchArgs(['--peers', 'zfs'])).toThrow(/not one of/);
  });

  it('chooses all three configurations unless one is named; buffer_head is order-0', () => {
    expect(chosenConfigs({}).length).toBe(3);
    expect(chosenConfigs({ buffered: 'buffer_head' })).toEqual([{ buffered: 'buffer_head', largeFolios: false }]);
    expect(chosenConfigs({ largeFolios: false })).toEqual([{ buffered: 'iomap', largeFolios: false }]);
  });

  it('plans the default run as the seed, scaling and small-block suites with peers, and --size resizes it', () => {
    const plan = planSuites(parseBenchArgs(['--size=32m']));
    expect(plan.suites.map((s) => s.id)).toEqual(['seed', 'scaling', 'small']);
    expect(plan.suites[0].jobs[0].sizeBytes).toBe(32 << 20);
    expect(plan.suites[0].targets.map((t) => t.id)).toEqual(['ext4ts:buffer_head', 'ext4ts:iomap', 'ext4ts:iomap+lf', 'kernel', 'ext2fs', 'node-fs', 'copy']);
    expect(plan.suites[1].targets.map((t) => t.id)).toEqual(['ext4ts:iomap+lf', 'kernel', 'node-fs']);
    expect(plan.notes.join(' ')).toContain('each clone on its own worker thread');
    expect(plan.suites[2].targets.map((t) => t.id)).toEqual(['ext4ts:buffer_head', 'ext4ts:iomap+lf', 'kernel', 'ext2fs', 'node-fs', 'copy']);
    expect(plan.repeat).toBe(3);
    expect(planSuites(parseBenchArgs(['--full', '--peers', 'none'])).repeat).toBe(5);
  });
});
