/**
 * POST /v1/admin/pools/:id/stake: an operator (scope admin) credits a pool's deposited stake.
 * Staked pools take any share of traffic; unstaked ones only `unstakedTrafficShare`.
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { creditStakeSchema } from '../../protocol/owner-api.js';
import { ApiError } from '../../protocol/errors.js';
import { requireScope } from '../auth/middleware.js';
import { parseWith, readJsonBody } from '../http/body.js';
import { poolView } from './owner-pools.js';

export function registerAdminStake(app: Hono<AppEnv>): void {
  app.post('/v1/admin/pools/:id/stake', requireScope('admin'), async (c) => {
    const deps = c.get('deps');
    const body = parseWith(creditStakeSchema, await readJsonBody(c.req.raw, 16 * 1024, deps.config.bodyReadTimeoutMs));
    const id = c.req.param('id');
    if (!(await deps.store.getPool(id))) throw new ApiError('not_found', `pool ${id} does not exist`);
    await deps.store.addStake(id, body.amount_micro_usd, body.reason, deps.clock.now());
    // Routing reads stake through the candidate cache: drop it so the change counts at once here.
    deps.caches.candidates.clear();
    const pool = await deps.store.getPool(id);
    return c.json(poolView(pool!), 200);
  });
}
