/**
 * Reads safetensors files (https://huggingface.co/docs/safetensors) tensor by tensor: the header
 * is parsed and checked once, each tensor's bytes are read from its own offsets on demand, so a
 * checkpoint never has to fit in memory. Every field is hostile until checked: the header's size,
 * every tensor's dtype, shape and offsets against each other and against the file's length.
 *
 * @example
 * const file = await openSafetensors('/models/llama/model.safetensors');
 * const t = file.tensors.get('model.norm.weight')!;
 * const values = await file.readFloat32(t); // Float32Array
 * await file.close();
 */
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import { fromFloat16Bits } from '../weights.js';

/** Largest header we read: real checkpoints have headers of a few hundred KiB. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export type WeightDtype = 'F32' | 'F16' | 'BF16';
const BYTES_PER_ELEMENT: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** A checkpoint file that cannot be read as it claims to be; names the file and the tensor. */
export class CheckpointError extends Error {
  constructor(
    message: string,
    /** The file (base name) and, when one is to blame, the tensor. */
    readonly where: { file?: string; tensor?: string } = {},
  ) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte offsets in the file, [begin, end). */
  begin: number;
  end: number;
  file: string;
}

const entrySchema = z.object({
  dtype: z.string().max(16),
  shape: z.array(z.number().int().nonnegative()).max(8),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

export interface SafetensorsFile {
  path: string;
  tensors: ReadonlyMap<string, TensorInfo>;
  metadata: Record<string, string>;
  /** The tensor's raw bytes. */
  readBytes(t: TensorInfo): Promise<Uint8Array>;
  /** The tensor as float32 values (F32, F16 and BF16 tensors; BF16 and F16 widen exactly). */
  readFloat32(t: TensorInfo): Promise<Float32Array>;
  close(): Promise<void>;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Opens a safetensors file and validates its header against the file's size. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  const file = basename(path);
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new CheckpointError(`cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file });
  }
  try {
    const size = (await fh.stat()).size;
    if (size < 8) throw new CheckpointError(`${file} is ${size} bytes: too short for a safetensors header (truncated?)`, { file });
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
      throw new CheckpointError(`${file}: header length ${headerLen} does not fit the file's ${size} bytes (truncated or not a safetensors file)`, { file });
    }
    const headerBuf = Buffer.alloc(headerLen);
    await fh.read(headerBuf, 0, headerLen, 8);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch {
      throw new CheckpointError(`${file}: the header is not JSON (not a safetensors file?)`, { file });
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new CheckpointError(`${file}: the header is not a JSON object`, { file });
    const dataStart = 8 + headerLen;
    const dataLen = size - dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        const m = z.record(z.string(), z.string()).safeParse(raw);
        if (!m.success) throw new CheckpointError(`${file}: __metadata__ must map strings to strings`, { file });
        metadata = m.data;
        continue;
      }
      const e = entrySchema.safeParse(raw);
      if (!e.success) throw new CheckpointError(`${file}: tensor ${name} has a malformed header entry`, { file, tensor: name });
      const { dtype, shape, data_offsets: [b, en] } = e.data;
      const width = BYTES_PER_ELEMENT[dtype];
      if (width === undefined) throw new CheckpointError(`${file}: tensor ${name} has unknown dtype ${dtype}`, { file, tensor: name });
      if (en < b || en > dataLen) {
        throw new CheckpointError(`${file}: tensor ${name} lies at bytes ${b}..${en} of a data section of ${dataLen} bytes (truncated file?)`, { file, tensor: name });
      }
      if (en - b !== elementCount(shape) * width) {
        throw new CheckpointError(`${file}: tensor ${name} has ${en - b} bytes for shape [${shape.join(', ')}] of ${dtype}`, { file, tensor: name });
      }
      tensors.set(name, { name, dtype, shape, begin: dataStart + b, end: dataStart + en, file });
    }
    // Tensors must not overlap (the format requires them back to back).
    const sorted = [...tensors.values()].sort((x, y) => x.begin - y.begin);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.begin < sorted[i - 1]!.end) throw new CheckpointError(`${file}: tensors ${sorted[i - 1]!.name} and ${sorted[i]!.name} overlap`, { file, tensor: sorted[i]!.name });
    }
    const readBytes = async (t: TensorInfo): Promise<Uint8Array> => {
      const n = t.end - t.begin;
      const buf = new Uint8Array(n);
      let done = 0;
      while (done < n) {
        const { bytesRead } = await fh.read(buf, done, n - done, t.begin + done);
        if (bytesRead === 0) throw new CheckpointError(`${file}: tensor ${t.name} ends early (the file changed or is truncated)`, { file, tensor: t.name });
        done += bytesRead;
      }
      return buf;
    };
    return {
      path,
      tensors,
      metadata,
      readBytes,
      readFloat32: async (t) => toFloat32(t, await readBytes(t)),
      close: () => fh.close(),
    };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * A [rows, cols] tensor's bytes widened to float32 and transposed to [cols, rows] in one pass
 * (nn.Linear's [out, in] to MatMul's [in, out]), so no untransposed copy is held beside it.
 */
export function toFloat32Transposed(t: Pick<TensorInfo, 'name' | 'dtype' | 'file'>, bytes: Uint8Array, rows: number, cols: number): Float32Array {
  const width = t.dtype === 'F32' ? 4 : 2;
  if (bytes.byteLength !== rows * cols * width) throw new RangeError(`${t.name}: ${bytes.byteLength} bytes for [${rows}, ${cols}] of ${t.dtype}`);
  if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') toFloat32(t, bytes); // throws the dtype error
  const out = new Float32Array(rows * cols);
  const bits = new Uint32Array(out.buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Blocked, so reads and writes both stay in cache on large matrices.
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          const i = r * cols + c;
          const o = c * rows + r;
          if (t.dtype === 'BF16') bits[o] = view.getUint16(i * 2, true) << 16;
          else if (t.dtype === 'F32') bits[o] = view.getUint32(i * 4, true);
          else out[o] = fromFloat16Bits(view.getUint16(i * 2, true));
        }
      }
    }
  }
  return out;
}

/** Widens F32 / F16 / BF16 little-endian bytes to float32 (exact for all three). */
export function toFloat32(t: Pick<TensorInfo, 'name' | 'dtype' | 'file'>, bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength;
  if (t.dtype === 'F32') {
    // Copy into an aligned buffer: the bytes may sit at any offset.
    const out = new Float32Array(n / 4);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  if (t.dtype === 'BF16') {
    const out = new Uint32Array(n / 2);
    for (let i = 0, j = 0; i < n; i += 2, j++) out[j] = (bytes[i]! | (bytes[i + 1]! << 8)) << 16;
    return new Float32Array(out.buffer);
  }
  if (t.dtype === 'F16') {
    const out = new Float32Array(n / 2);
    for (let i = 0, j = 0; i < n; i += 2, j++) out[j] = fromFloat16Bits(bytes[i]! | (bytes[i + 1]! << 8));
    return out;
  }
  throw new CheckpointError(`${t.file}: tensor ${t.name} is ${t.dtype}; weights must be F32, F16 or BF16`, { file: t.file, tensor: t.name });
}

