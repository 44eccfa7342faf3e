import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHopCheck } from '../../pool-agent/verify/hop-check.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';
import { serveJob, testModel } from './verify-fixtures.js';

/**
 * Hop checks on real spans (pool-agent/verify/hop-check.ts): a checker that holds only [0, 2) or
 * only [2, 4) of the model re-runs its hop of a two-hop route on the hops' disclosed activations
 * and names that hop when its output does not follow from its input; the other hop of a cheating
 * route passes its own check.
 */
let ref: { dir: string };
let swapped: { dir: string };
let head: LoadedSpan;
let tail: LoadedSpan;
beforeAll(async () => {
  ref = await testModel('tiny-s1-fp32', { preset: 'tiny', dtype: 'float32', seed: 1 });
  swapped = await testModel('tiny-s2-fp32', { preset: 'tiny', dtype: 'float32', seed: 2 });
  head = await loadSpan(ref.dir, [0, 2], cpu);
  tail = await loadSpan(ref.dir, [2, 4], cpu);
});
afterAll(async () => {
  await head?.close();
  await tail?.close();
});

const promptIds = [1, 15043, 29892, 920, 526, 366, 29973, 13, 450];
const sampling = { temperature: 0.7, topP: 0.9, topK: 50, seed: 5 };
const cpu = { provider: 'cpu' as const, intraOpThreads: 2 };

async function twoHop(headDir: string, tailDir: string) {
  return serveJob({ ticketModelDir: ref.dir, hops: [{ dir: headDir, layers: [0, 2] }, { dir: tailDir, layers: [2, 4] }], promptIds, sampling, maxTokens: 12 });
}

type Job = Awaited<ReturnType<typeof twoHop>>;
const check = (job: Job, hop: number, span: LoadedSpan, extra: { disclosures?: Job['disclosures']; withheld?: number[] } = {}) =>
  runHopCheck({ ticket: job.ticket, promptIds, attestations: job.chunks, hop, span, disclosures: extra.disclosures ?? job.disclosures, ...(extra.withheld ? { withheld: extra.withheld } : {}) });

describe('hop checks by span holders', () => {
  it('an honest route: each hop passes its own check', async () => {
    const job = await twoHop(ref.dir, ref.dir);
    const [v0, v1] = [await check(job, 0, head), await check(job, 1, tail)];
    expect(v0, v0.detail).toMatchObject({ status: 'pass', checkedHop: 0 });
    expect(v1, v1.detail).toMatchObject({ status: 'pass', checkedHop: 1 });
  });

  it('a head running other weights fails its hop check; the honest tail passes its own', async () => {
    const job = await twoHop(swapped.dir, ref.dir);
    expect(await check(job, 0, head)).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 0, agentId: job.ticket.route[0]!.agentId, checkedHop: 0 });
    expect((await check(job, 1, tail)).status).toBe('pass');
    // From the receiver's copy of the boundary alone (a silent head cannot hide).
    expect(await check(job, 0, head, { disclosures: job.disclosures.filter((d) => d.hop === 1) })).toMatchObject({ status: 'fail', hop: 0 });
  });

  it('a tail running other weights fails on its commitments; the honest head passes', async () => {
    const job = await twoHop(ref.dir, swapped.dir);
    expect(await check(job, 1, tail)).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', hop: 1, agentId: job.ticket.route[1]!.agentId, checkedHop: 1 });
    expect((await check(job, 0, head)).status).toBe('pass');
  });

  it('a boundary the check needs: withheld blames the withholder (the sender first); merely absent is inconclusive', async () => {
    const job = await twoHop(ref.dir, ref.dir);
    expect(await check(job, 1, tail, { disclosures: [], withheld: [0, 1] })).toMatchObject({ status: 'fail', reason: 'disclosure_mismatch', hop: 0, checkedHop: 1 });
    expect(await check(job, 0, head, { disclosures: [], withheld: [1] })).toMatchObject({ status: 'fail', reason: 'disclosure_mismatch', hop: 1 });
    expect(await check(job, 0, head, { disclosures: [] })).toMatchObject({ status: 'inconclusive', reason: 'bad_request', checkedHop: 0 });
  });

  it('a disclosure that does not hash to the attestations is blamed on the discloser', async () => {
    const job = await twoHop(ref.dir, ref.dir);
    const tampered = job.disclosures.map((d) => (d.hop === 0 ? { ...d, outputs: d.outputs!.map((t, i) => (i === 1 ? Float32Array.from(t as Float32Array, (x) => x * 1.0001) : t)) } : d));
    expect(await check(job, 1, tail, { disclosures: tampered })).toMatchObject({ status: 'fail', reason: 'disclosure_mismatch', hop: 0 });
  });

  it('a span that is not the hop\'s layers runs nothing: inconclusive, nobody blamed', async () => {
    const job = await twoHop(swapped.dir, ref.dir);
    const v = await check(job, 1, head);
    expect(v).toMatchObject({ status: 'inconclusive', reason: 'checker_error', checkedHop: 1 });
    expect(v.agentId).toBeUndefined();
  });
});
