/**
 * What a failed check does to routing before anyone is blamed (docs/trust.md §7): the route that
 * served the job (its exact chain of agents) is blocked for the policy's `routeBlockMs` (lifted
 * early when the dispute it leads to is dismissed or voided) and every hop of it goes on
 * probation (every later job of theirs is re-executed) for as long. The accused hop of a dispute
 * is out of routing altogether while the dispute is open (`RouteCandidate.inDispute`); a hop
 * nobody accused stays routable on other routes.
 *
 * @example
 * await blockFailedRoute(deps, policy, { jobId, modelId, route: ['agent-a', 'agent-b'], reason: 'hidden_mismatch' });
 */
import type { TrustPolicy } from '../trust/policy.js';
import type { CheckDeps } from './run-checks.js';

export async function blockFailedRoute(
  deps: Pick<CheckDeps, 'store' | 'clock' | 'log' | 'caches'>,
  policy: TrustPolicy,
  input: { jobId: string; modelId: string; route: readonly string[]; reason: string },
): Promise<void> {
  const at = deps.clock.now();
  const until = at + policy.routeBlockMs;
  const route = [...input.route];
  await deps.store.blockRoute({ modelId: input.modelId, route, jobId: input.jobId, reason: input.reason, at, until });
  for (const id of new Set(route)) await deps.store.setProbation(id, true);
  // This isolate stops choosing the route now; other isolates within `candidateCacheTtlMs`.
  deps.caches.candidates.clear();
  await deps.store.recordCheck({ jobId: input.jobId, status: 'fail', entry: { kind: 'route_blocked', route, until }, at });
  deps.log({ level: 'warn', msg: 'route blocked after a failed check; its hops are on probation', jobId: input.jobId, route, until, reason: input.reason });
}

/**
 * Ends the blocks whose time is over: deletes them and takes their hops off probation unless
 * another block or an open dispute keeps them on it (the scheduled tick calls this).
 */
export async function expireRouteBlocks(deps: Pick<CheckDeps, 'store' | 'clock' | 'log' | 'caches'>, limit = 100): Promise<number> {
  try {
    const ended = await deps.store.expireRouteBlocks({ at: deps.clock.now(), limit });
    if (ended.length) {
      deps.caches.candidates.clear();
      deps.log({ level: 'info', msg: 'route blocks ended', routes: ended.map((b) => b.route), jobs: ended.map((b) => b.jobId) });
    }
    return ended.length;
  } catch (err) {
    deps.log({ level: 'warn', msg: 'could not end route blocks', error: err instanceof Error ? err.message : String(err) });
    return 0;
  }
}
