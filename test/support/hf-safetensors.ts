/**
 * safetensors as Hugging Face writes it, for tests: the reduced-precision encodings (BF16, F16 with
 * round-to-nearest-even, as torch's `.to(dtype)` does from float32), a writer and a plain reader.
 * Deliberately independent of the importer's own reader, so a test compares two implementations.
 *
 * Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, then N
 * bytes of JSON `{"__metadata__": {..strings..}, name: {dtype, shape, data_offsets: [begin, end]}}`
 * padded with spaces, then the data buffer; offsets are relative to the buffer, which they must cover
 * completely, without holes or overlaps.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export type HfFloatDtype = 'F32' | 'F16' | 'BF16';
export type SafetensorsDtype = HfFloatDtype | 'I64';

/** Bytes per element of each dtype this helper writes. */
export const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I64: 8 };

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/** float32 bit pattern of `x` after rounding it to float32 (as torch's float32 weights hold it). */
function float32Bits(x: number): number {
  f32[0] = x;
  return f32Bits[0]!;
}

function fromFloat32Bits(bits: number): number {
  f32Bits[0] = bits >>> 0;
  return f32[0]!;
}

/**
 * BF16 bits of `x`: rounded to float32 first, then to the upper 16 bits with round-to-nearest-even;
 * NaN becomes the quiet NaN 0x7fc0 (torch's choice), overflow rounds to infinity.
 * @example toBf16Bits(1.00390625) // 0x3f80: halfway between 1 and 1+2^-7, the even one wins
 */
export function toBf16Bits(x: number): number {
  const bits = float32Bits(x);
  if (Number.isNaN(x)) return ((bits >>> 16) & 0x8000) | 0x7fc0;
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** @example fromBf16Bits(0x3f80) // 1 */
export function fromBf16Bits(h: number): number {
  return fromFloat32Bits((h & 0xffff) << 16);
}

/**
 * IEEE half bits of `x` (via float32, like torch), round-to-nearest-even, subnormals kept,
 * overflow to infinity, NaN stays NaN.
 * @example toF16Bits(65520) // 0x7c00: halfway to the next binade rounds up to infinity
 */
export function toF16Bits(x: number): number {
  const bits = float32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Below 2^-25 everything rounds to zero (exactly 2^-25 ties to the even zero as well).
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h; // a carry into 0x400 is the smallest normal, which is the right encoding
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry may reach 0x7c00 = infinity: correct
  return sign | h;
}

/** @example fromF16Bits(0x3c00) // 1 */
export function fromF16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** The value `x` becomes once stored as `dtype`. @example roundToDtype(1.01171875, 'BF16') // 1.015625 */
export function roundToDtype(x: number, dtype: HfFloatDtype): number {
  if (dtype === 'F32') return Math.fround(x);
  return dtype === 'BF16' ? fromBf16Bits(toBf16Bits(x)) : fromF16Bits(toF16Bits(x));
}

/**
 * Little-endian bytes of `values` in `dtype`, plus the values as stored (float64 of the rounded ones).
 * @example const { data, stored } = encodeTensor(new Float64Array([0.1]), 'BF16') // data.length 2
 */
export function encodeTensor(values: ArrayLike<number>, dtype: HfFloatDtype): { data: Uint8Array; stored: Float64Array } {
  const width = DTYPE_BYTES[dtype];
  const data = new Uint8Array(values.length * width);
  const view = new DataView(data.buffer);
  const stored = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (dtype === 'F32') {
      view.setFloat32(i * 4, x, true);
      stored[i] = Math.fround(x);
    } else {
      const h = dtype === 'BF16' ? toBf16Bits(x) : toF16Bits(x);
      view.setUint16(i * 2, h, true);
      stored[i] = dtype === 'BF16' ? fromBf16Bits(h) : fromF16Bits(h);
    }
  }
  return { data, stored };
}

/** Float64 values of a stored tensor's bytes. @example decodeTensor(bytes, 'F16') */
export function decodeTensor(data: Uint8Array, dtype: SafetensorsDtype): Float64Array {
  const width = DTYPE_BYTES[dtype];
  if (data.length % width !== 0) throw new Error(`${data.length} bytes is not a whole number of ${dtype}`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float64Array(data.length / width);
  for (let i = 0; i < out.length; i++) {
    if (dtype === 'F32') out[i] = view.getFloat32(i * 4, true);
    else if (dtype === 'BF16') out[i] = fromBf16Bits(view.getUint16(i * 2, true));
    else if (dtype === 'F16') out[i] = fromF16Bits(view.getUint16(i * 2, true));
    else out[i] = Number(view.getBigInt64(i * 8, true));
  }
  return out;
}

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: Uint8Array;
}

/** The bytes of one safetensors file (see {@link writeSafetensors}). */
export function safetensorsBytes(tensors: SafetensorsEntry[], metadata?: Record<string, string>): Uint8Array {
  // Sorted by name so the file is a pure function of its tensors; offsets are then contiguous.
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of sorted) {
    if (t.name === '__metadata__' || t.name in header) throw new Error(`tensor name ${t.name} given twice or reserved`);
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (t.data.length !== expected) throw new Error(`${t.name}: ${t.data.length} bytes for ${t.dtype}[${t.shape}] (want ${expected})`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let json = JSON.stringify(header);
  // Space padding to a multiple of 8 keeps the data buffer 8-byte aligned (the Rust writer does the same).
  const jsonBytes = Buffer.byteLength(json);
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of sorted) {
    out.set(t.data, at);
    at += t.data.length;
  }
  return out;
}

/**
 * Writes a safetensors file exactly as the format specifies.
 * @example await writeSafetensors('/tmp/a.safetensors', [{ name: 'w', dtype: 'F32', shape: [2], data }], { format: 'pt' })
 */
export async function writeSafetensors(path: string, tensors: SafetensorsEntry[], metadata?: Record<string, string>): Promise<void> {
  await writeFile(path, safetensorsBytes(tensors, metadata));
}

export interface SafetensorsFile {
  /** N, the JSON header's byte length as the first 8 bytes say. */
  headerLength: number;
  /** The header JSON as parsed, `__metadata__` included: for format checks. */
  header: Record<string, unknown>;
  metadata: Record<string, string> | undefined;
  /** In header order. `data` is a view of the file bytes. */
  tensors: Map<string, { dtype: SafetensorsDtype; shape: number[]; dataOffsets: [number, number]; data: Uint8Array }>;
}

/**
 * Reads and checks one safetensors file; throws naming the file on any malformation.
 * @example const f = await readSafetensorsForTests('model.safetensors'); f.tensors.get('model.norm.weight')
 */
export async function readSafetensorsForTests(path: string): Promise<SafetensorsFile> {
  const bytes = new Uint8Array(await readFile(path));
  const fail = (why: string): never => {
    throw new Error(`${path}: ${why}`);
  };
  if (bytes.length < 8) fail('shorter than the 8-byte header length');
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  if (8 + headerLength > bytes.length) fail(`header length ${headerLength} runs past the end of the ${bytes.length}-byte file`);
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + headerLength)).toString('utf8')) as Record<string, unknown>;
  const buffer = bytes.subarray(8 + headerLength);
  const tensors: SafetensorsFile['tensors'] = new Map();
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: offsets } = raw as { dtype: SafetensorsDtype; shape: number[]; data_offsets: [number, number] };
    if (!(dtype in DTYPE_BYTES)) fail(`${name}: dtype ${dtype} not handled`);
    const [begin, end] = offsets;
    if (end - begin !== shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype]) fail(`${name}: offsets disagree with ${dtype}[${shape}]`);
    if (end > buffer.length) fail(`${name}: data ends at ${end}, past the ${buffer.length}-byte buffer`);
    spans.push([begin, end, name]);
    tensors.set(name, { dtype, shape, dataOffsets: [begin, end], data: buffer.subarray(begin, end) });
  }
  spans.sort((a, b) => a[0] - b[0]);
  let expected = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== expected) fail(`${name}: begins at ${begin}, expected ${expected} (hole or overlap)`);
    expected = end;
  }
  if (expected !== buffer.length) fail(`data buffer holds ${buffer.length} bytes, tensors cover ${expected}`);
  return { headerLength, header, metadata: header.__metadata__ as Record<string, string> | undefined, tensors };
}

/** A tensor as the reference uses it: float64 values in row-major order. */
export interface CheckpointTensor {
  shape: number[];
  values: Float64Array;
}

/**
 * Reads a Hugging Face checkpoint folder: config.json and either model.safetensors or the shards
 * model.safetensors.index.json names.
 * @example const { config, tensors } = await readCheckpointForTests(dir)
 */
export async function readCheckpointForTests(dir: string): Promise<{ config: Record<string, unknown>; tensors: Map<string, CheckpointTensor> }> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  let files = ['model.safetensors'];
  const index = await readFile(join(dir, 'model.safetensors.index.json'), 'utf8').catch(() => null);
  let weightMap: Record<string, string> | null = null;
  if (index !== null) {
    weightMap = (JSON.parse(index) as { weight_map: Record<string, string> }).weight_map;
    files = [...new Set(Object.values(weightMap))].sort();
  }
  const tensors = new Map<string, CheckpointTensor>();
  for (const file of files) {
    const st = await readSafetensorsForTests(join(dir, file));
    for (const [name, t] of st.tensors) {
      if (weightMap && weightMap[name] !== file) throw new Error(`${file}: holds ${name}, which the index places in ${weightMap[name]}`);
      if (tensors.has(name)) throw new Error(`${file}: ${name} appears in two files`);
      tensors.set(name, { shape: t.shape, values: decodeTensor(t.data, t.dtype) });
    }
  }
  for (const name of Object.keys(weightMap ?? {})) if (!tensors.has(name)) throw new Error(`index names ${name}, absent from ${weightMap![name]}`);
  return { config, tensors };
}
