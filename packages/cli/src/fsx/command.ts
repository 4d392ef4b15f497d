/**
 * `ext4ts fsx [fsx options] [--buffered iomap|buffer_head] [--no-large-folios]
 * [--cache-size SIZE] [--image FILE] [--remount-every K] [fname]`: fsx over one file in an
 * ext4ts image (ext4-target.ts), with fsx's option letters (options.ts) and its report:
 *
 *   Seed set to 7
 *   ext4ts fsx: iomap, large folios, cache default, fresh 64 MiB in-memory image, file /fsxfile
 *   ...progress every tenth of the run (not with -q)...
 *   All 2000 operations completed A-OK!
 *   ops: read 231 write 219 ...; 0 skipped; final size 0x3b2c1; 2.1 s, 950 ops/s
 *
 * Exit 0 when every check passed and the image unmounted cleanly. On a mismatch or an
 * engine error: the failure (bad bytes, the op that may have written them, the last ops)
 * on stdout, .fsxgood/.fsxops/.fsxlog written to -P dir (default: the current directory),
 * the command that replays the .fsxops, exit 1. Bad options or a bad --replay-ops log are
 * usage errors (exit 2, via main.ts).
 *
 * Cost: what the run costs (ext4-target.ts) plus one line of output per tenth of the run.
 */
import path from 'node:path';
import { UsageError } from '../args.js';
import { Ext4FsxTarget, FSX_IMAGE_BYTES_DEFAULT } from './ext4-target.js';
import { FSX_USAGE, FsxUsageError, loadFsxRun, parseFsxArgs, type FsxCliOptions } from './options.js';
import { FSX_OP_NAMES } from './ops.js';
import { FsxFailure, defaultFsxRunOptions, runFsx, type FsxResult, type FsxRunOptions } from './run.js';

/** Progress lines per run (one per tenth), but never more often than this many ops. */
const PROGRESS_LINES = 10;
const PROGRESS_EVERY_OPS_MIN = 1000;

export async function fsxCommand(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    console.log(FSX_USAGE);
    return 0;
  }
  const { cli, run } = parseCommandLine(argv);
  const settings = { ...defaultFsxRunOptions(), ...run };
  console.log(`Seed set to ${settings.seed}`);
  const target = await Ext4FsxTarget.create({
    buffered: cli.buffered, largeFolios: cli.largeFolios, cacheBytes: cli.cacheBytes,
    imagePath: cli.imagePath, filePath: `/${settings.fileName}`, remountEvery: cli.remountEvery,
  });
  console.log(describeSetup(cli, settings, target));
  const startedMs = performance.now();
  if (!cli.quiet) {
    run.progressEveryOps = Math.max(PROGRESS_EVERY_OPS_MIN, Math.ceil(settings.numOps / PROGRESS_LINES));
    run.onProgress = (opNumber, sizeBytes) => console.log(`${opNumber} ops, size 0x${sizeBytes.toString(16)}, ${seconds(startedMs)} s`);
  }
  run.outputDir ??= '.';
  let result: FsxResult;
  try {
    result = await runFsx(target, run);
  } catch (error) {
    await closeAfterFailure(target);
    if (!(error instanceof FsxFailure)) throw error;
    reportFailure(error, argv);
    return 1;
  }
  await target.close(); // fsync + unmount: an error here is an engine failure too (exit 1 via main.ts)
  reportSuccess(result, target, startedMs);
  return 0;
}

function parseCommandLine(argv: string[]): { cli: FsxCliOptions; run: Partial<FsxRunOptions> } {
  try {
    const cli = parseFsxArgs(argv);
    return { cli, run: loadFsxRun(cli) };
  } catch (error) {
    if (error instanceof FsxUsageError) throw new UsageError(`fsx: ${error.message}\n${FSX_USAGE}`);
    throw error;
  }
}

function describeSetup(cli: FsxCliOptions, settings: FsxRunOptions, target: Ext4FsxTarget): string {
  const caps = target.capabilities;
  const off = FSX_OP_NAMES.filter((name) =>
    (name === 'fallocate' && !caps.fallocate) || (name === 'punch_hole' && !caps.punch) || (name === 'zero_range' && !caps.zero));
  const folios = cli.buffered === 'iomap' ? (cli.largeFolios ? ', large folios' : ', single-page folios') : '';
  const cache = cli.cacheBytes === undefined ? 'default' : `${(cli.cacheBytes / 2 ** 20).toFixed(cli.cacheBytes % 2 ** 20 === 0 ? 0 : 2)} MiB`;
  const image = cli.imagePath ?? `fresh ${FSX_IMAGE_BYTES_DEFAULT / 2 ** 20} MiB in-memory image`;
  const lines = [
    `ext4ts fsx: ${cli.buffered}${folios}, cache ${cache}, ${image}, file /${settings.fileName}`,
    `${settings.replayOps === undefined ? `${settings.numOps} ops` : `replaying ${settings.numOps} ops`}, maxfilelen 0x${settings.maxFileLen.toString(16)}, maxoplen 0x${settings.maxOpLen.toString(16)}`,
  ];
  if (off.length > 0) lines.push(`main: this engine does not support ${off.join(', ')}; disabled`);
  if (!caps.mmap) lines.push('main: this engine has no mmap; mapread/mapwrite are pread/pwrite, EOF-page checks off');
  return lines.join('\n');
}

function reportFailure(failure: FsxFailure, argv: readonly string[]): void {
  console.log(failure.message);
  const opsFile = failure.files.find((file) => file.endsWith('.fsxops'));
  if (opsFile === undefined) return;
  // Replay with the same engine settings; the run's own op-shaping options come from the log.
  const engineArgs = ext4tsArgs(argv);
  console.log(`replay: ext4ts fsx --replay-ops ${path.relative('.', opsFile) || opsFile}${engineArgs.length > 0 ? ` ${engineArgs.join(' ')}` : ''}`);
}

/** The options of argv that pick the engine (kept for the replay command line). */
function ext4tsArgs(argv: readonly string[]): string[] {
  const kept: string[] = [];
  const withValue = new Set(['--buffered', '--cache-size', '--image', '--remount-every']);
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].split('=')[0];
    if (argv[i] === '--no-large-folios') kept.push(argv[i]);
    else if (withValue.has(name)) kept.push(...(argv[i].includes('=') ? [argv[i]] : argv.slice(i, i + 2)));
  }
  return kept;
}

async function closeAfterFailure(target: Ext4FsxTarget): Promise<void> {
  try {
    await target.close();
  } catch (error) {
    console.log(`after the failure, unmount failed too: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function reportSuccess(result: FsxResult, target: Ext4FsxTarget, startedMs: number): void {
  const elapsedMs = performance.now() - startedMs;
  const counts = FSX_OP_NAMES.map((name) => `${name} ${result.opCounts[name]}`).join(' ');
  const s = target.stats;
  console.log(`All ${result.opsRun} operations completed A-OK!`);
  console.log(`ops: ${counts}; ${result.skipped} skipped; final size 0x${result.finalSizeBytes.toString(16)}`);
  const cache = target.cacheCounters();
  const cacheText = cache === null ? '' : `, ${cache.evictedFolios} folios evicted, ${cache.flusherPasses} flusher passes`;
  console.log(`engine: ${s.mappedOps} mappings, ${s.fsyncs} fsyncs, ${s.reopens} reopens, ${s.remounts} remounts${cacheText}; ` +
    `${(elapsedMs / 1000).toFixed(1)} s, ${Math.round(result.opsRun / (elapsedMs / 1000))} ops/s`);
  for (const note of result.notes) console.log(`note: ${note}`);
}

function seconds(startedMs: number): string {
  return ((performance.now() - startedMs) / 1000).toFixed(1);
}
