/**
 * A one-line progress bar on stderr while the bench runs — only when stderr is a
 * terminal (pipes, CI logs and --output-format=json runs stay clean).
 *
 *   [##########··········]  48%  iomap + LF  rep 2/3  read data      14.2 s
 *
 * Work is counted in bytes of planned job I/O (layout and mkfs are not counted), so the
 * bar moves at the speed of whatever is being measured. Redraws at most every
 * REDRAW_MS; cost: nothing per I/O beyond adding a number.
 */

const BAR_WIDTH = 24;
const REDRAW_MS = 100;

export interface ProgressSink {
  /** What is running now (target, repetition, job). */
  stage(text: string): void;
  /** Bytes of planned work done since the last call. */
  advance(bytes: number): void;
  /** Erase the line (before printing anything else, and at the end). */
  clear(): void;
}

/** A sink that draws nothing (not a TTY, or --no-progress). */
export const silentProgress: ProgressSink = { stage() {}, advance() {}, clear() {} };

export function terminalProgress(totalBytes: number, stream: NodeJS.WriteStream = process.stderr): ProgressSink {
  if (!stream.isTTY || totalBytes <= 0) return silentProgress;
  const startedMs = performance.now();
  let doneBytes = 0;
  let stageText = '';
  let lastDrawMs = 0;
  let drawn = false;
  const draw = (force: boolean) => {
    const nowMs = performance.now();
    if (!force && nowMs - lastDrawMs < REDRAW_MS) return;
    lastDrawMs = nowMs;
    const fraction = Math.min(1, doneBytes / totalBytes);
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = '#'.repeat(filled) + '·'.repeat(BAR_WIDTH - filled);
    const seconds = ((nowMs - startedMs) / 1000).toFixed(1);
    const columns = stream.columns ?? 100;
    const line = `[${bar}] ${String(Math.floor(fraction * 100)).padStart(3)}%  ${stageText}  ${seconds} s`;
    stream.write(`\r${line.slice(0, columns - 1).padEnd(Math.min(columns - 1, line.length))}\x1b[K`);
    drawn = true;
  };
  return {
    stage(text) { stageText = text; draw(true); },
    advance(bytes) { doneBytes += bytes; draw(false); },
    clear() { if (drawn) stream.write('\r\x1b[K'); drawn = false; },
  };
}
