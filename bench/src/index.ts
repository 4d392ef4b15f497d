/**
 * @ext4ts/bench: the fio-style job runner behind `ext4ts bench` (cli.ts), its job model
 * (job.ts), executor, targets and peers, and the report/SVG renderers. Importing this
 * runs nothing; the peers load their tools (fio, the ext2fs package) only when probed.
 */
export * from './units.js';
export * from './job.js';
export * from './executor.js';
export * from './target.js';
export * from './ext4ts-target.js';
export * from './runner.js';
export * from './report.js';
export * from './svg.js';
export * from './progress.js';
export * from './warm-memory.js';
export { benchMain, parseBenchArgs, planSuites, buildDocument, chosenConfigs, BENCH_USAGE, PEER_IDS, SECTION_IDS, type BenchArgs, type BenchIo } from './cli.js';
export { CopyLimitPeer } from '../peers/copy-limit.js';
export { Ext2fsPeer } from '../peers/ext2fs.js';
export { KernelFioPeer, fioArgsOf, parseFioJson } from '../peers/kernel-fio.js';
export { NodeFsPeer } from '../peers/node-fs.js';
