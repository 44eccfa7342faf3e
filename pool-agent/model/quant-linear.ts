/**
 * A projection x W as onnxruntime's `com.microsoft` MatMulNBits over block-wise int8/int4 codes
 * (pool-agent/model/quant.ts), in place of MatMul over a float matrix. Initializers are named after
 * the float weight they replace (`<name>_Q4` / `_Q8`, `_scales`, `_zero_points`), as onnxruntime's
 * own quantizer names them. Scales are stored in the model's dtype (float16 models cast them to
 * float32 once, a Cast onnxruntime folds into a constant); activations stay float32 either way.
 *
 * @example
 * const y = quantizedMatMul(g, '/model/layers.0/mlp/up_proj', x, 'model.layers.0.mlp.up_proj.weight', w, 768, 2048, spec, 'float32');
 */
import { weightQuantSchema, type ModelDtype, type WeightQuant } from '../../protocol/manifest.js';
import { attr, DataType, type OnnxGraph } from './onnx-graph.js';
import { quantizeMatrix, type WeightQuantBits } from './quant.js';
import { toFloat16Array } from './weights.js';

export function quantBits(format: WeightQuant['format']): WeightQuantBits {
  return format === 'int4' ? 4 : 8;
}

/** x [.., K] times the quantized form of `values` ([K, N] row-major) -> [.., N], float32. */
export function quantizedMatMul(g: OnnxGraph, scope: string, x: string, name: string, values: Float32Array, K: number, N: number, spec: WeightQuant, dtype: ModelDtype): string {
  const bits = quantBits(spec.format);
  const q = quantizeMatrix(values, K, N, { bits, blockSize: spec.blockSize, symmetric: !spec.zeroPoints });
  const codes = g.initializer({ name: `${name}_Q${bits}`, dataType: DataType.UINT8, dims: [N, q.blocks, (spec.blockSize * bits) / 8], raw: q.codes });
  let scales: string;
  if (dtype === 'float32') {
    scales = g.initializer({ name: `${name}_scales`, dataType: DataType.FLOAT, dims: [N * q.blocks], raw: new Uint8Array(q.scales.buffer) });
  } else {
    const stored = g.initializer({ name: `${name}_scales`, dataType: DataType.FLOAT16, dims: [N * q.blocks], raw: new Uint8Array(toFloat16Array(q.scales).buffer) });
    scales = g.op('Cast', `${name}_scales/Cast`, [stored], { to: attr.int(DataType.FLOAT) });
  }
  const inputs = [x, codes, scales];
  if (q.zeroPoints) inputs.push(g.initializer({ name: `${name}_zero_points`, dataType: DataType.UINT8, dims: [q.zeroPoints.byteLength], raw: q.zeroPoints }));
  const attrs = { K: attr.int(K), N: attr.int(N), bits: attr.int(bits), block_size: attr.int(spec.blockSize), accuracy_level: attr.int(spec.accuracyLevel) };
  return g.msOp('MatMulNBits', `${scope}/MatMulNBits`, inputs, attrs);
}

/** What `--quant int8|int4` asks for; the rest takes the defaults below. */
export interface WeightQuantOptions {
  format: WeightQuant['format'];
  blockSize?: number;
  zeroPoints?: boolean;
  lmHead?: boolean;
  /** 0 (default): float compute, checkable; 4: int8 activations, faster on CPU, not checkable. */
  accuracyLevel?: 0 | 4;
}

/** Defaults per format (chosen by `npm run bench:quant`, see BENCHMARKS.md). */
export const QUANT_DEFAULTS: Record<WeightQuant['format'], Omit<WeightQuant, 'format'>> = {
  int8: { blockSize: 32, zeroPoints: true, lmHead: true, accuracyLevel: 0 },
  int4: { blockSize: 32, zeroPoints: true, lmHead: true, accuracyLevel: 0 },
};

/** The full, validated quantization of a model from what was asked for. */
export function resolveWeightQuant(o: WeightQuantOptions): WeightQuant {
  return weightQuantSchema.parse({ ...QUANT_DEFAULTS[o.format], ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) });
}
