/**
 * Runs a generation across a chain of stages (local span sessions, or remote agents behind the
 * same interface): prefill the prompt, then decode one token at a time until max tokens, a stop
 * token or an abort. Tokens are sampled from the last stage's logits with the (seed, step)-keyed
 * sampler, so the same request yields the same tokens over any chain.
 *
 * @example
 * const result = await generate({
 *   stages: [spanA.openSession(), spanB.openSession()],
 *   promptIds: applyChatTemplate(messages),
 *   sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 },
 *   maxTokens: 32,
 *   stopTokenIds: [EOS_ID],
 * });
 */
import { sampleToken, type SamplingParams } from './sampler.js';
import type { ForwardOptions, SpanInput, SpanOutput } from './types.js';

/** One hop of a chain: a local SpanSession satisfies it as is. */
export interface Stage {
  forward(input: SpanInput, options?: ForwardOptions): Promise<SpanOutput>;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface GenerateOptions {
  stages: readonly Stage[];
  /** Prompt token ids (the stages' KV caches must be empty, or hold exactly what precedes these ids). */
  promptIds: readonly number[] | Int32Array;
  sampling: SamplingParams;
  /** Tokens to generate in this call (stop tokens included in the count). */
  maxTokens: number;
  stopTokenIds?: readonly number[];
  /** Step index of the first generated token (resuming a generation after k tokens: k). */
  startStep?: number;
  /**
   * Called for every sampled token, stop tokens included (`stop` tells them apart), with the last
   * stage's final hidden row (after the final norm) of the position that produced it.
   */
  onToken?: (token: number, step: number, finalHiddenRow: Float32Array, stop: boolean) => void | Promise<void>;
  signal?: AbortSignal;
}

export interface GenerateResult {
  /** Generated tokens, without the stop token. */
  tokens: number[];
  finishReason: FinishReason;
  /** The stop token that ended the generation, when finishReason is 'stop'. */
  stopTokenId?: number;
  /** Positions the stages hold in their KV caches afterwards. */
  positions: number;
}

/** Runs T positions through every stage; returns the last stage's output. */
export async function forwardChain(stages: readonly Stage[], ids: Int32Array, options: ForwardOptions = {}): Promise<SpanOutput & { kind: 'logits' }> {
  if (stages.length === 0) throw new Error('a chain needs at least one stage');
  let input: SpanInput = { kind: 'tokens', ids };
  for (let i = 0; i < stages.length; i++) {
    const last = i === stages.length - 1;
    const out = await stages[i]!.forward(input, last ? options : {});
    if (last) {
      if (out.kind !== 'logits') throw new Error(`the last stage returned ${out.kind}, expected logits (does the chain cover every layer?)`);
      return out;
    }
    if (out.kind !== 'hidden') throw new Error(`stage ${i} returned logits before the end of the chain`);
    input = { kind: 'hidden', data: out.data, seqLen: out.seqLen };
  }
  throw new Error('unreachable');
}

/** Prefill then decode across `stages`; see GenerateOptions. */
export async function generate(options: GenerateOptions): Promise<GenerateResult> {
  const { stages, sampling, maxTokens } = options;
  const stop = new Set(options.stopTokenIds ?? []);
  const startStep = options.startStep ?? 0;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 0)) throw new RangeError(`maxTokens must be a non-negative integer, got ${maxTokens}`);
  if (options.promptIds.length === 0) throw new RangeError('the prompt must hold at least one token');
  const tokens: number[] = [];
  let positions = 0;
  let next = Int32Array.from(options.promptIds);
  for (let i = 0; i < maxTokens; i++) {
    if (options.signal?.aborted) return { tokens, finishReason: 'abort', positions };
    const out = await forwardChain(stages, next);
    positions += next.length;
    const vocab = out.logits.length / out.logitsKept;
    const row = out.logits.subarray((out.logitsKept - 1) * vocab);
    const step = startStep + i;
    const token = sampleToken(row, sampling, step);
    const hidden = out.finalHidden;
    const hiddenSize = hidden.length / out.seqLen;
    const hiddenRow = hidden.slice((out.seqLen - 1) * hiddenSize);
    const isStop = stop.has(token);
    await options.onToken?.(token, step, hiddenRow, isStop);
    if (isStop) return { tokens, finishReason: 'stop', stopTokenId: token, positions };
    tokens.push(token);
    next = Int32Array.of(token);
  }
  return { tokens, finishReason: options.signal?.aborted ? 'abort' : 'length', positions };
}
