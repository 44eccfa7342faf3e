/**
 * Merges consecutive block graphs (embed, layers.i, ..., head) into one ONNX model in memory:
 * nodes and initializers are concatenated verbatim, an output of one block that the next block
 * takes as input (hidden_states.{i+1}) becomes an internal edge, shared inputs (position_ids)
 * appear once. Only field boundaries are parsed; tensor payloads are never decoded. `OnnxMerger`
 * takes the blocks one at a time (a span's loader reads its files through one scratch buffer), so
 * loading a span holds the merged model and one file, not every file besides.
 *
 * @example
 * const model = mergeOnnxModels([embedBytes, layer0Bytes, layer1Bytes]);
 * await InferenceSession.create(model);
 */
import { fieldString, ProtoWriter, readFields, type ProtoField } from '../model/onnx-proto.js';

const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_NAME = 2;
const GRAPH_INITIALIZER = 5;
const GRAPH_INPUT = 11;
const GRAPH_OUTPUT = 12;
const GRAPH_VALUE_INFO = 13;
const VALUE_INFO_NAME = 1;

interface ParsedGraph {
  model: ProtoField[];
  nodes: ProtoField[];
  initializers: ProtoField[];
  valueInfo: ProtoField[];
  inputs: { name: string; field: ProtoField }[];
  outputs: { name: string; field: ProtoField }[];
  name: string;
}

function valueInfoName(bytes: Uint8Array, f: ProtoField): string {
  const nameField = readFields(bytes, f.valueStart, f.valueEnd).find((x) => x.field === VALUE_INFO_NAME);
  if (!nameField) throw new Error('ONNX value info without a name');
  return fieldString(bytes, nameField);
}

function parseModel(bytes: Uint8Array): ParsedGraph {
  const model = readFields(bytes);
  const graphField = model.find((f) => f.field === MODEL_GRAPH && f.wire === 2);
  if (!graphField) throw new Error('ONNX model has no graph');
  const g: ParsedGraph = { model, nodes: [], initializers: [], valueInfo: [], inputs: [], outputs: [], name: 'merged' };
  for (const f of readFields(bytes, graphField.valueStart, graphField.valueEnd)) {
    if (f.field === GRAPH_NODE) g.nodes.push(f);
    else if (f.field === GRAPH_INITIALIZER) g.initializers.push(f);
    else if (f.field === GRAPH_VALUE_INFO) g.valueInfo.push(f);
    else if (f.field === GRAPH_INPUT) g.inputs.push({ name: valueInfoName(bytes, f), field: f });
    else if (f.field === GRAPH_OUTPUT) g.outputs.push({ name: valueInfoName(bytes, f), field: f });
    else if (f.field === GRAPH_NAME) g.name = fieldString(bytes, f);
  }
  return g;
}

/** Writes `value` as a varint of exactly 5 bytes (protobuf parsers accept padded varints). */
function writePaddedVarint32(buf: Uint8Array, at: number, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 31) throw new RangeError(`merged ONNX graph of ${value} bytes is too large`);
  for (let i = 0; i < 4; i++) buf[at + i] = ((value >>> (7 * i)) & 0x7f) | 0x80;
  buf[at + 4] = value >>> 28;
}

/**
 * Merges block graphs one at a time into a buffer sized up front, so a span's files never sit in
 * memory all at once: each block's initializers (nearly all of its bytes) are copied straight to
 * their place as the block is added, and only its nodes and interface are kept until `finish()`.
 * The merged graph lists initializers first, then nodes, name, inputs, outputs and value infos
 * (protobuf fields may come in any order); its length is written as a padded 5-byte varint.
 *
 * @example
 * const merger = new OnnxMerger(files.reduce((n, f) => n + f.bytes, 0));
 * for (const f of files) merger.add(await read(f)); // the bytes may be reused after add()
 * const model = merger.finish();
 */
export class OnnxMerger {
  private buf: Uint8Array;
  private used = 0;
  /** Where the merged graph's content starts (its 5-byte length sits just before). */
  private graphStart = -1;
  private finished = false;
  private after: Uint8Array[] = [];
  private readonly nodes: Uint8Array[] = [];
  private readonly valueInfo: Uint8Array[] = [];
  private readonly names: string[] = [];
  private readonly inputs: Uint8Array[] = [];
  private readonly outputs: { name: string; bytes: Uint8Array }[] = [];
  private readonly produced = new Set<string>();
  private readonly inputsSeen = new Set<string>();
  private readonly allInputs = new Set<string>();

  /** `totalBytes`: the blocks' sizes together; the merged model is hardly ever larger. */
  constructor(totalBytes: number) {
    this.buf = new Uint8Array(totalBytes + 256);
  }

  private put(bytes: Uint8Array): void {
    const need = this.used + bytes.byteLength;
    if (need > this.buf.byteLength) {
      // Only when the blocks were larger than announced, or their names longer than their own.
      const grown = new Uint8Array(Math.max(need, Math.ceil(this.buf.byteLength * 1.125)));
      grown.set(this.buf.subarray(0, this.used));
      this.buf = grown;
    }
    this.buf.set(bytes, this.used);
    this.used += bytes.byteLength;
  }

  /** Adds the next block; keeps nothing that refers to `bytes`. */
  add(bytes: Uint8Array): void {
    if (this.finished) throw new Error('merger already finished');
    const g = parseModel(bytes);
    const copy = (f: ProtoField) => bytes.slice(f.start, f.end);
    if (this.graphStart < 0) {
      // The first block's model fields (IR version, opsets, ...) around the merged graph.
      const graphAt = g.model.findIndex((f) => f.field === MODEL_GRAPH && f.wire === 2);
      for (const f of g.model.slice(0, graphAt)) this.put(bytes.subarray(f.start, f.end));
      this.after = g.model.slice(graphAt + 1).map(copy);
      // The graph's tag, then 5 bytes for its length, known at finish().
      this.put(Uint8Array.of((MODEL_GRAPH << 3) | 2, 0, 0, 0, 0, 0));
      this.graphStart = this.used;
    }
    for (const t of g.initializers) this.put(bytes.subarray(t.start, t.end));
    for (const n of g.nodes) this.nodes.push(copy(n));
    for (const v of g.valueInfo) this.valueInfo.push(copy(v));
    this.names.push(g.name);
    for (const i of g.inputs) {
      this.allInputs.add(i.name);
      if (this.produced.has(i.name) || this.inputsSeen.has(i.name)) continue;
      this.inputsSeen.add(i.name);
      this.inputs.push(copy(i.field));
    }
    for (const o of g.outputs) {
      this.produced.add(o.name);
      this.outputs.push({ name: o.name, bytes: copy(o.field) });
    }
  }

  /** The merged ModelProto: a view of this merger's buffer (once; the merger is done then). */
  finish(): Uint8Array {
    if (this.graphStart < 0) throw new Error('nothing to merge');
    if (this.finished) throw new Error('merger already finished');
    this.finished = true;
    for (const n of this.nodes) this.put(n);
    this.put(new ProtoWriter().string(GRAPH_NAME, this.names.join('+')).finish());
    for (const i of this.inputs) this.put(i);
    // An output that a block of this span consumes is an internal edge.
    for (const o of this.outputs) if (!this.allInputs.has(o.name)) this.put(o.bytes);
    for (const v of this.valueInfo) this.put(v);
    writePaddedVarint32(this.buf, this.graphStart - 5, this.used - this.graphStart);
    for (const f of this.after) this.put(f);
    return this.buf.subarray(0, this.used);
  }
}

/** Returns the merged ModelProto bytes (the input itself when there is one model). */
export function mergeOnnxModels(models: readonly Uint8Array[]): Uint8Array {
  if (models.length === 0) throw new Error('nothing to merge');
  if (models.length === 1) return models[0]!;
  const merger = new OnnxMerger(models.reduce((n, m) => n + m.byteLength, 0));
  for (const m of models) merger.add(m);
  return merger.finish();
}
