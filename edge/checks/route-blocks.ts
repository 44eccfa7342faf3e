/**
 * What a failed check does to routing before anyone is blamed (docs/trust.md §7): the route that
 * served the job (its exact chain of agents) is blocked for the policy's `routeBlockMs` (lifted
 * early when the dispute it leads to is dismissed or voided) and every hop of it goes on
 * probation (every later job of theirs is re-executed) for as long. Until the blame names the
 * guilty hop, every hop of the route is held out of every route (`RouteCandidate.held`): one of
 * them cheated and nobody knows which yet, and a client job through it is a job served by a
 * cheater. Once a dispute accuses one hop, the others' hold ends (`releaseHeldHops`) and the
 * accused stays out while its dispute is open (`RouteCandidate.inDispute`). A failure that names
 * no hop keeps the whole route held for the block's length.
 *
 * @example
 * await blockFailedRoute(deps, policy, { jobId, modelId, route: ['agent-a', 'agent-b'], reason: 'hidden_mismatch' });
 * // ... blame names agent-b, its dispute opens:
 * await releaseHeldHops(deps, { jobId, route: ['agent-a', 'agent-b'], accused: 'agent-b' });
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
  await deps.store.blockRoute({ modelId: input.modelId, route, jobId: input.jobId, reason: input.reason, at, until, holdUntil: until });
  // This isolate stops routing through the hops now; other isolates within `candidateCacheTtlMs`.
  deps.caches.candidates.clear();
  for (const id of new Set(route)) await deps.store.setProbation(id, true);
  await deps.store.recordCheck({ jobId: input.jobId, status: 'fail', entry: { kind: 'route_blocked', route, until, heldUntilBlame: true }, at });
  deps.log({ level: 'warn', msg: 'route blocked after a failed check; its hops are held out of routing until the blame and on probation', jobId: input.jobId, route, until, reason: input.reason });
}

/**
 * The blame named `accused` and a dispute against it is open: the other hops of the route go back
 * to routing (still on probation, the route itself still blocked); the accused stays out through
 * its dispute.
 */
export async function releaseHeldHops(deps: Pick<CheckDeps, 'store' | 'clock' | 'log' | 'caches'>, input: { jobId: string; route: readonly string[]; accused: string }): Promise<void> {
  await deps.store.releaseRouteHold({ jobId: input.jobId, route: input.route, at: deps.clock.now() });
  deps.caches.candidates.clear();
  const released = [...new Set(input.route)].filter((id) => id !== input.accused);
  if (released.length) deps.log({ level: 'info', msg: 'blame named a hop: the other hops of the failed route are routable again', jobId: input.jobId, accused: input.accused, released });
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
