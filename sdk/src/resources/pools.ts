/**
 * `client.pools`: the public pools, a page at a time or all of them.
 */
import type { PoolList, RequestOptions } from '../types.js';
import { poolListSchema } from '../schemas.js';
import type { LayerNet } from '../client.js';

export interface PoolListParams {
  region?: string;
  /** 1..100 (default 50). */
  limit?: number;
  /** Cursor: the last pool id of the previous page. */
  after?: string;
}

export class Pools {
  constructor(private readonly client: LayerNet) {}

  /** One page of the public registry view: pools, their agents, public keys and live figures. */
  list(params: PoolListParams = {}, options: RequestOptions = {}): Promise<PoolList> {
    const query = { region: params.region, limit: params.limit === undefined ? undefined : String(params.limit), after: params.after };
    return this.client.requestJson({ method: 'GET', path: '/v1/pools', query }, options, poolListSchema);
  }

  /**
   * Every pool, page by page.
   *
   * @example
   * for await (const pool of client.pools.iterate({ region: 'eu-west' })) console.log(pool.id, pool.agents.length);
   */
  async *iterate(params: Omit<PoolListParams, 'after'> = {}, options: RequestOptions = {}): AsyncGenerator<PoolList['data'][number]> {
    const limit = params.limit ?? 100;
    let after: string | undefined;
    for (;;) {
      const page = await this.list({ ...params, limit, ...(after ? { after } : {}) }, options);
      yield* page.data;
      if (page.data.length < limit) return;
      after = page.data[page.data.length - 1]!.id;
    }
  }
}
