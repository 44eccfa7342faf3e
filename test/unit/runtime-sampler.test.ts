import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmax, sampleToken, uniformAt } from '../../pool-agent/runtime/sampler.js';
import { generate } from '../../pool-agent/runtime/pipeline.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';
import { encode } from '../../protocol/tokenizer.js';
import { LAYOUTS, tempModels, type TempModels } from './runtime-fixture.js';

const P = { temperature: 1, topP: 1, topK: 0, seed: 42 };

describe('sampleToken', () => {
  it('is argmax at temperature 0, lowest id on ties, never NaN', () => {
    expect(sampleToken(Float32Array.of(0, 3, 1, 3), { ...P, temperature: 0 }, 0)).toBe(1);
    expect(argmax(Float32Array.of(NaN, -1, NaN))).toBe(1);
    expect(argmax(Float32Array.of(-Infinity, -Infinity))).toBe(0);
    expect(() => argmax(Float32Array.of(NaN))).toThrow(/NaN/);
  });

  it('draws from uniformAt(seed, step) alone: same inputs, same token', () => {
    const logits = Float32Array.from({ length: 1000 }, (_, i) => Math.cos(i) * 2);
    for (let step = 0; step < 20; step++) expect(sampleToken(logits, P, step)).toBe(sampleToken(logits.slice(), P, step));
    const a = Array.from({ length: 20 }, (_, s) => sampleToken(logits, P, s));
    const b = Array.from({ length: 20 }, (_, s) => sampleToken(logits, { ...P, seed: 43 }, s));
    expect(a).not.toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(10);
    expect(uniformAt(1, 0)).not.toBe(uniformAt(1, 1));
    expect(uniformAt(1, 0)).toBe(uniformAt(1, 0));
    expect(uniformAt(1, 2 ** 33)).not.toBe(uniformAt(1, 0));
  });

  it('follows the softmax distribution (4 tokens, 4000 draws)', () => {
    const logits = Float32Array.of(Math.log(0.1), Math.log(0.2), Math.log(0.3), Math.log(0.4));
    const counts = [0, 0, 0, 0];
    for (let s = 0; s < 4000; s++) counts[sampleToken(logits, P, s)]!++;
    [0.1, 0.2, 0.3, 0.4].forEach((p, i) => expect(Math.abs(counts[i]! / 4000 - p)).toBeLessThan(0.03));
    // temperature 0.5 squares the odds: p ~ [1, 4, 9, 16] / 30
    const hot = [0, 0, 0, 0];
    for (let s = 0; s < 4000; s++) hot[sampleToken(logits, { ...P, temperature: 0.5 }, s)]!++;
    expect(Math.abs(hot[3]! / 4000 - 16 / 30)).toBeLessThan(0.03);
  });

  it('applies top-k and top-p cut-offs', () => {
    const logits = Float32Array.of(Math.log(0.1), Math.log(0.2), Math.log(0.3), Math.log(0.4));
    const seen = (params: typeof P): Set<number> => new Set(Array.from({ length: 300 }, (_, s) => sampleToken(logits, params, s)));
    expect(seen({ ...P, topK: 1 })).toEqual(new Set([3]));
    expect(seen({ ...P, topK: 2 })).toEqual(new Set([2, 3]));
    expect(seen({ ...P, topP: 0.35 })).toEqual(new Set([3]));
    expect(seen({ ...P, topP: 0.65 })).toEqual(new Set([2, 3]));
    expect(seen({ ...P, topP: 0.75 })).toEqual(new Set([1, 2, 3]));
    expect(seen({ ...P, topK: 3, topP: 0.99 })).toEqual(new Set([1, 2, 3]));
    // Ties at the top-k boundary keep the lowest id.
    expect(new Set(Array.from({ length: 50 }, (_, s) => sampleToken(Float32Array.of(1, 5, 5, 0), { ...P, topK: 1 }, s)))).toEqual(new Set([1]));
    // NaN logits are never drawn.
    const withNaN = Float32Array.of(NaN, 0, NaN, 0);
    for (const params of [P, { ...P, topK: 3 }, { ...P, topP: 0.9 }]) {
      for (let s = 0; s < 50; s++) expect([1, 3]).toContain(sampleToken(withNaN, params, s));
    }
  });

  it('top-p over a large vocabulary equals the full ranked cut-off', () => {
    const logits = Float32Array.from({ length: 32000 }, (_, i) => Math.sin(i * 12.9898) * 4);
    const ranked = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
    const max = logits[ranked[0]!]!;
    const probs = ranked.map((i) => Math.exp(logits[i]! - max));
    const total = probs.reduce((a, b) => a + b, 0);
    let cum = 0;
    let keep = 0;
    while (cum / total < 0.3) cum += probs[keep++]!;
    const nucleus = new Set(ranked.slice(0, keep));
    for (let s = 0; s < 200; s++) expect(nucleus.has(sampleToken(logits, { ...P, topP: 0.3 }, s))).toBe(true);
  });

  it('top-k over a large vocabulary with ties and NaN draws exactly as the documented ranking', () => {
    // About 25 ids share each value, so ties fall at the k-th place and the heap evicts among them.
    const logits = Float32Array.from({ length: 50257 }, (_, i) => {
      const u = Math.sin(i * 12.9898) * 43758.5453;
      return i % 997 === 0 ? NaN : Math.round((u - Math.floor(u)) * 2000) / 250;
    });
    const ranked = Array.from(logits.keys()).filter((i) => !Number.isNaN(logits[i]!)).sort((a, b) => logits[b]! - logits[a]! || a - b);
    for (const [topK, topP, temperature] of [[40, 1, 0.8], [40, 0.5, 1.3], [1, 1, 1], [500, 0.9, 0.7]] as const) {
      const top = ranked.slice(0, topK);
      const max = logits[top[0]!]!;
      const probs = top.map((i) => Math.exp((logits[i]! - max) / temperature));
      const total = probs.reduce((a, b) => a + b, 0);
      let keep = top.length;
      if (topP < 1) {
        let cum = 0;
        for (let i = 0; i < top.length; i++) if ((cum += probs[i]! / total) >= topP) { keep = i + 1; break; }
      }
      const mass = probs.slice(0, keep).reduce((a, b) => a + b, 0);
      for (let step = 0; step < 100; step++) {
        const target = uniformAt(7, step) * mass;
        let acc = 0;
        let expected = top[keep - 1]!;
        for (let i = 0; i < keep; i++) if (target < (acc += probs[i]!)) { expected = top[i]!; break; }
        expect(sampleToken(logits, { temperature, topP, topK, seed: 7 }, step)).toBe(expected);
      }
    }
  });

  it('rejects invalid parameters', () => {
    const l = Float32Array.of(1, 2);
    expect(() => sampleToken(l, { ...P, temperature: -1 }, 0)).toThrow(/temperature/);
    expect(() => sampleToken(l, { ...P, topP: 0 }, 0)).toThrow(/topP/);
    expect(() => sampleToken(l, { ...P, topK: 1.5 }, 0)).toThrow(/topK/);
    expect(() => sampleToken(l, { ...P, seed: 2 ** 32 }, 0)).toThrow(/seed/);
    expect(() => sampleToken(l, P, -1)).toThrow(/step/);
    expect(() => sampleToken(new Float32Array(0), P, 0)).toThrow(/empty/);
  });
});

describe('deterministic generation across span layouts', () => {
  let models: TempModels;
  let dir: string;
  const spans: LoadedSpan[] = [];
  const PROMPT = encode('Once upon a time', { bos: true });
  const SAMPLING = { temperature: 0.9, topP: 0.95, topK: 50, seed: 1234 };

  async function stages(layout: readonly (readonly [number, number])[]) {
    const out = [];
    for (const r of layout) {
      const s = await loadSpan(dir, r, { provider: 'cpu', intraOpThreads: 1 });
      spans.push(s);
      out.push(s.openSession());
    }
    return out;
  }

  beforeAll(async () => {
    models = await tempModels();
    dir = (await models.build('tiny', { preset: 'tiny', seed: 21 })).dir;
  });
  afterAll(async () => {
    for (const s of spans) await s.close();
    await models.cleanup();
  });

  it('same seed gives the same tokens over 1, 2, 3 and 4 spans; another seed differs', async () => {
    const results = [];
    for (const layout of LAYOUTS) results.push((await generate({ stages: await stages(layout), promptIds: PROMPT, sampling: SAMPLING, maxTokens: 24 })).tokens);
    for (const r of results) expect(r).toEqual(results[0]);
    const other = await generate({ stages: await stages(LAYOUTS[1]!), promptIds: PROMPT, sampling: { ...SAMPLING, seed: 1235 }, maxTokens: 24 });
    expect(other.tokens).not.toEqual(results[0]);
  });

  it('resuming at step k from prompt + first k tokens continues identically', async () => {
    const full = await generate({ stages: await stages([[0, 4]]), promptIds: PROMPT, sampling: SAMPLING, maxTokens: 20 });
    const k = 7;
    const resumed = await generate({
      stages: await stages([[0, 1], [1, 4]]),
      promptIds: [...PROMPT, ...full.tokens.slice(0, k)],
      sampling: SAMPLING,
      maxTokens: 20 - k,
      startStep: k,
    });
    expect(resumed.tokens).toEqual(full.tokens.slice(k));
  });

  it('stops on a stop token (not returned), on max tokens, and on abort', async () => {
    const ref = await generate({ stages: await stages([[0, 4]]), promptIds: PROMPT, sampling: SAMPLING, maxTokens: 12 });
    expect(ref.finishReason).toBe('length');
    const stopAt = 5;
    const stopId = ref.tokens[stopAt]!;
    const firstIdx = ref.tokens.indexOf(stopId);
    const seen: [number, number, boolean][] = [];
    const stopped = await generate({
      stages: await stages([[0, 2], [2, 4]]),
      promptIds: PROMPT,
      sampling: SAMPLING,
      maxTokens: 12,
      stopTokenIds: [stopId],
      onToken: (t, step, row, stop) => {
        expect(row).toHaveLength(64);
        seen.push([t, step, stop]);
      },
    });
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.stopTokenId).toBe(stopId);
    expect(stopped.tokens).toEqual(ref.tokens.slice(0, firstIdx));
    expect(seen.at(-1)).toEqual([stopId, firstIdx, true]);

    const ac = new AbortController();
    const aborted = await generate({
      stages: await stages([[0, 4]]),
      promptIds: PROMPT,
      sampling: SAMPLING,
      maxTokens: 12,
      signal: ac.signal,
      onToken: (_t, step) => {
        if (step === 2) ac.abort();
      },
    });
    expect(aborted.finishReason).toBe('abort');
    expect(aborted.tokens).toEqual(ref.tokens.slice(0, 3));
  });
});
