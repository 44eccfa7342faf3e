/**
 * A small ONNX graph builder on top of the protobuf writer: nodes, initializers, typed inputs
 * and outputs, serialised as a ModelProto (IR 8, opset 17). Nodes of another domain
 * (`com.microsoft` contrib ops such as MatMulNBits) add that domain's opset import; a graph
 * using only standard ops is written exactly as before.
 *
 * @example
 * const g = new OnnxGraph('demo');
 * g.input('x', DataType.FLOAT, [1, 'T']);
 * const [y] = g.node('Relu', '/relu/Relu', ['x']);
 * g.output(y!, DataType.FLOAT, [1, 'T'], 'y');
 * const bytes = g.toModel().finish();
 */
import { ProtoWriter } from './onnx-proto.js';

export const IR_VERSION = 8;
export const OPSET = 17;
/** onnxruntime's contrib ops (MatMulNBits...), opset version 1. */
export const MS_DOMAIN = 'com.microsoft';
export const MS_OPSET = 1;

/** ONNX TensorProto.DataType codes used here. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
} as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

export type AttrValue =
  | { kind: 'int'; value: number | bigint }
  | { kind: 'ints'; value: readonly (number | bigint)[] }
  | { kind: 'float'; value: number }
  | { kind: 'tensor'; value: TensorSpec }
  /** A subgraph (If branches): it may read any value of the enclosing graph by name. */
  | { kind: 'graph'; value: OnnxGraph };

export interface TensorSpec {
  name: string;
  dataType: DataTypeCode;
  dims: readonly number[];
  /** Little-endian raw bytes. */
  raw: Uint8Array;
}

export const attr = {
  int: (value: number | bigint): AttrValue => ({ kind: 'int', value }),
  ints: (value: readonly (number | bigint)[]): AttrValue => ({ kind: 'ints', value }),
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  graph: (value: OnnxGraph): AttrValue => ({ kind: 'graph', value }),
};

function tensorProto(t: TensorSpec): ProtoWriter {
  const w = new ProtoWriter();
  for (const d of t.dims) w.varint(1, d);
  w.varint(2, t.dataType);
  w.string(8, t.name);
  w.bytes(9, t.raw);
  return w;
}

function attributeProto(name: string, a: AttrValue): ProtoWriter {
  const w = new ProtoWriter();
  w.string(1, name);
  switch (a.kind) {
    case 'float':
      w.float32(2, a.value);
      w.varint(20, 1);
      break;
    case 'int':
      w.varint(3, a.value);
      w.varint(20, 2);
      break;
    case 'tensor':
      w.message(5, tensorProto(a.value));
      w.varint(20, 4);
      break;
    case 'ints':
      for (const v of a.value) w.varint(8, v);
      w.varint(20, 7);
      break;
    case 'graph':
      w.message(6, a.value.toGraph());
      w.varint(20, 5);
      break;
  }
  return w;
}

/** A dimension: a fixed size or a symbolic name. */
export type Dim = number | string;

function valueInfoProto(name: string, elemType: DataTypeCode, dims: readonly Dim[]): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of dims) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.varint(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().varint(1, elemType).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, name).message(2, type);
}

export function int64Bytes(values: readonly (number | bigint)[]): Uint8Array {
  const a = new BigInt64Array(values.length);
  values.forEach((v, i) => (a[i] = BigInt(v)));
  return new Uint8Array(a.buffer);
}

export function float32Bytes(values: readonly number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

export class OnnxGraph {
  private readonly nodes: ProtoWriter[] = [];
  private readonly initializers: ProtoWriter[] = [];
  private readonly inputs: ProtoWriter[] = [];
  private readonly outputs: ProtoWriter[] = [];
  private readonly names = new Set<string>();
  private constCount = 0;
  /** Domains other than the default one that nodes of this graph (or of its branches) use. */
  private readonly domains = new Set<string>();
  /** Bytes of initializer payloads, for size planning. */
  weightBytes = 0;

  constructor(readonly name: string) {}

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`duplicate ONNX value name ${name}`);
    this.names.add(name);
  }

  input(name: string, elemType: DataTypeCode, dims: readonly Dim[]): string {
    this.claim(name);
    this.inputs.push(valueInfoProto(name, elemType, dims));
    return name;
  }

  /** Declares `value` a graph output, renamed through Identity when `as` differs. */
  output(value: string, elemType: DataTypeCode, dims: readonly Dim[], as = value): string {
    if (as !== value) this.node('Identity', `${as}/Identity`, [value], {}, [as]);
    this.outputs.push(valueInfoProto(as, elemType, dims));
    return as;
  }

  initializer(t: TensorSpec): string {
    this.claim(t.name);
    this.initializers.push(tensorProto(t));
    this.weightBytes += t.raw.byteLength;
    return t.name;
  }

  /** An int64 constant initializer named after `scope` (unique per graph and per layer). */
  constInt64(scope: string, values: readonly (number | bigint)[], scalar = false): string {
    const name = `${scope}/Constant_${this.constCount++}_output_0`;
    return this.initializer({ name, dataType: DataType.INT64, dims: scalar ? [] : [values.length], raw: int64Bytes(values) });
  }

  constFloat(scope: string, values: readonly number[], scalar = false): string {
    const name = `${scope}/Constant_${this.constCount++}_output_0`;
    return this.initializer({ name, dataType: DataType.FLOAT, dims: scalar ? [] : [values.length], raw: float32Bytes(values) });
  }

  /**
   * Adds a node; outputs default to `${name}_output_${k}` (the naming torch.onnx uses).
   * Returns the output names.
   */
  node(op: string, name: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, outputs?: readonly string[], outputCount = 1, domain = ''): string[] {
    const outs = outputs ? [...outputs] : Array.from({ length: outputCount }, (_, k) => `${name}_output_${k}`);
    for (const o of outs) this.claim(o);
    const w = new ProtoWriter();
    for (const i of inputs) w.string(1, i);
    for (const o of outs) w.string(2, o);
    w.string(3, name);
    w.string(4, op);
    for (const [k, v] of Object.entries(attrs)) {
      w.message(5, attributeProto(k, v));
      if (v.kind === 'graph') for (const d of v.value.domains) this.domains.add(d);
    }
    if (domain !== '') {
      w.string(7, domain);
      this.domains.add(domain);
    }
    this.nodes.push(w);
    return outs;
  }

  /** A single-output node of onnxruntime's contrib domain (`com.microsoft`). */
  msOp(op: string, name: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}): string {
    return this.node(op, name, inputs, attrs, undefined, 1, MS_DOMAIN)[0]!;
  }

  /**
   * Declares that this graph's file imports `domain` even when none of its own nodes use it
   * (every block file of a quantized model does, since a merged span keeps the first file's imports).
   */
  useDomain(domain: string): this {
    if (domain !== '') this.domains.add(domain);
    return this;
  }

  /** Single-output convenience. */
  op(op: string, name: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}): string {
    return this.node(op, name, inputs, attrs)[0]!;
  }

  /** The GraphProto alone (a model's graph, or an If branch). */
  toGraph(): ProtoWriter {
    const graph = new ProtoWriter();
    for (const n of this.nodes) graph.message(1, n);
    graph.string(2, this.name);
    for (const t of this.initializers) graph.message(5, t);
    for (const i of this.inputs) graph.message(11, i);
    for (const o of this.outputs) graph.message(12, o);
    return graph;
  }

  toModel(): ProtoWriter {
    const graph = this.toGraph();
    const opset = new ProtoWriter().string(1, '').varint(2, OPSET);
    const model = new ProtoWriter();
    model.varint(1, IR_VERSION);
    model.string(2, 'layernet-model-builder');
    model.string(3, '1');
    model.message(7, graph);
    model.message(8, opset);
    for (const d of [...this.domains].sort()) {
      if (d !== MS_DOMAIN) throw new Error(`no opset version known for domain ${d}`);
      model.message(8, new ProtoWriter().string(1, d).varint(2, MS_OPSET));
    }
    return model;
  }
}
