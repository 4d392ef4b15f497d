// A small helper process that runs programs for us. Forking costs time in proportion to
// the parent's memory (page tables): ~16 ms per spawn from a test worker holding a few
// hundred MB of recorded log, ~1.4 ms from a bare node. A crash campaign runs e2fsck
// thousands of times, so it asks this lean child to spawn instead.
//
// Protocol: one JSON line per request on the child's stdin ({id, file, args}), one JSON
// line per answer on its stdout ({id, exitCode, stdout, stderr} or {id, error}).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { RunResult } from '../helpers/run.js';

const SERVER_SOURCE = `
const { execFile } = require('node:child_process');
const lines = require('node:readline').createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const { id, file, args, timeoutMs } = JSON.parse(line);
  const child = execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
    const exitCode = child.exitCode;
    const answer = error && exitCode === null ? { id, error: String(error.message) } : { id, exitCode: exitCode ?? 0, stdout, stderr };
    process.stdout.write(JSON.stringify(answer) + '\\n');
  });
  child.stdin.end();
});
`;

const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];
const RUN_TIMEOUT_MS = 120_000;

export class SpawnServer {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (result: RunResult) => void; reject: (error: Error) => void }>();

  constructor() {
    const env = { ...process.env, PATH: [process.env.PATH ?? '', ...SBIN_DIRS].filter(Boolean).join(':') };
    this.child = spawn(process.execPath, ['-e', SERVER_SOURCE], { stdio: ['pipe', 'pipe', 'inherit'], env });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const answer = JSON.parse(line) as { id: number; error?: string } & RunResult;
      const waiter = this.waiting.get(answer.id);
      this.waiting.delete(answer.id);
      if (answer.error !== undefined) waiter?.reject(new Error(answer.error));
      else waiter?.resolve({ exitCode: answer.exitCode, stdout: answer.stdout, stderr: answer.stderr });
    });
    this.child.on('exit', (code) => {
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`spawn server exited (${code})`));
      this.waiting.clear();
    });
  }

  /** Runs `file args` (looked up on PATH plus the sbin dirs); a non-zero exit is a result. */
  run(file: string, args: readonly string[]): Promise<RunResult> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.stdin!.write(`${JSON.stringify({ id, file, args, timeoutMs: RUN_TIMEOUT_MS })}\n`);
    });
  }

  close(): void {
    this.child.stdin!.end();
  }
}
