/**
 * fio's number syntax, and the few formatters the reports share.
 *
 * Sizes follow fio's default `kb_base=1024` ("compatibility mode"), which reads unit
 * prefixes backwards from the SI/IEC standards, so that old job files keep working:
 *
 *   "4k" = "4kb" = 4096      "1m" = "1M" = 1048576      "1g" = 2^30
 *   "4KiB" = 4000            "1MiB" = 1000000           (IEC-looking = powers of 10!)
 *
 * With `kb_base=1000` it is the other way round (k/kb = 1000, KiB = 1024). A bare number
 * is bytes; a "0x" prefix is hex. Checked against fio 3.33 (`--size=1MiB --bs=1000`
 * moves 1,000,000 bytes; `--size=1M` moves 1,048,000).
 *
 * Times (runtime=) are seconds unless suffixed: us, ms, s, m (minutes), h, d.
 * Cost: nothing measurable; this runs once per option.
 */

export const KIB = 1024;
export const MIB = 1024 * KIB;
export const GIB = 1024 * MIB;

export class JobError extends Error {
  override name = 'JobError';
}

export type KbBase = 1000 | 1024;

const PREFIX_POWER: Record<string, number> = { '': 0, k: 1, m: 2, g: 3, t: 4, p: 5 };

/** fio size text → bytes (an integer); throws JobError naming the option. */
export function parseFioSize(text: string, option: string, kbBase: KbBase = 1024): number {
  const trimmed = text.trim();
  if (/^0x[0-9a-f]+$/i.test(trimmed)) return checkedInteger(Number.parseInt(trimmed.slice(2), 16), text, option);
  const match = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)$/i.exec(trimmed);
  if (match === null) throw new JobError(`${option}: '${text}' is not a size (fio syntax: 4k, 1m, 40g, 1MiB)`);
  const [, digits, prefixText, iec] = match;
  const power = PREFIX_POWER[prefixText.toLowerCase()];
  // kb_base=1024: plain prefixes are powers of 2, "i" prefixes powers of 10; kb_base=1000 flips it.
  const binary = (iec === '') === (kbBase === 1024);
  const unit = (binary ? 1024 : 1000) ** power;
  return checkedInteger(Math.floor(Number(digits) * unit), text, option);
}

function checkedInteger(value: number, text: string, option: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new JobError(`${option}: '${text}' is out of range`);
  return value;
}

const TIME_UNIT_MS: Record<string, number> = {
  us: 0.001, usec: 0.001, ms: 1, msec: 1, '': 1000, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000,
};

/** fio time text → milliseconds. */
export function parseFioTimeMs(text: string, option: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unitMs = match === null ? undefined : TIME_UNIT_MS[match[2].toLowerCase()];
  if (match === null || unitMs === undefined) throw new JobError(`${option}: '${text}' is not a time (e.g. 30, 30s, 500ms, 2m)`);
  return Number(match[1]) * unitMs;
}

/** fio bool: 1/0 (also true/false, yes/no, on/off); a bare option means 1. */
export function parseFioBool(text: string, option: string): boolean {
  const lowered = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on', ''].includes(lowered)) return true;
  if (['0', 'false', 'no', 'off'].includes(lowered)) return false;
  throw new JobError(`${option}: '${text}' is not a bool (0 or 1)`);
}

/** A non-negative integer option (fsync=N, numjobs=N, rwmixread=P, …). */
export function parseFioInt(text: string, option: string, minimum: number, maximum: number): number {
  const trimmed = text.trim();
  const value = /^\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < minimum || value > maximum) {
    throw new JobError(`${option}: '${text}' must be an integer in [${minimum}, ${maximum}]`);
  }
  return value;
}

/** Bytes as fio prints a block size: 1M, 4k, 512 (power-of-2 units). */
export function formatFioSize(bytes: number): string {
  for (const [unit, scale] of [['G', GIB], ['M', MIB], ['k', KIB]] as const) {
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return String(bytes);
}

/** Bytes for people: 256 MiB, 1.5 GiB. */
export function formatBytes(bytes: number): string {
  for (const [unit, scale] of [['GiB', GIB], ['MiB', MIB], ['KiB', KIB]] as const) {
    if (bytes >= scale) return `${Number((bytes / scale).toFixed(bytes % scale === 0 ? 0 : 1))} ${unit}`;
  }
  return `${bytes} B`;
}

/** A rate with three significant figures at most, as fio prints them (652, 1442, 12.5k). */
export function formatRate(value: number): string {
  if (!Number.isFinite(value)) return '-';
  if (value >= 100_000) return `${(value / 1000).toFixed(0)}k`;
  if (value >= 10_000) return `${(value / 1000).toFixed(1)}k`;
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** A ratio as the seed prints it: 2.2x. */
export function formatRatio(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '-';
  return value >= 10 ? `${value.toFixed(0)}x` : `${value.toFixed(value >= 0.995 ? 1 : 2)}x`;
}
