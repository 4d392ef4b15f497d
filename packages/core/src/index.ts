export { FsError, type FsErrorCode } from './vfs/errors.js';
export type { BlockDevice, WriteOptions } from './device/block-device.js';
export * from './device/index.js';
export * as format from './format/index.js';
export { superblockReport, journalReport, formatReport, type ReportLine } from './ext4/info.js';
