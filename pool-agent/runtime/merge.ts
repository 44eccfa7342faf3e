/**
 * Merges consecutive block graphs (embed, layers.i, ..., head) into one ONNX model in memory:
 * nodes and initializers are concatenated verbatim, an output of one block that the next block
 * takes as input (hidden_states.{i+1}) becomes an internal edge, shared inputs (position_ids)
 * appear once. Only field boundaries are parsed; tensor payloads are never decoded.
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
  bytes: Uint8Array;
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
  const g: ParsedGraph = { bytes, model, nodes: [], initializers: [], valueInfo: [], inputs: [], outputs: [], name: 'merged' };
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

const slice = (g: ParsedGraph, f: ProtoField): Uint8Array => g.bytes.subarray(f.start, f.end);

/** Returns the merged ModelProto bytes (the input itself when there is one model). */
export function mergeOnnxModels(models: readonly Uint8Array[]): Uint8Array {
  if (models.length === 0) throw new Error('nothing to merge');
  if (models.length === 1) return models[0]!;
  const graphs = models.map(parseModel);
  const allInputs = new Set(graphs.flatMap((g) => g.inputs.map((i) => i.name)));
  const graph = new ProtoWriter();
  const produced = new Set<string>();
  const inputsSeen = new Set<string>();
  const inputs: Uint8Array[] = [];
  const outputs: Uint8Array[] = [];
  for (const g of graphs) {
    for (const n of g.nodes) graph.append(slice(g, n));
    for (const i of g.inputs) {
      if (produced.has(i.name) || inputsSeen.has(i.name)) continue;
      inputsSeen.add(i.name);
      inputs.push(slice(g, i.field));
    }
    for (const o of g.outputs) produced.add(o.name);
  }
  for (const g of graphs) {
    for (const o of g.outputs) {
      // An output that a block of this span consumes is an internal edge.
      if (allInputs.has(o.name)) continue;
      outputs.push(slice(g, o.field));
    }
  }
  graph.string(GRAPH_NAME, graphs.map((g) => g.name).join('+'));
  for (const g of graphs) for (const t of g.initializers) graph.append(slice(g, t));
  for (const i of inputs) graph.append(i);
  for (const o of outputs) graph.append(o);
  for (const g of graphs) for (const v of g.valueInfo) graph.append(slice(g, v));

  const first = graphs[0]!;
  const model = new ProtoWriter();
  for (const f of first.model) {
    if (f.field === MODEL_GRAPH) model.message(MODEL_GRAPH, graph);
    else model.append(slice(first, f));
  }
  return model.finish();
}
