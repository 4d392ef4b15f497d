/**
 * A small declarative codec for fixed-layout little-endian on-disk structures.
 *
 * A struct is a list of fields `{ name, offset, kind }`; a *split* field stores one value
 * in a low part and a high part at two offsets (ext4's `_lo`/`_hi` pairs), combined as
 * `lo + hi * 2^(8·loSize)`. Decoding keeps a copy of the raw bytes so that encoding
 * preserves every byte ext4ts does not model (reserved fields, future features): encode =
 * raw bytes with the known fields written over them.
 *
 * Numbers are JS numbers: u64 values above 2^53 are rejected as corrupt (no real ext4
 * field needs them: 2^53 bytes is 8 PiB).
 */
import { assert } from '../assert.js';
import { corrupted } from '../vfs/errors.js';

export type Kind = 'u8' | 'u16' | 'u32' | 'u64';
export interface PlainField { name: string; offset: number; kind: Kind }
export interface SplitField { name: string; lo: readonly [number, Kind]; hi: readonly [number, Kind] }
export interface BytesField { name: string; offset: number; bytes: number }
export type Field = PlainField | SplitField | BytesField;

const sizeOf: Record<Kind, number> = { u8: 1, u16: 2, u32: 4, u64: 8 };

export function readKind(view: DataView, offset: number, kind: Kind): number {
  switch (kind) {
    case 'u8': return view.getUint8(offset);
    case 'u16': return view.getUint16(offset, true);
    case 'u32': return view.getUint32(offset, true);
    case 'u64': {
      const lo = view.getUint32(offset, true);
      const hi = view.getUint32(offset + 4, true);
      if (hi > 0x1fffff) throw corrupted(`64-bit field at offset ${offset} exceeds 2^53`);
      return hi * 0x1_0000_0000 + lo;
    }
  }
}

export function writeKind(view: DataView, offset: number, kind: Kind, value: number): void {
  assert(Number.isInteger(value) && value >= 0, `field value ${value} must be a non-negative integer`);
  switch (kind) {
    case 'u8': assert(value <= 0xff, `u8 overflow ${value}`); view.setUint8(offset, value); return;
    case 'u16': assert(value <= 0xffff, `u16 overflow ${value}`); view.setUint16(offset, value, true); return;
    case 'u32': assert(value <= 0xffffffff, `u32 overflow ${value}`); view.setUint32(offset, value, true); return;
    case 'u64':
      assert(value <= Number.MAX_SAFE_INTEGER, `u64 overflow ${value}`);
      view.setUint32(offset, value % 0x1_0000_0000, true);
      view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
      return;
  }
}

type ValueOf<F> = F extends BytesField ? Uint8Array : number;
export type StructValue<Fs extends readonly Field[]> = { -readonly [F in Fs[number] as F['name']]: ValueOf<F> };

export interface StructCodec<Fs extends readonly Field[]> {
  readonly name: string;
  readonly sizeBytes: number;
  readonly fields: Fs;
  /**
   * Decode from bytes[offset, offset+sizeBytes). `limitBytes` (≤ sizeBytes) marks the
   * part that exists on disk (32-byte group descriptors, small inodes): fields at or past
   * it decode as 0 and are not written back.
   */
  decode(bytes: Uint8Array, offset?: number, limitBytes?: number): StructValue<Fs>;
  /** Encode into target[offset, ...), over whatever bytes are already there. */
  encodeInto(value: StructValue<Fs>, target: Uint8Array, offset?: number, limitBytes?: number): void;
}

function viewOf(bytes: Uint8Array, offset: number, length: number): DataView {
  if (offset < 0 || offset + length > bytes.length) {
    throw corrupted(`structure at ${offset}+${length} runs past its ${bytes.length}-byte buffer`);
  }
  return new DataView(bytes.buffer, bytes.byteOffset + offset, length);
}

export function defineStruct<const Fs extends readonly Field[]>(name: string, sizeBytes: number, fields: Fs): StructCodec<Fs> {
  for (const f of fields) {
    const end = 'bytes' in f ? f.offset + f.bytes : 'kind' in f ? f.offset + sizeOf[f.kind] : Math.max(f.lo[0] + sizeOf[f.lo[1]], f.hi[0] + sizeOf[f.hi[1]]);
    assert(end <= sizeBytes, `${name}.${f.name} ends at ${end} past ${sizeBytes}`);
  }
  return {
    name,
    sizeBytes,
    fields,
    decode(bytes, offset = 0, limitBytes = sizeBytes) {
      const view = viewOf(bytes, offset, limitBytes);
      const out: Record<string, number | Uint8Array> = {};
      for (const f of fields) {
        if ('bytes' in f) {
          out[f.name] = f.offset + f.bytes <= limitBytes ? bytes.slice(offset + f.offset, offset + f.offset + f.bytes) : new Uint8Array(f.bytes);
        } else if ('kind' in f) {
          out[f.name] = f.offset + sizeOf[f.kind] <= limitBytes ? readKind(view, f.offset, f.kind) : 0;
        } else {
          const lo = readKind(view, f.lo[0], f.lo[1]);
          const hi = f.hi[0] + sizeOf[f.hi[1]] <= limitBytes ? readKind(view, f.hi[0], f.hi[1]) : 0;
          out[f.name] = hi * 2 ** (8 * sizeOf[f.lo[1]]) + lo;
        }
      }
      return out as StructValue<Fs>;
    },
    encodeInto(value, target, offset = 0, limitBytes = sizeBytes) {
      const view = viewOf(target, offset, limitBytes);
      const v = value as Record<string, number | Uint8Array>;
      for (const f of fields) {
        const x = v[f.name];
        if ('bytes' in f) {
          if (f.offset + f.bytes > limitBytes) continue;
          const b = x as Uint8Array;
          assert(b.length === f.bytes, `${name}.${f.name} needs ${f.bytes} bytes, got ${b.length}`);
          target.set(b, offset + f.offset);
        } else if ('kind' in f) {
          if (f.offset + sizeOf[f.kind] <= limitBytes) writeKind(view, f.offset, f.kind, x as number);
          else assert(x === 0, `${name}.${f.name} = ${String(x)} does not fit a ${limitBytes}-byte record`);
        } else {
          const loBits = 8 * sizeOf[f.lo[1]];
          const n = x as number;
          const lo = n % 2 ** loBits;
          const hi = Math.floor(n / 2 ** loBits);
          writeKind(view, f.lo[0], f.lo[1], lo);
          if (f.hi[0] + sizeOf[f.hi[1]] <= limitBytes) writeKind(view, f.hi[0], f.hi[1], hi);
          else assert(hi === 0, `${name}.${f.name} = ${n} needs a high part this ${limitBytes}-byte record lacks`);
        }
      }
    },
  };
}
