/**
 * Route scoring: pure functions over live figures, no runtime import.
 *
 * A route is a chain of agents whose spans cover [0, numLayers) exactly once, in order. Every
 * figure of a route is derived from its hops:
 *
 * - Expected time to first token, ms:
 *     ttft(route) = sum over hops of ( ttftEwma(hop) ?? prior(hop) )
 *                 + sum over hops of queueDepth(hop) * perToken(hop)
 *   A hop never observed gets a prior: BASE_TTFT_MS for its share of the layers plus a network
 *   round trip estimated from the great-circle distance to the client (about 1 ms per 100 km of
 *   round trip, the speed of light in fibre with routing overhead), or CROSS_REGION_RTT_MS when
 *   either side has no coordinates and the regions differ. Queued jobs ahead of ours each delay
 *   the first token by about one decode step.
 * - Expected per-token time, ms: sum over hops of ( perTokenEwma(hop) ?? BASE_PER_TOKEN_MS share ).
 * - Failure probability: p = 1 - prod(1 - failureRateEwma(hop)).
 * - Effective latency, the figure the `latency` sort minimises:
 *     L = (ttft + perToken * n) / (1 - min(p, 0.9)) + p * FAILURE_PENALTY_MS
 *   where n = the tokens requested (capped at LATENCY_HORIZON_TOKENS). The EWMAs only hold
 *   successful timings, so an agent that fails fast keeps a low ttft; dividing by (1 - p)
 *   (expected number of tries) and adding the cost of a failover (detecting the failure and
 *   starting over elsewhere) is what stops a route that fails fast from ever looking fast.
 * - Price: the sum of the hops' prices (micro-USD per million tokens); the request's expected
 *   cost is price * (promptTokens + n) / 1e6.
 * - Trust factor: T = (1 + REPUTATION_WEIGHT * (0.5 - meanReputation)) * (1.5 if any hop is on
 *   probation), so reputation 1.0 is worth 20% and reputation 0 costs 20%.
 *
 * The sort compares routes on costs normalised by the best route of the set, so latency (ms)
 * and price (micro-USD) can be mixed without units:
 *     latency:  cost = T * (L / Lmin + 0.01 * P / Pmin)      (price only breaks ties)
 *     price:    cost = T * (P / Pmin + 0.01 * L / Lmin)
 *     balanced: cost = T * (0.5 * L / Lmin + 0.5 * P / Pmin)
 * Routes over `max_price` or whose expected TTFT is over `max_latency_ms` are dropped.
 * Choice among near-equal routes (cost within TIE_TOLERANCE of the best) is by power of two
 * choices on queue depth, and a small EXPLORATION_SHARE of requests goes first to a random
 * eligible route so agents that recovered (cooldown over, failure rate decaying) get the traffic
 * that lets their EWMAs recover.
 */
import type { RouteCandidate } from '../../db/registry-contract.js';

export const BASE_TTFT_MS = 150;
export const BASE_PER_TOKEN_MS = 30;
export const CROSS_REGION_RTT_MS = 120;
export const FAILURE_PENALTY_MS = 2_000;
export const LATENCY_HORIZON_TOKENS = 256;
export const REPUTATION_WEIGHT = 0.4;
export const TIE_TOLERANCE = 0.05;
export const EXPLORATION_SHARE = 0.05;

export type SortMode = 'latency' | 'price' | 'balanced';

/** Where the client is, as well as the edge knows. */
export interface ClientLocation {
  region?: string;
  latitude?: number;
  longitude?: number;
}

export interface ScoredRoute {
  hops: RouteCandidate[];
  /** Sum of hop prices, micro-USD per million tokens. */
  priceMicroUsdPerMTok: number;
  expectedTtftMs: number;
  expectedPerTokenMs: number;
  failureProbability: number;
  /** Effective latency L (see the file comment), ms. */
  effectiveLatencyMs: number;
  /** Expected cost of the request, micro-USD. */
  expectedCostMicroUsd: number;
  trust: number;
  /** Sort cost (lower is better), set by rankRoutes. */
  cost: number;
  /** Every hop in the preferred region (true when no region was asked for). */
  inRegion: boolean;
  queueDepth: number;
}

/** Great-circle distance, km. */
export function distanceKm(a: { latitude: number; longitude: number }, b: { latitude: number; longitude: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.latitude - a.latitude) * rad;
  const dLon = (b.longitude - a.longitude) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.latitude * rad) * Math.cos(b.latitude * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Prior round trip between the client and an agent never observed from here, ms. */
export function priorRttMs(hop: RouteCandidate, client: ClientLocation): number {
  if (hop.latitude !== null && hop.longitude !== null && client.latitude !== undefined && client.longitude !== undefined) {
    return distanceKm({ latitude: hop.latitude, longitude: hop.longitude }, { latitude: client.latitude, longitude: client.longitude }) / 100;
  }
  if (client.region && client.region !== hop.region) return CROSS_REGION_RTT_MS;
  return 0;
}

export interface RouteFigureInput {
  numLayers: number;
  client: ClientLocation;
  promptTokens: number;
  maxTokens: number;
  /** Preferred region (route preferences); routes outside it are marked inRegion = false. */
  region?: string;
}

/** Computes a route's expected figures (everything but `cost`). */
export function routeFigures(hops: RouteCandidate[], input: RouteFigureInput): ScoredRoute {
  let ttft = 0;
  let perToken = 0;
  let survive = 1;
  let price = 0;
  let rep = 0;
  let probation = false;
  let queue = 0;
  let inRegion = true;
  for (const hop of hops) {
    const share = (hop.layers[1] - hop.layers[0]) / input.numLayers;
    const hopPerToken = hop.perTokenMsEwma ?? BASE_PER_TOKEN_MS * share + priorRttMs(hop, input.client);
    ttft += hop.ttftMsEwma ?? BASE_TTFT_MS * share + priorRttMs(hop, input.client);
    ttft += hop.queueDepth * hopPerToken;
    perToken += hopPerToken;
    survive *= 1 - Math.min(1, Math.max(0, hop.failureRateEwma));
    price += hop.priceMicroUsdPerMTok;
    rep += hop.reputation;
    probation ||= hop.probation;
    queue += hop.queueDepth;
    if (input.region && hop.region !== input.region) inRegion = false;
  }
  const p = 1 - survive;
  const n = Math.min(input.maxTokens, LATENCY_HORIZON_TOKENS);
  const effective = (ttft + perToken * n) / (1 - Math.min(p, 0.9)) + p * FAILURE_PENALTY_MS;
  const trust = (1 + REPUTATION_WEIGHT * (0.5 - rep / hops.length)) * (probation ? 1.5 : 1);
  return {
    hops,
    priceMicroUsdPerMTok: price,
    expectedTtftMs: ttft,
    expectedPerTokenMs: perToken,
    failureProbability: p,
    effectiveLatencyMs: effective,
    expectedCostMicroUsd: (price * (input.promptTokens + input.maxTokens)) / 1e6,
    trust,
    cost: 0,
    inRegion,
    queueDepth: queue,
  };
}

/** Per-hop cost used to prune the chain search (same shape as the route cost, one hop). */
export function hopCost(hop: RouteCandidate, sort: SortMode, input: RouteFigureInput): { latency: number; price: number } {
  const r = routeFigures([hop], input);
  void sort;
  return { latency: r.effectiveLatencyMs * r.trust, price: r.priceMicroUsdPerMTok * r.trust };
}

/** Sets `cost` on every route (see the file comment) and returns them sorted, best first. */
export function costRoutes(routes: ScoredRoute[], sort: SortMode): ScoredRoute[] {
  if (routes.length === 0) return routes;
  let minL = Infinity;
  let minP = Infinity;
  for (const r of routes) {
    minL = Math.min(minL, r.effectiveLatencyMs);
    minP = Math.min(minP, r.priceMicroUsdPerMTok);
  }
  // Free routes (price 0) would make every ratio infinite: normalise by at least one micro-USD.
  minL = Math.max(minL, 1e-3);
  minP = Math.max(minP, 1);
  for (const r of routes) {
    const l = r.effectiveLatencyMs / minL;
    const p = Math.max(r.priceMicroUsdPerMTok, 1) / minP;
    const base = sort === 'latency' ? l + 0.01 * p : sort === 'price' ? p + 0.01 * l : 0.5 * l + 0.5 * p;
    r.cost = r.trust * base;
  }
  return routes.sort((a, b) => a.cost - b.cost);
}
