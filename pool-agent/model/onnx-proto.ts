/**
 * Minimal protobuf writer and reader for the parts of ONNX (`onnx.proto`, proto2) the model
 * builder and the span merger need. Writing keeps large tensor payloads as references (no copy)
 * so a file can be streamed out part by part; reading only walks field boundaries, so merging
 * block graphs never decodes tensor data.
 *
 * @example
 * const w = new ProtoWriter();
 * w.string(1, 'name');
 * const bytes = w.finish();
 */
import { concatByteList } from '../../protocol/bytes.js';

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8');

/** Append-only protobuf encoder; large byte fields are kept by reference until `finish()`. */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private scratch = new Uint8Array(256);
  private used = 0;
  private flushedLength = 0;

  get length(): number {
    return this.flushedLength + this.used;
  }

  private ensure(n: number): void {
    if (this.used + n <= this.scratch.length) return;
    this.flushScratch();
    if (n > this.scratch.length) this.scratch = new Uint8Array(Math.max(n, this.scratch.length * 2));
  }

  private flushScratch(): void {
    if (this.used === 0) return;
    this.parts.push(this.scratch.slice(0, this.used));
    this.flushedLength += this.used;
    this.used = 0;
  }

  private rawVarint(value: number | bigint): void {
    this.ensure(10);
    if (typeof value === 'number' && value >= 0 && Number.isSafeInteger(value)) {
      let v = value;
      while (v >= 0x80) {
        this.scratch[this.used++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
      this.scratch[this.used++] = v;
      return;
    }
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.scratch[this.used++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.scratch[this.used++] = Number(v);
  }

  private tag(field: number, wire: number): void {
    this.rawVarint(field * 8 + wire);
  }

  varint(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(value);
    return this;
  }

  float32(field: number, value: number): this {
    this.tag(field, WIRE_I32);
    this.ensure(4);
    new DataView(this.scratch.buffer, this.scratch.byteOffset).setFloat32(this.used, value, true);
    this.used += 4;
    return this;
  }

  /** A length-delimited field; `data` is kept by reference when large. */
  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WIRE_LEN);
    this.rawVarint(data.byteLength);
    this.append(data);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, textEncoder.encode(value));
  }

  message(field: number, inner: ProtoWriter): this {
    this.tag(field, WIRE_LEN);
    this.rawVarint(inner.length);
    inner.flushScratch();
    for (const p of inner.parts) this.append(p);
    return this;
  }

  /** Appends already-encoded bytes (whole fields copied from another message). */
  append(data: Uint8Array): this {
    if (data.byteLength <= 64) {
      this.ensure(data.byteLength);
      this.scratch.set(data, this.used);
      this.used += data.byteLength;
    } else {
      this.flushScratch();
      this.parts.push(data);
      this.flushedLength += data.byteLength;
    }
    return this;
  }

  /** The encoded parts, in order (for streaming to a file or a hash without one big copy). */
  chunks(): Uint8Array[] {
    this.flushScratch();
    return [...this.parts];
  }

  finish(): Uint8Array {
    return concatByteList(this.chunks());
  }
}

/** One field of a decoded message: its number and where its value and its whole encoding lie. */
export interface ProtoField {
  field: number;
  wire: number;
  /** Varint value (wire type 0), as bigint. */
  varint?: bigint;
  /** Value bytes for length-delimited fields. */
  valueStart: number;
  valueEnd: number;
  /** The whole field, tag included, for copying it verbatim. */
  start: number;
  end: number;
}

function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new RangeError('truncated protobuf varint');
    const b = buf[pos++]!;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
  throw new RangeError('protobuf varint longer than 10 bytes');
}

/** Walks the fields of one message in `buf[start, end)`. */
export function readFields(buf: Uint8Array, start = 0, end = buf.length): ProtoField[] {
  const out: ProtoField[] = [];
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const [key, afterKey] = readVarint(buf, pos);
    pos = afterKey;
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new RangeError('protobuf field number 0');
    if (wire === WIRE_VARINT) {
      const [v, p] = readVarint(buf, pos);
      out.push({ field, wire, varint: v, valueStart: pos, valueEnd: p, start: fieldStart, end: p });
      pos = p;
    } else if (wire === WIRE_LEN) {
      const [len, p] = readVarint(buf, pos);
      const e = p + Number(len);
      if (e > end) throw new RangeError('truncated protobuf length-delimited field');
      out.push({ field, wire, valueStart: p, valueEnd: e, start: fieldStart, end: e });
      pos = e;
    } else if (wire === WIRE_I32 || wire === WIRE_I64) {
      const e = pos + (wire === WIRE_I32 ? 4 : 8);
      if (e > end) throw new RangeError('truncated protobuf fixed field');
      out.push({ field, wire, valueStart: pos, valueEnd: e, start: fieldStart, end: e });
      pos = e;
    } else {
      throw new RangeError(`unsupported protobuf wire type ${wire}`);
    }
  }
  if (pos !== end) throw new RangeError('protobuf message overruns its bounds');
  return out;
}

export function fieldString(buf: Uint8Array, f: ProtoField): string {
  return textDecoder.decode(buf.subarray(f.valueStart, f.valueEnd));
}
