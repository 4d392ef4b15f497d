// Runs an external program without a shell: argv array, stdin closed, a timeout, and
// large output buffers (debugfs `ls` of a 20,000-entry directory prints megabytes).
import { execFile } from 'node:child_process';

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  /** Resolve instead of reject when the exit code is non-zero (e2fsck uses codes as results). */
  allowFailure?: boolean;
}

const RUN_TIMEOUT_MS_DEFAULT = 120_000;
const RUN_OUTPUT_BYTES_MAX = 512 * 1024 * 1024;

export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? RUN_TIMEOUT_MS_DEFAULT;
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: timeoutMs, maxBuffer: RUN_OUTPUT_BYTES_MAX, encoding: 'utf8', killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = child.exitCode;
        // A numeric exit code is a result; anything else (spawn failure, timeout kill) is an error.
        if (error && (code === null || !options.allowFailure)) {
          const why = code === null ? `killed or failed to start (${error.message})` : `exit ${code}`;
          reject(new Error(`${file} ${args.join(' ')}: ${why}\n${stderr}${stdout}`.trimEnd()));
          return;
        }
        resolve({ exitCode: code ?? 0, stdout, stderr });
      },
    );
    child.stdin?.end();
  });
}
