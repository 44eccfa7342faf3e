import { beforeAll, describe, expect, it } from 'vitest';
import { runCheck } from '../../pool-agent/verify/checker.js';
import { serveJob, testModel } from './verify-fixtures.js';

/**
 * Re-execution checks of quantized models (`--quant int8|int4`) compare like with like: the
 * checker loads the ticket's model id, hence the same weight format, and the default
 * MatMulNBits (accuracy_level 0, float arithmetic) recomputes as closely as a float model does,
 * so the float32 tolerances hold. Every honest failure here is a false positive.
 */
type Model = { dir: string; modelId: string };
const models: Record<string, Model> = {};
beforeAll(async () => {
  models.fp32 = await testModel('tiny-s1-fp32', { preset: 'tiny', dtype: 'float32', seed: 1 });
  models.int8 = await testModel('tiny-s1-fp32-int8', { preset: 'tiny', dtype: 'float32', seed: 1, quant: { format: 'int8' } });
  models.int4 = await testModel('tiny-s1-fp32-int4', { preset: 'tiny', dtype: 'float32', seed: 1, quant: { format: 'int4' } });
});

const PROMPTS = [
  [1, 15043, 29892, 920, 526, 366, 29973],
  [1, 518, 25580, 29962, 14350, 263, 26576, 1048, 278, 7205, 29889, 518, 29914, 25580, 29962],
  [1, 450, 4996, 17354, 1701, 29916],
];
const SAMPLINGS = [
  { temperature: 0, topP: 1, topK: 0, seed: 1 },
  { temperature: 0.8, topP: 0.95, topK: 40, seed: 7 },
  { temperature: 1.2, topP: 1, topK: 0, seed: 99 },
];

describe('checks of quantized models', () => {
  it.each(['int8', 'int4'] as const)('%s: honest generations pass, generated on 1 intra-op thread and checked on 2 (and the reverse)', async (format) => {
    const m = models[format]!;
    const falsePositives: string[] = [];
    let checks = 0;
    for (const promptIds of PROMPTS) {
      for (const sampling of SAMPLINGS) {
        for (const [genThreads, checkThreads] of [[1, 2], [2, 1]] as const) {
          const job = await serveJob({ ticketModelDir: m.dir, hops: [{ dir: m.dir, layers: [0, 4], threads: genThreads }], promptIds, sampling, maxTokens: 24 });
          const v = await runCheck({ modelDir: m.dir, ticket: job.ticket, promptIds, attestations: job.chunks, runtimeOptions: { provider: 'cpu', intraOpThreads: checkThreads } });
          checks++;
          if (v.status !== 'pass') falsePositives.push(`${v.reason}: ${v.detail}`);
          else expect(v.evidence.stepsChecked).toBe(24);
        }
      }
    }
    expect(checks).toBe(18);
    expect(falsePositives).toEqual([]);
  });

  it('a two-hop int4 route passes a whole-model check', async () => {
    const m = models.int4!;
    const promptIds = PROMPTS[1]!;
    const job = await serveJob({ ticketModelDir: m.dir, hops: [{ dir: m.dir, layers: [0, 2], threads: 1 }, { dir: m.dir, layers: [2, 4], threads: 2 }], promptIds, sampling: SAMPLINGS[1]!, maxTokens: 16 });
    const v = await runCheck({ modelDir: m.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: job.disclosures });
    expect(v.status, v.detail).toBe('pass');
  });

  it('a node serving a cheaper format than the ticket names fails on its hidden commitments', async () => {
    const cases: [ticketed: Model, served: Model][] = [
      [models.fp32!, models.int8!],
      [models.fp32!, models.int4!],
      [models.int8!, models.int4!],
    ];
    for (const [ticketed, served] of cases) {
      for (const sampling of [SAMPLINGS[0]!, SAMPLINGS[1]!]) {
        const job = await serveJob({ ticketModelDir: ticketed.dir, hops: [{ dir: served.dir, layers: [0, 4] }], promptIds: PROMPTS[0]!, sampling, maxTokens: 16 });
        const v = await runCheck({ modelDir: ticketed.dir, ticket: job.ticket, promptIds: PROMPTS[0]!, attestations: job.chunks });
        expect(v).toMatchObject({ status: 'fail', reason: 'hidden_mismatch' });
      }
    }
  });

  it('a model computing with int8 activations is not judged (its honest recomputation strays), never blamed', async () => {
    const a4 = await testModel('tiny-s1-fp32-int4-a4', { preset: 'tiny', dtype: 'float32', seed: 1, quant: { format: 'int4', accuracyLevel: 4 } });
    const job = await serveJob({ ticketModelDir: a4.dir, hops: [{ dir: a4.dir, layers: [0, 4] }], promptIds: PROMPTS[0]!, sampling: SAMPLINGS[1]!, maxTokens: 8 });
    const v = await runCheck({ modelDir: a4.dir, ticket: job.ticket, promptIds: PROMPTS[0]!, attestations: job.chunks });
    expect(v).toMatchObject({ status: 'inconclusive', reason: 'checker_error', detail: expect.stringMatching(/int8 activations/) });
  });
});
