import { beforeAll, describe, expect, it } from 'vitest';
import { planCheck, type CheckPlan } from '../../protocol/check.js';
import { tolerancesFor } from '../../protocol/commitment.js';
import { judgeHopCommitment, MAX_OUTPUT_TOPLOC_ROWS } from '../../protocol/output-commitment.js';
import { fromFloat16Array } from '../../pool-agent/model/weights.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import { runCheck } from '../../pool-agent/verify/checker.js';
import { serveJob, testModel, type Cheat } from './verify-fixtures.js';

/**
 * Per-hop blame by each hop's own TOPLOC commitment of the activations it sent (`outputTopLoc`),
 * on three-hop routes [0, 1) -> [1, 3) -> [3, 4): a hop is re-run on its input (the tokens, a
 * disclosed boundary, or the checker's own re-run of the hops before it, when they agreed with
 * their commitments) and judged by what it committed to, so the blame no longer needs the bytes it
 * sent, which it can withhold and every hop forgets after the disclosure window.
 */
let ref: { dir: string };
let swapped: { dir: string };
let half: { dir: string };
beforeAll(async () => {
  ref = await testModel('tiny-s1-fp32', { preset: 'tiny', dtype: 'float32', seed: 1 });
  swapped = await testModel('tiny-s2-fp32', { preset: 'tiny', dtype: 'float32', seed: 2 });
  half = await testModel('tiny-s1-fp16', { preset: 'tiny', dtype: 'float16', seed: 1 });
});

const promptIds = [1, 15043, 29892, 920, 526, 366, 29973, 13, 450];
const sampling = { temperature: 0.7, topP: 0.9, topK: 50, seed: 5 };
const cpu = { provider: 'cpu' as const, intraOpThreads: 2 };
const LAYERS: [number, number][] = [
  [0, 1],
  [1, 3],
  [3, 4],
];

async function threeHop(dirs: [string, string, string], o: { outputTopLoc?: boolean; threads?: number[]; cheat?: Cheat; prompt?: number[]; model?: string } = {}) {
  const prompt = o.prompt ?? promptIds;
  const job = await serveJob({
    ticketModelDir: o.model ?? ref.dir,
    hops: dirs.map((dir, i) => ({ dir, layers: LAYERS[i]!, threads: o.threads?.[i] ?? 1 })),
    promptIds: prompt,
    sampling,
    maxTokens: 10,
    cheat: o.cheat,
    outputTopLoc: o.outputTopLoc,
  });
  return { ...job, promptIds: prompt };
}

type Job = Awaited<ReturnType<typeof threeHop>>;
const check = (job: Job, disclosed: number[], withheld: number[], modelDir = ref.dir) =>
  runCheck({ modelDir, ticket: job.ticket, promptIds: job.promptIds, attestations: job.chunks, disclosures: job.disclosures.filter((d) => disclosed.includes(d.hop)), withheld, runtimeOptions: cpu });

describe('a hop is named by its own outputTopLoc', () => {
  it('the middle hop cheats and withholds, the last hop lost its disclosure: named for its output, not for withholding', async () => {
    const job = await threeHop([ref.dir, swapped.dir, ref.dir]);
    for (const chunk of job.chunks) for (const { att } of chunk.slice(0, 2)) expect(att.outputTopLoc).toBeDefined();
    const v = await check(job, [0], [1, 2]);
    expect(v).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 1, agentId: job.ticket.route[1]!.agentId });
    expect(v.detail).toMatch(/own outputTopLoc disagrees/);
    // The last hop not even asked: the same (hop 1's input is disclosed, its output committed).
    expect(await check(job, [0], [1])).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 1 });
    // Older agents' attestations (no outputTopLoc): the same disclosures only name a withholder.
    const legacy = await threeHop([ref.dir, swapped.dir, ref.dir], { outputTopLoc: false });
    expect(await check(legacy, [0], [1, 2])).toMatchObject({ status: 'fail', reason: 'disclosure_mismatch', hop: 1 });
  });

  it('after the disclosure window (every hop withheld): the cheating hop is still named, whichever it is', async () => {
    for (const [dirs, hop, reason] of [
      [[swapped.dir, ref.dir, ref.dir], 0, 'hop_output_mismatch'],
      [[ref.dir, swapped.dir, ref.dir], 1, 'hop_output_mismatch'],
      [[ref.dir, ref.dir, swapped.dir], 2, 'hidden_mismatch'],
    ] as const) {
      const job = await threeHop([...dirs]);
      const v = await check(job, [], [0, 1, 2]);
      expect(v, v.detail).toMatchObject({ status: 'fail', reason, hop, agentId: job.ticket.route[hop]!.agentId });
    }
  });

  it('a hop judged on the checker reconstruction of its input is not convicted unless it withheld that input', async () => {
    const job = await threeHop([ref.dir, swapped.dir, ref.dir]);
    // Hop 1 was not asked (not a withholder): it could still show what it received. Hop 0 withheld.
    const v = await check(job, [], [0]);
    expect(v).toMatchObject({ status: 'fail', reason: 'disclosure_mismatch', hop: 0 });
    expect(v.detail).toMatch(/hop 1 disagreed on the checker's reconstruction/);
  });

  it('a malformed outputTopLoc is its signer’s fault whatever its input', async () => {
    const job = await threeHop([ref.dir, ref.dir, ref.dir], { cheat: { kind: 'random-tokens' } });
    job.chunks[3]![1]!.att.outputTopLoc = 'AAAA';
    const v = await check(job, [], []);
    // No disclosure round: runCheck names no hop (multi-hop blame needs the edge's round).
    expect(v.hop).toBeUndefined();
    const round = await check(job, [], [2]);
    expect(round).toMatchObject({ status: 'fail', reason: 'missing_commitment', hop: 1 });
  });
});

describe('no false positive from the commitments', () => {
  it('honest hops on other thread counts than the checker agree with their commitments (fp32, long prompt); the lying last hop is named', async () => {
    // A prompt longer than MAX_OUTPUT_TOPLOC_ROWS: the prefill chunk commits to sampled rows.
    const prompt = Array.from({ length: MAX_OUTPUT_TOPLOC_ROWS + 40 }, (_, i) => 1 + ((i * 7919) % 31_000));
    const job = await threeHop([ref.dir, ref.dir, ref.dir], { threads: [1, 3, 2], cheat: { kind: 'random-tokens' }, prompt });
    for (const [disclosed, withheld] of [
      [[0, 1, 2], []],
      [[], [0, 1, 2]],
      [[0], [1, 2]],
    ] as const) {
      const v = await check(job, [...disclosed], [...withheld]);
      expect(v, v.detail).toMatchObject({ status: 'fail', reason: 'sampling_mismatch', hop: 2 });
    }
  });

  it('fp16: honest hops agree with their commitments on another thread count', async () => {
    const job = await threeHop([half.dir, half.dir, half.dir], { threads: [2, 1, 3], cheat: { kind: 'random-tokens' }, model: half.dir });
    const v = await check(job, [], [0, 1, 2], half.dir);
    expect(v, v.detail).toMatchObject({ status: 'fail', reason: 'sampling_mismatch', hop: 2 });
  });

  it('an honest route re-run hop by hop: every commitment within the fp32 tolerances, with room', async () => {
    const job = await threeHop([ref.dir, ref.dir, ref.dir], { threads: [2, 1, 1] });
    const planned = await planCheck(job.ticket, job.promptIds, job.chunks);
    if (!planned.ok) throw new Error(planned.verdict.detail);
    const plan: CheckPlan = planned.plan;
    expect(await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds: job.promptIds, attestations: job.chunks, runtimeOptions: cpu })).toMatchObject({ status: 'pass' });
    let input: { kind: 'tokens'; ids: Int32Array } | { kind: 'hidden'; data: Float32Array; seqLen: number } = { kind: 'tokens', ids: Int32Array.from(plan.sequence) };
    for (let h = 0; h < 2; h++) {
      const span = await loadSpan(ref.dir, LAYERS[h]!, { provider: 'cpu', intraOpThreads: 4 });
      const session = span.openSession();
      const out = await session.forward(input);
      session.dispose();
      await span.close();
      if (out.kind !== 'hidden') throw new Error('expected activations');
      const rows = out.data instanceof Float32Array ? out.data : fromFloat16Array(out.data);
      expect(judgeHopCommitment(plan, h, rows, 64, tolerancesFor('float32'))).toEqual({ kind: 'agrees', complete: true });
      // Ten times stricter still passes: honest noise is far under the tolerances.
      const strict = { minIndexOverlap: 0.9, maxExpMismatch: 0.0625, maxMantissaErrMean: 0.4, maxMantissaErrMedian: 0.2 };
      expect(judgeHopCommitment(plan, h, rows, 64, strict)).toEqual({ kind: 'agrees', complete: true });
      input = { kind: 'hidden', data: rows, seqLen: out.seqLen };
    }
  });
});
