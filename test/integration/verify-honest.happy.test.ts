import { beforeAll, describe, expect, it } from 'vitest';
import { runCheck } from '../../pool-agent/verify/checker.js';
import { serveJob, testModel } from './verify-fixtures.js';

/**
 * Honest routes must pass the re-execution check: across thread counts (different summation
 * orders inside onnxruntime), across span layouts, greedy and sampled. Every failure here is a
 * false positive (docs/trust.md records the count: 0).
 */
let ref: { dir: string; modelId: string };
beforeAll(async () => {
  ref = await testModel('tiny-s1-fp32', { preset: 'tiny', dtype: 'float32', seed: 1 });
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

describe('honest generations pass the check', () => {
  it('single hop, every prompt x sampling, generated on 1 intra-op thread and checked on 2 (and the reverse)', async () => {
    let checks = 0;
    const falsePositives: string[] = [];
    for (const promptIds of PROMPTS) {
      for (const sampling of SAMPLINGS) {
        for (const [genThreads, checkThreads] of [[1, 2], [2, 1]] as const) {
          const job = await serveJob({ ticketModelDir: ref.dir, hops: [{ dir: ref.dir, layers: [0, 4], threads: genThreads }], promptIds, sampling, maxTokens: 24 });
          const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, tokenIds: job.tokens, attestations: job.chunks, runtimeOptions: { provider: 'cpu', intraOpThreads: checkThreads } });
          checks++;
          if (v.status !== 'pass') falsePositives.push(`${v.reason}: ${v.detail}`);
          else expect(v.evidence.stepsChecked).toBe(24);
        }
      }
    }
    expect(checks).toBe(18);
    expect(falsePositives).toEqual([]);
  });

  it('a two-hop route passes a whole-model check', async () => {
    const promptIds = PROMPTS[1]!;
    const job = await serveJob({
      ticketModelDir: ref.dir,
      hops: [
        { dir: ref.dir, layers: [0, 2], threads: 1 },
        { dir: ref.dir, layers: [2, 4], threads: 2 },
      ],
      promptIds,
      sampling: SAMPLINGS[1]!,
      maxTokens: 16,
    });
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: job.disclosures });
    expect(v.status, v.detail).toBe('pass');
  });

  it('a resumed job (prefix tokens from an earlier attempt) passes, and its steps continue the uninterrupted draw', async () => {
    const promptIds = PROMPTS[2]!;
    const sampling = SAMPLINGS[1]!;
    const whole = await serveJob({ ticketModelDir: ref.dir, hops: [{ dir: ref.dir, layers: [0, 4] }], promptIds, sampling, maxTokens: 20 });
    const prefixIds = whole.tokens.slice(0, 8);
    const resumed = await serveJob({ ticketModelDir: ref.dir, hops: [{ dir: ref.dir, layers: [0, 4] }], promptIds, prefixIds, sampling, maxTokens: 12 });
    expect(resumed.tokens).toEqual(whole.tokens.slice(8));
    const v = await runCheck({ modelDir: ref.dir, ticket: resumed.ticket, promptIds, prefixIds, attestations: resumed.chunks, runtimeOptions: { provider: 'cpu' } });
    expect(v.status, v.detail).toBe('pass');
    // The same record checked as if it were not resumed does not hang together.
    expect((await runCheck({ modelDir: ref.dir, ticket: resumed.ticket, promptIds, attestations: resumed.chunks })).status).toBe('inconclusive');
  });

  it('refuses to judge with the wrong inputs instead of blaming the node', async () => {
    const promptIds = PROMPTS[0]!;
    const job = await serveJob({ ticketModelDir: ref.dir, hops: [{ dir: ref.dir, layers: [0, 4] }], promptIds, sampling: SAMPLINGS[0]!, maxTokens: 4 });
    const other = await testModel('tiny-s2-fp32', { preset: 'tiny', dtype: 'float32', seed: 2 });
    expect(await runCheck({ modelDir: other.dir, ticket: job.ticket, promptIds, attestations: job.chunks })).toMatchObject({ status: 'inconclusive', reason: 'checker_error' });
    expect(await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds: [...promptIds, 5], attestations: job.chunks })).toMatchObject({ status: 'inconclusive', reason: 'bad_request' });
    expect(await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, tokenIds: [1, 2, 3, 4], attestations: job.chunks })).toMatchObject({ status: 'inconclusive', reason: 'bad_request' });
    expect(await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: [] })).toMatchObject({ status: 'inconclusive', reason: 'bad_request' });
    expect(await runCheck({ modelDir: '/nonexistent', ticket: job.ticket, promptIds, attestations: job.chunks })).toMatchObject({ status: 'inconclusive', reason: 'checker_error' });
  });
});
