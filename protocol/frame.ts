/**
 * Binary frames between agents: a fixed header, a small JSON metadata block (validated by the
 * receiver with zod), then raw little-endian tensor bytes. Never JSON for tensors.
 *
 * Layout (little-endian):
 *   0  magic   'LNF1' (4 bytes)
 *   4  kind    u8   (1 forward, 2 hidden, 3 tokens, 4 error, 5 close, 6 seal)
 *   5  dtype   u8   (0 none, 1 float32, 2 float16, 3 int32)
 *   6  ndim    u16  (<= 4)
 *   8  metaLen u32  (<= MAX_META_BYTES)
 *   12 dims    ndim x u32
 *   .. meta    metaLen bytes of UTF-8 JSON
 *   .. payload product(dims) x sizeof(dtype) bytes, exactly
 *
 * @example
 * const bytes = encodeFrame({ kind: 'forward', dtype: 'float32', dims: [1, 3, 64], meta: { sessionId }, payload });
 * const frame = decodeFrame(bytes, { maxPayloadBytes: 64 << 20 });
 */
import { bytesOf, concatByteList, fromUtf8, utf8 } from './bytes.js';

export const FRAME_MAGIC = 0x3146_4e4c; // 'LNF1' read as little-endian u32
export const FRAME_HEADER_BYTES = 12;
export const MAX_META_BYTES = 256 * 1024;
export const MAX_DIMS = 4;

export type FrameKind = 'forward' | 'hidden' | 'tokens' | 'error' | 'close' | 'seal';
export type FrameDtype = 'none' | 'float32' | 'float16' | 'int32';

const KINDS: readonly FrameKind[] = ['forward', 'forward', 'hidden', 'tokens', 'error', 'close', 'seal'];
const KIND_CODE: Record<FrameKind, number> = { forward: 1, hidden: 2, tokens: 3, error: 4, close: 5, seal: 6 };
const DTYPES: readonly FrameDtype[] = ['none', 'float32', 'float16', 'int32'];
const DTYPE_CODE: Record<FrameDtype, number> = { none: 0, float32: 1, float16: 2, int32: 3 };
export const DTYPE_BYTES: Record<FrameDtype, number> = { none: 0, float32: 4, float16: 2, int32: 4 };

export interface Frame {
  kind: FrameKind;
  dtype: FrameDtype;
  dims: number[];
  /** Untrusted JSON: validate it with the schema of the endpoint that receives it. */
  meta: unknown;
  payload: Uint8Array;
}

export class FrameError extends Error {
  override readonly name = 'FrameError';
  constructor(
    readonly code: 'truncated' | 'bad_magic' | 'bad_kind' | 'bad_dtype' | 'bad_dims' | 'too_large' | 'bad_meta' | 'size_mismatch',
    message: string,
  ) {
    super(message);
  }
}

export interface EncodeFrameInput {
  kind: FrameKind;
  dtype?: FrameDtype;
  dims?: number[];
  meta?: unknown;
  payload?: Uint8Array | Float32Array | Uint16Array | Int32Array;
}

export function encodeFrame(input: EncodeFrameInput): Uint8Array {
  const dtype = input.dtype ?? 'none';
  const dims = input.dims ?? [];
  if (dims.length > MAX_DIMS) throw new FrameError('bad_dims', `at most ${MAX_DIMS} dims`);
  const payload = input.payload ? (input.payload instanceof Uint8Array ? input.payload : bytesOf(input.payload)) : new Uint8Array(0);
  const expected = dims.reduce((a, b) => a * b, dims.length ? 1 : 0) * DTYPE_BYTES[dtype];
  if (payload.byteLength !== expected) {
    throw new FrameError('size_mismatch', `payload is ${payload.byteLength} bytes, dims x dtype say ${expected}`);
  }
  const meta = utf8(JSON.stringify(input.meta ?? null));
  if (meta.byteLength > MAX_META_BYTES) throw new FrameError('too_large', 'frame metadata too large');
  const out = new Uint8Array(FRAME_HEADER_BYTES + dims.length * 4 + meta.byteLength + payload.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, FRAME_MAGIC, true);
  dv.setUint8(4, KIND_CODE[input.kind]);
  dv.setUint8(5, DTYPE_CODE[dtype]);
  dv.setUint16(6, dims.length, true);
  dv.setUint32(8, meta.byteLength, true);
  let offset = FRAME_HEADER_BYTES;
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0 || d > 0xffff_ffff) throw new FrameError('bad_dims', `bad dim ${d}`);
    dv.setUint32(offset, d, true);
    offset += 4;
  }
  out.set(meta, offset);
  out.set(payload, offset + meta.byteLength);
  return out;
}

export interface DecodeFrameLimits {
  /** Largest tensor payload accepted, in bytes. */
  maxPayloadBytes: number;
}

interface FrameHeader {
  kindCode: number;
  dtype: FrameDtype;
  ndim: number;
  metaLen: number;
  /** Where the dims end and the metadata begins. */
  dimsEnd: number;
}

/**
 * Checks the fixed header at the front of `bytes` (at least FRAME_HEADER_BYTES): magic, kind
 * (when `checkKind`), dtype, number of dims, metadata size. Throws FrameError.
 */
function readHeader(bytes: Uint8Array, checkKind: boolean): FrameHeader {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== FRAME_MAGIC) throw new FrameError('bad_magic', 'not a layernet frame');
  const kindCode = dv.getUint8(4);
  if (checkKind && (kindCode < 1 || kindCode > 6)) throw new FrameError('bad_kind', `unknown frame kind ${kindCode}`);
  const dtypeCode = dv.getUint8(5);
  if (dtypeCode > 3) throw new FrameError('bad_dtype', `unknown dtype ${dtypeCode}`);
  const ndim = dv.getUint16(6, true);
  if (ndim > MAX_DIMS) throw new FrameError('bad_dims', `${ndim} dims, at most ${MAX_DIMS}`);
  const metaLen = dv.getUint32(8, true);
  if (metaLen > MAX_META_BYTES) throw new FrameError('too_large', 'frame metadata too large');
  return { kindCode, dtype: DTYPES[dtypeCode]!, ndim, metaLen, dimsEnd: FRAME_HEADER_BYTES + ndim * 4 };
}

/** The dims after the header (`bytes` holds at least header.dimsEnd) and the tensor's size, refused above the limit. */
function readDims(bytes: Uint8Array, header: FrameHeader, limits: DecodeFrameLimits): { dims: number[]; payloadBytes: number } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = header.ndim ? 1 : 0;
  for (let i = 0; i < header.ndim; i++) {
    const d = dv.getUint32(FRAME_HEADER_BYTES + i * 4, true);
    dims.push(d);
    count *= d;
  }
  const payloadBytes = count * DTYPE_BYTES[header.dtype];
  if (payloadBytes > limits.maxPayloadBytes) throw new FrameError('too_large', `tensor of ${payloadBytes} bytes exceeds ${limits.maxPayloadBytes}`);
  return { dims, payloadBytes };
}

/** Decodes and bounds-checks a frame. Throws FrameError; never reads past the buffer. */
export function decodeFrame(bytes: Uint8Array, limits: DecodeFrameLimits): Frame {
  if (bytes.byteLength < FRAME_HEADER_BYTES) throw new FrameError('truncated', 'frame shorter than its header');
  const header = readHeader(bytes, true);
  const { dimsEnd, metaLen, dtype } = header;
  if (bytes.byteLength < dimsEnd + metaLen) throw new FrameError('truncated', 'frame shorter than its metadata');
  const { dims, payloadBytes } = readDims(bytes, header, limits);
  const payloadStart = dimsEnd + metaLen;
  const actual = bytes.byteLength - payloadStart;
  if (actual < payloadBytes) throw new FrameError('truncated', `payload is ${actual} bytes, dims x dtype say ${payloadBytes}`);
  if (actual > payloadBytes) throw new FrameError('size_mismatch', `payload is ${actual} bytes, dims x dtype say ${payloadBytes}`);
  let meta: unknown;
  try {
    meta = JSON.parse(fromUtf8(bytes.subarray(dimsEnd, payloadStart)));
  } catch {
    throw new FrameError('bad_meta', 'frame metadata is not JSON');
  }
  return { kind: KINDS[header.kindCode]!, dtype, dims, meta, payload: bytes.subarray(payloadStart) };
}

/** Copies a payload into an aligned typed array of the frame's dtype. */
export function framePayloadAs(frame: Frame): Float32Array | Uint16Array | Int32Array | null {
  // Uint8Array's slice (a copy) even when the payload is a Buffer, whose slice() is a view.
  const copy = Uint8Array.prototype.slice.call(frame.payload);
  switch (frame.dtype) {
    case 'float32':
      return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
    case 'float16':
      return new Uint16Array(copy.buffer, 0, copy.byteLength / 2);
    case 'int32':
      return new Int32Array(copy.buffer, 0, copy.byteLength / 4);
    default:
      return null;
  }
}

/**
 * Splits a byte stream (a link socket) into whole frames. The header says how long a frame is;
 * a header that is not a frame's, or one announcing more than the limits allow, is a FrameError
 * before any of the body is buffered. Frames come out as they complete, in order.
 *
 * @example
 * const reader = new FrameReader({ maxPayloadBytes: 64 << 20 });
 * socket.on('data', (chunk) => { for (const bytes of reader.push(chunk)) handle(decodeFrame(bytes, limits)); });
 */
export class FrameReader {
  private parts: Uint8Array[] = [];
  private buffered = 0;
  /** Length of the frame being read, once its header and dims are in. */
  private need = 0;

  constructor(private readonly limits: DecodeFrameLimits) {}

  /** Bytes held for a frame that has not completed yet. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    if (chunk.byteLength > 0) {
      this.parts.push(chunk);
      this.buffered += chunk.byteLength;
    }
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.need === 0) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        // The kind is left to decodeFrame: a frame of an unknown kind is answered, not fatal.
        const header = readHeader(this.peek(FRAME_HEADER_BYTES), false);
        if (this.buffered < header.dimsEnd) break;
        const { payloadBytes } = readDims(this.peek(header.dimsEnd), header, this.limits);
        this.need = header.dimsEnd + header.metaLen + payloadBytes;
      }
      if (this.buffered < this.need) break;
      out.push(this.take(this.need));
      this.need = 0;
    }
    return out;
  }

  /** The first `n` buffered bytes (joined when they span several chunks; not consumed). */
  private peek(n: number): Uint8Array {
    const first = this.parts[0]!;
    if (first.byteLength >= n) return first.subarray(0, n);
    const joined = concatByteList(this.parts);
    this.parts = [joined];
    return joined.subarray(0, n);
  }

  private take(n: number): Uint8Array {
    const first = this.parts[0]!;
    let frame: Uint8Array;
    if (first.byteLength >= n) {
      frame = first.subarray(0, n);
      if (first.byteLength === n) this.parts.shift();
      else this.parts[0] = first.subarray(n);
    } else {
      const joined = concatByteList(this.parts);
      frame = joined.subarray(0, n);
      this.parts = joined.byteLength > n ? [joined.subarray(n)] : [];
    }
    this.buffered -= n;
    return frame;
  }
}
