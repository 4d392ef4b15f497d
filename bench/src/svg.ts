/**
 * The chart: hand-written SVG (no dependency), one panel per suite, grouped bars — one
 * group per job, one bar per target (median MiB/s, a thin whisker from min to max over
 * the repetitions), on a log scale because the columns span three orders of magnitude
 * (ext2fs at tens of MiB/s, the copy limit at ~10 GiB/s). Each bar is labelled with its
 * value; targets that were skipped are absent and named in the panel's footnote.
 *
 * Panel geometry (px): width 960; plot area from x=72 to x=940, 260 high; a legend row
 * above it and two label rows below. Cost: a few KiB of text.
 */
import type { BenchDocument, SuiteSummary, TargetSummary } from './report.js';

const WIDTH = 960;
const PLOT_LEFT = 72;
const PLOT_RIGHT = 940;
const PLOT_HEIGHT = 260;
const LEGEND_HEIGHT = 44;
const TITLE_HEIGHT = 26;
const LABEL_HEIGHT = 50;
const PANEL_GAP = 24;
const PANEL_HEIGHT = TITLE_HEIGHT + LEGEND_HEIGHT + PLOT_HEIGHT + LABEL_HEIGHT;

/** Colours by target id (stable across runs); others get the fallback palette. */
const COLOURS: Record<string, string> = {
  'ext4ts:buffer_head': '#9aa5b1',
  'ext4ts:iomap': '#5b8def',
  'ext4ts:iomap+lf': '#1f4fbf',
  kernel: '#e07b39',
  ext2fs: '#c94f7c',
  'node-fs': '#3aa37a',
  copy: '#555555',
};
const FALLBACK_COLOURS = ['#7b61c9', '#b8a02a', '#2aa8b8'];

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function colourOf(target: TargetSummary, index: number): string {
  return COLOURS[target.id] ?? FALLBACK_COLOURS[index % FALLBACK_COLOURS.length];
}

/** Log-scale bounds: whole decades around the data. */
export function logBounds(values: readonly number[]): { low: number; high: number } {
  const positive = values.filter((v) => v > 0 && Number.isFinite(v));
  if (positive.length === 0) return { low: 1, high: 10 };
  const low = 10 ** Math.floor(Math.log10(Math.min(...positive)));
  const high = 10 ** Math.ceil(Math.log10(Math.max(...positive)));
  return { low, high: high > low ? high : low * 10 };
}

/** Axis ticks in MiB/s: 200, 2k, 20k, 1M. */
function tickText(value: number): string {
  if (value >= 1e6) return `${value / 1e6}M`;
  return value >= 2000 ? `${value / 1000}k` : String(value);
}

/** Bar labels: MiB/s below 10,000; GiB/s above, marked G. */
function shortRate(value: number): string {
  if (value >= 10_000) return `${(value / 1024).toFixed(1)}G`;
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function panel(suite: SuiteSummary, top: number): string {
  const targets = suite.targets.filter((t) => t.cells.length > 0);
  const jobs = suite.jobs;
  const parts: string[] = [];
  parts.push(`<text x="${PLOT_LEFT}" y="${top + 18}" class="title">${escapeXml(suite.title)} — MiB/s (G = GiB/s), log scale</text>`);
  targets.forEach((target, index) => {
    const x = PLOT_LEFT + (index % 4) * 215;
    const y = top + TITLE_HEIGHT + 12 + Math.floor(index / 4) * 18;
    parts.push(`<rect x="${x}" y="${y - 9}" width="12" height="12" fill="${colourOf(target, index)}"/>`);
    parts.push(`<text x="${x + 17}" y="${y + 1}" class="legend">${escapeXml(target.label)}</text>`);
  });
  const plotTop = top + TITLE_HEIGHT + LEGEND_HEIGHT;
  const plotBottom = plotTop + PLOT_HEIGHT;
  const values = targets.flatMap((t) => t.cells.flatMap((c) => [c.mibPerSecond.min, c.mibPerSecond.max]));
  const { low, high } = logBounds(values);
  const yOf = (value: number) => plotBottom - (Math.log10(Math.max(value, low)) - Math.log10(low)) / (Math.log10(high) - Math.log10(low)) * PLOT_HEIGHT;
  for (let decade = low; decade <= high * 1.0001; decade *= 10) {
    for (const step of [1, 2, 5]) {
      const value = decade * step;
      if (value > high * 1.0001) break;
      const y = yOf(value).toFixed(1);
      parts.push(`<line x1="${PLOT_LEFT}" x2="${PLOT_RIGHT}" y1="${y}" y2="${y}" class="${step === 1 ? 'grid major' : 'grid'}"/>`);
      parts.push(`<text x="${PLOT_LEFT - 6}" y="${Number(y) + 4}" class="tick">${tickText(value)}</text>`);
    }
  }
  const groupWidth = (PLOT_RIGHT - PLOT_LEFT) / Math.max(1, jobs.length);
  const barWidth = Math.min(34, (groupWidth - 16) / Math.max(1, targets.length));
  jobs.forEach((job, jobIndex) => {
    const groupLeft = PLOT_LEFT + jobIndex * groupWidth + (groupWidth - barWidth * targets.length) / 2;
    targets.forEach((target, targetIndex) => {
      const cell = target.cells.find((c) => c.job === job.name);
      if (cell === undefined || !(cell.mibPerSecond.median > 0)) return;
      const x = groupLeft + targetIndex * barWidth;
      const y = yOf(cell.mibPerSecond.median);
      const middle = x + barWidth / 2;
      parts.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(plotBottom - y).toFixed(1)}" fill="${colourOf(target, targetIndex)}"><title>${escapeXml(`${target.label} · ${job.description}: ${cell.mibPerSecond.median.toFixed(0)} MiB/s, ${cell.iops.median.toFixed(0)} IOPS`)}</title></rect>`);
      parts.push(`<line x1="${(middle - 1).toFixed(1)}" x2="${(middle - 1).toFixed(1)}" y1="${yOf(cell.mibPerSecond.max).toFixed(1)}" y2="${yOf(cell.mibPerSecond.min).toFixed(1)}" class="whisker"/>`);
      parts.push(`<text x="${(middle - 1).toFixed(1)}" y="${(y - 4).toFixed(1)}" class="value">${shortRate(cell.mibPerSecond.median)}</text>`);
    });
    const labelX = PLOT_LEFT + (jobIndex + 0.5) * groupWidth;
    parts.push(`<text x="${labelX.toFixed(1)}" y="${plotBottom + 18}" class="job">${escapeXml(job.description)}</text>`);
    parts.push(`<text x="${labelX.toFixed(1)}" y="${plotBottom + 33}" class="jobsub">${escapeXml(`${job.bs}${job.numjobs > 1 ? `, numjobs=${job.numjobs}` : ''}`)}</text>`);
  });
  parts.push(`<line x1="${PLOT_LEFT}" x2="${PLOT_RIGHT}" y1="${plotBottom}" y2="${plotBottom}" class="axis"/>`);
  const skipped = suite.targets.filter((t) => t.cells.length === 0).map((t) => `${t.label}: ${(t.skipped ?? t.failed ?? 'no result').split('\n')[0]}`);
  if (skipped.length > 0) parts.push(`<text x="${PLOT_LEFT}" y="${plotBottom + 47}" class="foot">${escapeXml(`not shown — ${skipped.join('; ')}`)}</text>`);
  return parts.join('\n');
}

export function renderSvg(document: BenchDocument): string {
  const height = document.suites.length * (PANEL_HEIGHT + PANEL_GAP) + 30;
  const panels = document.suites.map((suite, index) => panel(suite, 10 + index * (PANEL_HEIGHT + PANEL_GAP)));
  const caption = `ext4ts bench · ${document.settings.device} · ${document.machine.cpus} CPUs · Linux ${document.machine.kernel} · Node ${document.machine.node} · ${document.startedAt}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, sans-serif">
<style>
.title { font-size: 15px; font-weight: 600; fill: #222; }
.legend { font-size: 12px; fill: #333; }
.tick { font-size: 10px; fill: #666; text-anchor: end; }
.grid { stroke: #eee; stroke-width: 1; }
.grid.major { stroke: #d6d6d6; }
.axis { stroke: #888; stroke-width: 1; }
.whisker { stroke: #000; stroke-opacity: 0.45; stroke-width: 1; }
.value { font-size: 9px; fill: #333; text-anchor: middle; }
.job { font-size: 12px; fill: #222; text-anchor: middle; }
.jobsub { font-size: 10px; fill: #777; text-anchor: middle; }
.foot { font-size: 10px; fill: #a33; }
.caption { font-size: 10px; fill: #888; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
${panels.join('\n')}
<text x="${PLOT_LEFT}" y="${height - 10}" class="caption">${escapeXml(caption)}</text>
</svg>
`;
}
