import { beforeAll, describe, expect, it } from 'vitest';
import { runCheck } from '../../pool-agent/verify/checker.js';
import { serveJob, testModel } from './verify-fixtures.js';

/**
 * Per-hop blame on a two-hop route [0, 2) -> [2, 4): a whole-model check says the route is wrong;
 * the hops' disclosed activations (hash-bound to their attestations) let the checker re-run one
 * span at a time and name the hop whose output does not follow from its input.
 */
let ref: { dir: string };
let swapped: { dir: string };
beforeAll(async () => {
  ref = await testModel('tiny-s1-fp32', { preset: 'tiny', dtype: 'float32', seed: 1 });
  swapped = await testModel('tiny-s2-fp32', { preset: 'tiny', dtype: 'float32', seed: 2 });
});

const promptIds = [1, 15043, 29892, 920, 526, 366, 29973, 13, 450];
const sampling = { temperature: 0.7, topP: 0.9, topK: 50, seed: 5 };
const cpu = { provider: 'cpu' as const, intraOpThreads: 2 };

async function twoHop(head: string, tail: string, outputTopLoc = true) {
  return serveJob({ ticketModelDir: ref.dir, hops: [{ dir: head, layers: [0, 2] }, { dir: tail, layers: [2, 4] }], promptIds, sampling, maxTokens: 12, outputTopLoc });
}

describe('per-hop blame', () => {
  it('blames the head hop when it runs other weights', async () => {
    const job = await twoHop(swapped.dir, ref.dir);
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: job.disclosures, runtimeOptions: cpu });
    expect(v).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 0, agentId: job.ticket.route[0]!.agentId });
  });

  it('blames the last hop when it runs other weights', async () => {
    const job = await twoHop(ref.dir, swapped.dir);
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: job.disclosures, runtimeOptions: cpu });
    expect(v).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', hop: 1, agentId: job.ticket.route[1]!.agentId });
  });

  it('the head can be judged from the next hop disclosure alone (a silent head cannot hide)', async () => {
    const job = await twoHop(swapped.dir, ref.dir);
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: job.disclosures.filter((d) => d.hop === 1), runtimeOptions: cpu });
    expect(v).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 0 });
  });

  it('one copy of the boundary is enough (the edge forwards the sender\'s): the last hop is still named', async () => {
    const job = await twoHop(ref.dir, swapped.dir);
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: job.disclosures.filter((d) => d.hop === 0), runtimeOptions: cpu });
    expect(v).toMatchObject({ status: 'fail', reason: 'hidden_mismatch', hop: 1, agentId: job.ticket.route[1]!.agentId });
  });

  it('a hop that withheld, so that no hop can be re-run, is blamed for withholding (the sender first; hops without outputTopLoc)', async () => {
    // With outputTopLoc the head is re-run on its tokens and named by its own commitment
    // (verify-blame-commitments.test.ts); older agents' attestations carry none.
    const job = await twoHop(swapped.dir, ref.dir, false);
    const both = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, withheld: [0, 1], runtimeOptions: cpu });
    expect(both).toMatchObject({ status: 'fail', reason: 'disclosure_mismatch', hop: 0, agentId: job.ticket.route[0]!.agentId });
    expect(both.detail).toMatch(/withheld/);
    const tail = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, withheld: [1], runtimeOptions: cpu });
    expect(tail).toMatchObject({ status: 'fail', reason: 'disclosure_mismatch', hop: 1 });
  });

  it('a cheat proven on a re-run hop comes before a withholder', async () => {
    const job = await twoHop(swapped.dir, ref.dir);
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: job.disclosures.filter((d) => d.hop === 0), withheld: [1], runtimeOptions: cpu });
    expect(v).toMatchObject({ status: 'fail', reason: 'hop_output_mismatch', hop: 0 });
  });

  it('without disclosures a multi-hop failure blames the route, not a hop', async () => {
    const job = await twoHop(swapped.dir, ref.dir);
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, runtimeOptions: cpu });
    expect(v.status).toBe('fail');
    expect(v.hop).toBeUndefined();
    expect(v.agentId).toBeUndefined();
    expect(v.detail).toMatch(/disclosures/);
  });

  it('a disclosure that does not hash to the attestation is blamed on the discloser', async () => {
    const job = await twoHop(swapped.dir, ref.dir);
    const tampered = job.disclosures.map((d) => (d.hop === 0 ? { ...d, outputs: d.outputs!.map((t, i) => (i === 2 ? Float32Array.from(t as Float32Array, (x) => x * 1.0001) : t)) } : d));
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: tampered, runtimeOptions: cpu });
    expect(v).toMatchObject({ status: 'fail', reason: 'disclosure_mismatch', hop: 0 });
  });

  it('an honest two-hop route with disclosures passes', async () => {
    const job = await twoHop(ref.dir, ref.dir);
    const v = await runCheck({ modelDir: ref.dir, ticket: job.ticket, promptIds, attestations: job.chunks, disclosures: job.disclosures, runtimeOptions: cpu });
    expect(v.status, v.detail).toBe('pass');
  });
});
