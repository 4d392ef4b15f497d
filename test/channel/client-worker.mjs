/**
 * A client thread of workers.test.ts: connects to the served filesystem given in
 * workerData.handle and runs workerData.task, then posts { ok, result } (or { ok: false,
 * error }) to its parent.
 *
 *   workload       seeded random ops on its own file (write, read, truncate, punch,
 *                  fsync, stat, two ops in flight at once) checked against an in-thread
 *                  model, and writes/reads of its own stripes of a shared file; returns
 *                  its models for the parent to compare with the engine's view
 *   errors         ENOENT, EBADF, EFBIG, EISDIR raised by the engine, as seen here
 *   pattern        writes of one byte value (role writer) or truncates and punches (role
 *                  chopper) racing other clients on the same file; every read must show
 *                  only 0 or that byte — another value is another file's data
 *   dieHoldingLease  speaks the wire protocol by hand: takes a write lease, copies half,
 *                  exits without committing (a client gone mid-request)
 *   writeAndExit   a write that returned, then process.exit at once (the engine must
 *                  still commit its last part: notice and COMMIT word are both out)
 *   flood          keeps writes and reads in flight until the parent terminates it
 *
 * Plain JavaScript over the built package (packages/core/dist): a Worker needs a JS entry.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { FsError, connectFilesystem, constants } from '../../packages/core/dist/index.js';
import { seededRandom } from '../../packages/core/dist/random.js';

const { handle, task } = workerData;
const MiB = 1024 * 1024;

function below(rng, bound) {
  return Math.floor((rng() / 2 ** 32) * bound);
}

function bytesOf(rng, length) {
  const out = Buffer.allocUnsafe(length);
  let word = 0;
  for (let i = 0; i < length; i++) {
    if ((i & 3) === 0) word = rng();
    out[i] = (word >>> ((i & 3) * 8)) & 0xff;
  }
  return out;
}

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A file model: bytes [0, length) of a growable buffer. */
class Model {
  constructor() {
    this.bytes = Buffer.alloc(0);
    this.length = 0;
  }
  resize(length) {
    if (length > this.bytes.length) {
      const grown = Buffer.alloc(Math.max(length, this.bytes.length * 2));
      this.bytes.copy(grown, 0, 0, this.length);
      this.bytes = grown;
    } else if (length < this.length) {
      this.bytes.fill(0, length, this.length);
    }
    this.length = length;
  }
  write(at, data) {
    if (at + data.length > this.length) this.resize(at + data.length);
    data.copy(this.bytes, at);
  }
  zero(at, end) {
    this.bytes.fill(0, at, Math.min(end, this.length));
  }
  view() {
    return this.bytes.subarray(0, this.length);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function expectSame(actual, expected, what) {
  if (!actual.equals(expected)) {
    let at = 0;
    while (at < expected.length && actual[at] === expected[at]) at++;
    throw new Error(`${what}: differs at byte ${at} (${actual.length} vs ${expected.length} bytes)`);
  }
}

async function workload({ seed, ops, ownPath, sharedPath, stripeBytes, stripeCount, workerCount, index, fileBytesMax }) {
  const client = connectFilesystem(handle);
  const rng = seededRandom(seed);
  const own = new Model();
  const fh = await client.open(ownPath, 'w+');
  const shared = await client.open(sharedPath, 'r+');
  const myStripes = [];
  for (let s = index; s < stripeCount; s += workerCount) myStripes.push(s);
  const stripes = new Map(myStripes.map((s) => [s, Buffer.alloc(stripeBytes)]));
  const sizeOf = () => {
    const kind = below(rng, 10);
    if (kind < 5) return 1 + below(rng, 16 * 1024);
    if (kind < 9) return 16 * 1024 + below(rng, 512 * 1024);
    return 512 * 1024 + below(rng, 2 * MiB);
  };
  const counts = {};
  const readOwn = async (at, length) => {
    const got = Buffer.alloc(length);
    const { bytesRead } = await fh.read(got, 0, length, at);
    const expected = own.view().subarray(Math.min(at, own.length), Math.min(at + length, own.length));
    check(bytesRead === expected.length, `read at ${at} +${length}: ${bytesRead} bytes, model has ${expected.length}`);
    await expectSame(got.subarray(0, bytesRead), expected, `own file ${ownPath} read at ${at}`);
  };
  const writeShared = async () => {
    const stripe = myStripes[below(rng, myStripes.length)];
    const offset = below(rng, stripeBytes);
    const data = bytesOf(rng, 1 + below(rng, stripeBytes - offset));
    const { bytesWritten } = await shared.write(data, 0, data.length, stripe * stripeBytes + offset);
    check(bytesWritten === data.length, 'shared write complete');
    data.copy(stripes.get(stripe), offset);
  };
  const readShared = async () => {
    const stripe = myStripes[below(rng, myStripes.length)];
    const got = Buffer.alloc(stripeBytes);
    await shared.read(got, 0, stripeBytes, stripe * stripeBytes);
    await expectSame(got, stripes.get(stripe), `shared stripe ${stripe}`);
  };
  for (let op = 0; op < ops; op++) {
    const choice = below(rng, 100);
    const name = choice < 35 ? 'write' : choice < 55 ? 'read' : choice < 61 ? 'truncate' : choice < 65 ? 'fsync'
      : choice < 69 ? 'stat' : choice < 73 ? 'punch' : choice < 83 ? 'sharedWrite' : choice < 91 ? 'sharedRead' : 'pair';
    counts[name] = (counts[name] ?? 0) + 1;
    switch (name) {
      case 'write': {
        const length = sizeOf();
        const at = below(rng, fileBytesMax - length);
        const data = bytesOf(rng, length);
        const { bytesWritten } = await fh.write(data, 0, length, at);
        check(bytesWritten === length, `write of ${length} complete`);
        own.write(at, data);
        break;
      }
      case 'read': {
        const length = sizeOf();
        await readOwn(below(rng, fileBytesMax), length);
        break;
      }
      case 'truncate': {
        const length = below(rng, fileBytesMax);
        await fh.truncate(length);
        own.resize(length);
        break;
      }
      case 'fsync': await fh.sync(); break;
      case 'stat': check((await fh.stat()).size === own.length, `stat size ${own.length}`); break;
      case 'punch': {
        if (own.length === 0) break;
        const at = below(rng, own.length);
        const length = 1 + below(rng, Math.min(MiB, own.length - at));
        await fh.fallocate(constants.FALLOC_FL_PUNCH_HOLE | constants.FALLOC_FL_KEEP_SIZE, at, length);
        own.zero(at, at + length);
        break;
      }
      case 'sharedWrite': await writeShared(); break;
      case 'sharedRead': await readShared(); break;
      case 'pair': {
        // Two requests of this client in flight at once, on different files.
        const length = sizeOf();
        await Promise.all([writeShared(), readOwn(below(rng, fileBytesMax), length)]);
        break;
      }
    }
  }
  await fh.sync();
  const whole = await client.readFile(ownPath);
  await expectSame(whole, own.view(), `own file ${ownPath} at the end`);
  await fh.close();
  await shared.close();
  await client.close();
  return { ownLength: own.length, ownSha256: sha256(own.view()), stripes: [...stripes.entries()], counts };
}

async function errors({ dirPath, filePath }) {
  const client = connectFilesystem(handle);
  const seen = {};
  const record = async (name, promise) => {
    try {
      await promise;
      seen[name] = null;
    } catch (error) {
      seen[name] = { isFsError: FsError.is(error), instance: error instanceof FsError, code: error.code, syscall: error.syscall, path: error.path, errno: error.errno };
    }
  };
  await record('enoent', client.open('/no/such/file'));
  await client.writeFile(filePath, 'x');
  const ro = await client.open(filePath, 'r');
  await record('ebadfWrite', ro.write(Buffer.alloc(64 * 1024), 0, 64 * 1024, 0));
  await ro.close();
  await record('ebadfClosed', ro.stat());
  const rw = await client.open(filePath, 'r+');
  await record('efbig', rw.write(Buffer.alloc(64 * 1024), 0, 64 * 1024, 2 ** 50));
  await rw.close();
  await client.mkdir(dirPath);
  const dir = await client.open(dirPath);
  await record('eisdir', dir.read(Buffer.alloc(8), 0, 8, 0));
  await dir.close();
  await client.close();
  return seen;
}

async function dieHoldingLease({ path }) {
  const port = handle.port;
  const answers = new Map();
  port.on('message', (answer) => answers.get(answer.id)?.(answer));
  const request = (id, body) => new Promise((resolve, reject) => {
    answers.set(id, (answer) => (answer.ok ? resolve(answer.value) : reject(new Error(answer.error.message))));
    port.postMessage({ ...body, id });
  });
  const { fd } = await request(1, { op: 'open', path, flags: 'r+' });
  const lease = await request(2, { op: 'writeBegin', fd, positionBytes: 0, lengthBytes: MiB, slot: 0 });
  const memory = new Uint8Array(handle.memory.buffer);
  memory.fill(0xab, lease.pieces[0], lease.pieces[0] + Math.floor(lease.pieces[1] / 2));
  process.exit(7); // gone, holding the lease: no commit
}

/** Every byte read from `path` must be 0 or `byte`: anything else came from another file. */
function checkBytes(bytes, allowed, what) {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== 0 && bytes[i] !== allowed) throw new Error(`${what}: byte ${bytes[i]} at ${i}, only 0 and ${allowed} were ever written`);
  }
}

async function pattern({ path, byte, ops, seed, fileBytesMax, role }) {
  const client = connectFilesystem(handle);
  const rng = seededRandom(seed);
  const fh = await client.open(path, 'r+');
  const counts = {};
  for (let op = 0; op < ops; op++) {
    const choice = below(rng, 100);
    const name = role === 'writer' ? (choice < 75 ? 'write' : 'read') : choice < 30 ? 'truncate' : choice < 60 ? 'punch' : 'read';
    counts[name] = (counts[name] ?? 0) + 1;
    const at = below(rng, fileBytesMax);
    const length = 1 + below(rng, 2 * MiB);
    if (name === 'write') await fh.write(Buffer.alloc(length, byte), 0, length, at);
    else if (name === 'truncate') await fh.truncate(below(rng, fileBytesMax));
    else if (name === 'punch') await fh.fallocate(constants.FALLOC_FL_PUNCH_HOLE | constants.FALLOC_FL_KEEP_SIZE, at, length);
    else {
      const got = Buffer.alloc(length);
      const { bytesRead } = await fh.read(got, 0, length, at);
      checkBytes(got.subarray(0, bytesRead), byte, `${path} read at ${at}`);
    }
  }
  await fh.close();
  await client.close();
  return counts;
}

async function writeAndExit({ path, seed, bytes }) {
  const client = connectFilesystem(handle);
  const fh = await client.open(path, 'w');
  await fh.write(bytesOf(seededRandom(seed), bytes), 0, bytes, 0);
  process.exit(5); // at once, before the engine has handled the commit of the last part
}

async function flood({ path, seed }) {
  const client = connectFilesystem(handle);
  const rng = seededRandom(seed);
  const fh = await client.open(path, 'r+');
  parentPort.postMessage({ flooding: true });
  for (;;) {
    const inFlight = [];
    for (let i = 0; i < 4; i++) {
      const at = below(rng, 4 * MiB);
      inFlight.push(i % 2 === 0 ? fh.write(bytesOf(rng, 256 * 1024), 0, 256 * 1024, at) : fh.read(Buffer.alloc(256 * 1024), 0, 256 * 1024, at));
    }
    await Promise.all(inFlight);
  }
}

const tasks = { workload, errors, pattern, dieHoldingLease, writeAndExit, flood };
try {
  const result = await tasks[task.kind](task);
  parentPort.postMessage({ ok: true, result });
} catch (error) {
  parentPort.postMessage({ ok: false, error: String(error?.stack ?? error) });
}
