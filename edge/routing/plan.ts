/**
 * Route planning: from routing candidates (the cached registry view) to an ordered list of
 * routes to try. Pure: the clock and the random source come in as arguments.
 *
 * @example
 * const plan = planRoutes(candidates, { numLayers: 8, now: Date.now(), prefs: { sort: 'latency', allow_fallbacks: true },
 *   client: { region: 'eu-west' }, promptTokens: 12, maxTokens: 64, random: Math.random });
 * if (!plan.ok) throw new ApiError('no_route', plan.reason);
 * for (const route of plan.routes) { ... }
 */
import type { RouteCandidate } from '../../db/registry-contract.js';
import {
  EXPLORATION_SHARE,
  TIE_TOLERANCE,
  costRoutes,
  hopCost,
  routeFigures,
  type ClientLocation,
  type RouteFigureInput,
  type ScoredRoute,
  type SortMode,
} from './score.js';

export interface RoutePrefs {
  sort: SortMode;
  /** USD per million tokens. */
  max_price?: number;
  max_latency_ms?: number;
  region?: string;
  allow_fallbacks: boolean;
}

export interface PlanInput {
  numLayers: number;
  now: number;
  prefs: RoutePrefs;
  client: ClientLocation;
  promptTokens: number;
  maxTokens: number;
  /** Uniform in [0, 1). */
  random: () => number;
  /** Agents with an older heartbeat are left out (default 30 s). */
  staleAfterMs?: number;
  /** Agents to leave out (failed earlier in this request). */
  exclude?: ReadonlySet<string>;
  /** Bounds of the chain search. */
  perGroup?: number;
  maxHops?: number;
  maxRoutes?: number;
  /** Share of requests that explore a random eligible route (default EXPLORATION_SHARE). */
  explorationShare?: number;
}

export type Plan = { ok: true; routes: ScoredRoute[]; explored: boolean } | { ok: false; reason: string };

export const DEFAULT_STALE_AFTER_MS = 30_000;

/**
 * Agents routing may use now: active, accused in no open dispute, held by no failed check, not
 * in cooldown, fresh heartbeat, not excluded. One failed check is enough to stop serving clients
 * through every hop of the failed route until the blame names one (held), then through the
 * accused until its dispute settles (docs/trust.md §7).
 */
export function eligible(c: RouteCandidate, now: number, staleAfterMs: number, exclude?: ReadonlySet<string>): boolean {
  if (c.status !== 'active') return false;
  if (c.inDispute || c.held) return false;
  if (c.cooldownUntil !== null && c.cooldownUntil > now) return false;
  if (c.lastHeartbeatAt === null || c.lastHeartbeatAt < now - staleAfterMs) return false;
  if (exclude?.has(c.agentId)) return false;
  return true;
}

/** The key of a route (its agent ids in hop order) among blocked routes. */
export function routeKey(agentIds: readonly string[]): string {
  return agentIds.join('>');
}

/** Routes the candidates' heads say must not be chosen now (`RouteCandidate.blockedRoutes`). */
export function blockedRouteKeys(candidates: readonly RouteCandidate[]): Set<string> {
  const out = new Set<string>();
  for (const c of candidates) for (const r of c.blockedRoutes ?? []) if (r[0] === c.agentId) out.add(routeKey(r));
  return out;
}

/**
 * Every chain covering [0, numLayers) exactly once, in order, within the search bounds: at each
 * layer boundary only the `perGroup` best candidates by latency and the `perGroup` best by price
 * (plus one random one, for exploration) are expanded, chains are at most `maxHops` long, and
 * the search stops at `maxRoutes` chains. A blocked route (a check of a job it served failed:
 * `blockedRoutes` of its first hop) is never one of them; its hops may still form other chains.
 */
export function buildChains(
  candidates: readonly RouteCandidate[],
  input: RouteFigureInput & { random: () => number; perGroup?: number; maxHops?: number; maxRoutes?: number; maxPriceMicro?: number },
): RouteCandidate[][] {
  const perGroup = input.perGroup ?? 8;
  const maxHops = input.maxHops ?? 16;
  const maxRoutes = input.maxRoutes ?? 64;
  const groups = new Map<number, RouteCandidate[]>();
  for (const c of candidates) {
    if (c.layers[0] >= c.layers[1] || c.layers[1] > input.numLayers) continue;
    let g = groups.get(c.layers[0]);
    if (!g) groups.set(c.layers[0], (g = []));
    g.push(c);
  }
  const pruned = new Map<number, RouteCandidate[]>();
  for (const [start, group] of groups) {
    if (group.length <= perGroup * 2) {
      const costs = new Map(group.map((c) => [c, hopCost(c, 'balanced', input)]));
      pruned.set(start, [...group].sort((a, b) => costs.get(a)!.latency - costs.get(b)!.latency));
      continue;
    }
    const costs = new Map(group.map((c) => [c, hopCost(c, 'balanced', input)]));
    const byLatency = [...group].sort((a, b) => costs.get(a)!.latency - costs.get(b)!.latency);
    const byPrice = [...group].sort((a, b) => costs.get(a)!.price - costs.get(b)!.price);
    const keep = new Set([...byLatency.slice(0, perGroup), ...byPrice.slice(0, perGroup)]);
    keep.add(group[Math.floor(input.random() * group.length)]!);
    pruned.set(start, [...keep]);
  }
  const blocked = blockedRouteKeys(candidates);
  const out: RouteCandidate[][] = [];
  const path: RouteCandidate[] = [];
  const used = new Set<string>();
  const walk = (layer: number, price: number) => {
    if (out.length >= maxRoutes) return;
    if (layer === input.numLayers) {
      if (blocked.size === 0 || !blocked.has(routeKey(path.map((c) => c.agentId)))) out.push([...path]);
      return;
    }
    if (path.length >= maxHops) return;
    for (const c of pruned.get(layer) ?? []) {
      if (used.has(c.agentId)) continue;
      const p = price + c.priceMicroUsdPerMTok;
      if (input.maxPriceMicro !== undefined && p > input.maxPriceMicro) continue;
      path.push(c);
      used.add(c.agentId);
      walk(c.layers[1], p);
      used.delete(c.agentId);
      path.pop();
      if (out.length >= maxRoutes) return;
    }
  };
  walk(0, 0);
  return out;
}

/** Chooses among the best routes by power of two choices on queue depth. */
function pickAmongTies(routes: ScoredRoute[], random: () => number): number {
  const best = routes[0]!.cost;
  let ties = 1;
  while (ties < routes.length && routes[ties]!.cost <= best * (1 + TIE_TOLERANCE)) ties++;
  if (ties === 1) return 0;
  const a = Math.floor(random() * ties);
  let b = Math.floor(random() * (ties - 1));
  if (b >= a) b++;
  return routes[a]!.queueDepth <= routes[b]!.queueDepth ? a : b;
}

/**
 * Ordered routes to try: the chosen one first, then the others by cost. Preferred-region routes
 * come before any other (an exploring request picks among them only); without `allow_fallbacks`
 * only the first route is returned.
 */
export function planRoutes(candidates: readonly RouteCandidate[], input: PlanInput): Plan {
  const stale = input.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const usable = candidates.filter((c) => eligible(c, input.now, stale, input.exclude));
  if (usable.length === 0) return { ok: false, reason: 'no live agent serves this model' };
  const figureInput: RouteFigureInput = {
    numLayers: input.numLayers,
    client: input.client,
    promptTokens: input.promptTokens,
    maxTokens: input.maxTokens,
    ...(input.prefs.region ? { region: input.prefs.region } : {}),
  };
  const maxPriceMicro = input.prefs.max_price !== undefined ? input.prefs.max_price * 1e6 + 1e-6 : undefined;
  const chains = buildChains(usable, {
    ...figureInput,
    random: input.random,
    ...(input.perGroup !== undefined ? { perGroup: input.perGroup } : {}),
    ...(input.maxHops !== undefined ? { maxHops: input.maxHops } : {}),
    ...(input.maxRoutes !== undefined ? { maxRoutes: input.maxRoutes } : {}),
    ...(maxPriceMicro !== undefined ? { maxPriceMicro } : {}),
  });
  if (chains.length === 0) {
    return { ok: false, reason: maxPriceMicro !== undefined ? `no route covers every layer within max_price ${input.prefs.max_price}` : 'no chain of live agents covers every layer of this model' };
  }
  let routes = chains.map((hops) => routeFigures(hops, figureInput));
  if (input.prefs.max_latency_ms !== undefined) {
    routes = routes.filter((r) => r.expectedTtftMs <= input.prefs.max_latency_ms!);
    if (routes.length === 0) return { ok: false, reason: `no route is expected to answer within max_latency_ms ${input.prefs.max_latency_ms}` };
  }
  if (input.prefs.region) {
    const inRegion = routes.filter((r) => r.inRegion);
    if (!input.prefs.allow_fallbacks) routes = inRegion;
    if (routes.length === 0) return { ok: false, reason: `no route in region ${input.prefs.region}` };
  }
  const preferred = costRoutes(routes.filter((r) => r.inRegion), input.prefs.sort);
  const rest = costRoutes(routes.filter((r) => !r.inRegion), input.prefs.sort);
  const ordered = [...preferred, ...rest];
  // Exploration stays inside the preferred region when there is one: a region preference is a
  // promise to try those routes first, and exploring elsewhere broke it.
  const explorable = preferred.length > 0 ? preferred.length : ordered.length;
  let explored = false;
  let first: number;
  if (explorable > 1 && input.random() < (input.explorationShare ?? EXPLORATION_SHARE)) {
    explored = true;
    first = Math.floor(input.random() * explorable);
  } else {
    first = pickAmongTies(preferred.length > 0 ? preferred : rest, input.random);
  }
  const chosen = ordered.splice(first, 1)[0]!;
  ordered.unshift(chosen);
  return { ok: true, routes: input.prefs.allow_fallbacks ? ordered : [chosen], explored };
}

/** Routes still usable after `agentId` failed: those that do not include it. */
export function withoutAgent(routes: readonly ScoredRoute[], agentIds: ReadonlySet<string>): ScoredRoute[] {
  return routes.filter((r) => r.hops.every((h) => !agentIds.has(h.agentId)));
}
