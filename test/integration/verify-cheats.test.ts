import { beforeAll, describe, expect, it } from 'vitest';
import type { CheckVerdict } from '../../protocol/check.js';
import { tolerancesFor } from '../../protocol/commitment.js';
import { runCheck } from '../../pool-agent/verify/checker.js';
import { serveJob, testModel, type Cheat } from './verify-fixtures.js';

/**
 * Every way a node can save work or serve a different model, on a real tiny model: the attestation
 * chain verifies (the fixture runs ChainVerifier), and the re-execution check must fail, name the
 * hop, and say why.
 */
let ref: { dir: string; modelId: string };
let swapped: { dir: string };
let shallow: { dir: string };
let half: { dir: string };
beforeAll(async () => {
  ref = await testModel('tiny-s1-fp32', { preset: 'tiny', dtype: 'float32', seed: 1 });
  swapped = await testModel('tiny-s2-fp32', { preset: 'tiny', dtype: 'float32', seed: 2 });
  shallow = await testModel('tiny-s1-fp32-2layers', { preset: 'tiny', dtype: 'float32', seed: 1, overrides: { numLayers: 2 } });
  half = await testModel('tiny-s1-fp16', { preset: 'tiny', dtype: 'float16', seed: 1 });
});

const promptIds = [1, 518, 25580, 29962, 14350, 263, 26576, 1048, 278, 7205, 29889, 518, 29914, 25580, 29962];
const greedy = { temperature: 0, topP: 1, topK: 0, seed: 3 };
const sampled = { temperature: 0.8, topP: 0.95, topK: 40, seed: 11 };
const cpu2 = { provider: 'cpu' as const, intraOpThreads: 2 };

async function check(opts: { dir?: string; cheat?: Cheat; sampling?: typeof greedy; maxTokens?: number }): Promise<CheckVerdict> {
  const job = await serveJob({
    ticketModelDir: ref.dir,
    hops: [{ dir: opts.dir ?? ref.dir, layers: [0, 4] }],
    promptIds,
    sampling: opts.sampling ?? greedy,
    maxTokens: opts.maxTokens ?? 16,
    cheat: opts.cheat,
  });
  return runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, runtimeOptions: cpu2 });
}

describe('cheating nodes are caught', () => {
  for (const sampling of [greedy, sampled]) {
    const mode = sampling.temperature === 0 ? 'greedy' : 'sampled';

    it(`lazy node returning random tokens, commitments from the real model (${mode}): sampling mismatch at step 0`, async () => {
      const v = await check({ cheat: { kind: 'random-tokens' }, sampling });
      expect(v).toMatchObject({ status: 'fail', reason: 'sampling_mismatch', hop: 0, evidence: { step: 0 } });
      expect(v.evidence.returnedToken).not.toBe(v.evidence.expectedToken);
    });

    it(`lazy node returning random tokens and random commitments (${mode}): hidden mismatch`, async () => {
      expect(await check({ cheat: { kind: 'random-everything' }, sampling })).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', hop: 0, evidence: { step: 0 } });
    });

    it(`swapped model (other seed) (${mode})`, async () => {
      const v = await check({ dir: swapped.dir, sampling });
      expect(v).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', hop: 0, evidence: { step: 0 } });
      expect(v.evidence.hidden!.indexOverlap).toBeLessThan(0.75);
    });

    it(`smaller model: 2 of the 4 layers (${mode})`, async () => {
      expect(await check({ dir: shallow.dir, sampling })).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', hop: 0, evidence: { step: 0 } });
    });

    it(`decoding with a cheap model, committing with the real one (${mode}): sampling mismatch`, async () => {
      const v = await check({ cheat: { kind: 'cheap-decode', decodeDir: shallow.dir }, sampling, maxTokens: 24 });
      expect(v).toMatchObject({ status: 'fail', reason: 'sampling_mismatch', hop: 0 });
    });

    it(`prompt altered by the node (first 3 tokens dropped) (${mode})`, async () => {
      expect(await check({ cheat: { kind: 'alter-prompt', drop: 3 }, sampling })).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', hop: 0, evidence: { step: 0 } });
    });

    it(`fp16 served when fp32 was ticketed (${mode})`, async () => {
      const v = await check({ dir: half.dir, sampling, maxTokens: 24 });
      expect(v).toMatchObject({ status: 'fail', hop: 0 });
      expect(['hidden_mismatch', 'sampling_mismatch']).toContain(v.reason);
      if (v.reason === 'hidden_mismatch') expect(v.evidence.hidden!.mantissaErrMean).toBeGreaterThan(tolerancesFor('float32').maxMantissaErrMean);
    });
  }

  it('the same node honest passes (so the cases above fail for their cheat)', async () => {
    expect((await check({ sampling: greedy })).status).toBe('pass');
    expect((await check({ sampling: sampled })).status).toBe('pass');
  });
});
