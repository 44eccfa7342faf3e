/**
 * The routing view: candidates per model and preferred region, read through a short-TTL cache
 * so routing never queries the registry on every request.
 */
import type { EdgeDeps } from '../deps.js';
import type { RouteCandidate } from '../../db/registry-contract.js';

export function loadCandidates(
  deps: Pick<EdgeDeps, 'store' | 'caches' | 'clock' | 'config'>,
  modelId: string,
  region: string | undefined,
): Promise<RouteCandidate[]> {
  const now = deps.clock.now();
  return deps.caches.candidates.get(
    `${modelId}|${region ?? ''}`,
    () =>
      deps.store.listRouteCandidates(modelId, {
        heartbeatAfter: now - deps.config.heartbeatStaleMs,
        limit: deps.config.candidateLimit,
        ...(region ? { region } : {}),
        location: deps.config.location,
        at: now,
      }),
    now,
  );
}

/**
 * Puts an agent in cooldown in this isolate's cached view right away (the registry write that
 * does the same for every edge goes through waitUntil).
 */
export function coolDownLocally(candidates: readonly RouteCandidate[], agentId: string, until: number): void {
  for (const c of candidates) if (c.agentId === agentId) c.cooldownUntil = Math.max(c.cooldownUntil ?? 0, until);
}
