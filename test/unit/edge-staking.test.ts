/**
 * Stake and the unstaked traffic share: an operator credits stake (admin scope only); with a
 * share below 1, routes through unstaked pools get at most that share of requests while a fully
 * staked route exists, and nothing once the share is used up when none does.
 */
import { describe, expect, it } from 'vitest';
import { UnstakedTrafficWindow } from '../../edge/trust/unstaked-window.js';
import { createTestEdge } from './edge-fixtures.js';

const chat = { model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, seed: 1 };

describe('UnstakedTrafficWindow', () => {
  it('counts the last minute only', () => {
    const w = new UnstakedTrafficWindow();
    w.record(false, 0);
    w.record(true, 15_000);
    expect(w.counts(15_000)).toEqual({ unstakedJobs: 1, totalJobs: 2 });
    expect(w.counts(65_000)).toEqual({ unstakedJobs: 0, totalJobs: 1 });
    expect(w.counts(200_000)).toEqual({ unstakedJobs: 0, totalJobs: 0 });
  });
});

describe('stake', () => {
  it('only an admin key credits stake, and the pool shows it', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const poolId = (await edge.store.getAgent(edge.agents[0]!.id))!.poolId;
    const owner = await edge.post(`/v1/admin/pools/${poolId}/stake`, { amount_micro_usd: 5_000_000, reason: 'deposit' }, edge.ownerKey.key);
    expect(owner.status).toBe(403);
    const admin = await edge.newKey(['admin'], 'acct_operator', {});
    const res = await edge.post(`/v1/admin/pools/${poolId}/stake`, { amount_micro_usd: 5_000_000, reason: 'deposit' }, admin.key);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { stake_micro_usd: number }).stake_micro_usd).toBe(5_000_000);
    const missing = await edge.post('/v1/admin/pools/nope/stake', { amount_micro_usd: 1, reason: 'x' }, admin.key);
    expect(missing.status).toBe(404);
    const bad = await edge.post(`/v1/admin/pools/${poolId}/stake`, { amount_micro_usd: -1, reason: 'x' }, admin.key);
    expect(bad.status).toBe(400);
  });

  it('routes through unstaked pools get at most the allowed share while a staked route exists', async () => {
    // The unstaked agent is cheaper, so sort "price" would always pick it without the policy.
    const edge = await createTestEdge({
      agents: [
        { layers: [0, 4], price: 0.1, region: 'eu-west' },
        { layers: [0, 4], price: 0.5, region: 'us-east' },
      ],
      config: { unstakedTrafficShare: 0.25 },
    });
    const [cheap, staked] = edge.agents;
    const admin = await edge.newKey(['admin'], 'acct_operator', {});
    const stakedPool = (await edge.store.getAgent(staked!.id))!.poolId;
    expect((await edge.post(`/v1/admin/pools/${stakedPool}/stake`, { amount_micro_usd: 1_000_000, reason: 'deposit' }, admin.key)).status).toBe(200);
    const served: string[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await edge.post('/v1/chat/completions', { ...chat, route: { sort: 'price' } });
      expect(res.status).toBe(200);
      served.push(((await res.json()) as { route: { hops: { agent_id: string }[] } }).route.hops[0]!.agent_id);
    }
    const unstakedShare = served.filter((id) => id === cheap!.id).length / served.length;
    expect(unstakedShare).toBeGreaterThan(0);
    expect(unstakedShare).toBeLessThanOrEqual(0.25);
    expect(served.filter((id) => id === staked!.id).length).toBeGreaterThanOrEqual(6);
  });

  it('with no staked route, unstaked traffic beyond the share is refused with 503', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }], config: { unstakedTrafficShare: 0.5 } });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await edge.post('/v1/chat/completions', chat);
      statuses.push(res.status);
      await res.text();
    }
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
    expect(statuses).toContain(503);
  });

  it('by default (share 1) unstaked routes serve everything', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    for (let i = 0; i < 3; i++) expect((await edge.post('/v1/chat/completions', chat)).status).toBe(200);
  });
});
