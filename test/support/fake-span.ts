/**
 * A deterministic pure-JS LoadedSpan double: a tiny arithmetic "transformer" whose layers read a
 * per-layer KV cache (the mean of every input the layer has seen), so split layouts, resumes and
 * cache bugs change the tokens exactly like a real model would, with no onnxruntime. Every value is
 * rounded to float32 after each layer, so a span boundary (float32 activations on the wire) gives
 * bit-identical results to the unsplit model.
 *
 * @example
 * const model = await fakeModel({ numLayers: 4 });
 * const head = fakeSpan(model, [0, 2]);
 * const tail = fakeSpan(model, [2, 4]);
 */
import { manifestHash, type Manifest } from '../../protocol/manifest.js';
import { sha256Hex } from '../../protocol/bytes.js';
import type { ForwardOptions, LoadedSpan, SpanInput, SpanOutput, SpanSession } from '../../pool-agent/runtime/types.js';

export interface FakeModel {
  manifest: Manifest;
  modelId: string;
}

export interface FakeModelOptions {
  numLayers?: number;
  hiddenSize?: number;
  vocabSize?: number;
  seed?: number;
}

export async function fakeModel(opts: FakeModelOptions = {}): Promise<FakeModel> {
  const L = opts.numLayers ?? 4;
  const H = opts.hiddenSize ?? 8;
  const V = opts.vocabSize ?? 64;
  const files: Manifest['files'] = [
    { path: 'embed.onnx', kind: 'embed', layers: [0, 0], sha256: await sha256Hex(`embed${opts.seed ?? 0}`), bytes: 1 },
    ...(await Promise.all(
      Array.from({ length: L }, async (_, i) => ({ path: `layers.${i}.onnx`, kind: 'layers' as const, layers: [i, i + 1] as [number, number], sha256: await sha256Hex(`layer${i}`), bytes: 1 })),
    )),
    { path: 'head.onnx', kind: 'head', layers: [L, L], sha256: await sha256Hex('head'), bytes: 1 },
  ];
  const manifest: Manifest = {
    format: 'layernet.manifest/1',
    name: `fake-${L}x${H}-seed${opts.seed ?? 0}`,
    architecture: {
      family: 'llama',
      vocabSize: V,
      hiddenSize: H,
      intermediateSize: H * 2,
      numLayers: L,
      numAttentionHeads: 2,
      numKeyValueHeads: 1,
      headDim: H / 2,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      maxPositionEmbeddings: 4096,
    },
    dtype: 'float32',
    seed: opts.seed ?? 0,
    tokenizer: { kind: 'llama-sentencepiece-bpe', package: 'llama-tokenizer-js', bosTokenId: 1, eosTokenId: 2, chatTemplate: 'llama-2' },
    files,
  };
  return { manifest, modelId: await manifestHash(manifest) };
}

export interface FakeSpanOptions {
  /** Wait this long in every forward (to test cancels, drains, timeouts). */
  delayMs?: number;
  /** Throw from forward at this call number (0-based), to test error paths. */
  failAtCall?: number;
}

const fr = Math.fround;

class FakeSession implements SpanSession {
  private readonly sums: Float64Array[];
  private count = 0;
  private closed = false;
  private calls = 0;

  constructor(
    private readonly span: FakeSpan,
    private readonly opts: FakeSpanOptions,
  ) {
    const H = span.manifest.architecture.hiddenSize;
    this.sums = Array.from({ length: span.layers[1] - span.layers[0] }, () => new Float64Array(H));
  }

  get length(): number {
    return this.count;
  }

  get kvBytes(): number {
    return this.count * this.span.kvBytesPerToken;
  }

  async forward(input: SpanInput, options: ForwardOptions = {}): Promise<SpanOutput> {
    if (this.closed) throw new Error('span session is disposed');
    const call = this.calls++;
    if (this.opts.delayMs) await new Promise((r) => setTimeout(r, this.opts.delayMs));
    if (this.opts.failAtCall === call) throw new Error(`fake span failure at call ${call}`);
    const { hiddenSize: H, vocabSize: V } = this.span.manifest.architecture;
    const seed = this.span.manifest.seed ?? 0;
    let T: number;
    let h: Float32Array;
    if (input.kind === 'tokens') {
      if (!this.span.first) throw new Error('this span does not start at layer 0');
      T = input.ids.length;
      h = new Float32Array(T * H);
      for (let t = 0; t < T; t++) {
        const id = input.ids[t]!;
        if (id < 0 || id >= V) {
          const e = new Error(`token ${id} outside the vocabulary`);
          e.name = 'SpanInputError';
          throw e;
        }
        for (let i = 0; i < H; i++) h[t * H + i] = fr(Math.sin((id + 1) * (i + 1) * 0.7 + seed));
      }
    } else {
      if (this.span.first) throw new Error('the first span takes tokens');
      if (!(input.data instanceof Float32Array) || input.data.length !== input.seqLen * H) {
        const e = new Error(`hidden input must be float32 [${input.seqLen}, ${H}]`);
        e.name = 'SpanInputError';
        throw e;
      }
      T = input.seqLen;
      h = Float32Array.from(input.data);
    }
    for (let li = 0; li < this.sums.length; li++) {
      const l = this.span.layers[0] + li;
      const sum = this.sums[li]!;
      for (let t = 0; t < T; t++) {
        const row = h.subarray(t * H, (t + 1) * H);
        for (let i = 0; i < H; i++) sum[i]! += row[i]!;
        const n = this.count + t + 1;
        const out = new Float32Array(H);
        for (let i = 0; i < H; i++) {
          const a = 0.5 + 0.5 * Math.cos(l * 3 + i);
          out[i] = fr(Math.tanh(row[i]! * a + (sum[(i + 1) % H]! / n) * 0.5 + 0.1 * l));
        }
        row.set(out);
      }
    }
    this.count += T;
    if (!this.span.last) return { kind: 'hidden', data: h, seqLen: T };
    const keep = Math.min(options.logitsToKeep ?? 1, T);
    const logits = new Float32Array(keep * V);
    for (let r = 0; r < keep; r++) {
      const row = h.subarray((T - keep + r) * H, (T - keep + r + 1) * H);
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let i = 0; i < H; i++) s += row[i]! * Math.cos((v + 1) * (i + 1) * 0.37 + seed);
        logits[r * V + v] = fr(s * 3);
      }
    }
    return { kind: 'logits', logits, logitsKept: keep, finalHidden: h, seqLen: T };
  }

  dispose(): void {
    this.closed = true;
    this.span.open.delete(this);
  }
}

export class FakeSpan implements LoadedSpan {
  readonly modelId: string;
  readonly manifest: Manifest;
  readonly layers: readonly [number, number];
  readonly first: boolean;
  readonly last: boolean;
  readonly provider = 'cpu' as const;
  readonly kvBytesPerToken: number;
  readonly open = new Set<FakeSession>();

  constructor(
    model: FakeModel,
    layers: readonly [number, number],
    private readonly opts: FakeSpanOptions = {},
  ) {
    const L = model.manifest.architecture.numLayers;
    if (!(layers[0] >= 0 && layers[1] <= L && layers[0] < layers[1])) throw new RangeError(`bad span [${layers[0]}, ${layers[1]})`);
    this.modelId = model.modelId;
    this.manifest = model.manifest;
    this.layers = layers;
    this.first = layers[0] === 0;
    this.last = layers[1] === L;
    this.kvBytesPerToken = (layers[1] - layers[0]) * 2 * model.manifest.architecture.hiddenSize * 4;
  }

  openSession(): SpanSession {
    const s = new FakeSession(this, this.opts);
    this.open.add(s);
    return s;
  }

  async close(): Promise<void> {
    for (const s of [...this.open]) s.dispose();
  }
}

export function fakeSpan(model: FakeModel, layers: readonly [number, number], opts?: FakeSpanOptions): FakeSpan {
  return new FakeSpan(model, layers, opts);
}
