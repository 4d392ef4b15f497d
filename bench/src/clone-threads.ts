/**
 * Clones on worker threads: fio's numjobs as real parallel clients. Each clone of each job
 * of a group gets a worker_thread (clone-worker.ts) and its own connection to the engine
 * (ext4ts: connectFilesystem over the client channel: metadata on the engine thread, the
 * bulk copy on the clone's thread). All workers open their files, then wait; the group's
 * clock starts when "go" is posted to all of them and stops at the last clone's end.
 *
 * Clocks: each worker times its calls with its own performance.now() and reports its end
 * as an absolute time (timeOrigin + now), which this thread turns back into its own
 * clock; the ~20 µs of the "go" message is inside the measured time, so short jobs are
 * flattered by nothing. Latency samples come back whole and are summarised here.
 *
 * Cost outside the timed part: a worker start per clone (~30–50 ms: a fresh isolate that
 * loads the engine's modules), joined before the clock starts.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { JobGroup, JobSpec } from './job.js';
import { jobRunOf, summariseLatency, type ClientThreads, type CloneTally, type ExecuteOptions, type JobRun } from './executor.js';

/** What a clone worker is started with (workerData). */
export interface CloneWorkerData {
  handle: unknown;
  job: JobSpec;
  cloneIndex: number;
}

/** Worker → this thread. */
export type CloneWorkerMessage =
  | { kind: 'ready' }
  | { kind: 'done'; tally: CloneTally; endAbsoluteMs: number; samples: Float64Array }
  | { kind: 'error'; message: string };

/** This thread → worker. */
export interface CloneGoMessage { kind: 'go' }

/**
 * The worker script: the compiled clone-worker.js beside this file; when this file runs
 * from its TypeScript source (tests), the built one in bench/dist/src.
 */
export function cloneWorkerUrl(): URL {
  const sibling = new URL('./clone-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  return new URL('../dist/src/clone-worker.js', import.meta.url);
}

interface StartedClone { worker: Worker; job: JobSpec; done: Promise<{ tally: CloneTally; samples: Float64Array }>; ready: Promise<void> }

function startClone(threads: ClientThreads, job: JobSpec, cloneIndex: number): StartedClone {
  const { handle, transferList } = threads.connect();
  const data: CloneWorkerData = { handle, job, cloneIndex };
  const worker = new Worker(cloneWorkerUrl(), { workerData: data, transferList });
  let readyResolve!: () => void;
  const ready = new Promise<void>((resolve) => { readyResolve = resolve; });
  const done = new Promise<{ tally: CloneTally; samples: Float64Array }>((resolve, reject) => {
    worker.on('message', (message: CloneWorkerMessage) => {
      if (message.kind === 'ready') readyResolve();
      else if (message.kind === 'error') reject(new Error(`clone ${job.name}.${cloneIndex}: ${message.message}`));
      else {
        // The worker's absolute end time, on this thread's clock.
        const tally = { ...message.tally, endMs: message.endAbsoluteMs - performance.timeOrigin };
        resolve({ tally, samples: message.samples });
      }
    });
    worker.on('error', reject);
    worker.on('exit', (code) => { if (code !== 0) reject(new Error(`clone ${job.name}.${cloneIndex} exited with ${code}`)); });
  });
  // A clone that fails before "ready" must not leave the group waiting for it.
  done.catch(() => readyResolve());
  return { worker, job, done, ready };
}

/** Run one group with every clone on its own worker thread; results in job order. */
export async function executeGroupInThreads(threads: ClientThreads, group: JobGroup, options: ExecuteOptions): Promise<JobRun[]> {
  const clones: StartedClone[] = [];
  try {
    for (const job of group) for (let cloneIndex = 0; cloneIndex < job.numjobs; cloneIndex++) clones.push(startClone(threads, job, cloneIndex));
    await Promise.all(clones.map((clone) => clone.ready));
    const startMs = performance.now();
    for (const clone of clones) clone.worker.postMessage({ kind: 'go' } satisfies CloneGoMessage);
    const finished = await Promise.all(clones.map((clone) => clone.done));
    return group.map((job) => {
      const mine = finished.filter((_, index) => clones[index].job === job);
      for (const { tally } of mine) options.onBytes?.(tally.readBytes + tally.writeBytes);
      const samples = concatSamples(mine.map((entry) => entry.samples));
      return { ...jobRunOf(job, mine.map((entry) => entry.tally), startMs, summariseLatency(samples)), timing: 'harness' as const };
    });
  } finally {
    await Promise.all(clones.map((clone) => clone.worker.terminate().catch(() => 0)));
    await threads.close();
  }
}

function concatSamples(parts: readonly Float64Array[]): Float64Array {
  const all = new Float64Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) { all.set(part, at); at += part.length; }
  return all;
}
