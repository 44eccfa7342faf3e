/**
 * Where a graph's weights come from: the builder's seeded random values (`seededWeights`) or a
 * checkpoint being imported (pool-agent/model/import/). Values are float32; a projection's matrix
 * is [fanIn, fanOut] row-major, as ONNX MatMul reads it (nn.Linear stores [out, in]).
 *
 * @example
 * const w = seededWeights(7);
 * w.linear('model.layers.0.mlp.up_proj.weight', 64, 172); // Float32Array(64 * 172)
 */
import { onesWeights, uniformWeights } from './weights.js';

export interface WeightProvider {
  /** A projection's matrix, [fanIn, fanOut]. */
  linear(name: string, fanIn: number, fanOut: number): Float32Array;
  /** A projection's bias, [size]. */
  bias(name: string, size: number): Float32Array;
  /** An RMSNorm's scale, [size]. */
  norm(name: string, size: number): Float32Array;
  /** The token embedding, [vocab, hidden]. */
  embedding(name: string, vocab: number, hidden: number): Float32Array;
}

/** The built presets' deterministic weights (pool-agent/model/weights.ts). */
export function seededWeights(seed: number): WeightProvider {
  return {
    linear: (name, fanIn, fanOut) => uniformWeights(seed, name, fanIn * fanOut, fanIn),
    bias: (_name, size) => new Float32Array(size),
    norm: (_name, size) => onesWeights(size),
    // Embeddings have unit variance (fanIn 1): they feed a normalised residual stream.
    embedding: (name, vocab, hidden) => uniformWeights(seed, name, vocab * hidden, 1),
  };
}
