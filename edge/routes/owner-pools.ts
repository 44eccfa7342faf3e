/** POST /v1/owner/pools (create), GET /v1/owner/pools (the caller's pools). Scope: pool-owner. */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { createPoolSchema } from '../../protocol/owner-api.js';
import type { PoolRecord } from '../../db/registry-contract.js';
import { requireScope } from '../auth/middleware.js';
import { parseWith, readJsonBody } from '../http/body.js';

export function poolView(p: PoolRecord) {
  return {
    id: p.id,
    name: p.name,
    region: p.region,
    ...(p.latitude !== null ? { latitude: p.latitude } : {}),
    ...(p.longitude !== null ? { longitude: p.longitude } : {}),
    stake_micro_usd: p.stakeMicroUsd,
    status: p.status,
  };
}

export function registerOwnerPools(app: Hono<AppEnv>): void {
  app.post('/v1/owner/pools', requireScope('pool-owner'), async (c) => {
    const deps = c.get('deps');
    const body = parseWith(createPoolSchema, await readJsonBody(c.req.raw, deps.config.maxBodyBytes, deps.config.bodyReadTimeoutMs));
    const pool = await deps.store.createPool({ ownerAccountId: c.get('auth').accountId, name: body.name, region: body.region, latitude: body.latitude ?? null, longitude: body.longitude ?? null });
    return c.json(poolView(pool), 201);
  });
  app.get('/v1/owner/pools', requireScope('pool-owner'), async (c) => {
    const deps = c.get('deps');
    const pools = await deps.store.listPools(c.get('auth').accountId, 500);
    return c.json({ object: 'list', data: pools.map(poolView) });
  });
}
