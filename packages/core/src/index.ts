export { FsError, type FsErrorCode } from './vfs/errors.js';
export type { BlockDevice, WriteOptions } from './device/block-device.js';
export * from './device/index.js';
export * as format from './format/index.js';
export { superblockReport, journalReport, formatReport, type ReportLine } from './ext4/info.js';
export { Ext4, Ext4Filesystem, type MountOptions, type MountInfo, type PathLike } from './vfs/filesystem.js';
export { FileHandle, type ReadResult, type ReadOptions } from './vfs/file-handle.js';
export { Stats, BigIntStats } from './vfs/stats.js';
export { Dirent } from './vfs/dirent.js';
