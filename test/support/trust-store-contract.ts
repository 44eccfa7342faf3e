/**
 * What every `RegistryStore` does for disputes the scheduled tick retries, for routes blocked and held
 * after a failed check (edge/checks/disputes.ts, route-blocks.ts, tick.ts), and for cooldowns after
 * failures (their reason kept), checked the same way
 * against the memory double (test/unit/edge-trust-store.test.ts) and Postgres
 * (test/integration/registry-store.test.ts).
 *
 * @example
 * it('keeps disputes and route blocks', () => checkTrustStore(store, { modelId, agentIds: [a, b, c, d], at: NOW }));
 */
import { expect } from 'vitest';
import type { CheckRequest } from '../../protocol/check.js';
import type { RegistryStore } from '../../db/registry-contract.js';

export interface TrustStoreFixture {
  /** A published model. */
  modelId: string;
  /** Four active agents with a span of the model and a heartbeat at `at`, no dispute, no probation. */
  agentIds: [string, string, string, string];
  at: number;
}

/** Not a valid request: the store keeps it as it is given. */
const request = (jobId: string) => ({ signedTicket: { ticket: { jobId, route: [] }, signature: 'sig' }, promptIds: [1, 2, 3], prefixIds: [], attestations: [] }) as unknown as CheckRequest;

export async function checkTrustStore(store: RegistryStore, { modelId, agentIds: [a, b, c, d], at }: TrustStoreFixture): Promise<void> {
  const view = async (now = at) => {
    const list = await store.listRouteCandidates(modelId, { heartbeatAfter: at - 30_000, limit: 100, at: now });
    return new Map(list.map((x) => [x.agentId, { inDispute: x.inDispute ?? false, blockedRoutes: x.blockedRoutes ?? [], held: x.held ?? false }]));
  };
  expect([...(await view()).values()].every((x) => !x.inDispute && x.blockedRoutes.length === 0 && !x.held)).toBe(true);

  // A dispute kept for retries: due at `retryAfter`, then pushed `retryMs` on by each claim.
  const check = { modelId, numLayers: 4, request: request('job-r') };
  const opened = await store.openDispute({ jobId: 'job-r', agentId: a, reason: 'hidden_mismatch', evidence: { ticket: 't', verdicts: [{ checkerId: b, n: 1 }] }, firstCheckerId: b, check, retryAfter: at + 60_000, at });
  expect(opened).toMatchObject({ status: 'open', agentId: a });
  // Opened without a retry time (before disputes kept their request): never claimed.
  await store.openDispute({ jobId: 'job-legacy', agentId: d, reason: 'x', evidence: null, at: at - 1 });
  expect((await view()).get(a)!.inDispute).toBe(true);
  expect((await view()).get(d)!.inDispute).toBe(true);
  expect((await view()).get(b)!.inDispute).toBe(false);

  expect(await store.claimDisputeRetries({ at: at + 59_999, retryMs: 60_000, limit: 10 })).toEqual([]);
  const [due, ...more] = await store.claimDisputeRetries({ at: at + 60_000, retryMs: 60_000, limit: 10 });
  expect(more).toEqual([]);
  expect(due).toEqual({ id: opened.id, jobId: 'job-r', agentId: a, reason: 'hidden_mismatch', openedAt: at, checkerAgentIds: [b], verdicts: [{ checkerId: b, n: 1 }], check });
  // Claimed: a tick running at the same time does not get it; the next one does.
  expect(await store.claimDisputeRetries({ at: at + 60_000, retryMs: 60_000, limit: 10 })).toEqual([]);
  await store.recordDisputeCheck(opened.id, { checkerAgentId: c, verdict: { checkerId: c, n: 2 }, at: at + 61_000 });
  await store.noteDisputeRetry(opened.id, { at: at + 61_000, outcome: 'inconclusive', asked: 1 });
  const [again] = await store.claimDisputeRetries({ at: at + 120_000, retryMs: 60_000, limit: 10 });
  expect(again).toMatchObject({ id: opened.id, checkerAgentIds: [b, c], verdicts: [{ checkerId: b, n: 1 }, { checkerId: c, n: 2 }], check });

  // Route blocks: on the head's candidates only, until their end; lifted at once.
  await store.blockRoute({ modelId, route: [b, c], jobId: 'job-b', reason: 'hidden_mismatch', at, until: at + 1_000 });
  await store.blockRoute({ modelId, route: [c], jobId: 'job-c', reason: 'hidden_mismatch', at, until: at + 5_000 });
  await store.blockRoute({ modelId, route: [d, c], jobId: 'job-d', reason: 'sampling_mismatch', at, until: at + 5_000 });
  let v = await view();
  expect(v.get(b)!.blockedRoutes).toEqual([[b, c]]);
  expect(v.get(c)!.blockedRoutes).toEqual([[c]]);
  expect(v.get(a)!.blockedRoutes).toEqual([]);
  expect((await view(at + 1_000)).get(b)!.blockedRoutes).toEqual([]);
  await store.liftRouteBlocks({ jobId: 'job-d', route: [d, c], at: at + 10 });
  expect((await view(at + 10)).get(d)!.blockedRoutes).toEqual([]);
  await store.liftRouteBlocks({ jobId: 'job-c', route: [b, c], at: at + 10 });
  expect((await view(at + 10)).get(c)!.blockedRoutes).toEqual([[c]]);

  // Ended blocks go, and so does their hops' probation, unless something still holds them.
  for (const id of [a, b, c, d]) await store.setProbation(id, true);
  await store.blockRoute({ modelId, route: [a, b], jobId: 'job-a', reason: 'hidden_mismatch', at, until: at + 1_000 });
  expect(await store.expireRouteBlocks({ at: at + 999, limit: 10 })).toEqual([expect.objectContaining({ jobId: 'job-d', route: [d, c] })]);
  const ended = await store.expireRouteBlocks({ at: at + 1_000, limit: 10 });
  expect(ended.map((x) => x.jobId).sort()).toEqual(['job-a', 'job-b']);
  expect(ended.find((x) => x.jobId === 'job-b')).toMatchObject({ modelId, route: [b, c], reason: 'hidden_mismatch', at, until: at + 1_000 });
  const probation = async (id: string) => (await store.getAgent(id))!.probation;
  // a: accused in an open dispute; c: on a route still blocked; d: accused too (the legacy dispute); b: free.
  expect([await probation(a), await probation(b), await probation(c), await probation(d)]).toEqual([true, false, true, true]);
  expect(await store.expireRouteBlocks({ at: at + 1_000, limit: 10 })).toEqual([]);

  // Settled or voided: never claimed again, no longer an accusation.
  await store.settleDispute(opened.id, { status: 'rejected', checkerAgentIds: [b, c], evidence: { state: 'dismissed' }, at: at + 130_000 });
  expect(await store.claimDisputeRetries({ at: at + 1_000_000, retryMs: 60_000, limit: 10 })).toEqual([]);
  expect((await view()).get(a)!.inDispute).toBe(false);
  await store.recordDisputeCheck(opened.id, { checkerAgentId: d, verdict: { n: 3 }, at: at + 131_000 });
  const voidable = await store.openDispute({ jobId: 'job-v', agentId: b, reason: 'x', evidence: { verdicts: [] }, firstCheckerId: c, check, retryAfter: at, at });
  expect(await store.voidStaleDisputes({ openedBefore: at + 1, at: at + 2, limit: 10 })).toEqual(
    expect.arrayContaining([{ id: voidable.id, agentId: b, jobId: 'job-v' }]),
  );
  expect(await store.claimDisputeRetries({ at: at + 1_000_000, retryMs: 60_000, limit: 10 })).toEqual([]);
  expect((await view()).get(b)!.inDispute).toBe(false);

  // Holds: every hop of a held route is out of every route until `holdUntil`, or until the blame
  // releases them (the block stays), or the block is lifted; a block without one holds nobody.
  const held = async (now: number) => [...(await view(now)).entries()].filter(([, x]) => x.held).map(([id]) => id).sort();
  expect(await held(at)).toEqual([]);
  await store.blockRoute({ modelId, route: [a, b], jobId: 'job-h1', reason: 'hidden_mismatch', at, until: at + 5_000, holdUntil: at + 5_000 });
  await store.blockRoute({ modelId, route: [c], jobId: 'job-h2', reason: 'hidden_mismatch', at, until: at + 5_000, holdUntil: at + 2_000 });
  await store.blockRoute({ modelId, route: [d], jobId: 'job-h3', reason: 'hidden_mismatch', at, until: at + 5_000 });
  expect(await held(at)).toEqual([a, b, c].sort());
  expect(await held(at + 2_000)).toEqual([a, b].sort());
  await store.releaseRouteHold({ jobId: 'job-h1', route: [a, b], at: at + 10 });
  expect(await held(at + 10)).toEqual([c]);
  // Released, not lifted: the route itself stays blocked.
  expect((await view(at + 10)).get(a)!.blockedRoutes).toEqual([[a, b]]);
  await store.liftRouteBlocks({ jobId: 'job-h2', route: [c], at: at + 20 });
  expect(await held(at + 20)).toEqual([]);
  // job-h2's block is gone; job-c's (above) still blocks [c].
  expect((await view(at + 20)).get(c)!.blockedRoutes).toEqual([[c]]);

  // Cooldowns after failures: the later one wins, with its reason (owners and operators see why).
  expect(await store.getAgent(a)).toMatchObject({ cooldownUntil: null, cooldownReason: null });
  await store.setCooldown(a, at + 5_000, 'timeout');
  await store.setCooldown(a, at + 3_000, 'stream');
  expect(await store.getAgent(a)).toMatchObject({ cooldownUntil: at + 5_000, cooldownReason: 'timeout' });
  await store.setCooldown(a, at + 9_000, 'bad_attestation');
  expect(await store.getAgent(a)).toMatchObject({ cooldownUntil: at + 9_000, cooldownReason: 'bad_attestation' });
}
