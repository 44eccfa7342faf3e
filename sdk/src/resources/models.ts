/**
 * `client.models`: the models the network serves now.
 */
import type { ModelList, RequestOptions } from '../types.js';
import { modelListSchema } from '../schemas.js';
import type { LayerNet } from '../client.js';

export class Models {
  constructor(private readonly client: LayerNet) {}

  /** Published models and how many live agents serve them. */
  list(options: RequestOptions = {}): Promise<ModelList> {
    return this.client.requestJson({ method: 'GET', path: '/v1/models' }, options, modelListSchema);
  }
}
