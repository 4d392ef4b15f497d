export { FsError, type FsErrorCode } from './vfs/errors.js';
export type { BlockDevice, WriteOptions } from './device/block-device.js';
