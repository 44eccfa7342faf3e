/**
 * The parts of `npm run check:gpu` (scripts/check-gpu.ts): build a preset in a format through
 * `pool-agent model build`, serve a greedy generation the way the last hop of a route does (the
 * prefill a chunk of its own, then chunks of 16 steps, each with its TOPLOC commitment of the
 * final hidden rows), judge it on another span with the network's checker (one teacher-forced
 * prefill, `judgeCheck`: commitments within the dtype's tolerances, every token the greedy pick
 * or a near tie), and measure decode tokens/s of B concurrent sessions on one span.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { checkTolerancesFor, judgeCheck, lastRows, type CheckChunk, type CheckPlan, type CheckVerdict } from '../protocol/check.js';
import { commitHidden, DEFAULT_TOPK } from '../protocol/commitment.js';
import type { JobTicket } from '../protocol/ticket.js';
import { MODEL_USAGE, runModel } from '../pool-agent/cli/model.js';
import type { CliIo } from '../pool-agent/cli/args.js';
import { argmax, sampleToken } from '../pool-agent/runtime/sampler.js';
import type { LoadedSpan, SpanOutput, SpanSession } from '../pool-agent/runtime/types.js';
import { prefill } from '../pool-agent/verify/checker.js';

/** Steps per attested chunk after the prefill's (the edge's default ATTEST_CHUNK_STEPS). */
export const CHUNK_STEPS = 16;

export type Format = 'fp32' | 'fp16' | 'int4';

/** Whether `pool-agent model build` takes `--quant` (int4 weights) in this tree. */
export function quantFlagSupported(usage: string = MODEL_USAGE): boolean {
  return /--quant\b[^\n]*int4/.test(usage);
}

const builtSchema = z.object({ modelId: z.string().regex(/^[0-9a-f]{64}$/), dir: z.string(), name: z.string(), numLayers: z.number().int().positive() });
export type Built = z.infer<typeof builtSchema> & { ms: number };

/** `pool-agent model build` for the preset in `format`, into root/PRESET-FORMAT (idempotent), recording nothing in any agent state. */
export async function buildVariant(preset: string, format: Format, root: string): Promise<Built> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), env: {} };
  const args = ['build', '--preset', preset, '--dtype', format === 'fp32' ? 'float32' : 'float16', ...(format === 'int4' ? ['--quant', 'int4'] : [])];
  // --dir names a state folder that does not exist, so no agent's modelDir is changed.
  args.push('--out', join(root, `${preset}-${format}`), '--dir', join(root, '.no-agent-state'));
  const t0 = performance.now();
  const code = await runModel(args, io);
  if (code !== 0) throw new Error(`pool-agent model ${args.join(' ')} exited ${code}: ${err.join(' ').slice(0, 300)}`);
  return { ...builtSchema.parse(JSON.parse(out.at(-1) ?? 'null')), ms: performance.now() - t0 };
}

/** A deterministic prompt of `n` ids inside the vocabulary (no special ids). */
export function promptIds(n: number, vocabSize: number, salt = 0): number[] {
  return Array.from({ length: n }, (_, i) => 3 + (((i + salt * 31) * 7919) % (vocabSize - 3)));
}

export interface Served {
  tokens: number[];
  chunks: CheckChunk[];
  prefillMs: number;
  decodeMs: number;
}

const lastLogits = (out: SpanOutput): Float32Array => {
  if (out.kind !== 'logits') throw new Error('the span does not end the model: check:gpu needs whole-model spans');
  const vocab = out.logits.length / out.logitsKept;
  return out.logits.subarray((out.logitsKept - 1) * vocab);
};

const lastHidden = (out: SpanOutput & { kind: 'logits' }): Float32Array => {
  const h = out.finalHidden.length / out.seqLen;
  return out.finalHidden.slice((out.seqLen - 1) * h);
};

/** Greedy generation of `n` tokens on `span`, committed per chunk as a route's last hop does. */
export async function serveGreedy(span: LoadedSpan, prompt: readonly number[], n: number): Promise<Served> {
  const H = span.manifest.architecture.hiddenSize;
  const session = span.openSession({ maxPositions: prompt.length + n });
  const tokens: number[] = [];
  const rows: Float32Array[] = [];
  let prefillMs = 0;
  try {
    const t0 = performance.now();
    let out = await session.forward({ kind: 'tokens', ids: Int32Array.from(prompt) });
    prefillMs = performance.now() - t0;
    for (let i = 0; ; i++) {
      if (out.kind !== 'logits') throw new Error('no logits');
      tokens.push(argmax(lastLogits(out)));
      rows.push(lastHidden(out));
      if (i === n - 1) break;
      out = await session.forward({ kind: 'tokens', ids: Int32Array.of(tokens[i]!) });
    }
    const decodeMs = performance.now() - t0 - prefillMs;
    const chunks: CheckChunk[] = [];
    for (let from = 0; from < n; from = from === 0 ? 1 : from + CHUNK_STEPS) {
      const to = from === 0 ? 1 : Math.min(n, from + CHUNK_STEPS);
      const all = new Float32Array((to - from) * H);
      for (let j = from; j < to; j++) all.set(rows[j]!, (j - from) * H);
      chunks.push({ steps: [from, to], tokenIds: tokens.slice(from, to), hiddenCommitment: commitHidden(all, to - from, H, { k: Math.min(DEFAULT_TOPK, H) }), attestations: [] });
    }
    return { tokens, chunks, prefillMs, decodeMs };
  } finally {
    session.dispose();
  }
}

/** The ticket a one-hop local route would carry (judgeCheck reads its dtype, sampling and route). */
export function localTicket(span: LoadedSpan, promptTokens: number, maxTokens: number): JobTicket {
  const now = Date.now();
  return {
    v: 1,
    jobId: 'check-gpu',
    modelId: span.modelId,
    dtype: span.manifest.dtype,
    route: [{ agentId: 'served', layers: [0, span.manifest.architecture.numLayers], endpoint: 'http://127.0.0.1/' }],
    inputHash: '0'.repeat(64),
    promptTokens,
    prefixTokens: 0,
    limits: { maxTokens, deadline: now + 3_600_000 },
    sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 },
    stopTokenIds: [],
    nonce: 'check-gpu-local-0000',
    issuedAt: now,
    expiresAt: now + 3_600_000,
    edgeKeyId: 'local',
  };
}

/** Judges `served` by re-running it on `checker` (another provider, or another thread count) as the network's checker does. */
export async function judgeOn(checker: LoadedSpan, servedOn: LoadedSpan, prompt: readonly number[], served: Served): Promise<CheckVerdict> {
  const n = served.tokens.length;
  const plan: CheckPlan = {
    jobId: 'check-gpu',
    ticket: localTicket(servedOn, prompt.length, n),
    inputLength: prompt.length,
    sequence: [...prompt, ...served.tokens.slice(0, -1)],
    logitsToKeep: n,
    generated: served.tokens,
    chunks: served.chunks,
  };
  const out = await prefill(checker, { kind: 'tokens', ids: plan.sequence }, n);
  if (out.kind !== 'logits') throw new Error('the checker span does not end the model');
  const arch = checker.manifest.architecture;
  return judgeCheck({
    plan,
    hidden: lastRows(out.finalHidden, out.seqLen, arch.hiddenSize, n),
    logits: out.logits,
    hiddenSize: arch.hiddenSize,
    vocabSize: arch.vocabSize,
    sample: sampleToken,
    tolerances: checkTolerancesFor(plan.ticket.dtype),
  });
}

/** The first step where two generations differ, or -1. */
export function firstDifference(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return -1;
}

export interface Rate {
  batch: number;
  steps: number;
  tokPerS: number;
}

/**
 * Decode tokens/s of `batch` sessions on one span, each prefilled with its own prompt, then
 * `steps` rounds in which every session decodes one token (all forwards of a round started
 * together). The agent has no batched step: each session runs its own onnxruntime run, and
 * onnxruntime-node runs a session's run on the JS thread, so the runs of a round do not overlap.
 */
export async function decodeRate(span: LoadedSpan, batch: number, steps: number, promptLen: number): Promise<Rate> {
  const vocab = span.manifest.architecture.vocabSize;
  const sessions: SpanSession[] = Array.from({ length: batch }, () => span.openSession({ maxPositions: promptLen + steps + 2 }));
  try {
    const next: number[] = [];
    for (const [i, s] of sessions.entries()) next.push(argmax(lastLogits(await s.forward({ kind: 'tokens', ids: Int32Array.from(promptIds(promptLen, vocab, i + 1)) }))));
    // One warm-up round (first decode shapes, arena growth).
    const round = () => Promise.all(sessions.map(async (s, i) => (next[i] = argmax(lastLogits(await s.forward({ kind: 'tokens', ids: Int32Array.of(next[i]!) }))))));
    await round();
    const t0 = performance.now();
    for (let r = 0; r < steps; r++) await round();
    return { batch, steps, tokPerS: (batch * steps * 1000) / (performance.now() - t0) };
  } finally {
    for (const s of sessions) s.dispose();
  }
}
