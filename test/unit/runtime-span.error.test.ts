import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import { SpanInputError } from '../../pool-agent/runtime/errors.js';
import { generate } from '../../pool-agent/runtime/pipeline.js';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';
import { tempModels, type TempModels } from './runtime-fixture.js';

let models: TempModels;
let dir: string;
let dir16: string;
const opened: LoadedSpan[] = [];
async function open(d: string, range: readonly [number, number]): Promise<LoadedSpan> {
  const s = await loadSpan(d, range, { provider: 'cpu', intraOpThreads: 1 });
  opened.push(s);
  return s;
}

beforeAll(async () => {
  models = await tempModels();
  // A short context so the position limit is reachable.
  dir = (await models.build('short', { preset: 'tiny', seed: 2, overrides: { maxPositionEmbeddings: 16 } })).dir;
  dir16 = (await models.build('short16', { preset: 'tiny', seed: 2, dtype: 'float16', overrides: { maxPositionEmbeddings: 16 } })).dir;
});
afterAll(async () => {
  for (const s of opened) await s.close();
  await models.cleanup();
});

describe('bad inputs get clear errors', () => {
  it('rejects hidden states of the wrong size', async () => {
    const s = (await open(dir, [1, 4])).openSession();
    const err = await s.forward({ kind: 'hidden', data: new Float32Array(3 * 60), seqLen: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpanInputError);
    expect((err as Error).message).toMatch(/expected seqLen 3 x hidden size 64 = 192/);
    expect(s.length).toBe(0);
  });

  it('rejects hidden states of the wrong dtype', async () => {
    const s32 = (await open(dir, [2, 4])).openSession();
    await expect(s32.forward({ kind: 'hidden', data: new Uint16Array(64), seqLen: 1 })).rejects.toThrow(/float32 expects hidden states as Float32Array, got Uint16Array/);
    const s16 = (await open(dir16, [2, 4])).openSession();
    await expect(s16.forward({ kind: 'hidden', data: new Float32Array(64), seqLen: 1 })).rejects.toThrow(/float16 expects hidden states as Uint16Array/);
  });

  it('rejects the wrong kind of input for the span', async () => {
    const first = (await open(dir, [0, 2])).openSession();
    await expect(first.forward({ kind: 'hidden', data: new Float32Array(64), seqLen: 1 })).rejects.toThrow(/takes token ids/);
    const mid = (await open(dir, [2, 3])).openSession();
    await expect(mid.forward({ kind: 'tokens', ids: Int32Array.of(1) })).rejects.toThrow(/takes hidden states from layer 2/);
    await expect(mid.forward({ kind: 'hidden', data: new Float32Array(0), seqLen: 0 })).rejects.toThrow(/seqLen must be a positive integer/);
  });

  it('rejects token ids outside the vocabulary and empty token input', async () => {
    const s = (await open(dir, [0, 4])).openSession();
    await expect(s.forward({ kind: 'tokens', ids: Int32Array.of(1, 32000) })).rejects.toThrow(/token id 32000 at position 1 is outside the vocabulary/);
    await expect(s.forward({ kind: 'tokens', ids: Int32Array.of(-5) })).rejects.toThrow(SpanInputError);
    await expect(s.forward({ kind: 'tokens', ids: new Int32Array(0) })).rejects.toThrow(/at least one position/);
  });

  it('rejects positions beyond maxPositionEmbeddings, keeping the cache usable', async () => {
    const s = (await open(dir, [0, 4])).openSession();
    await s.forward({ kind: 'tokens', ids: Int32Array.from({ length: 10 }, (_, i) => i + 1) });
    await expect(s.forward({ kind: 'tokens', ids: Int32Array.from({ length: 7 }, () => 5) })).rejects.toThrow(
      /positions 10\.\.16 exceed the model's maxPositionEmbeddings 16/,
    );
    expect(s.length).toBe(10);
    await s.forward({ kind: 'tokens', ids: Int32Array.from({ length: 6 }, () => 5) });
    expect(s.length).toBe(16);
    await expect(s.forward({ kind: 'tokens', ids: Int32Array.of(5) })).rejects.toThrow(/positions 16\.\.16 exceed/);
    // A generation that runs into the limit fails with the same clear error.
    await expect(
      generate({ stages: [(await open(dir, [0, 4])).openSession()], promptIds: [1, 2, 3], sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 }, maxTokens: 20 }),
    ).rejects.toThrow(/maxPositionEmbeddings 16/);
  });

  it('rejects logitsToKeep outside [1, seqLen]', async () => {
    const s = (await open(dir, [0, 4])).openSession();
    await expect(s.forward({ kind: 'tokens', ids: Int32Array.of(1, 2) }, { logitsToKeep: 3 })).rejects.toThrow(/logitsToKeep must be an integer in \[1, 2\]/);
    await expect(s.forward({ kind: 'tokens', ids: Int32Array.of(1, 2) }, { logitsToKeep: 0 })).rejects.toThrow(/logitsToKeep/);
  });

  it('rejects spans that are out of range, empty or unknown', async () => {
    await expect(loadSpan(dir, [0, 5])).rejects.toThrow(/not inside/);
    await expect(loadSpan(dir, [2, 2])).rejects.toThrow(/not inside/);
    await expect(loadSpan(`${dir}-nope`, [0, 1])).rejects.toThrow(/cannot read model manifest/);
  });

  it('refuses sessions on a closed span', async () => {
    const span = await loadSpan(dir, [0, 4], { provider: 'cpu' });
    const s = span.openSession();
    await span.close();
    expect(() => span.openSession()).toThrow(/closed/);
    await expect(s.forward({ kind: 'tokens', ids: Int32Array.of(1) })).rejects.toThrow(/disposed/);
  });

  it('closing a span waits for a forward in flight, which then reports the disposal', async () => {
    const span = await loadSpan(dir, [0, 4], { provider: 'cpu' });
    const s = span.openSession();
    const running = s.forward({ kind: 'tokens', ids: Int32Array.of(1, 2, 3, 4) });
    await span.close();
    await expect(running).rejects.toThrow(/disposed/);
  });

  it('generate() validates its options', async () => {
    const stage = (await open(dir, [0, 4])).openSession();
    const sampling = { temperature: 0, topP: 1, topK: 0, seed: 0 };
    await expect(generate({ stages: [stage], promptIds: [], sampling, maxTokens: 1 })).rejects.toThrow(/at least one token/);
    await expect(generate({ stages: [stage], promptIds: [1], sampling, maxTokens: -1 })).rejects.toThrow(/maxTokens/);
    await expect(generate({ stages: [], promptIds: [1], sampling, maxTokens: 1 })).rejects.toThrow(/at least one stage/);
    const partial = (await open(dir, [0, 2])).openSession();
    await expect(generate({ stages: [partial], promptIds: [1], sampling, maxTokens: 1 })).rejects.toThrow(/expected logits/);
  });
});
