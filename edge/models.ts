/** Model lookups through the per-isolate cache (by id or by name), and a model with its tokenizer. */
import { ApiError } from '../protocol/errors.js';
import type { EdgeDeps, EdgeTokenizer } from './deps.js';
import type { ModelRecord } from '../db/registry-contract.js';

export function getModelCached(deps: Pick<EdgeDeps, 'store' | 'caches' | 'clock'>, idOrName: string): Promise<ModelRecord | null> {
  return deps.caches.models.get(idOrName, () => deps.store.getModel(idOrName), deps.clock.now());
}

/**
 * The model a completion asks for and its tokenizer: 404 when there is no such model, 503 while
 * its tokenizer files are not in the registry.
 *
 * @example
 * const { model, tokenizer } = await modelWithTokenizer(deps, body.model);
 */
export async function modelWithTokenizer(deps: EdgeDeps, idOrName: string): Promise<{ model: ModelRecord; tokenizer: EdgeTokenizer }> {
  const model = await getModelCached(deps, idOrName);
  if (!model) throw new ApiError('model_not_found', `model ${idOrName} does not exist`, 'model');
  return { model, tokenizer: await deps.tokenizers.forModel(model, deps.store) };
}
