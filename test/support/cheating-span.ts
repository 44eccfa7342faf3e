/**
 * Cheating spans for the per-hop blame suites: a span that claims the registered model and its
 * layers but computes something else, and signs it as its own (no proxy, no re-signing). Kinds:
 *
 * - `perturb`: honest layers, then every hidden value it hands on (the last span: every final
 *   hidden row it commits to) scaled by 1 ± `scale` (a few percent);
 * - `skip_layer`: runs one layer fewer (the last layer of its span; the first when the span ends
 *   the model, so it still has the head);
 * - `weights`: the same layers of another model folder (other weights, same shapes);
 * - `sampling` (last span only): honest hidden states and commitments, the logits rolled by one
 *   token, so every sampled token is the model's token id minus one.
 *
 * @example
 * const span = await cheatingSpan('.models/tiny', [0, 2], { kind: 'perturb', scale: 0.03 }, (dir, layers) => loadSpan(dir, layers));
 */
import { manifestHash } from '../../protocol/manifest.js';
import { loadManifest } from '../../pool-agent/model/build.js';
import type { LoadedSpan, SpanOutput, SpanSession } from '../../pool-agent/runtime/types.js';

export type Cheat =
  | { kind: 'perturb'; scale: number }
  | { kind: 'skip_layer' }
  | { kind: 'weights'; weightsDir: string }
  | { kind: 'sampling' };

/** Environment variable the test-only span loader of `cheating-serve/` reads (JSON `Cheat`). */
export const CHEAT_ENV = 'LAYERNET_TEST_CHEAT';

export type SpanLoader = (modelDir: string, layers: readonly [number, number]) => Promise<LoadedSpan>;

/** Parses a `Cheat` (JSON); throws on anything else. */
export function parseCheat(text: string): Cheat {
  const c = JSON.parse(text) as Cheat;
  if (c.kind === 'perturb' && typeof c.scale === 'number' && c.scale > 0) return c;
  if (c.kind === 'weights' && typeof c.weightsDir === 'string') return c;
  if (c.kind === 'skip_layer' || c.kind === 'sampling') return { kind: c.kind };
  throw new Error(`not a cheat: ${text}`);
}

/** 1 ± scale by position in the tensor (deterministic, half of each sign). */
function perturbed(data: Float32Array, scale: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! * (1 + ((Math.imul(i + 1, 2654435761) >>> 31) === 1 ? scale : -scale));
  return out;
}

/** Each [vocab] row of `logits` rolled left by one: row'[j] = row[j + 1]. */
function rolled(logits: Float32Array, rows: number): Float32Array {
  const vocab = logits.length / rows;
  const out = new Float32Array(logits.length);
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    out.set(row.subarray(1), r * vocab);
    out[(r + 1) * vocab - 1] = row[0]!;
  }
  return out;
}

function cheatOutput(cheat: Cheat, out: SpanOutput): SpanOutput {
  if (cheat.kind === 'perturb') {
    if (out.kind === 'hidden') {
      if (!(out.data instanceof Float32Array)) throw new Error('the perturbing cheat handles float32 models');
      return { ...out, data: perturbed(out.data, cheat.scale) };
    }
    return { ...out, finalHidden: perturbed(out.finalHidden, cheat.scale) };
  }
  if (cheat.kind === 'sampling' && out.kind === 'logits') return { ...out, logits: rolled(out.logits, out.logitsKept) };
  return out;
}

/**
 * Loads a span that claims `registeredModelDir`'s model and `layers`, computing as `cheat` says
 * with spans from `load`.
 */
export async function cheatingSpan(registeredModelDir: string, layers: readonly [number, number], cheat: Cheat, load: SpanLoader): Promise<LoadedSpan> {
  const manifest = await loadManifest(registeredModelDir);
  const modelId = await manifestHash(manifest);
  const [start, end] = layers;
  const numLayers = manifest.architecture.numLayers;
  if (cheat.kind === 'sampling' && end !== numLayers) throw new Error('the sampling cheat is for the last span of the model');
  if (cheat.kind === 'skip_layer' && end - start < 2) throw new Error('skipping a layer needs a span of two layers or more');
  const real =
    cheat.kind === 'weights'
      ? await load(cheat.weightsDir, layers)
      : cheat.kind === 'skip_layer'
        ? await load(registeredModelDir, end === numLayers ? [start + 1, end] : [start, end - 1])
        : await load(registeredModelDir, layers);
  return {
    modelId,
    manifest,
    layers: [start, end] as const,
    first: start === 0,
    last: end === numLayers,
    provider: real.provider,
    kvBytesPerToken: real.kvBytesPerToken,
    openSession(options) {
      const s = real.openSession(options);
      const session: SpanSession = {
        get length() {
          return s.length;
        },
        get kvBytes() {
          return s.kvBytes;
        },
        forward: async (input, opts) => cheatOutput(cheat, await s.forward(input, opts)),
        dispose: () => s.dispose(),
      };
      return session;
    },
    close: () => real.close(),
  };
}
