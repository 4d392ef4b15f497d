/**
 * An engine in a worker thread of its own (workers.test.ts's "engine in a worker" case):
 * mounts the MemoryDevice whose handle it is given, serves it, posts one channel handle
 * per client to its parent, and on 'stop' closes the server, unmounts and answers
 * 'stopped' — so every client, the main thread included, goes through the channel.
 *
 * Plain JavaScript over the built package (packages/core/dist): a Worker needs a JS entry.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Ext4, MemoryDevice, serveFilesystem } from '../../packages/core/dist/index.js';

const device = MemoryDevice.fromHandle(workerData.device);
const fs = await Ext4.mount(device, { readOnly: false, commitIntervalMs: 0, cacheBytes: workerData.cacheBytes, writebackThreads: 1 });
const server = serveFilesystem(fs);
const handles = Array.from({ length: workerData.clients }, () => server.connect());
parentPort.on('message', async (message) => {
  if (message !== 'stop') return;
  await server.close();
  await fs.unmount();
  parentPort.postMessage('stopped');
});
parentPort.postMessage({ handles }, handles.map((handle) => handle.port));
