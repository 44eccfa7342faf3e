/** Model lookups through the per-isolate cache (by id or by name). */
import type { EdgeDeps } from './deps.js';
import type { ModelRecord } from './store/interface.js';

export function getModelCached(deps: Pick<EdgeDeps, 'store' | 'caches' | 'clock'>, idOrName: string): Promise<ModelRecord | null> {
  return deps.caches.models.get(idOrName, () => deps.store.getModel(idOrName), deps.clock.now());
}
