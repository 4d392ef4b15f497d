/**
 * One clone of a job on its own worker thread (clone-threads.ts starts it): connects to
 * the engine over the client channel, opens its file, says "ready", waits for "go", runs
 * the same loop as an in-thread clone (executor.ts runClone: one positional call per
 * block, fsyncs as the job says), and posts its tally, its absolute end time and its
 * latency samples. Cost: its own isolate (~30–50 ms to start, before the clock).
 */
import { constants as fsConstants } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { connectFilesystem, type FilesystemHandle } from '@ext4ts/core';
import { cloneFileName } from './job.js';
import { runClone, scratchBuffer, type BenchFile } from './executor.js';
import type { CloneGoMessage, CloneWorkerData, CloneWorkerMessage } from './clone-threads.js';

const LATENCY_SAMPLES_MAX = 1 << 20;
const LAYOUT_CHUNK_BYTES = 1024 * 1024;

async function main(): Promise<void> {
  const port = parentPort!;
  const { handle, job, cloneIndex } = workerData as CloneWorkerData;
  const client = connectFilesystem(handle as FilesystemHandle);
  const opened = await client.open(`/${cloneFileName(job, cloneIndex)}`, fsConstants.O_RDWR | fsConstants.O_CREAT);
  const file: BenchFile = {
    async pwrite(source, positionBytes) {
      const { bytesWritten } = await opened.write(source, 0, source.length, positionBytes);
      if (bytesWritten !== source.length) throw new Error(`short write: ${bytesWritten} of ${source.length}`);
    },
    async pread(target, positionBytes) {
      return (await opened.read(target, 0, target.length, positionBytes)).bytesRead;
    },
    fsync: () => opened.sync(),
    fdatasync: () => opened.datasync(),
    close: () => opened.close(),
  };
  const writeBuffer = scratchBuffer(0, Math.max(LAYOUT_CHUNK_BYTES, job.bsBytes));
  const readBuffer = scratchBuffer(1, job.bsBytes);
  const samples = new Float64Array(Math.min(LATENCY_SAMPLES_MAX, (job.sizeBytes / job.bsBytes) * (job.timeBased ? 4 : 1)));
  const latency = { samples, count: 0 };
  await new Promise<void>((resolve) => {
    port.once('message', (message: CloneGoMessage) => { if (message.kind === 'go') resolve(); });
    port.postMessage({ kind: 'ready' } satisfies CloneWorkerMessage);
  });
  const tally = await runClone({ file, job, cloneIndex, readBuffer, writeBuffer, latency }, performance.now(), {});
  const endAbsoluteMs = performance.timeOrigin + tally.endMs;
  await file.close();
  await client.close();
  const done: CloneWorkerMessage = { kind: 'done', tally, endAbsoluteMs, samples: samples.slice(0, latency.count) };
  port.postMessage(done);
}

main().catch((error: unknown) => {
  parentPort?.postMessage({ kind: 'error', message: (error as Error)?.stack ?? String(error) } satisfies CloneWorkerMessage);
});
