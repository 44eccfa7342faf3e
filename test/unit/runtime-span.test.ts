import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedSpan, SpanOutput, SpanSession } from '../../pool-agent/runtime/types.js';
import { KV_BLOCK_POSITIONS, loadSpan, type LoadProgress } from '../../pool-agent/runtime/span.js';
import { forwardChain, generate } from '../../pool-agent/runtime/pipeline.js';
import { encode, BOS_ID } from '../../protocol/tokenizer.js';
import { LAYOUTS, maxAbsDiff, tempModels, type TempModels } from './runtime-fixture.js';

const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 0 };
const PROMPT = encode('The quick brown fox jumps over the lazy dog', { bos: true });

let models: TempModels;
let dir32: string;
let dir16: string;
let dirFullKv: string;
let dir16FullKv: string;
const spans = new Map<string, LoadedSpan>();

async function span(dir: string, range: readonly [number, number], extra: { maxSessionBytes?: number } = {}): Promise<LoadedSpan> {
  const key = `${dir}:${range.join('-')}:${extra.maxSessionBytes ?? ''}`;
  let s = spans.get(key);
  if (!s) {
    s = await loadSpan(dir, range, { provider: 'cpu', intraOpThreads: 1, ...extra });
    spans.set(key, s);
  }
  return s;
}

async function sessions(dir: string, layout: readonly (readonly [number, number])[]): Promise<SpanSession[]> {
  return Promise.all(layout.map(async (r) => (await span(dir, r)).openSession()));
}

type Logits = SpanOutput & { kind: 'logits' };

beforeAll(async () => {
  models = await tempModels();
  dir32 = (await models.build('tiny32', { preset: 'tiny', seed: 11 })).dir;
  dir16 = (await models.build('tiny16', { preset: 'tiny', seed: 11, dtype: 'float16' })).dir;
  dirFullKv = (await models.build('tiny32-fullkv', { preset: 'tiny', seed: 11, kvCache: 'full' })).dir;
  dir16FullKv = (await models.build('tiny16-fullkv', { preset: 'tiny', seed: 11, dtype: 'float16', kvCache: 'full' })).dir;
});
afterAll(async () => {
  for (const s of spans.values()) await s.close();
  await models.cleanup();
});

describe('splitting is exact', () => {
  for (const layout of LAYOUTS) {
    it(`${layout.length} span(s): all-position logits and final hidden match the unsplit model (fp32 and fp16)`, async () => {
      for (const dir of [dir32, dir16]) {
        const ref = await forwardChain(await sessions(dir, [[0, 4]]), Int32Array.from(PROMPT), { logitsToKeep: PROMPT.length });
        const out = await forwardChain(await sessions(dir, layout), Int32Array.from(PROMPT), { logitsToKeep: PROMPT.length });
        expect(out.logitsKept).toBe(PROMPT.length);
        expect(out.logits.length).toBe(PROMPT.length * 32000);
        expect(maxAbsDiff(out.logits, ref.logits)).toBeLessThanOrEqual(1e-5);
        expect(maxAbsDiff(out.finalHidden, ref.finalHidden)).toBeLessThanOrEqual(1e-5);
      }
    });

    it(`${layout.length} span(s): 32 greedy tokens equal the unsplit model's, fp32 and fp16`, async () => {
      for (const dir of [dir32, dir16]) {
        const ref = await generate({ stages: await sessions(dir, [[0, 4]]), promptIds: PROMPT, sampling: GREEDY, maxTokens: 32 });
        const out = await generate({ stages: await sessions(dir, layout), promptIds: PROMPT, sampling: GREEDY, maxTokens: 32 });
        expect(ref.tokens).toHaveLength(32);
        expect(out.tokens).toEqual(ref.tokens);
        expect(out.positions).toBe(PROMPT.length + 31);
      }
    });
  }

  it('passes hidden states between spans in the model dtype (Uint16Array for fp16)', async () => {
    const [a] = await sessions(dir16, [[0, 2]]);
    const out = await a!.forward({ kind: 'tokens', ids: Int32Array.of(BOS_ID, 100) });
    expect(out.kind).toBe('hidden');
    if (out.kind !== 'hidden') return;
    expect(out.data).toBeInstanceOf(Uint16Array);
    expect(out.data.length).toBe(2 * 64);
    const [a32] = await sessions(dir32, [[0, 2]]);
    const out32 = await a32!.forward({ kind: 'tokens', ids: Int32Array.of(BOS_ID, 100) });
    expect(out32.kind === 'hidden' && out32.data instanceof Float32Array).toBe(true);
  });

  it('cut into several onnxruntime sessions (the >2 GiB fallback) gives the same logits', async () => {
    const ref = await forwardChain(await sessions(dir32, [[0, 4]]), Int32Array.from(PROMPT), { logitsToKeep: 3 });
    const cut = await span(dir32, [0, 4], { maxSessionBytes: 1 });
    const out = await forwardChain([cut.openSession()], Int32Array.from(PROMPT), { logitsToKeep: 3 });
    expect(maxAbsDiff(out.logits, ref.logits)).toBeLessThanOrEqual(1e-5);
  });

  it('reports its progress: each file once it is read and checked, then each session before it is created', async () => {
    const manifest = (await span(dir32, [0, 4])).manifest;
    const want = ['layers.1.onnx', 'layers.2.onnx', 'layers.3.onnx', 'head.onnx'].map((path) => manifest.files.find((f) => f.path === path)!);
    const total = want.reduce((n, f) => n + f.bytes, 0);
    for (const maxSessionBytes of [undefined, 1]) {
      const seen: LoadProgress[] = [];
      const s = await loadSpan(dir32, [1, 4], { provider: 'cpu', intraOpThreads: 1, onProgress: (p) => void seen.push({ ...p }), ...(maxSessionBytes ? { maxSessionBytes } : {}) });
      await s.close();
      const files = seen.filter((p) => p.stage === 'file');
      expect(files.map((p) => p.file)).toEqual(want.map((f) => f.path));
      expect(files.map((p) => p.filesDone)).toEqual(want.map((_, i) => i + 1));
      expect(files.at(-1)).toMatchObject({ files: want.length, bytesDone: total, bytes: total });
      const sessionsSeen = seen.filter((p) => p.stage === 'session');
      // One session for the merged span; one per file when each file must be a session of its own.
      expect(sessionsSeen.map((p) => `${p.session}/${p.sessions}`)).toEqual(maxSessionBytes ? want.map((_, i) => `${i + 1}/${want.length}`) : ['1/1']);
      // A session is created only after its files were read.
      expect(seen.map((p) => p.stage)).toEqual(maxSessionBytes ? want.flatMap(() => ['file', 'session']) : [...want.map(() => 'file'), 'session']);
    }
  });
});

describe('KV cache', () => {
  it('prefill then decode equals one longer prefill, and positions continue from length', async () => {
    const [full] = await sessions(dir32, [[0, 4]]);
    const all = (await full!.forward({ kind: 'tokens', ids: Int32Array.from(PROMPT) }, { logitsToKeep: 2 })) as Logits;
    const [inc] = await sessions(dir32, [[0, 4]]);
    const head = PROMPT.slice(0, -1);
    const first = (await inc!.forward({ kind: 'tokens', ids: Int32Array.from(head) })) as Logits;
    expect(inc!.length).toBe(head.length);
    const last = (await inc!.forward({ kind: 'tokens', ids: Int32Array.of(PROMPT.at(-1)!) })) as Logits;
    expect(inc!.length).toBe(PROMPT.length);
    expect(maxAbsDiff(first.logits, all.logits.subarray(0, 32000))).toBeLessThan(1e-4);
    expect(maxAbsDiff(last.logits, all.logits.subarray(32000))).toBeLessThan(1e-4);
  });

  it('reports KV bytes per token and in use, and forgets everything on dispose', async () => {
    const s = await span(dir32, [1, 3]);
    // 2 layers x (key + value) x 2 kv heads x 16 dims x 4 bytes
    expect(s.kvBytesPerToken).toBe(2 * 2 * 2 * 16 * 4);
    expect(s.first).toBe(false);
    expect(s.last).toBe(false);
    expect(s.provider).toBe('cpu');
    expect(s.layers).toEqual([1, 3]);
    // The 'append' cache holds whole blocks of KV_BLOCK_POSITIONS, never more than maxPositions.
    const sess = s.openSession();
    expect(sess.kvBytes).toBe(0);
    await sess.forward({ kind: 'hidden', data: new Float32Array(5 * 64).fill(0.5), seqLen: 5 });
    expect(sess.kvBytes).toBe(KV_BLOCK_POSITIONS * s.kvBytesPerToken);
    const bounded = s.openSession({ maxPositions: 8 });
    await bounded.forward({ kind: 'hidden', data: new Float32Array(5 * 64).fill(0.5), seqLen: 5 });
    expect(bounded.kvBytes).toBe(8 * s.kvBytesPerToken);
    bounded.dispose();
    const fullLayout = await span(dirFullKv, [1, 3]);
    const exact = fullLayout.openSession();
    await exact.forward({ kind: 'hidden', data: new Float32Array(5 * 64).fill(0.5), seqLen: 5 });
    expect(exact.kvBytes).toBe(5 * s.kvBytesPerToken);
    exact.dispose();
    sess.dispose();
    await expect(sess.forward({ kind: 'hidden', data: new Float32Array(64), seqLen: 1 })).rejects.toThrow(/disposed/);
    const f16 = await span(dir16, [1, 3]);
    expect(f16.kvBytesPerToken).toBe(s.kvBytesPerToken / 2);
  });

  it("the 'append' layout gives the logits of the standard 'full' layout, across cache-block boundaries (fp32 and fp16)", async () => {
    // 150 positions, past the 64- and 128-position blocks.
    const ids = Array.from({ length: 150 }, (_, i) => (i === 0 ? BOS_ID : 100 + ((i * 7919) % 30000)));
    // fp16 keeps hidden states and the cache in float16: when the two layouts' float32 sums round
    // differently, a stored value moves by one float16 step (~1e-3 near 1), hence the wider bound.
    for (const [appendDir, fullDir, layout, bound] of [
      [dir32, dirFullKv, [[0, 4]], 1e-4],
      [dir32, dirFullKv, [[0, 1], [1, 3], [3, 4]], 1e-4],
      [dir16, dir16FullKv, [[0, 2], [2, 4]], 5e-3],
    ] as const) {
      const append = await sessions(appendDir, layout);
      const full = await sessions(fullDir, layout);
      let worst = 0;
      // A first prefill (nothing cached), a 5-position continuation (cached rows and a causal new
      // block), then single steps.
      for (const [from, to] of [[0, 40], [40, 45], ...Array.from({ length: 105 }, (_, i) => [45 + i, 46 + i])] as [number, number][]) {
        const step = Int32Array.from(ids.slice(from, to));
        const a = (await forwardChain(append, step)) as Logits;
        const f = (await forwardChain(full, step)) as Logits;
        worst = Math.max(worst, maxAbsDiff(a.logits, f.logits), maxAbsDiff(a.finalHidden, f.finalHidden));
      }
      expect(append[0]!.length).toBe(150);
      expect(worst).toBeLessThanOrEqual(bound);
    }
    // One prefill of all 150 positions agrees with the step-by-step run on the last position.
    const [one] = await sessions(dir32, [[0, 4]]);
    const [steps] = await sessions(dir32, [[0, 4]]);
    const whole = (await one!.forward({ kind: 'tokens', ids: Int32Array.from(ids) })) as Logits;
    await steps!.forward({ kind: 'tokens', ids: Int32Array.from(ids.slice(0, 100)) });
    let last!: Logits;
    for (let i = 100; i < 150; i++) last = (await steps!.forward({ kind: 'tokens', ids: Int32Array.of(ids[i]!) })) as Logits;
    expect(maxAbsDiff(whole.logits, last.logits)).toBeLessThan(1e-4);
  });

  it('runs overlapping forward calls one after the other, in call order', async () => {
    const [seq] = await sessions(dir32, [[0, 4]]);
    const [ref] = await sessions(dir32, [[0, 4]]);
    const a = seq!.forward({ kind: 'tokens', ids: Int32Array.from(PROMPT.slice(0, 4)) });
    const b = seq!.forward({ kind: 'tokens', ids: Int32Array.from(PROMPT.slice(4)) });
    const [, rb] = (await Promise.all([a, b])) as [Logits, Logits];
    expect(seq!.length).toBe(PROMPT.length);
    const whole = (await ref!.forward({ kind: 'tokens', ids: Int32Array.from(PROMPT) })) as Logits;
    expect(maxAbsDiff(rb.logits, whole.logits)).toBeLessThan(1e-4);
  });

  it('keeps separate sessions of one span independent', async () => {
    const s = await span(dir32, [0, 4]);
    const a = s.openSession();
    const b = s.openSession();
    const ra = await generate({ stages: [a], promptIds: PROMPT, sampling: GREEDY, maxTokens: 4 });
    await b.forward({ kind: 'tokens', ids: Int32Array.of(BOS_ID, 5, 6, 7) });
    const rb = await generate({ stages: [s.openSession()], promptIds: PROMPT, sampling: GREEDY, maxTokens: 4 });
    expect(rb.tokens).toEqual(ra.tokens);
  });
});

describe('numerics', () => {
  it('stays finite over 512 greedy steps (fp32 and fp16)', async () => {
    for (const dir of [dir32, dir16]) {
      let nonFinite = 0;
      let maxAbs = 0;
      const r = await generate({
        stages: await sessions(dir, [[0, 4]]),
        promptIds: PROMPT,
        sampling: GREEDY,
        maxTokens: 512,
        onToken: (_t, _s, row) => {
          for (const x of row) {
            if (!Number.isFinite(x)) nonFinite++;
            maxAbs = Math.max(maxAbs, Math.abs(x));
          }
        },
      });
      expect(r.tokens).toHaveLength(512);
      expect(nonFinite).toBe(0);
      expect(maxAbs).toBeLessThan(100);
    }
  });

  it('fp16 on the CPU provider tracks fp32 closely', async () => {
    const r32 = await forwardChain(await sessions(dir32, [[0, 4]]), Int32Array.from(PROMPT), { logitsToKeep: PROMPT.length });
    const r16 = await forwardChain(await sessions(dir16, [[0, 2], [2, 4]]), Int32Array.from(PROMPT), { logitsToKeep: PROMPT.length });
    const diff = maxAbsDiff(r32.logits, r16.logits);
    expect(diff).toBeGreaterThan(0); // really a different precision
    expect(diff).toBeLessThan(0.1);
    expect(maxAbsDiff(r32.finalHidden, r16.finalHidden)).toBeLessThan(0.1);
  });
});
