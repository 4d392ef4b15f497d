/**
 * The device layer's public pieces: the BlockDevice contract, the two devices, and
 * helpers to open one from a spec or rebuild one in a worker from its handle.
 */
import type { DeviceHandle, SyncBlockDevice } from './block-device.js';
import { FileDevice } from './file-device.js';
import { MemoryDevice } from './memory-device.js';

export type {
  BlockDevice,
  DeviceHandle,
  FileDeviceHandle,
  MemoryDeviceHandle,
  SyncBlockDevice,
  WriteOptions,
} from './block-device.js';
export { FileDevice, IO_BYTES_MAX, type FileDeviceOptions } from './file-device.js';
export {
  MemoryDevice,
  CHUNK_SIZE_BYTES_DEFAULT,
  type LoadImageOptions,
  type MemoryDeviceOptions,
} from './memory-device.js';
export { allocAligned } from './aligned-buffer.js';

export type DeviceSpec =
  | { kind: 'memory'; sizeBytes: number; sectorSizeBytes?: number; chunkSizeBytes?: number }
  | { kind: 'file'; path: string; readOnly?: boolean; create?: boolean; sizeBytes?: number; sectorSizeBytes?: number };

/** Open the device a spec describes. */
export async function openDevice(spec: DeviceSpec): Promise<SyncBlockDevice> {
  if (spec.kind === 'memory') return MemoryDevice.create(spec);
  const { path, ...options } = spec;
  return FileDevice.open(path, options);
}

/** In a worker: the device over the same storage as the one that gave `handle`. */
export function deviceFromHandle(handle: DeviceHandle): SyncBlockDevice {
  return handle.kind === 'memory' ? MemoryDevice.fromHandle(handle) : FileDevice.fromHandle(handle);
}
export {
  RecordingDevice, RecordingLimitError, type RecordedLog, type RecordedEvent, type RecordedWrite, type RecordedFlush,
  type RecordedMark, type RecordingDeviceOptions,
} from './recording-device.js';
export { FaultDevice, type FaultPlan, type InjectedFault, type FaultOpKind } from './fault-device.js';
