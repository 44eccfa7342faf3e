import { describe, expect, it } from 'vitest';
import { buildChains, planRoutes, withoutAgent, type PlanInput } from '../../edge/routing/plan.js';
import { costRoutes, distanceKm, routeFigures } from '../../edge/routing/score.js';
import type { RouteCandidate } from '../../db/registry-contract.js';

const NOW = 1_000_000;
let n = 0;
function cand(layers: [number, number], extra: Partial<RouteCandidate> = {}): RouteCandidate {
  n++;
  return {
    agentId: `a${n}`,
    poolId: 'p1',
    ownerAccountId: 'o',
    region: 'eu-west',
    latitude: null,
    longitude: null,
    endpoint: `http://a${n}.test`,
    publicKey: 'k',
    layers,
    priceMicroUsdPerMTok: 1_000_000,
    ttftMsEwma: 100,
    perTokenMsEwma: 10,
    failureRateEwma: 0,
    observations: 10,
    queueDepth: 0,
    reputation: 0.5,
    status: 'active',
    cooldownUntil: null,
    probation: false,
    stakeMicroUsd: 0,
    lastHeartbeatAt: NOW - 1000,
    ...extra,
  };
}

const input = (extra: Partial<PlanInput> = {}): PlanInput => ({
  numLayers: 8,
  now: NOW,
  prefs: { sort: 'balanced', allow_fallbacks: true },
  client: {},
  promptTokens: 10,
  maxTokens: 100,
  random: () => 0.5,
  ...extra,
});

describe('route building', () => {
  it('builds only chains that cover every layer exactly once, in order', () => {
    const cands = [cand([0, 8]), cand([0, 3]), cand([3, 8]), cand([0, 4]), cand([4, 6]), cand([6, 8]), cand([3, 5]), cand([2, 8])];
    const chains = buildChains(cands, { numLayers: 8, client: {}, promptTokens: 1, maxTokens: 1, random: () => 0.5 });
    const shapes = chains.map((c) => c.map((h) => h.layers.join('-')).join(',')).sort();
    expect(shapes).toEqual(['0-3,3-8', '0-4,4-6,6-8', '0-8'].sort());
    for (const chain of chains) {
      let cursor = 0;
      for (const hop of chain) {
        expect(hop.layers[0]).toBe(cursor);
        cursor = hop.layers[1];
      }
      expect(cursor).toBe(8);
    }
  });

  it('bounds the search with thousands of candidates', () => {
    const cands = Array.from({ length: 5000 }, (_, i) => cand(i % 2 ? [0, 4] : [4, 8], { priceMicroUsdPerMTok: 1000 + i, ttftMsEwma: 50 + (i % 97) }));
    const chains = buildChains(cands, { numLayers: 8, client: {}, promptTokens: 1, maxTokens: 1, random: () => 0.5, perGroup: 4, maxRoutes: 20 });
    expect(chains.length).toBe(20);
  });

  it('excludes slashed, cooling down, stale, inactive and excluded agents', () => {
    const ok = cand([0, 8]);
    const cands = [
      cand([0, 8], { status: 'slashed' }),
      cand([0, 8], { cooldownUntil: NOW + 1 }),
      cand([0, 8], { lastHeartbeatAt: NOW - 60_000 }),
      cand([0, 8], { status: 'draining' }),
      cand([0, 8], { lastHeartbeatAt: null }),
      ok,
    ];
    const plan = planRoutes(cands, input());
    expect(plan.ok && plan.routes.map((r) => r.hops[0]!.agentId)).toEqual([ok.agentId]);
    expect(planRoutes([ok], input({ exclude: new Set([ok.agentId]) })).ok).toBe(false);
    // A cooldown that is over lets the agent back in.
    const recovered = cand([0, 8], { cooldownUntil: NOW - 1 });
    expect(planRoutes([recovered], input()).ok).toBe(true);
  });
});

describe('route scoring', () => {
  const cheapSlow = () => cand([0, 8], { priceMicroUsdPerMTok: 100_000, ttftMsEwma: 900, perTokenMsEwma: 60 });
  const dearFast = () => cand([0, 8], { priceMicroUsdPerMTok: 5_000_000, ttftMsEwma: 40, perTokenMsEwma: 5 });

  it('sort=price picks the cheap route, sort=latency the fast one', () => {
    const a = cheapSlow();
    const b = dearFast();
    const byPrice = planRoutes([a, b], input({ prefs: { sort: 'price', allow_fallbacks: true } }));
    const byLatency = planRoutes([a, b], input({ prefs: { sort: 'latency', allow_fallbacks: true } }));
    expect(byPrice.ok && byPrice.routes[0]!.hops[0]!.agentId).toBe(a.agentId);
    expect(byLatency.ok && byLatency.routes[0]!.hops[0]!.agentId).toBe(b.agentId);
    // Failover order: the other route is next.
    expect(byPrice.ok && byPrice.routes[1]!.hops[0]!.agentId).toBe(b.agentId);
  });

  it('a route that fails fast never looks fast', () => {
    const failsFast = cand([0, 8], { ttftMsEwma: 5, perTokenMsEwma: 1, failureRateEwma: 0.6 });
    const steady = cand([0, 8], { ttftMsEwma: 150, perTokenMsEwma: 12, failureRateEwma: 0 });
    const plan = planRoutes([failsFast, steady], input({ prefs: { sort: 'latency', allow_fallbacks: true } }));
    expect(plan.ok && plan.routes[0]!.hops[0]!.agentId).toBe(steady.agentId);
  });

  it('max_price and max_latency_ms drop routes; no route is a clear reason', () => {
    const a = cheapSlow();
    const b = dearFast();
    const capped = planRoutes([a, b], input({ prefs: { sort: 'latency', allow_fallbacks: true, max_price: 1 } }));
    expect(capped.ok && capped.routes.map((r) => r.hops[0]!.agentId)).toEqual([a.agentId]);
    const fastOnly = planRoutes([a, b], input({ prefs: { sort: 'price', allow_fallbacks: true, max_latency_ms: 100 } }));
    expect(fastOnly.ok && fastOnly.routes.map((r) => r.hops[0]!.agentId)).toEqual([b.agentId]);
    const none = planRoutes([a, b], input({ prefs: { sort: 'price', allow_fallbacks: true, max_price: 0.01 } }));
    expect(none.ok).toBe(false);
    expect(!none.ok && none.reason).toContain('max_price');
  });

  it('chain price is the sum of hop prices and prunes chains over max_price', () => {
    const h1 = cand([0, 4], { priceMicroUsdPerMTok: 600_000 });
    const h2 = cand([4, 8], { priceMicroUsdPerMTok: 600_000 });
    const r = routeFigures([h1, h2], { numLayers: 8, client: {}, promptTokens: 10, maxTokens: 100 });
    expect(r.priceMicroUsdPerMTok).toBe(1_200_000);
    expect(planRoutes([h1, h2], input({ prefs: { sort: 'price', allow_fallbacks: true, max_price: 1 } })).ok).toBe(false);
    expect(planRoutes([h1, h2], input({ prefs: { sort: 'price', allow_fallbacks: true, max_price: 1.2 } })).ok).toBe(true);
  });

  it('prefers the requested region; without fallbacks only it', () => {
    const far = cand([0, 8], { region: 'us-east', ttftMsEwma: 10 });
    const near = cand([0, 8], { region: 'eu-west', ttftMsEwma: 300 });
    const plan = planRoutes([far, near], input({ prefs: { sort: 'latency', allow_fallbacks: true, region: 'eu-west' } }));
    expect(plan.ok && plan.routes.map((r) => r.hops[0]!.agentId)).toEqual([near.agentId, far.agentId]);
    const strict = planRoutes([far, near], input({ prefs: { sort: 'latency', allow_fallbacks: false, region: 'eu-west' } }));
    expect(strict.ok && strict.routes.map((r) => r.hops[0]!.agentId)).toEqual([near.agentId]);
  });

  it('unobserved agents get a distance-based prior: the near one wins', () => {
    const paris = cand([0, 8], { ttftMsEwma: null, perTokenMsEwma: null, latitude: 48.85, longitude: 2.35 });
    const sydney = cand([0, 8], { ttftMsEwma: null, perTokenMsEwma: null, latitude: -33.87, longitude: 151.2 });
    const plan = planRoutes([sydney, paris], input({ client: { latitude: 51.5, longitude: -0.12 }, prefs: { sort: 'latency', allow_fallbacks: true } }));
    expect(plan.ok && plan.routes[0]!.hops[0]!.agentId).toBe(paris.agentId);
    expect(distanceKm({ latitude: 48.85, longitude: 2.35 }, { latitude: 51.5, longitude: -0.12 })).toBeGreaterThan(300);
  });

  it('lower reputation and probation cost more', () => {
    const trusted = cand([0, 8], { reputation: 0.9 });
    const doubtful = cand([0, 8], { reputation: 0.1 });
    const probation = cand([0, 8], { reputation: 0.9, probation: true });
    const routes = costRoutes([trusted, doubtful, probation].map((c) => routeFigures([c], { numLayers: 8, client: {}, promptTokens: 1, maxTokens: 10 })), 'balanced');
    expect(routes.map((r) => r.hops[0]!.agentId)).toEqual([trusted.agentId, doubtful.agentId, probation.agentId]);
  });

  it('ties go to the shorter queue (power of two choices)', () => {
    // perToken 0: the queue does not move the cost, so both routes tie exactly and the
    // stable sort keeps the busy one first; only the two-choices step prefers the idle one.
    const busy = cand([0, 8], { queueDepth: 3, perTokenMsEwma: 0 });
    const idle = cand([0, 8], { queueDepth: 0, perTokenMsEwma: 0 });
    for (const draws of [[0.9, 0.0, 0.99], [0.9, 0.99, 0.0]]) {
      const randoms = [...draws];
      const plan = planRoutes([busy, idle], input({ random: () => randoms.shift() ?? 0.5 }));
      expect(plan.ok && plan.routes[0]!.hops[0]!.agentId).toBe(idle.agentId);
      expect(plan.ok && plan.routes[1]!.hops[0]!.agentId).toBe(busy.agentId);
    }
  });

  it('a small exploration share sends a request to a worse route', () => {
    const good = cand([0, 8], { ttftMsEwma: 20 });
    const recovering = cand([0, 8], { ttftMsEwma: 400, failureRateEwma: 0.3 });
    const normal = planRoutes([good, recovering], input({ random: () => 0.5 }));
    expect(normal.ok && normal.routes[0]!.hops[0]!.agentId).toBe(good.agentId);
    const randoms = [0.01, 0.99];
    const explored = planRoutes([good, recovering], input({ random: () => randoms.shift() ?? 0.5 }));
    expect(explored.ok && explored.explored).toBe(true);
    expect(explored.ok && explored.routes[0]!.hops[0]!.agentId).toBe(recovering.agentId);
    // The good route is still there to fail over to.
    expect(explored.ok && explored.routes[1]!.hops[0]!.agentId).toBe(good.agentId);
  });

  it('exploration stays inside the preferred region', () => {
    const near = cand([0, 8], { region: 'eu-west', ttftMsEwma: 20 });
    const nearSlow = cand([0, 8], { region: 'eu-west', ttftMsEwma: 400 });
    const far = cand([0, 8], { region: 'ap-south', ttftMsEwma: 20 });
    const prefs = { sort: 'latency' as const, allow_fallbacks: true, region: 'eu-west' };
    // Every draw of the exploring pick lands in the preferred region, the far route stays last.
    for (const pick of [0, 0.34, 0.5, 0.67, 0.99]) {
      const randoms = [0.001, pick];
      const plan = planRoutes([far, near, nearSlow], input({ prefs, random: () => randoms.shift() ?? 0.5 }));
      expect(plan.ok && plan.explored).toBe(true);
      expect(plan.ok && plan.routes[0]!.hops[0]!.region).toBe('eu-west');
      expect(plan.ok && plan.routes.at(-1)!.hops[0]!.agentId).toBe(far.agentId);
    }
    // With one preferred route there is nothing to explore in the region: it goes first.
    const randoms = [0.001, 0.99];
    const single = planRoutes([far, nearSlow], input({ prefs, random: () => randoms.shift() ?? 0.5 }));
    expect(single.ok && single.explored).toBe(false);
    expect(single.ok && single.routes[0]!.hops[0]!.agentId).toBe(nearSlow.agentId);
    // Without a region preference exploration may pick any route.
    const anyRandoms = [0.001, 0.99];
    const open = planRoutes([near, far, nearSlow], input({ prefs: { sort: 'latency', allow_fallbacks: true }, random: () => anyRandoms.shift() ?? 0.5 }));
    expect(open.ok && open.explored).toBe(true);
  });

  it('an exploration share of 0 (EXPLORATION_SHARE) never explores', () => {
    const good = cand([0, 8], { ttftMsEwma: 20 });
    const recovering = cand([0, 8], { ttftMsEwma: 400, failureRateEwma: 0.3 });
    const plan = planRoutes([good, recovering], input({ random: () => 0.001, explorationShare: 0 }));
    expect(plan.ok && plan.explored).toBe(false);
    expect(plan.ok && plan.routes[0]!.hops[0]!.agentId).toBe(good.agentId);
  });

  it('withoutAgent drops every route through a failed agent', () => {
    const shared = cand([0, 4]);
    const chains = [shared, cand([4, 8]), cand([4, 8]), cand([0, 8])];
    const plan = planRoutes(chains, input());
    expect(plan.ok).toBe(true);
    if (!plan.ok) return;
    const left = withoutAgent(plan.routes, new Set([shared.agentId]));
    expect(left.map((r) => r.hops.length)).toEqual([1]);
  });
});

describe('routing after a failed check (docs/trust.md §7)', () => {
  const ids = (plan: ReturnType<typeof planRoutes>) => (plan.ok ? plan.routes.map((r) => r.hops.map((h) => h.agentId).join('>')).sort() : []);

  it('never chooses an agent accused in an open dispute, on any route', () => {
    const accused = cand([0, 4], { inDispute: true });
    const head = cand([0, 4]);
    const tail = cand([4, 8]);
    const whole = cand([0, 8], { inDispute: true });
    const plan = planRoutes([accused, head, tail, whole], input());
    expect(ids(plan)).toEqual([`${head.agentId}>${tail.agentId}`]);
    expect(planRoutes([accused, tail, whole], input())).toMatchObject({ ok: false });
  });

  it('leaves a blocked route out, while its hops still serve on other routes', () => {
    const head = cand([0, 4]);
    const tail = cand([4, 8]);
    const otherTail = cand([4, 8]);
    head.blockedRoutes = [[head.agentId, tail.agentId]];
    const plan = planRoutes([head, tail, otherTail], input());
    expect(ids(plan)).toEqual([`${head.agentId}>${otherTail.agentId}`]);
    // The innocent tail is still routable behind another head.
    const otherHead = cand([0, 4]);
    expect(ids(planRoutes([head, tail, otherHead], input()))).toEqual([`${otherHead.agentId}>${tail.agentId}`]);
    // The blocked route alone: nothing to serve with.
    expect(planRoutes([head, tail], input())).toMatchObject({ ok: false });
  });

  it('leaves a held agent (its route failed a check, no hop blamed yet) out of every route', () => {
    const head = cand([0, 4], { held: true });
    const tail = cand([4, 8]);
    const otherHead = cand([0, 4]);
    expect(ids(planRoutes([head, tail, otherHead], input()))).toEqual([`${otherHead.agentId}>${tail.agentId}`]);
    expect(planRoutes([head, tail], input())).toMatchObject({ ok: false });
    expect(ids(planRoutes([{ ...head, held: false }, tail], input()))).toEqual([`${head.agentId}>${tail.agentId}`]);
  });

  it('a block is one exact chain, carried by its first hop', () => {
    const a = cand([0, 8]);
    const b = cand([0, 4]);
    const c = cand([4, 8]);
    const d = cand([4, 6]);
    const e = cand([6, 8]);
    b.blockedRoutes = [[b.agentId, c.agentId]];
    // Another chain through the blocked route's head is another route.
    expect(ids(planRoutes([a, b, c, d, e], input()))).toEqual([a.agentId, `${b.agentId}>${d.agentId}>${e.agentId}`].sort());
    // A block listed on a candidate that is not its first hop is not the store's shape: ignored.
    b.blockedRoutes = [];
    c.blockedRoutes = [[b.agentId, c.agentId]];
    expect(ids(planRoutes([b, c], input()))).toEqual([`${b.agentId}>${c.agentId}`]);
  });
});
