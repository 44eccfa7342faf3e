/**
 * Who may check a job (docs/trust.md §7, "Checker"): agents that are active, accused in no open
 * dispute, held by no failed check (a suspect does not judge), with a fresh heartbeat (the candidates' query), not in the route, and of no owner of a
 * hop of the route. A check of the whole route needs the whole model (`independentCheckers`); a
 * hop check needs exactly that hop's layers, or the whole model (`hopCheckers`). Best reputation
 * first, ties in random order.
 *
 * @example
 * const whole = await independentCheckers(deps, candidatesById(candidates), route, numLayers);
 * const forHop1 = whole.length ? [] : await hopCheckers(deps, candidates, ticket.route, 1, numLayers);
 */
import type { RouteHop } from '../../protocol/ticket.js';
import type { RouteCandidate } from '../../db/registry-contract.js';
import type { CheckDeps } from './run-checks.js';

/** One candidate per agent (an agent holding several spans of the model is listed once per span). */
export function candidatesById(candidates: readonly RouteCandidate[]): Map<string, RouteCandidate> {
  const byId = new Map<string, RouteCandidate>();
  for (const c of candidates) if (!byId.has(c.agentId)) byId.set(c.agentId, c);
  return byId;
}

function shuffle<T>(list: T[], random: () => number): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

/** Owners of the route's hops (a hop the candidates do not list, e.g. offline, is read from the registry). */
async function ownersOf(deps: Pick<CheckDeps, 'store'>, candidates: Iterable<RouteCandidate>, route: readonly string[]): Promise<Set<string>> {
  const listed = new Map<string, string>();
  for (const c of candidates) listed.set(c.agentId, c.ownerAccountId);
  const owners = new Set<string>();
  for (const id of route) {
    const owner = listed.get(id) ?? (await deps.store.getAgent(id))?.ownerAccountId;
    if (owner) owners.add(owner);
  }
  return owners;
}

/** Whether `c` may check a job of `route`: active, accused in no open dispute, held by no failed check, not in the route, of no owner of a hop of it. */
function independent(c: RouteCandidate, route: readonly string[], owners: ReadonlySet<string>): boolean {
  return c.status === 'active' && !c.inDispute && !c.held && !route.includes(c.agentId) && !owners.has(c.ownerAccountId);
}

/** Independent candidates holding `layers`, one per agent, best reputation first (ties shuffled). */
function holding(deps: Pick<CheckDeps, 'random'>, candidates: Iterable<RouteCandidate>, route: readonly string[], owners: ReadonlySet<string>, layers: readonly [number, number]): RouteCandidate[] {
  const byId = new Map<string, RouteCandidate>();
  for (const c of candidates) {
    if (byId.has(c.agentId) || c.layers[0] !== layers[0] || c.layers[1] !== layers[1]) continue;
    if (independent(c, route, owners)) byId.set(c.agentId, c);
  }
  return shuffle([...byId.values()], deps.random).sort((a, b) => b.reputation - a.reputation);
}

/**
 * Every span (one row per agent and span) of agents that may check a job of `route`, whatever
 * layers it holds: what chains of checkers are built from (chain-checks.ts). Ties shuffled.
 */
export async function independentHolders(deps: Pick<CheckDeps, 'store' | 'random'>, candidates: readonly RouteCandidate[], route: readonly string[]): Promise<RouteCandidate[]> {
  const owners = await ownersOf(deps, candidates, route);
  return shuffle(candidates.filter((c) => independent(c, route, owners)), deps.random);
}

/**
 * Agents that may check a job of `route` whole: active, holding the whole model, accused in no
 * open dispute, not in the route, and of no owner of a hop of the route; best reputation first
 * (ties in random order).
 */
export async function independentCheckers(
  deps: Pick<CheckDeps, 'store' | 'random'>,
  byId: ReadonlyMap<string, RouteCandidate>,
  route: readonly string[],
  numLayers: number,
): Promise<RouteCandidate[]> {
  const owners = await ownersOf(deps, byId.values(), route);
  return holding(deps, byId.values(), route, owners, [0, numLayers]);
}

/**
 * Agents that may run a hop check of hop `hop` of `route` (the ticket's hops), independent as
 * above: those whose span is exactly the hop's layers first (they hold it loaded), then
 * whole-model agents (they load the hop's span from their model folder). `candidates` is the
 * full list, one row per registered span (an agent may hold several).
 */
export async function hopCheckers(
  deps: Pick<CheckDeps, 'store' | 'random'>,
  candidates: readonly RouteCandidate[],
  route: readonly Pick<RouteHop, 'agentId' | 'layers'>[],
  hop: number,
  numLayers: number,
): Promise<RouteCandidate[]> {
  const ids = route.map((h) => h.agentId);
  const layers = route[hop]?.layers;
  if (!layers) return [];
  const owners = await ownersOf(deps, candidates, ids);
  const exact = holding(deps, candidates, ids, owners, layers);
  const whole = holding(deps, candidates, ids, owners, [0, numLayers]).filter((c) => !exact.some((e) => e.agentId === c.agentId));
  return [...exact, ...whole];
}
